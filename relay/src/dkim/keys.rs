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

/// Key generation that a web request asks for runs here: RSA-2048 costs a core ~0.1–1 s, and
/// anyone who signs in can ask. One runs at a time, off the async workers; at most
/// [`MAX_WAITING`] wait, and more are refused at once, so a flood costs one core, never both,
/// and never the blocking pool's threads.
pub async fn generate_bounded<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Busy> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    static QUEUED: AtomicUsize = AtomicUsize::new(0);
    /// Leaves the count however the request ends (its client may go away while it waits).
    struct Queued;
    impl Drop for Queued {
        fn drop(&mut self) {
            QUEUED.fetch_sub(1, Ordering::SeqCst);
        }
    }
    if QUEUED.fetch_add(1, Ordering::SeqCst) > MAX_WAITING {
        QUEUED.fetch_sub(1, Ordering::SeqCst);
        return Err(Busy);
    }
    let _queued = Queued;
    let permit = RUNNING.acquire().await.map_err(|_| Busy)?;
    // The permit goes with the job: a client that leaves does not free the core early.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    })
    .await
    .map_err(|_| Busy)
}

/// Requests that may wait for [`generate_bounded`].
pub const MAX_WAITING: usize = 8;

/// Too many key generations are waiting; try again shortly.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many key generations in progress, try again shortly")]
pub struct Busy;

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(s) => s,
            other => StoreError::Invalid(other.to_string()),
        }
    }
}

/// When new keys start to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// At once, retiring the old ones (a first key set, and the operator's rotation, whose old
    /// records stay listed 48 h).
    Now,
    /// Once DNS serves their records (a member's rotation): until then they are published but
    /// the old keys go on signing, so no message leaves with a signature nobody can check.
    WhenPublished,
}

/// Seals and stores `set` as the keys of `domain` for `owner`. With [`Switch::Now`] (or when the
/// domain has no signing keys yet) they sign at once and retire the ones they replace; with
/// [`Switch::WhenPublished`] they wait, pending, replacing any earlier pending set. Selectors are
/// `atmos<YYYYMMDD>r|e`, with `-<n>` before the letter when that date is taken. Member keys
/// retired longer than the records' overlap are pruned.
pub fn rotate(
    tx: &Transaction<'_>,
    secrets: &Secrets,
    domain: &str,
    owner: Owner,
    now_ms: i64,
    set: KeySet,
    switch: Switch,
) -> Result<Vec<DkimKeyRow>, KeyError> {
    let domain = domain.to_ascii_lowercase();
    let date = date_stamp(now_ms);
    let prefix = format!("atmos{date}");
    let taken = dkim_keys::selectors_like(tx, &domain, &prefix)?;
    let base = (1..)
        .map(|n| {
            if n == 1 {
                prefix.clone()
            } else {
                format!("{prefix}-{n}")
            }
        })
        .find(|base| {
            !taken
                .iter()
                .any(|s| s == &format!("{base}r") || s == &format!("{base}e"))
        })
        .unwrap_or_else(|| format!("{prefix}-{}", taken.len() + 1));
    let signing = dkim_keys::active(tx, &domain)?
        .iter()
        .any(|k| k.owner == owner.as_str());
    let pending = switch == Switch::WhenPublished && signing;
    dkim_keys::delete_pending(tx, &domain, owner.as_str())?;
    if !pending {
        dkim_keys::retire_active(tx, &domain, owner.as_str(), now_ms)?;
    }
    dkim_keys::prune_retired_member_keys(tx, now_ms - RECORD_OVERLAP_MS)?;
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
            pending,
        };
        row.id = dkim_keys::insert(tx, &row)?;
        rows.push(row);
    }
    Ok(rows)
}

/// How long a retired key's record stays listed (mail signed just before a rotation is still
/// in flight, or in a queue).
pub const RECORD_OVERLAP_MS: i64 = 48 * 3600 * 1000;

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
                    Switch::Now,
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
                    Switch::Now,
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

    #[test]
    fn a_member_rotation_waits_for_dns_and_old_keys_are_pruned_after_the_overlap() {
        let (_d, store) = test_store();
        let secrets = Secrets::from_key(&[3; 32]);
        let day = 1_795_397_691_000;
        let rotate_at = |now: i64, switch: Switch| {
            store
                .write(|tx| {
                    Ok(rotate(
                        tx,
                        &secrets,
                        "m.test",
                        Owner::Member,
                        now,
                        KeySet::generate()?,
                        switch,
                    )?)
                })
                .unwrap()
        };
        let active = || store.with(|c| dkim_keys::active(c, "m.test")).unwrap();
        // The first set signs at once, even when asked to wait (nothing signs otherwise).
        let first = rotate_at(day, Switch::WhenPublished);
        assert!(first.iter().all(|k| !k.pending));
        // Later ones wait; a newer rotation replaces the set still waiting.
        let second = rotate_at(day + 1, Switch::WhenPublished);
        assert!(second.iter().all(|k| k.pending));
        let third = rotate_at(day + 2, Switch::WhenPublished);
        let ids = |rows: &[DkimKeyRow]| rows.iter().map(|k| k.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&active()),
            ids(&first).into_iter().rev().collect::<Vec<_>>()
        );
        let current = store.with(|c| dkim_keys::current(c, "m.test")).unwrap();
        assert_eq!(
            current.len(),
            4,
            "the signing set and the newest waiting one"
        );
        assert!(
            current
                .iter()
                .all(|k| second.iter().all(|s| s.selector != k.selector)),
            "the replaced set is gone"
        );
        assert_eq!(
            third[0].selector, "atmos20261123-3r",
            "selectors stay unique in a day"
        );
        // Promoted once served: the waiting keys sign, the old ones retire.
        let promoted = store
            .write(|tx| dkim_keys::promote_pending(tx, "m.test", day + 3))
            .unwrap();
        assert_eq!(promoted, 2);
        assert_eq!(
            ids(&active()),
            ids(&third).into_iter().rev().collect::<Vec<_>>()
        );
        // Retired keys stay listed for the overlap, then the next rotation prunes them.
        let published = |since| {
            store
                .with(|c| dkim_keys::published(c, "m.test", since))
                .unwrap()
        };
        assert_eq!(published(day).len(), 4);
        rotate_at(day + 3 + RECORD_OVERLAP_MS + 1, Switch::Now);
        let all = store
            .with(|c| dkim_keys::published(c, "m.test", 0))
            .unwrap();
        assert!(
            all.iter()
                .all(|k| first.iter().all(|f| f.selector != k.selector)),
            "keys retired past the overlap are deleted"
        );
    }
}
