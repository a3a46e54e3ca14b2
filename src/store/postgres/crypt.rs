//! Private keys (and ACME account credentials, which hold a key) encrypted
//! before they reach the shared database, with a 32-byte key from a file
//! (`[state] encryption_key_file`, 64 hex characters).
//!
//! AEAD: AES-256-GCM from aws-lc-rs, the same library rustls already uses
//! here (no second crypto implementation to audit), hardware-accelerated on
//! the servers this runs on. Nonces are 96 random bits per value: safe far
//! past this use (NIST's bound for random nonces is 2^32 messages per key; a
//! hoster renewing 100,000 domains every 60 days writes about 600,000 a
//! year). The associated data names the row (e.g. `cert|DOMAIN|ISSUER`), so a
//! ciphertext copied into another row does not decrypt. Layout: version byte
//! 1, nonce, ciphertext with tag.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

const VERSION: u8 = 1;

pub struct Cipher {
    key: LessSafeKey,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(AES-256-GCM, key hidden)")
    }
}

impl Cipher {
    /// Reads the key file: 64 hex characters (surrounding whitespace ignored).
    ///
    /// # Errors
    /// Unreadable file, or not exactly 32 bytes of hex.
    pub fn from_file(path: &Path) -> Result<Cipher, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("state.encryption_key_file {}: {e}", path.display()))?;
        Cipher::from_hex(text.trim()).map_err(|e| {
            format!(
                "state.encryption_key_file {}: {e} (make one with: openssl rand -hex 32)",
                path.display()
            )
        })
    }

    pub fn from_hex(hex_key: &str) -> Result<Cipher, String> {
        let bytes = hex::decode(hex_key).map_err(|_| "not hex".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!("{} bytes, need 32", bytes.len()));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "unusable key".to_owned())?;
        Ok(Cipher {
            key: LessSafeKey::new(key),
        })
    }

    pub fn seal(&self, plaintext: &[u8], row: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system's random source works");
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM sealing cannot fail for inputs this small");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    /// # Errors
    /// Wrong key, another row's value, or a damaged value.
    pub fn open(&self, sealed: &[u8], row: &str) -> Result<Vec<u8>, String> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(format!("{row}: not an encrypted value of a known version"));
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .map_err(|_| format!("{row}: bad nonce"))?;
        let mut buf = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(row.as_bytes()), &mut buf)
            .map_err(|_| {
                format!("{row}: cannot decrypt (another encryption_key_file, or a damaged value)")
            })?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trips_and_binds_the_row() {
        let c = Cipher::from_hex(KEY).unwrap();
        let sealed = c.seal(b"-----BEGIN PRIVATE KEY-----", "cert|a.example|local");
        assert!(!sealed.windows(5).any(|w| w == b"BEGIN"));
        assert_eq!(
            c.open(&sealed, "cert|a.example|local").unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        // Copied into another row: refused.
        assert!(c.open(&sealed, "cert|b.example|local").is_err());
        // Two seals of the same text differ (random nonces).
        assert_ne!(
            sealed,
            c.seal(b"-----BEGIN PRIVATE KEY-----", "cert|a.example|local")
        );
    }

    #[test]
    fn another_key_or_damage_is_refused() {
        let c = Cipher::from_hex(KEY).unwrap();
        let other = Cipher::from_hex(&KEY.replace("1f", "ff")).unwrap();
        let mut sealed = c.seal(b"secret", "blob|x");
        assert!(other.open(&sealed, "blob|x").is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(c.open(&sealed, "blob|x").is_err());
        assert!(c.open(b"", "blob|x").is_err());
    }

    #[test]
    fn key_file_must_be_32_bytes_of_hex() {
        assert!(Cipher::from_hex("abcd").is_err());
        assert!(Cipher::from_hex(&"zz".repeat(32)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        assert!(Cipher::from_file(&path).is_ok());
        let err = Cipher::from_file(&dir.path().join("missing")).unwrap_err();
        assert!(err.contains("state.encryption_key_file"), "{err}");
    }
}
