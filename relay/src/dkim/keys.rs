//! DKIM key pairs: RSA-2048 and Ed25519 made with aws-lc-rs (via mail-auth for Ed25519), dated
//! selectors, private halves sealed with the KEK before they touch the store.

use crate::secrets::{SecretError, Secrets};
use crate::store::dkim_keys::{self, DkimKeyRow};
use crate::store::{StoreError, Transaction};
use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Why keys could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored key {selector} is unusable: {message}")]
    Unusable { selector: String, message: String },
}

/// Signature algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

impl Algorithm {
    /// Stored spelling and DKIM `k=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The selector's last letter.
    fn suffix(self) -> char {
        match self {
            Self::Rsa => 'r',
            Self::Ed25519 => 'e',
        }
    }
}

/// Whose key it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Member,
    Operator,
}

impl Owner {
    fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Operator => "operator",
        }
    }
}

/// A new key pair: PKCS#8 private key and the base64 `p=` value.
pub struct KeyPair {
    pub private_pkcs8: Vec<u8>,
    pub public_b64: String,
}

/// Makes a key pair. RSA `p=` is the SubjectPublicKeyInfo; Ed25519 `p=` is the raw 32-byte key.
pub fn generate(algorithm: Algorithm) -> Result<KeyPair, KeyError> {
    let gen_err = |e: &dyn std::fmt::Display| KeyError::Generate(e.to_string());
    match algorithm {
        Algorithm::Rsa => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|e| gen_err(&e))?;
            let private = pair.as_der().map_err(|e| gen_err(&e))?;
            let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
                .as_der()
                .map_err(|e| gen_err(&e))?;
            Ok(KeyPair {
                private_pkcs8: private.as_ref().to_vec(),
                public_b64: B64.encode(public.as_ref()),
            })
        }
        Algorithm::Ed25519 => {
            let pkcs8 =
                mail_auth::common::crypto::Ed25519Key::generate_pkcs8().map_err(|e| gen_err(&e))?;
            let key = mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(&pkcs8)
                .map_err(|e| gen_err(&e))?;
            Ok(KeyPair {
                private_pkcs8: pkcs8,
                public_b64: B64.encode(key.public_key()),
            })
        }
    }
}

/// `YYYYMMDD` of a Unix time in milliseconds (UTC).
pub fn date_stamp(now_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms.max(0) as u64);
    humantime::format_rfc3339(t).to_string()[..10].replace('-', "")
}

/// A fresh RSA + Ed25519 pair set (slow for RSA: make it before opening a transaction).
pub struct KeySet {
    rsa: KeyPair,
    ed25519: KeyPair,
}

impl KeySet {
    /// Generates both keys.
    pub fn generate() -> Result<Self, KeyError> {
        Ok(Self {
            rsa: generate(Algorithm::Rsa)?,
            ed25519: generate(Algorithm::Ed25519)?,
        })
    }
}

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(s) => s,
            other => StoreError::Invalid(other.to_string()),
        }
    }
}

/// Seals and stores `set` as the keys of `domain`, retiring the ones it had. Selectors are
/// `atmos<YYYYMMDD>r|e`, with `-<n>` before the letter when that date is taken.
pub fn rotate(
    tx: &Transaction<'_>,
    secrets: &Secrets,
    domain: &str,
    owner: Owner,
    now_ms: i64,
    set: KeySet,
) -> Result<Vec<DkimKeyRow>, KeyError> {
    let domain = domain.to_ascii_lowercase();
    let date = date_stamp(now_ms);
    let mut n = 1;
    let base = loop {
        let base = if n == 1 {
            format!("atmos{date}")
        } else {
            format!("atmos{date}-{n}")
        };
        if !dkim_keys::selector_exists(tx, &domain, &format!("{base}r"))?
            && !dkim_keys::selector_exists(tx, &domain, &format!("{base}e"))?
        {
            break base;
        }
        n += 1;
    };
    dkim_keys::retire_active(tx, &domain, now_ms)?;
    let mut rows = Vec::new();
    for (algorithm, pair) in [(Algorithm::Rsa, set.rsa), (Algorithm::Ed25519, set.ed25519)] {
        let selector = format!("{base}{}", algorithm.suffix());
        let mut row = DkimKeyRow {
            id: 0,
            domain: domain.clone(),
            owner: owner.as_str().into(),
            selector: selector.clone(),
            algorithm: algorithm.as_str().into(),
            private_sealed: secrets.seal(
                &pair.private_pkcs8,
                seal_context(&domain, &selector).as_bytes(),
            )?,
            public_key: pair.public_b64,
            created_at: now_ms,
            retired_at: None,
        };
        row.id = dkim_keys::insert(tx, &row)?;
        rows.push(row);
    }
    Ok(rows)
}

/// Binds a sealed key to its domain and selector, so rows cannot be swapped.
pub fn seal_context(domain: &str, selector: &str) -> String {
    format!("dkim:{domain}:{selector}")
}

/// The TXT value to publish for a key.
pub fn txt_value(row: &DkimKeyRow) -> String {
    format!("v=DKIM1; k={}; p={}", row.algorithm, row.public_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn date_stamps() {
        assert_eq!(date_stamp(0), "19700101");
        assert_eq!(date_stamp(1_795_397_691_000), "20261123");
    }

    #[test]
    fn rotate_makes_sealed_dated_pairs_and_retires_old_ones() {
        let (_d, store) = test_store();
        let secrets = Secrets::from_key(&[3; 32]);
        let now = 1_795_397_691_000;
        let first = store
            .write(|tx| {
                Ok(rotate(
                    tx,
                    &secrets,
                    "Example.COM",
                    Owner::Member,
                    now,
                    KeySet::generate()?,
                )?)
            })
            .unwrap();
        let sels: Vec<&str> = first.iter().map(|r| r.selector.as_str()).collect();
        assert_eq!(sels, ["atmos20261123r", "atmos20261123e"]);
        assert!(
            txt_value(&first[0]).starts_with("v=DKIM1; k=rsa; p=MII"),
            "SPKI DER starts with MII"
        );
        assert_eq!(B64.decode(&first[1].public_key).unwrap().len(), 32);
        // The private half is sealed: it is not a PKCS#8 DER in clear.
        let opened = secrets
            .open(
                &first[0].private_sealed,
                seal_context("example.com", "atmos20261123r").as_bytes(),
            )
            .unwrap();
        assert_eq!(opened[0], 0x30);
        assert_ne!(first[0].private_sealed[12..16], opened[..4]);
        let second = store
            .write(|tx| {
                Ok(rotate(
                    tx,
                    &secrets,
                    "example.com",
                    Owner::Member,
                    now,
                    KeySet::generate()?,
                )?)
            })
            .unwrap();
        assert_eq!(second[0].selector, "atmos20261123-2r");
        let active = store.with(|c| dkim_keys::active(c, "example.com")).unwrap();
        assert_eq!(active.len(), 2);
        assert!(active.iter().all(|k| k.selector.contains("-2")));
        assert_eq!(
            store
                .with(|c| dkim_keys::published(c, "example.com", now - 1))
                .unwrap()
                .len(),
            4
        );
    }
}
