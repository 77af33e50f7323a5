//! The signer: four DKIM signatures per message with mail-auth (relaxed/relaxed, SHA-256):
//! the member's domain (DMARC alignment) and the operator's pool domain (feedback loops), each
//! with RSA and Ed25519. Unsealed keys are cached per domain and reloaded when the active key set
//! changes (a rotation by the CLI shows up at the next message).

use super::keys::{KeyError, seal_context};
use crate::secrets::Secrets;
use crate::store::Store;
use crate::store::dkim_keys;
use mail_auth::common::crypto::{Ed25519Key, HashImpl, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Headers covered by `h=` (BEHAVIOUR §4.3, and §15: the key ones oversigned), plus the usual content
/// headers when present.
///
/// A name listed twice is oversigned: mail-auth signs every instance present and adds each
/// listed name it did not find as an empty instance, so a name listed twice ends up in `h=`
/// once more than the message holds it. Anyone who adds another `From` (or `Subject`…) to a
/// signed message breaks the signature.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "To",
    "Cc",
    "Cc",
    "Sender",
    "Sender",
    "Reply-To",
    "Reply-To",
    "Subject",
    "Subject",
    "Date",
    "Date",
    "Message-ID",
    "Message-ID",
    "X-Atmos-Member-Did",
    "X-Atmos-Member-Did",
    "Feedback-ID",
    "Feedback-ID",
    "List-Unsubscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// A key shared between threads (mail-auth takes signing keys by value).
struct Shared<K>(Arc<K>);

impl<K: SigningKey> SigningKey for Shared<K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

/// The unsealed signing keys of one domain.
struct DomainKeys {
    /// What the cached keys were loaded from: (id, selector, created_at) of each active row.
    /// The id alone is not enough: SQLite reuses the ids of deleted rows.
    ids: Vec<dkim_keys::KeyStamp>,
    rsa: Option<(String, Arc<RsaKey<Sha256>>)>,
    ed25519: Option<(String, Arc<Ed25519Key>)>,
}

/// Adds the DKIM signatures at acceptance.
pub struct Signer {
    store: Arc<Store>,
    secrets: Arc<Secrets>,
    operator_domain: String,
    cache: Mutex<HashMap<String, Arc<DomainKeys>>>,
}

impl Signer {
    /// A signer for the operator domain plus whichever member domains it is asked for.
    pub fn new(store: Arc<Store>, secrets: Arc<Secrets>, operator_domain: &str) -> Self {
        Self {
            store,
            secrets,
            operator_domain: operator_domain.to_ascii_lowercase(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The `DKIM-Signature` header lines for `message` (member domain first, then operator).
    pub fn sign(&self, member_domain: &str, message: &[u8]) -> Result<String, KeyError> {
        self.sign_for(
            &[
                member_domain.to_ascii_lowercase(),
                self.operator_domain.clone(),
            ],
            message,
        )
    }

    /// Signatures of the operator domain only (the relay's own mail, such as DSNs).
    pub fn sign_operator(&self, message: &[u8]) -> Result<String, KeyError> {
        self.sign_for(std::slice::from_ref(&self.operator_domain), message)
    }

    fn sign_for(&self, domains: &[String], message: &[u8]) -> Result<String, KeyError> {
        let mut out = String::new();
        for domain in domains {
            let keys = self.keys(domain)?;
            if keys.rsa.is_none() && keys.ed25519.is_none() {
                return Err(KeyError::Unusable {
                    selector: domain.clone(),
                    message: "no DKIM key".into(),
                });
            }
            if let Some((selector, key)) = &keys.rsa {
                out.push_str(&sign_one(Shared(key.clone()), domain, selector, message)?);
            }
            if let Some((selector, key)) = &keys.ed25519 {
                out.push_str(&sign_one(Shared(key.clone()), domain, selector, message)?);
            }
        }
        Ok(out)
    }

    fn keys(&self, domain: &str) -> Result<Arc<DomainKeys>, KeyError> {
        let ids = self.store.with(|c| dkim_keys::active_ids(c, domain))?;
        if let Some(k) = self.cache.lock().ok().and_then(|c| c.get(domain).cloned())
            && k.ids == ids
        {
            return Ok(k);
        }
        let rows = self.store.with(|c| dkim_keys::active(c, domain))?;
        let mut keys = DomainKeys {
            ids,
            rsa: None,
            ed25519: None,
        };
        for row in rows {
            let unusable = |message: String| KeyError::Unusable {
                selector: row.selector.clone(),
                message,
            };
            let der = self.secrets.open(
                &row.private_sealed,
                seal_context(&row.domain, &row.selector).as_bytes(),
            )?;
            match row.algorithm.as_str() {
                "rsa" if keys.rsa.is_none() => {
                    let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(
                        PrivatePkcs8KeyDer::from(der),
                    ))
                    .map_err(|e| unusable(e.to_string()))?;
                    keys.rsa = Some((row.selector.clone(), Arc::new(key)));
                }
                "ed25519" if keys.ed25519.is_none() => {
                    let key =
                        Ed25519Key::from_pkcs8_der(&der).map_err(|e| unusable(e.to_string()))?;
                    keys.ed25519 = Some((row.selector.clone(), Arc::new(key)));
                }
                _ => {}
            }
        }
        let keys = Arc::new(keys);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(domain.to_string(), keys.clone());
        }
        Ok(keys)
    }
}

fn sign_one<K: SigningKey>(
    key: K,
    domain: &str,
    selector: &str,
    message: &[u8],
) -> Result<String, KeyError>
where
    K::Hasher: HashImpl,
{
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
        .map(|s| s.to_header())
        .map_err(|e| KeyError::Unusable {
            selector: selector.into(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::keys::{KeySet, Owner, rotate};
    use crate::store::test_store;

    #[test]
    fn four_signatures_and_rotation_is_picked_up() {
        let (_d, store) = test_store();
        let store = Arc::new(store);
        let secrets = Arc::new(Secrets::from_key(&[5; 32]));
        let rot = |domain: &str, owner| {
            store
                .write(|tx| {
                    Ok(rotate(
                        tx,
                        &secrets,
                        domain,
                        owner,
                        1_795_397_691_000,
                        KeySet::generate()?,
                        crate::dkim::keys::Switch::Now,
                    )?)
                })
                .unwrap()
        };
        rot("member.test", Owner::Member);
        rot("pool.test", Owner::Operator);
        let signer = Signer::new(store.clone(), secrets.clone(), "pool.test");
        let msg = b"From: a@member.test\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let headers = signer.sign("member.test", msg).unwrap();
        assert_eq!(headers.matches("DKIM-Signature:").count(), 4);
        assert!(headers.contains("d=member.test") && headers.contains("d=pool.test"));
        assert!(headers.contains("a=rsa-sha256") && headers.contains("a=ed25519-sha256"));
        assert!(headers.contains("c=relaxed/relaxed"));
        // Oversigned: From is present once and listed twice in every h=.
        let unfolded = headers.replace("\r\n\t", "").replace(' ', "");
        let lists: Vec<&str> = unfolded
            .split(';')
            .filter_map(|tag| tag.strip_prefix("h="))
            .collect();
        assert_eq!(lists.len(), 4);
        for h in lists {
            let list = h.to_ascii_lowercase();
            let names: Vec<&str> = list.split(':').collect();
            assert_eq!(names.iter().filter(|n| **n == "from").count(), 2, "{list}");
            assert_eq!(
                names.iter().filter(|n| **n == "x-atmos-member-did").count(),
                2,
                "{list}"
            );
        }
        assert!(headers.contains("s=atmos20261123r"));
        rot("pool.test", Owner::Operator);
        let headers = signer.sign("member.test", msg).unwrap();
        assert!(
            headers.contains("s=atmos20261123-2r"),
            "new operator selector after rotation"
        );
        assert!(signer.sign("nokeys.test", msg).is_err());
    }
}
