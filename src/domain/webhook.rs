//! A host's webhook endpoint URL.
use super::Invalid;
use crate::config::is_loopback;

/// Where a host's webhooks go: `https`, or `http` only to a loopback
/// address (a receiver on the same machine, in development), since the
/// payloads carry customers' phone numbers. At most 254 characters, the
/// width of the outbox's recipient column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

pub const MAX_WEBHOOK_URL_CHARS: usize = 254;

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        if raw.len() > MAX_WEBHOOK_URL_CHARS {
            return Err(Invalid::new(
                "too_long",
                format!("must be at most {MAX_WEBHOOK_URL_CHARS} characters"),
            ));
        }
        let url = url::Url::parse(raw).map_err(|_| {
            Invalid::new(
                "invalid_url",
                "must be an absolute URL such as https://wallet.example/webhooks",
            )
        })?;
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(Invalid::new("invalid_url", "must name a host"));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            _ => {
                return Err(Invalid::new(
                    "https_required",
                    "must use https (plain http only to a loopback address such as http://127.0.0.1:8000)",
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            // It would be stored and shown in listings like any URL.
            return Err(Invalid::new(
                "credentials_in_url",
                "must not carry a user name or password; verify our signature instead",
            ));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_on_loopback() {
        assert!(WebhookUrl::parse("https://wallet.example/hooks").is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hooks").is_ok());
        assert!(WebhookUrl::parse("http://localhost/hooks").is_ok());
        assert!(WebhookUrl::parse("http://[::1]:80/").is_ok());
        for (raw, code) in [
            ("http://wallet.example/hooks", "https_required"),
            ("ftp://127.0.0.1/", "https_required"),
            ("wallet.example/hooks", "invalid_url"),
            ("https://user:pw@wallet.example/", "credentials_in_url"),
        ] {
            assert_eq!(WebhookUrl::parse(raw).unwrap_err().code, code, "{raw}");
        }
        let long = format!("https://wallet.example/{}", "a".repeat(240));
        assert_eq!(WebhookUrl::parse(&long).unwrap_err().code, "too_long");
    }
}
