use std::fmt;

use super::{Invalid, Md5PasswordHex};

pub const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 128;

/// A password chosen on the completion page, checked against the policy.
/// Its `Debug` never prints it.
pub struct NewPassword(String);

/// What is wrong with a new password and its confirmation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PasswordRejected {
    pub password: Option<Invalid>,
    pub confirmation: Option<Invalid>,
}

impl NewPassword {
    /// Length 8 to 128, not among the commonly used passwords (zxcvbn score
    /// below 2 means it is guessed within about a million tries), and the
    /// confirmation matches.
    pub fn parse(
        password: &str,
        confirmation: &str,
        context: &[&str],
    ) -> Result<Self, PasswordRejected> {
        let length = password.chars().count();
        let rejected = PasswordRejected {
            password: if length < MIN_PASSWORD_CHARS {
                Some(Invalid::new(
                    "too_short",
                    format!("must be at least {MIN_PASSWORD_CHARS} characters"),
                ))
            } else if length > MAX_PASSWORD_CHARS {
                Some(Invalid::new(
                    "too_long",
                    format!("must be at most {MAX_PASSWORD_CHARS} characters"),
                ))
            } else if zxcvbn::zxcvbn(password, context).score() < zxcvbn::Score::Two {
                Some(Invalid::new(
                    "too_common",
                    "is too common or too easy to guess",
                ))
            } else {
                None
            },
            confirmation: (password != confirmation)
                .then(|| Invalid::new("mismatch", "must repeat the password exactly")),
        };
        if rejected == PasswordRejected::default() {
            Ok(Self(password.to_owned()))
        } else {
            Err(rejected)
        }
    }

    /// What the legacy API clients would send: the MD5, upper-case hex.
    pub fn md5_hex(&self) -> Md5PasswordHex {
        Md5PasswordHex::of_password(&self.0)
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

    use md5::{Digest, Md5};

    fn codes(result: Result<NewPassword, PasswordRejected>) -> Vec<&'static str> {
        let rejected = result.err().unwrap_or_default();
        [rejected.password, rejected.confirmation]
            .into_iter()
            .flatten()
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
