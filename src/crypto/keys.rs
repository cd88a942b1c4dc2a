//! Server-side keys. SMS codes are short, so their stored hashes are keyed:
//! a copy of the database alone does not let anyone brute-force them. The
//! password pepper keeps a stolen database from being cracked offline.
//! Every instance must hold the same keys; on PostgreSQL and MySQL they are
//! configured, never generated.
use std::path::Path;

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    AeadCore, KeyInit as _, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::random_token;
use crate::{config::Settings, domain::Md5PasswordHex};

pub struct Keys {
    /// The current token key first, then earlier ones that still verify
    /// codes issued before a rotation.
    token_keys: Vec<TokenKey>,
    /// The current pepper first, with the id stored in each new hash, then
    /// retired ones by id, for hashes made before a rotation.
    peppers: Vec<(u8, SecretString)>,
}

/// A key's public fingerprint: which key a database was used with, without
/// revealing it. Kept in the database to catch an instance started with
/// another key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFingerprint {
    pub name: &'static str,
    pub current: String,
    /// Fingerprints of the earlier keys a rotation still accepts.
    pub previous: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct GeneratedKeys {
    token_key: String,
    password_pepper: String,
}

impl Keys {
    /// The configured keys. Only with SQLite, the development default, may
    /// missing ones be generated once into `<data_dir>/secrets.toml`.
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        let secrets = &settings.secrets;
        let (token_key, pepper) = match (&secrets.token_key, &secrets.password_pepper) {
            (Some(token_key), Some(pepper)) => (token_key.clone(), pepper.clone()),
            (token_key, pepper) => {
                if !settings.database_url().starts_with("sqlite:") {
                    let missing: Vec<&str> = [
                        ("secrets.token_key", token_key.is_none()),
                        ("secrets.password_pepper", pepper.is_none()),
                    ]
                    .into_iter()
                    .filter_map(|(name, missing)| missing.then_some(name))
                    .collect();
                    bail!(
                        "{} must be set with PostgreSQL or MySQL, the same on every instance \
                         (for example CR_SECRETS__TOKEN_KEY and CR_SECRETS__PASSWORD_PEPPER); \
                         `customer-registration secrets generate` prints fresh ones",
                        missing.join(" and ")
                    );
                }
                let generated = read_or_create(&settings.data_dir.join("secrets.toml"))?;
                (
                    token_key
                        .clone()
                        .unwrap_or_else(|| generated.token_key.into()),
                    pepper
                        .clone()
                        .unwrap_or_else(|| generated.password_pepper.into()),
                )
            }
        };
        let token_keys = std::iter::once(&token_key)
            .chain(&secrets.previous_token_keys)
            .map(TokenKey::new)
            .collect();
        let mut peppers = vec![(secrets.password_pepper_id, pepper)];
        for (id, retired) in &secrets.retired_password_peppers {
            let id: u8 = id.parse().with_context(|| {
                format!("secrets.retired_password_peppers: {id} is not a pepper id (0 to 255)")
            })?;
            if id == secrets.password_pepper_id {
                bail!(
                    "secrets.retired_password_peppers: id {id} is the current secrets.password_pepper_id"
                );
            }
            peppers.push((id, retired.clone()));
        }
        Ok(Self {
            token_keys,
            peppers,
        })
    }

    #[cfg(test)]
    pub(crate) fn for_tests(token_key: &str, pepper: &str) -> Self {
        Self {
            token_keys: vec![TokenKey::new(&token_key.to_owned().into())],
            peppers: vec![(1, pepper.to_owned().into())],
        }
    }

    /// Keyed hash under the current key: what is stored for a new code.
    pub fn token_hash(&self, value: &str) -> String {
        hex::encode(self.token_keys[0].keyed_hash(value.as_bytes()))
    }

    /// Keyed hashes under every accepted key: a stored hash matching any of
    /// them was made for this value.
    pub fn token_hashes(&self, value: &str) -> Vec<String> {
        self.token_keys
            .iter()
            .map(|key| hex::encode(key.keyed_hash(value.as_bytes())))
            .collect()
    }

    /// The current pepper's id and the peppered password.
    pub(super) fn pepper_current(&self, md5: &Md5PasswordHex) -> (u8, [u8; 32]) {
        let (id, pepper) = &self.peppers[0];
        (*id, pepper_with(pepper, md5))
    }

    /// The password peppered with the pepper of this id, if it is known.
    pub(super) fn pepper_by_id(&self, id: u8, md5: &Md5PasswordHex) -> Option<[u8; 32]> {
        self.peppers
            .iter()
            .find(|(known, _)| *known == id)
            .map(|(_, pepper)| pepper_with(pepper, md5))
    }

    pub fn fingerprints(&self) -> [KeyFingerprint; 2] {
        let print = |key: &SecretString| fingerprint_of(&keyed_mac(key));
        [
            KeyFingerprint {
                name: "token_key",
                current: self.token_keys[0].fingerprint.clone(),
                previous: self.token_keys[1..]
                    .iter()
                    .map(|key| key.fingerprint.clone())
                    .collect(),
            },
            KeyFingerprint {
                name: "password_pepper",
                current: print(&self.peppers[0].1),
                previous: self.peppers[1..].iter().map(|(_, p)| print(p)).collect(),
            },
        ]
    }
}

/// Message bodies at rest: XChaCha20-Poly1305 under a key derived from the
/// token key, so a copy of the database reads no live code or link. The
/// message id is the associated data: a body moved to another row (another
/// recipient) fails to open. Format: `v1.<key fingerprint>.<base64url of
/// nonce and ciphertext>`; earlier token keys still open what they sealed.
impl Keys {
    #[allow(clippy::expect_used, reason = "a 32-byte key and an in-memory buffer")]
    pub fn seal(&self, message_id: &[u8], plaintext: &str) -> String {
        let key = &self.token_keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = key
            .body_cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: message_id,
                },
            )
            .expect("encryption into memory cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!(
            "{SEALED_V1}.{}.{}",
            key.fingerprint,
            URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// The plaintext of a sealed body; a body stored before sealing existed
    /// is returned as it is.
    pub fn open(&self, message_id: &[u8], stored: &str) -> anyhow::Result<String> {
        let Some(rest) = stored
            .strip_prefix(SEALED_V1)
            .and_then(|r| r.strip_prefix('.'))
        else {
            return Ok(stored.to_owned());
        };
        let (key_print, encoded) = rest
            .split_once('.')
            .context("sealed message body without a key fingerprint")?;
        let key = self
            .token_keys
            .iter()
            .find(|key| key.fingerprint == key_print)
            .with_context(|| {
                format!("message body sealed under token key {key_print}, which is not configured")
            })?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .context("sealed message body is not base64url")?;
        if bytes.len() < 24 {
            bail!("sealed message body is too short");
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plaintext = key
            .body_cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: message_id,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealed message body failed authentication"))?;
        String::from_utf8(plaintext).context("sealed message body is not UTF-8")
    }
}

const SEALED_V1: &str = "v1";

/// A token key with what is derived from it, once, when the keys are
/// loaded. A register hashes its code and its link under the current key
/// and seals its two message bodies, and delivery opens them again:
/// deriving the body key and the fingerprint, and hashing the key's padded
/// blocks, anew for each was a tenth of a register's instructions
/// (docs/PERFORMANCE.md, session 24).
struct TokenKey {
    /// HMAC-SHA256 under this key, its padded blocks already hashed: each
    /// keyed hash starts from a copy.
    mac: Hmac<Sha256>,
    /// Message bodies' cipher, under the key derived for them.
    body_cipher: XChaCha20Poly1305,
    /// The key's public fingerprint, which each body sealed under it names.
    fingerprint: String,
}

impl TokenKey {
    fn new(key: &SecretString) -> Self {
        let mac = keyed_mac(key);
        let body_key = keyed_hash(&mac, b"customer-registration message body key v1");
        Self {
            body_cipher: XChaCha20Poly1305::new(&body_key.into()),
            fingerprint: fingerprint_of(&mac),
            mac,
        }
    }

    fn keyed_hash(&self, value: &[u8]) -> [u8; 32] {
        keyed_hash(&self.mac, value)
    }
}

#[allow(clippy::expect_used, reason = "HMAC accepts a key of any length")]
fn keyed_mac(key: &SecretString) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC accepts any key length")
}

fn keyed_hash(keyed: &Hmac<Sha256>, value: &[u8]) -> [u8; 32] {
    let mut mac = keyed.clone();
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// The first 16 hex digits of the key's HMAC of a fixed label.
fn fingerprint_of(keyed: &Hmac<Sha256>) -> String {
    let full = hex::encode(keyed_hash(keyed, b"customer-registration key fingerprint"));
    full[..16].to_owned()
}

fn pepper_with(pepper: &SecretString, md5: &Md5PasswordHex) -> [u8; 32] {
    keyed_hash(&keyed_mac(pepper), md5.expose().as_bytes())
}

/// Fresh values for every secret the service needs, as TOML and as
/// environment lines.
pub fn generate_secrets() -> String {
    let token_key = random_token(32);
    let pepper = random_token(32);
    format!(
        "# As TOML, in the [secrets] table of the configuration file:\n\
         [secrets]\ntoken_key = \"{token_key}\"\npassword_pepper = \"{pepper}\"\npassword_pepper_id = 1\n\n\
         # Or as environment variables, the same for every instance:\n\
         CR_SECRETS__TOKEN_KEY={token_key}\nCR_SECRETS__PASSWORD_PEPPER={pepper}\nCR_SECRETS__PASSWORD_PEPPER_ID=1\n"
    )
}

fn read_or_create(path: &Path) -> anyhow::Result<GeneratedKeys> {
    if path.exists() {
        return read_keys(path);
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
        "# Generated on first start (SQLite only). Losing the pepper makes every stored password unverifiable.\ntoken_key = \"{}\"\npassword_pepper = \"{}\"\n",
        keys.token_key, keys.password_pepper
    );
    match write_private_file(path, &text) {
        Ok(()) => Ok(keys),
        // Another process on the same data directory generated them first
        // (the file appears whole).
        Err(_) if path.exists() => read_keys(path),
        Err(error) => Err(error),
    }
}

fn read_keys(path: &Path) -> anyhow::Result<GeneratedKeys> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("Failed to parse {}", path.display()))
}

/// Creates a file only its owner can read (mode 0600 on Unix, tempfile's
/// own), failing if it exists. It appears whole: written under a name of
/// its own, then linked into place, which fails if the name is taken.
/// Another instance starting on the same directory never reads it
/// half-written (it did, in the moment between the file's creation and
/// its write).
pub fn write_private_file(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut draft = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("Failed to create a file in {}", dir.display()))?;
    draft
        .write_all(text.as_bytes())
        .and_then(|()| draft.as_file().sync_all())
        .with_context(|| format!("Failed to write {}", path.display()))?;
    // The draft is removed if this fails.
    draft
        .persist_noclobber(path)
        .map_err(|error| error.error)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that finds a private file (another instance's generated
    /// keys, a host's credentials) finds all of it: it appears whole.
    #[test]
    fn a_private_file_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        // Large enough that writing it takes many system calls.
        let text = "k".repeat(32 << 20);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                loop {
                    if let Ok(found) = std::fs::read_to_string(&path) {
                        return found.len();
                    }
                    std::hint::spin_loop();
                }
            });
            write_private_file(&path, &text).unwrap();
            assert_eq!(reader.join().unwrap(), text.len());
        });
        assert!(
            write_private_file(&path, "other").is_err(),
            "never replaced"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap().len(), text.len());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "nothing but the file is left");
    }

    #[test]
    fn sealed_bodies_open_only_for_their_message() {
        let keys = Keys::for_tests("token-key", "pepper");
        let sealed = keys.seal(b"message-1", "Your code is ABC123456");
        assert!(sealed.starts_with("v1."), "{sealed}");
        assert!(!sealed.contains("ABC123456"));
        assert_eq!(
            keys.open(b"message-1", &sealed).unwrap(),
            "Your code is ABC123456"
        );
        // Moved to another row, it does not open.
        assert!(keys.open(b"message-2", &sealed).is_err());
        // Another key does not open it either.
        let other = Keys::for_tests("another-key", "pepper");
        assert!(other.open(b"message-1", &sealed).is_err());
    }

    #[test]
    fn earlier_token_keys_still_open_what_they_sealed() {
        let old = Keys::for_tests("old-key", "pepper");
        let sealed = old.seal(b"m", "link");
        let rotated = Keys {
            token_keys: ["new-key", "old-key"]
                .map(|key| TokenKey::new(&key.to_owned().into()))
                .into(),
            peppers: vec![(1, "pepper".to_owned().into())],
        };
        assert_eq!(rotated.open(b"m", &sealed).unwrap(), "link");
        assert!(
            rotated
                .seal(b"m", "x")
                .contains(&fingerprint_of(&keyed_mac(&"new-key".to_owned().into())))
        );
    }

    /// The keyed state is derived once and copied for each hash: every
    /// hash must still be HMAC-SHA256 of the key and the value (RFC 4231,
    /// test case 2), whatever was hashed under the key before, and the
    /// fingerprint the one stored bodies and databases already name.
    #[test]
    fn hashes_from_the_kept_keyed_state_are_hmac_sha256() {
        let keys = Keys::for_tests("Jefe", "pepper");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        for _ in 0..3 {
            assert_eq!(keys.token_hash("what do ya want for nothing?"), expected);
        }
        let rotated = Keys {
            token_keys: ["Jefe", "old-key"]
                .map(|key| TokenKey::new(&key.to_owned().into()))
                .into(),
            peppers: vec![(1, "pepper".to_owned().into())],
        };
        assert_eq!(
            rotated.token_hashes("what do ya want for nothing?"),
            [
                expected,
                "5cd4ff94969958a20c477cae709c38cd90379689cac4d739885d50d656e5e8ce"
            ]
        );
        let sealed = Keys::for_tests("token-key", "pepper").seal(b"m", "x");
        assert!(sealed.starts_with("v1.69b425f4d4c5421d."), "{sealed}");
        assert_eq!(
            Keys::for_tests("token-key", "pepper").fingerprints()[0].current,
            "69b425f4d4c5421d"
        );
    }

    #[test]
    fn bodies_stored_before_sealing_read_as_they_are() {
        let keys = Keys::for_tests("token-key", "pepper");
        assert_eq!(keys.open(b"m", "plain text").unwrap(), "plain text");
    }
}
