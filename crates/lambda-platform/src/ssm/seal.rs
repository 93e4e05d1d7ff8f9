//! Encryption at rest of `SecureString` values with the store's local 256-bit key: an
//! HMAC-SHA256 keystream (counter mode) and a separate HMAC-SHA256 tag over nonce and
//! ciphertext (encrypt-then-MAC), so no cipher crate is needed.
//!
//! Pure (no I/O); must not depend on the store or on any request type.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// Seals and opens values with one key.
pub(super) struct Sealer {
    key: [u8; 32],
}

impl Sealer {
    pub(super) fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn subkey(&self, label: &[u8]) -> Vec<u8> {
        mac(&self.key, &[label])
    }

    /// Encrypts a SecureString value: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub(super) fn seal(&self, plaintext: &str) -> String {
        let nonce: [u8; 16] = rand::random();
        let ct = keystream_xor(&self.subkey(b"enc"), &nonce, plaintext.as_bytes());
        let tag = mac(&self.subkey(b"mac"), &[&nonce, &ct]);
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        blob.extend_from_slice(&tag);
        format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// Decrypts what [`Sealer::seal`] made, checking its tag first.
    pub(super) fn open(&self, sealed: &str) -> Result<String, ApiError> {
        let fail = || ApiError::internal("cannot decrypt SecureString parameter");
        let blob = sealed
            .strip_prefix("v1:")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(fail)?;
        if blob.len() < 48 {
            return Err(fail());
        }
        let (nonce, rest) = blob.split_at(16);
        let (ct, tag) = rest.split_at(rest.len() - 32);
        let mut verifier = HmacSha256::new_from_slice(&self.subkey(b"mac")).map_err(|_| fail())?;
        verifier.update(nonce);
        verifier.update(ct);
        verifier.verify_slice(tag).map_err(|_| fail())?;
        String::from_utf8(keystream_xor(&self.subkey(b"enc"), nonce, ct)).map_err(|_| fail())
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match HmacSha256::new_from_slice(key) {
        Ok(mut m) => {
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn keystream_xor(key: &[u8], nonce: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, chunk) in data.chunks(32).enumerate() {
        let block = mac(key, &[nonce, &(i as u64).to_be_bytes()]);
        out.extend(chunk.iter().zip(block).map(|(d, k)| d ^ k));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secure_strings_round_trip_and_are_not_stored_in_clear() {
        let sealer = Sealer::new(rand::random());
        let sealed = sealer.seal("s3cr3t value");
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(sealer.open(&sealed).unwrap(), "s3cr3t value");
        let mut tampered = sealed.into_bytes();
        let n = tampered.len() - 5;
        tampered[n] = if tampered[n] == b'A' { b'B' } else { b'A' };
        assert!(sealer.open(&String::from_utf8(tampered).unwrap()).is_err());
    }
}
