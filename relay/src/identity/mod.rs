//! atproto identity (handle ↔ DID ↔ DID document ↔ PDS), for sign-in, enrollment and the
//! labeler: a handle resolves through DNS (`_atproto.<handle>` TXT, on `[dns] nameservers`) or
//! `https://<handle>/.well-known/atproto-did`; a DID through the PLC directory or did:web; the
//! document's handle must point back at the DID. Results are cached for ten minutes.

pub mod fetch;

use atmos_lexicons::Domain;
use atmos_lexicons::did::{self as did_grammar, Did};
use fetch::{FetchError, Fetcher};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a resolution is trusted.
const CACHE_TTL: Duration = Duration::from_secs(600);
/// Most identities kept (a stranger can make the relay resolve many).
const CACHE_CAPACITY: usize = 10_000;

/// A resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub did: Did,
    /// The handle, when the document claims one that resolves back to the DID.
    pub handle: Option<Domain>,
    /// The PDS endpoint (`#atproto_pds`), without a trailing slash.
    pub pds: String,
}

/// Why an identity could not be resolved. `Display` is a sentence for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{0:?} is not a handle (like alice.example.com) or a DID (did:plc:… or did:web:…)")]
    Invalid(String),
    #[error(
        "the handle {0} does not resolve to a DID (no _atproto TXT record and no /.well-known/atproto-did)"
    )]
    HandleNotFound(String),
    #[error("the DID {0} was not found")]
    DidNotFound(String),
    #[error("the identity service could not be reached ({0}); try again in a moment")]
    Unreachable(String),
    #[error("the DID document of {0} names no PDS (#atproto_pds)")]
    NoPds(String),
    #[error("the DID document of {0} is not valid")]
    BadDocument(String),
}

/// Resolves and caches identities.
pub struct Resolver {
    fetch: Fetcher,
    dns: crate::dns::Dns,
    plc_url: String,
    cache: Mutex<HashMap<String, (Instant, Identity)>>,
}

/// The parts of a DID document this relay reads.
#[derive(Debug, serde::Deserialize)]
struct DidDocument {
    id: String,
    #[serde(default, rename = "alsoKnownAs")]
    also_known_as: Vec<String>,
    #[serde(default)]
    service: Vec<Service>,
}

#[derive(Debug, serde::Deserialize)]
struct Service {
    id: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "serviceEndpoint", default)]
    endpoint: serde_json::Value,
}

impl Resolver {
    /// A resolver using `dns` for handles and `plc_url` for did:plc.
    pub fn new(fetch: Fetcher, dns: crate::dns::Dns, plc_url: &str) -> Self {
        Self {
            fetch,
            dns,
            plc_url: plc_url.trim_end_matches('/').to_string(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The resolver `config` describes: `[dns] nameservers`, `[atproto] plc_url` and
    /// `allow_private_endpoints`.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let nameservers = config.nameservers();
        Ok(Self::new(
            Fetcher::new(
                crate::dns::resolver(&nameservers)?,
                config.atproto.allow_private_endpoints,
            ),
            crate::dns::Dns::new(&nameservers)?,
            &config.plc_url(),
        ))
    }

    /// The guarded HTTP client the resolver uses.
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetch
    }

    /// Resolves what a person typed: a DID, or a handle (with or without `@`).
    pub async fn resolve(&self, input: &str) -> Result<Identity, IdentityError> {
        let input = input.trim();
        let input = input.strip_prefix("at://").unwrap_or(input);
        let input = input.strip_prefix('@').unwrap_or(input);
        if let Some(hit) = self.cached(input) {
            return Ok(hit);
        }
        let identity = if input.starts_with("did:") {
            let did =
                did_grammar::parse(input).map_err(|_| IdentityError::Invalid(input.into()))?;
            self.identity_of_did(&did, None).await?
        } else {
            let handle = Domain::parse(input).map_err(|_| IdentityError::Invalid(input.into()))?;
            let did = self.resolve_handle(&handle).await?;
            let identity = self.identity_of_did(&did, Some(&handle)).await?;
            if identity.handle.as_ref() != Some(&handle) {
                // The document does not claim this handle back: the handle is not theirs.
                return Err(IdentityError::HandleNotFound(handle.to_string()));
            }
            identity
        };
        self.remember(input, &identity);
        Ok(identity)
    }

    /// The DID a handle names: DNS first, then HTTPS.
    pub async fn resolve_handle(&self, handle: &Domain) -> Result<Did, IdentityError> {
        let txt = self.dns.txt(&handle.under("_atproto")).await;
        let dids: Vec<Did> = txt
            .records()
            .iter()
            .filter_map(|t| t.strip_prefix("did="))
            .filter_map(|d| did_grammar::parse(d.trim()).ok())
            .collect();
        // Exactly one: two different claims mean none can be trusted.
        if let [one] = dids.as_slice() {
            return Ok(one.clone());
        }
        let url = format!("https://{handle}/.well-known/atproto-did");
        match self.fetch.get_small_text(&url).await {
            Ok(text) => did_grammar::parse(&text)
                .map_err(|_| IdentityError::HandleNotFound(handle.to_string())),
            Err(_) => Err(IdentityError::HandleNotFound(handle.to_string())),
        }
    }

    /// The DID document of `did`, as JSON.
    pub async fn document(&self, did: &Did) -> Result<serde_json::Value, IdentityError> {
        // did:web names a host of the DID's choosing; the PLC directory is the operator's.
        let (url, fetched) = match did_grammar::web_host(did) {
            Some(host) => {
                let url = format!("{}/.well-known/did.json", host.origin());
                let fetched = self.fetch.get_json(&url).await;
                (url, fetched)
            }
            None => {
                let url = format!("{}/{}", self.plc_url, did.as_str());
                let fetched = self.fetch.get_configured_json(&url).await;
                (url, fetched)
            }
        };
        fetched.map_err(|e| match e {
            FetchError::Status { status: 404, .. } | FetchError::Status { status: 410, .. } => {
                IdentityError::DidNotFound(did.as_str().into())
            }
            FetchError::NotJson { .. } | FetchError::TooLarge { .. } => {
                IdentityError::BadDocument(did.as_str().into())
            }
            other => {
                tracing::info!(did = did.as_str(), error = %other, "identity: cannot fetch the DID document");
                IdentityError::Unreachable(host_of(&url))
            }
        })
    }

    /// The identity of `did`; `typed` is the handle the person gave, checked against the
    /// document (saves resolving it twice).
    async fn identity_of_did(
        &self,
        did: &Did,
        typed: Option<&Domain>,
    ) -> Result<Identity, IdentityError> {
        let json = self.document(did).await?;
        let doc: DidDocument = serde_json::from_value(json)
            .map_err(|_| IdentityError::BadDocument(did.as_str().into()))?;
        if doc.id != did.as_str() {
            return Err(IdentityError::BadDocument(did.as_str().into()));
        }
        let pds = doc
            .service
            .iter()
            .find(|s| {
                (s.id == "#atproto_pds" || s.id == format!("{}#atproto_pds", did.as_str()))
                    && s.kind == "AtprotoPersonalDataServer"
            })
            .and_then(|s| s.endpoint.as_str())
            .map(|e| e.trim_end_matches('/').to_string())
            .filter(|e| self.fetch.check(e).is_ok())
            .ok_or_else(|| IdentityError::NoPds(did.as_str().into()))?;
        let claimed = doc
            .also_known_as
            .iter()
            .filter_map(|a| a.strip_prefix("at://"))
            .find_map(|h| Domain::parse(h).ok());
        // Bidirectional: the claimed handle must resolve to this DID.
        let handle = match claimed {
            Some(h) if typed == Some(&h) => Some(h),
            Some(h) => match self.resolve_handle(&h).await {
                Ok(back) if back == *did => Some(h),
                _ => None,
            },
            None => None,
        };
        Ok(Identity {
            did: did.clone(),
            handle,
            pds,
        })
    }

    fn cached(&self, key: &str) -> Option<Identity> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(&key.to_ascii_lowercase())
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, i)| i.clone())
    }

    fn remember(&self, key: &str, identity: &Identity) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(key.to_ascii_lowercase(), (Instant::now(), identity.clone()));
        }
    }

    /// Forgets what is cached about `did` (after a sign-in showed it changed).
    pub fn forget(&self, did: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (_, i)| i.did.as_str() != did);
        }
    }
}

/// `host[:port]` of a URL, for messages.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_string(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_default()
}

/// The labeler checks service-auth issuers through the same resolver.
impl atmos_labeler::service_auth::DidDocuments for Resolver {
    fn document<'a>(
        &'a self,
        did: &'a Did,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<serde_json::Value, String>> + Send + 'a>,
    > {
        Box::pin(async move {
            Resolver::document(self, did)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
