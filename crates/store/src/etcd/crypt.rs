//! Values the store puts in etcd are sealed with AES-256-GCM under a key the operator provides
//! (file or environment): the log holds the CA's signing keys and ACL secrets, and etcd keeps
//! them on its own disks and in its backups. The key's name in etcd is the associated data, so a
//! value cannot be moved to another key unnoticed. Nonces are random (96 bits): far below the
//! 2^32 messages per key where that becomes a concern for a control-plane log.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The operator's 256-bit key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(..)")
    }
}

impl EncryptionKey {
    /// Reads 64 hex digits (surrounding whitespace ignored), as `openssl rand -hex 32` prints.
    ///
    /// # Errors
    /// Anything else, described without echoing the text.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = hex::decode(text).map_err(|_| {
            "the etcd encryption key must be 64 hex digits (e.g. `openssl rand -hex 32`)".to_owned()
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "the etcd encryption key must be 32 bytes (64 hex digits), not {}",
                b.len()
            )
        })?;
        Ok(Self(key))
    }

    /// A fresh random key (tests, `examples/ha`).
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn generate() -> Result<Self, String> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| "the system random source failed".to_owned())?;
        Ok(Self(key))
    }

    /// The key as 64 hex digits (to write a key file).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// 64 random bits as hex: names this replica's log entries, so two replicas (or one restarted)
/// never write the same key.
pub(crate) fn nonce_hex() -> Result<String, String> {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random source failed".to_owned())?;
    Ok(hex::encode(bytes))
}

pub(crate) struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

/// A value that does not open: wrong key, or not written by this store.
#[derive(Debug)]
pub(crate) struct OpenError;

impl Sealer {
    pub(crate) fn new(key: &EncryptionKey) -> Self {
        let unbound = match UnboundKey::new(&AES_256_GCM, &key.0) {
            Ok(k) => k,
            // Invariant: AES-256-GCM takes exactly the 32 bytes the type holds.
            Err(_) => unreachable!("a 32-byte key is valid for AES-256-GCM"),
        };
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// `nonce || ciphertext || tag`.
    pub(crate) fn seal(&self, name: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "the system random source failed".to_owned())?;
        let mut buf = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        buf.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name),
                &mut body,
            )
            .map_err(|_| "sealing a value failed".to_owned())?;
        buf.extend_from_slice(&body);
        Ok(buf)
    }

    pub(crate) fn open(&self, name: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name), &mut body)
            .map_err(|_| OpenError)?;
        let n = plain.len();
        body.truncate(n);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_under_the_same_key_and_name() {
        let key = EncryptionKey::generate().unwrap();
        let s = Sealer::new(&key);
        let sealed = s.seal(b"/p/log/1", b"secret signing key").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open(b"/p/log/1", &sealed).unwrap(), b"secret signing key");
        assert!(s.open(b"/p/log/2", &sealed).is_err());
        let other = Sealer::new(&EncryptionKey::generate().unwrap());
        assert!(other.open(b"/p/log/1", &sealed).is_err());
    }

    #[test]
    fn key_text_is_checked() {
        assert!(EncryptionKey::from_hex("abc").is_err());
        assert!(EncryptionKey::from_hex(&"zz".repeat(32)).is_err());
        let k = EncryptionKey::generate().unwrap();
        let again = EncryptionKey::from_hex(&format!(" {}\n", k.to_hex())).unwrap();
        assert_eq!(again.0, k.0);
        assert_eq!(format!("{k:?}"), "EncryptionKey(..)");
    }
}
