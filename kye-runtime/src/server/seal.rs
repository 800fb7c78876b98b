//! Sealed secrets: XChaCha20-Poly1305 under a 256-bit master key (`KYE_MASTER_KEY`, base64 or
//! hex, or a key file). Each secret has its own random 24-byte nonce and is bound to its name
//! (the name is the associated data, so a ciphertext moved to another name does not open).
//! The store keeps the nonce, the ciphertext and the key's id: the start of the SHA-256 of
//! the key, which tells a wrong key apart from a damaged ciphertext and never reveals the key.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::store::{SealedSecret, Timestamp};

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "KYE_MASTER_KEY";

/// What can go wrong sealing or opening a secret. No message holds a key or a value.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The master key text is not 32 bytes in base64 or hex.
    #[error("the master key {origin} is not 32 bytes in base64 or hex (64 hex digits): {why}; make one with `head -c 32 /dev/urandom | base64`")]
    BadKey {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        why: String,
    },
    /// No master key was given.
    #[error("no master key: set {MASTER_KEY_ENV} (32 bytes, base64 or hex) or pass --master-key-file FILE")]
    NoKey,
    /// The secret was sealed under another master key.
    #[error("secret {name} was sealed under master key {sealed_with}, but the master key given is {given}: give the key it was sealed with (or, after a rotation, the new one)")]
    WrongKey {
        /// The secret.
        name: String,
        /// The id of the key that sealed it.
        sealed_with: String,
        /// The id of the key given.
        given: String,
    },
    /// The ciphertext does not open under the right key: it was altered.
    #[error("secret {name} does not open under master key {key}: its stored ciphertext was altered or damaged; set it again with `secret set {name}`")]
    Damaged {
        /// The secret.
        name: String,
        /// The key's id.
        key: String,
    },
    /// The operating system gave no random bytes.
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
    /// The cipher refused to seal the value (longer than XChaCha20-Poly1305 allows).
    #[error("secret {0} cannot be sealed: the value is too long")]
    TooLong(String),
}

/// A 256-bit master key. `Debug` shows its id only.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// A key from its text: 64 hex digits or base64 (standard or URL-safe, padded or not) of
    /// 32 bytes; surrounding whitespace is ignored.
    pub fn parse(text: &str, origin: &str) -> Result<MasterKey, SealError> {
        let text = text.trim();
        let bad = |why: &str| SealError::BadKey {
            origin: origin.to_string(),
            why: why.to_string(),
        };
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad("not hex"))?
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines
                .iter()
                .find_map(|e| e.decode(text).ok())
                .ok_or_else(|| bad("neither hex nor base64"))?
        };
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad(&format!("it decodes to {} bytes", bytes.len())))?;
        Ok(MasterKey::from_bytes(key))
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"kye master key id\0");
        h.update(key);
        let digest = h.finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        MasterKey { key, id }
    }

    /// A new random key.
    pub fn generate() -> Result<MasterKey, SealError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(MasterKey::from_bytes(key))
    }

    /// The key from `file` when given, else from [`MASTER_KEY_ENV`] in `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<MasterKey, SealError> {
        if let Some(file) = file {
            let origin = format!("in {}", file.display());
            let text = std::fs::read_to_string(file).map_err(|e| SealError::BadKey {
                origin: origin.clone(),
                why: format!("cannot read it: {e}"),
            })?;
            return MasterKey::parse(&text, &origin);
        }
        match env.into_iter().find(|(k, _)| k == MASTER_KEY_ENV) {
            Some((_, v)) if !v.trim().is_empty() => {
                MasterKey::parse(&v, &format!("in {MASTER_KEY_ENV}"))
            }
            _ => Err(SealError::NoKey),
        }
    }

    /// The key's id (16 hex digits of a hash of it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as base64, for a file or a password manager (`secret rotate --generate`).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.key.into())
    }

    /// Seals `value` as the secret `name`.
    pub fn seal(&self, name: &str, value: &[u8]) -> Result<SealedSecret, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SealError::TooLong(name.to_string()))?;
        Ok(SealedSecret {
            name: name.to_string(),
            nonce: nonce.to_vec(),
            ciphertext,
            key_id: self.id.clone(),
            updated: Timestamp::now(),
        })
    }

    /// Opens a sealed secret: its value, or why not (a wrong key is told as such).
    pub fn open(&self, sealed: &SealedSecret) -> Result<String, SealError> {
        if sealed.key_id != self.id {
            return Err(SealError::WrongKey {
                name: sealed.name.clone(),
                sealed_with: sealed.key_id.clone(),
                given: self.id.clone(),
            });
        }
        let damaged = || SealError::Damaged {
            name: sealed.name.clone(),
            key: self.id.clone(),
        };
        let nonce: [u8; 24] = sealed.nonce.as_slice().try_into().map_err(|_| damaged())?;
        let plain = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: sealed.name.as_bytes(),
                },
            )
            .map_err(|_| damaged())?;
        String::from_utf8(plain).map_err(|_| damaged())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_and_name() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal("CAT_TOKEN", b"s3cr3t-value").unwrap();
        assert!(!sealed
            .ciphertext
            .windows(b"s3cr3t-value".len())
            .any(|w| w == b"s3cr3t-value"));
        assert_eq!(key.open(&sealed).unwrap(), "s3cr3t-value");
        let other = MasterKey::generate().unwrap();
        let e = other.open(&sealed).unwrap_err().to_string();
        assert!(
            e.contains("sealed under master key") && e.contains(key.id()),
            "{e}"
        );
        // Same id forged onto another key: the tag check still refuses it.
        let mut forged = sealed.clone();
        forged.key_id = other.id().to_string();
        assert!(matches!(
            other.open(&forged),
            Err(SealError::Damaged { .. })
        ));
        let mut moved = sealed.clone();
        moved.name = "DOG_TOKEN".into();
        assert!(matches!(key.open(&moved), Err(SealError::Damaged { .. })));
    }

    #[test]
    fn master_keys_parse_from_hex_and_base64_and_bad_ones_say_why() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = MasterKey::parse(hex, "test").unwrap();
        let b = MasterKey::parse(&a.to_base64(), "test").unwrap();
        assert_eq!(a.id(), b.id());
        let e = MasterKey::parse("c2hvcnQ=", "in KYE_MASTER_KEY")
            .unwrap_err()
            .to_string();
        assert!(e.contains("decodes to 5 bytes"), "{e}");
        assert!(!format!("{a:?}").contains("0011"), "{a:?}");
        assert!(matches!(
            MasterKey::load(None, Vec::new()),
            Err(SealError::NoKey)
        ));
    }
}
