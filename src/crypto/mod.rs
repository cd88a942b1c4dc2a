//! Secrets, keyed hashes and password hashing.
mod keys;
mod password;
mod webhook_signing;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{Rng, RngCore, rngs::OsRng};
use sha2::{Digest, Sha256};

pub use keys::{KeyFingerprint, Keys, generate_secrets, write_private_file};
pub use password::PasswordHashing;
pub use webhook_signing::{generate_webhook_secret, sign_webhook};

use crate::domain::{PREFIX_ALPHABET, SmsCode};

/// Plain SHA-256, enough for values with 256 bits of entropy (client
/// secrets, access tokens, link tokens).
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// `bytes` random bytes from the OS CSPRNG, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

/// A fresh SMS code: prefix from the unambiguous alphabet, then digits.
pub fn generate_sms_code(digits: u8) -> SmsCode {
    let mut rng = OsRng;
    let prefix = (0..3)
        .map(|_| char::from(PREFIX_ALPHABET[rng.gen_range(0..PREFIX_ALPHABET.len())]))
        .collect();
    let digits = (0..digits)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    SmsCode::from_parts(prefix, digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sms_codes_use_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let code = generate_sms_code(8).expose();
            assert_eq!(code.len(), 11);
            assert!(code[..3].bytes().all(|b| PREFIX_ALPHABET.contains(&b)));
            assert!(code[3..].bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
