//! What a host adds to its customers' SMS so phones can fill the code in:
//! the WebOTP line (`@domain #code`, the last line, for browsers) and the
//! Android SMS Retriever app hash (11 characters, for apps).
use crate::error::Invalid;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmsAutofill {
    webotp_domain: Option<String>,
    android_app_hash: Option<String>,
}

impl SmsAutofill {
    /// Both parts optional; each checked on its own.
    pub fn parse(
        webotp_domain: Option<&str>,
        android_app_hash: Option<&str>,
    ) -> Result<Self, (&'static str, Invalid)> {
        let webotp_domain = webotp_domain
            .map(|d| parse_domain(d).map_err(|e| ("webotpDomain", e)))
            .transpose()?;
        let android_app_hash = android_app_hash
            .map(|h| parse_app_hash(h).map_err(|e| ("androidAppHash", e)))
            .transpose()?;
        Ok(Self {
            webotp_domain,
            android_app_hash,
        })
    }

    /// As stored: already checked when it was set.
    pub fn from_stored(webotp_domain: Option<String>, android_app_hash: Option<String>) -> Self {
        Self {
            webotp_domain,
            android_app_hash,
        }
    }

    pub fn webotp_domain(&self) -> Option<&str> {
        self.webotp_domain.as_deref()
    }

    pub fn android_app_hash(&self) -> Option<&str> {
        self.android_app_hash.as_deref()
    }

    /// The SMS with the autofill lines: the app hash on a line of its own,
    /// then the WebOTP line, which the specification wants last.
    pub fn apply(&self, text: &str, code: &str) -> String {
        let mut sms = text.trim_end().to_owned();
        if let Some(hash) = &self.android_app_hash {
            sms.push('\n');
            sms.push_str(hash);
        }
        if let Some(domain) = &self.webotp_domain {
            sms.push_str(&format!("\n@{domain} #{code}"));
        }
        sms
    }
}

/// A host name as WebOTP takes it: no scheme, port or path; labels of
/// letters, digits and hyphens; lower case.
fn parse_domain(value: &str) -> Result<String, Invalid> {
    let domain = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if domain.len() > 253 || domain.split('.').count() < 2 || !domain.split('.').all(valid_label) {
        return Err(Invalid::new(
            "invalid_domain",
            "must be a host name such as wallet.example (no scheme, port or path)",
        ));
    }
    Ok(domain)
}

/// Android's SMS Retriever hash: 11 characters of base64.
fn parse_app_hash(value: &str) -> Result<String, Invalid> {
    let hash = value.trim();
    let base64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    if hash.len() != 11 || !hash.bytes().all(base64) {
        return Err(Invalid::new(
            "invalid_app_hash",
            "must be the 11-character app hash Android's SMS Retriever computes",
        ));
    }
    Ok(hash.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webotp_line_comes_last_after_the_app_hash() {
        let autofill = SmsAutofill::parse(Some("Wallet.Example."), Some("FA+9qCX9VSu")).unwrap();
        assert_eq!(
            autofill.apply("Your code is ABC123456.\n", "ABC123456"),
            "Your code is ABC123456.\nFA+9qCX9VSu\n@wallet.example #ABC123456"
        );
        assert_eq!(
            SmsAutofill::default().apply("Code ABC1\n", "ABC1"),
            "Code ABC1"
        );
    }

    #[test]
    fn bad_domains_and_hashes_are_named() {
        for domain in [
            "https://wallet.example",
            "wallet",
            "wallet.example:443",
            "-a.example",
            "a b.example",
        ] {
            let (field, invalid) = SmsAutofill::parse(Some(domain), None).unwrap_err();
            assert_eq!(
                (field, invalid.code),
                ("webotpDomain", "invalid_domain"),
                "{domain}"
            );
        }
        for hash in ["short", "FA+9qCX9VSu!", "FA+9qCX9VS-"] {
            let (field, invalid) = SmsAutofill::parse(None, Some(hash)).unwrap_err();
            assert_eq!(
                (field, invalid.code),
                ("androidAppHash", "invalid_app_hash"),
                "{hash}"
            );
        }
    }
}
