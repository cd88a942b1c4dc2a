//! Secrets, keyed hashes and password hashing.
use std::{path::Path, sync::Arc};

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore, rngs::OsRng};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::{
    config::Settings,
    domain::{Md5PasswordHex, PREFIX_ALPHABET, SmsCode},
    error::{CoreError, CoreResult},
};

/// Server-side keys. SMS codes are short, so their stored hashes are keyed:
/// a copy of the database alone does not let anyone brute-force them.
pub struct Keys {
    token_key: SecretString,
    pepper: SecretString,
}

#[derive(Serialize, Deserialize)]
struct GeneratedKeys {
    token_key: String,
    password_pepper: String,
}

impl Keys {
    /// Uses the configured keys; otherwise the ones generated on a previous
    /// start (in `<data_dir>/secrets.toml`), generating them the first time.
    pub fn load_or_generate(settings: &Settings) -> anyhow::Result<Self> {
        if let (Some(token_key), Some(pepper)) = (
            settings.secrets.token_key.clone(),
            settings.secrets.password_pepper.clone(),
        ) {
            return Ok(Self { token_key, pepper });
        }
        let path = settings.data_dir.join("secrets.toml");
        let generated = Self::read_or_create(&path)?;
        Ok(Self {
            token_key: settings
                .secrets
                .token_key
                .clone()
                .unwrap_or_else(|| generated.token_key.into()),
            pepper: settings
                .secrets
                .password_pepper
                .clone()
                .unwrap_or_else(|| generated.password_pepper.into()),
        })
    }

    fn read_or_create(path: &Path) -> anyhow::Result<GeneratedKeys> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("Failed to read {}", path.display()))?;
            return toml_from_str(&text)
                .with_context(|| format!("Failed to parse {}", path.display()));
        }
        let keys = GeneratedKeys {
            token_key: random_token(32),
            password_pepper: random_token(32),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("Failed to create {}", dir.display()))?;
        }
        let text = format!(
            "# Generated on first start. Losing the pepper makes every stored password unverifiable.\ntoken_key = \"{}\"\npassword_pepper = \"{}\"\n",
            keys.token_key, keys.password_pepper
        );
        write_private_file(path, &text)?;
        Ok(keys)
    }

    /// Keyed hash used for anything low-entropy that must be looked up.
    pub fn token_hash(&self, value: &str) -> String {
        hmac_hex(self.token_key.expose_secret().as_bytes(), value.as_bytes())
    }

    #[allow(clippy::expect_used, reason = "HMAC accepts a key of any length")]
    fn pepper(&self, md5: &Md5PasswordHex) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose_secret().as_bytes())
            .expect("HMAC accepts any key length");
        mac.update(md5.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn toml_from_str(text: &str) -> anyhow::Result<GeneratedKeys> {
    use figment::providers::{Format, Toml};
    Ok(figment::Figment::from(Toml::string(text)).extract()?)
}

#[cfg(unix)]
fn write_private_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("Failed to write {}", path.display()))
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("Failed to write {}", path.display()))
}

#[allow(clippy::expect_used, reason = "HMAC accepts a key of any length")]
fn hmac_hex(key: &[u8], value: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(value);
    hex::encode(mac.finalize().into_bytes())
}

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

/// Argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane),
/// computed on the blocking pool behind a bounded queue: beyond
/// `max_queued` waiting requests the caller gets `ServerBusy` at once
/// instead of piling up memory.
#[derive(Clone)]
pub struct PasswordHashing {
    keys: Arc<Keys>,
    running: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
}

impl PasswordHashing {
    pub fn new(keys: Arc<Keys>, max_concurrent: usize, max_queued: usize) -> Self {
        Self {
            keys,
            running: Arc::new(Semaphore::new(max_concurrent)),
            waiting: Arc::new(Semaphore::new(max_concurrent + max_queued)),
        }
    }

    #[allow(
        clippy::expect_used,
        reason = "constant parameters within Argon2's bounds"
    )]
    fn argon2() -> Argon2<'static> {
        let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    pub async fn hash(&self, md5: &Md5PasswordHex) -> CoreResult<String> {
        let peppered = self.keys.pepper(md5);
        self.run(move || {
            let salt = argon2::password_hash::SaltString::generate(&mut OsRng);
            Self::argon2()
                .hash_password(&peppered, &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("Failed to hash password: {e}"))
        })
        .await
    }

    pub async fn verify(&self, md5: &Md5PasswordHex, phc: String) -> CoreResult<bool> {
        let peppered = self.keys.pepper(md5);
        self.run(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| anyhow::anyhow!("Failed to parse stored password hash: {e}"))?;
            Ok(Self::argon2().verify_password(&peppered, &parsed).is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> CoreResult<T> {
        let _queued = self
            .waiting
            .try_acquire()
            .map_err(|_| CoreError::ServerBusy {
                retry_after_seconds: 1,
            })?;
        let _running = self
            .running
            .acquire()
            .await
            .context("Failed to wait for a hashing slot")?;
        let result = tokio::task::spawn_blocking(work)
            .await
            .context("Failed to join the hashing task")??;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<Keys> {
        Arc::new(Keys {
            token_key: "token-key".to_owned().into(),
            pepper: "pepper".to_owned().into(),
        })
    }

    #[tokio::test]
    async fn hashing_beyond_the_queue_is_refused_not_buffered() {
        let hashing = PasswordHashing::new(keys(), 1, 1);
        let md5 = Md5PasswordHex::parse(&"A".repeat(32)).unwrap();
        let attempts = (0..6).map(|_| hashing.hash(&md5));
        let results = futures::future::join_all(attempts).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(CoreError::ServerBusy { .. })))
            .count();
        let hashed = results.iter().filter(|r| r.is_ok()).count();
        // One running plus one queued get through; the rest are told to retry.
        assert_eq!((hashed, busy), (2, 4));
    }

    #[tokio::test]
    async fn pepper_changes_the_hash() {
        let md5 = Md5PasswordHex::parse(&"B".repeat(32)).unwrap();
        let phc = PasswordHashing::new(keys(), 1, 1).hash(&md5).await.unwrap();
        let other_pepper = Arc::new(Keys {
            token_key: "token-key".to_owned().into(),
            pepper: "another".to_owned().into(),
        });
        assert!(
            PasswordHashing::new(keys(), 1, 1)
                .verify(&md5, phc.clone())
                .await
                .unwrap()
        );
        assert!(
            !PasswordHashing::new(other_pepper, 1, 1)
                .verify(&md5, phc)
                .await
                .unwrap()
        );
    }

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
