//! Secrets at rest: the key-encryption key (KEK) that seals DKIM private keys, and the HMAC keys
//! derived from it (VERP tags, unsubscribe tokens).
//!
//! The KEK comes from `ATMOS_KEY_ENCRYPTION_KEY` (base64 of 32 bytes) or from `<data_dir>/kek`
//! (mode 0600, made on first start). It never appears in the TOML file or the logs.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::path::Path;

/// Environment variable holding the KEK.
pub const KEK_ENV: &str = "ATMOS_KEY_ENCRYPTION_KEY";
const KEK_FILE: &str = "kek";

/// Why secrets could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{KEK_ENV} must be base64 of exactly 32 bytes")]
    BadEnvKey,
    #[error("key file {path}: {message}")]
    File { path: String, message: String },
    #[error("sealed data is corrupt or was sealed with another key")]
    Open,
    #[error("random number generator failed")]
    Random,
}

/// The KEK and what derives from it.
pub struct Secrets {
    aead: LessSafeKey,
    verp: hmac::Key,
    srs: hmac::Key,
    unsubscribe: hmac::Key,
}

impl Secrets {
    /// Loads the KEK from `env_value` (the environment) or `data_dir/kek`, creating the file if
    /// neither exists.
    pub fn load(data_dir: &Path, env_value: Option<String>) -> Result<Self, SecretError> {
        let kek = match env_value {
            Some(v) => {
                let bytes = B64.decode(v.trim()).map_err(|_| SecretError::BadEnvKey)?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| SecretError::BadEnvKey)?
            }
            None => load_or_create_file(&data_dir.join(KEK_FILE))?,
        };
        Ok(Self::from_key(&kek))
    }

    /// Builds from raw key bytes.
    pub fn from_key(kek: &[u8; 32]) -> Self {
        // One KEK, independent subkeys per use (HMAC as a PRF over a label).
        let master = hmac::Key::new(hmac::HMAC_SHA256, kek);
        let derive = |label: &[u8]| hmac::sign(&master, label);
        let seal_key = derive(b"atmos dkim seal v1");
        // A 32-byte HMAC-SHA256 output is always a valid AES-256 key.
        let unbound =
            UnboundKey::new(&AES_256_GCM, seal_key.as_ref()).expect("32-byte AES-256-GCM key");
        Self {
            aead: LessSafeKey::new(unbound),
            verp: hmac::Key::new(hmac::HMAC_SHA256, derive(b"atmos verp v1").as_ref()),
            srs: hmac::Key::new(hmac::HMAC_SHA256, derive(b"atmos srs v1").as_ref()),
            unsubscribe: hmac::Key::new(
                hmac::HMAC_SHA256,
                derive(b"atmos unsubscribe v1").as_ref(),
            ),
        }
    }

    /// Encrypts `plain` (nonce ‖ ciphertext ‖ tag); `context` binds it to its use (e.g. selector).
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Random)?;
        let mut data = plain.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut data,
            )
            .map_err(|_| SecretError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Decrypts what [`Secrets::seal`] made with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Open)?;
        let mut data = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(context), &mut data)
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }

    /// HMAC-SHA256 tag for VERP addresses.
    pub fn verp_tag(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.verp, data).as_ref().to_vec()
    }

    /// Constant-time check of a VERP tag prefix.
    pub fn verify_verp_tag(&self, data: &[u8], tag: &[u8]) -> bool {
        verify_prefix(&self.verp, data, tag, 8)
    }

    /// HMAC-SHA256 tag for SRS addresses.
    pub fn srs_tag(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.srs, data).as_ref().to_vec()
    }

    /// Constant-time check of an SRS tag prefix.
    pub fn verify_srs_tag(&self, data: &[u8], tag: &[u8]) -> bool {
        verify_prefix(&self.srs, data, tag, 5)
    }

    /// HMAC-SHA256 tag for unsubscribe tokens.
    pub fn unsubscribe_tag(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.unsubscribe, data).as_ref().to_vec()
    }
}

/// True when `tag` is a prefix of at least `min` bytes of the HMAC of `data` (constant time).
fn verify_prefix(key: &hmac::Key, data: &[u8], tag: &[u8], min: usize) -> bool {
    let full = hmac::sign(key, data);
    let full = full.as_ref();
    tag.len() >= min
        && tag.len() <= full.len()
        && subtle::ConstantTimeEq::ct_eq(&full[..tag.len()], tag).into()
}

fn load_or_create_file(path: &Path) -> Result<[u8; 32], SecretError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |message: String| SecretError::File {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "mode {:o} is too open; chmod 600 it",
                    mode & 0o777
                )));
            }
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| err("must hold exactly 32 bytes".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| SecretError::Random)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            std::io::Write::write_all(&mut f, &key).map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
            tracing::info!(path = %path.display(), "created a new key-encryption key");
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let s = Secrets::from_key(&[7; 32]);
        let sealed = s.seal(b"private key", b"sel1").unwrap();
        assert_ne!(&sealed[NONCE_LEN..], b"private key");
        assert_eq!(s.open(&sealed, b"sel1").unwrap(), b"private key");
        assert!(s.open(&sealed, b"sel2").is_err(), "context is bound");
        assert!(
            Secrets::from_key(&[8; 32]).open(&sealed, b"sel1").is_err(),
            "other KEK fails"
        );
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(s.open(&tampered, b"sel1").is_err());
    }

    #[test]
    fn kek_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Secrets::load(dir.path(), None).unwrap();
        let sealed = a.seal(b"x", b"c").unwrap();
        let mode = std::fs::metadata(dir.path().join("kek"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Secrets::load(dir.path(), None).unwrap();
        assert_eq!(b.open(&sealed, b"c").unwrap(), b"x");
        std::fs::set_permissions(
            dir.path().join("kek"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(
            Secrets::load(dir.path(), None).is_err(),
            "a readable KEK file is refused"
        );
        assert!(matches!(
            Secrets::load(dir.path(), Some("short".into())),
            Err(SecretError::BadEnvKey)
        ));
        let env = B64.encode([9u8; 32]);
        Secrets::load(dir.path(), Some(env)).unwrap();
    }

    #[test]
    fn verp_tags_verify_in_constant_time_and_reject_forgery() {
        let s = Secrets::from_key(&[1; 32]);
        let tag = s.verp_tag(b"msg-1");
        assert!(s.verify_verp_tag(b"msg-1", &tag[..10]));
        assert!(!s.verify_verp_tag(b"msg-2", &tag[..10]));
        assert!(
            !s.verify_verp_tag(b"msg-1", &tag[..4]),
            "too short to trust"
        );
    }
}
