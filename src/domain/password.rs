use std::fmt;

use md5::{Digest, Md5};

use super::Md5PasswordHex;
use crate::error::FieldError;

pub const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 128;

/// A password chosen on the completion page, checked against the policy.
/// Its `Debug` never prints it.
pub struct NewPassword(String);

impl NewPassword {
    /// Length 8 to 128, not among the commonly used passwords (zxcvbn score
    /// below 2 means it is guessed within about a million tries), and the
    /// confirmation matches. Errors name `password` or `passwordConfirmation`.
    pub fn parse(
        password: &str,
        confirmation: &str,
        context: &[&str],
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let length = password.chars().count();
        if length < MIN_PASSWORD_CHARS {
            errors.push(FieldError::new(
                "password",
                "too_short",
                format!("password must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        } else if length > MAX_PASSWORD_CHARS {
            errors.push(FieldError::new(
                "password",
                "too_long",
                format!("password must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        } else if zxcvbn::zxcvbn(password, context).score() < zxcvbn::Score::Two {
            errors.push(FieldError::new(
                "password",
                "too_common",
                "password is too common or too easy to guess",
            ));
        }
        if password != confirmation {
            errors.push(FieldError::new(
                "passwordConfirmation",
                "mismatch",
                "the two passwords do not match",
            ));
        }
        if errors.is_empty() {
            Ok(Self(password.to_owned()))
        } else {
            Err(errors)
        }
    }

    /// What the legacy API clients would send: the MD5, upper-case hex.
    pub fn md5_hex(&self) -> Md5PasswordHex {
        let digest = Md5::digest(self.0.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
        Md5PasswordHex::parse(&hex, "password").expect("an MD5 digest is 32 hex characters")
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(result: Result<NewPassword, Vec<FieldError>>) -> Vec<&'static str> {
        result
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.code)
            .collect()
    }

    #[test]
    fn policy() {
        assert!(NewPassword::parse("Kopi-Tubruk-42!", "Kopi-Tubruk-42!", &[]).is_ok());
        assert_eq!(
            codes(NewPassword::parse("short", "short", &[])),
            ["too_short"]
        );
        assert_eq!(
            codes(NewPassword::parse("password123", "password123", &[])),
            ["too_common"]
        );
        assert_eq!(
            codes(NewPassword::parse("12345678", "12345678", &[])),
            ["too_common"]
        );
        assert_eq!(
            codes(NewPassword::parse(
                "Kopi-Tubruk-42!",
                "Kopi-Tubruk-43!",
                &[]
            )),
            ["mismatch"]
        );
        // The customer's own data counts as easy to guess (zxcvbn: ~10^4 guesses).
        let context = ["septian", "cahyo", "jakarta", "1990"];
        for guessable in ["Cahyo1990", "jakarta123", "septiancahyo"] {
            assert_eq!(
                codes(NewPassword::parse(guessable, guessable, &context)),
                ["too_common"],
                "{guessable}"
            );
        }
    }

    #[test]
    fn md5_matches_the_legacy_client_hash() {
        let password = NewPassword::parse("Kopi-Tubruk-42!", "Kopi-Tubruk-42!", &[]).unwrap();
        let expected = format!("{:X}", Md5::digest(b"Kopi-Tubruk-42!"));
        assert_eq!(password.md5_hex().expose(), expected);
        assert!(!format!("{password:?}").contains("Kopi"));
    }
}
