//! What `config check` and start-up ask of the settings: the ones the
//! service cannot honour refused, naming the key; the ones that weaken it
//! named as warnings.
use anyhow::bail;
use rlibphonenumber::{PHONE_NUMBER_UTIL, Region};

use super::Settings;

impl Settings {
    /// Rejects settings the service cannot honour, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let r = &self.registration;
        match r.token_digits {
            6..=8 => {}
            4 | 5 if r.legacy_short_codes => {}
            4 | 5 => bail!(
                "registration.token_digits below 6 gives fewer than 20 bits (NIST SP 800-63B); set registration.legacy_short_codes = true to allow 4 or 5"
            ),
            _ => bail!("registration.token_digits must be between 6 and 8"),
        }
        if r.token_expiry_minutes == 0 || r.max_wrong_codes == 0 || r.max_sends == 0 {
            bail!(
                "registration.token_expiry_minutes, max_wrong_codes and max_sends must be at least 1"
            );
        }
        if !has_numbering_plan(&r.default_region) {
            bail!(
                "registration.default_region must be an ISO 3166-1 alpha-2 region with a phone numbering plan"
            );
        }
        if self.limits.max_concurrent_hashes == 0 {
            bail!("limits.max_concurrent_hashes must be at least 1");
        }
        if self.auth.access_token_ttl_seconds == 0 {
            bail!("auth.access_token_ttl_seconds must be at least 1");
        }
        self.delivery.validate()?;
        if self.webhooks.timeout_seconds == 0 {
            bail!("webhooks.timeout_seconds must be at least 1");
        }
        for country in &self.quotas.allowed_countries {
            if !has_numbering_plan(country) {
                bail!(
                    "quotas.allowed_countries: {country} is not an ISO 3166-1 alpha-2 region with phone numbers"
                );
            }
        }
        Ok(())
    }

    /// Settings that are allowed but weaken the service; logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.registration.token_digits < 6 {
            warnings.push(format!(
                "registration.token_digits = {} (legacy_short_codes): codes have fewer than 20 bits",
                self.registration.token_digits
            ));
        }
        warnings.extend(self.delivery.sms.receipt_warnings());
        warnings
    }
}

/// An ISO 3166-1 alpha-2 code (either case) of a region the phone metadata
/// has a numbering plan for: `ZZ`, the unknown region, has none.
fn has_numbering_plan(code: &str) -> bool {
    code.len() == 2
        && Region::from_code(code).is_ok_and(|region| {
            PHONE_NUMBER_UTIL
                .get_country_code_for_region(region)
                .is_some()
        })
}
