//! HTTP to hosts that people outside the cooperative name (PDSes, authorization servers, did:web
//! hosts, handles' `.well-known`): never following redirects, time-boxed, size-capped, and —
//! unless `[atproto] allow_private_endpoints` — never to loopback, private or link-local
//! addresses, whether the URL names one or DNS answers with one. One client for identity
//! resolution, OAuth and the labeler's service-auth checks.

use crate::dns::is_private;
use hickory_resolver::TokioResolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON document read from outside.
pub const MAX_DOCUMENT: usize = 256 * 1024;

/// Why a fetch failed. The text is for logs; callers show their own words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("refused URL {0}: {1}")]
    Refused(String, &'static str),
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {status} from {url}")]
    Status { url: String, status: u16 },
    #[error("{url} answered more than {MAX_DOCUMENT} bytes")]
    TooLarge { url: String },
    #[error("{url} did not answer JSON: {message}")]
    NotJson { url: String, message: String },
}

/// Names to addresses through the relay's resolver, dropping private ones when they are not
/// allowed (`localhost` is loopback by definition, RFC 6761).
struct GuardedDns {
    dns: TokioResolver,
    allow_private: bool,
}

impl Resolve for GuardedDns {
    fn resolve(&self, name: Name) -> Resolving {
        let (dns, allow_private) = (self.dns.clone(), self.allow_private);
        Box::pin(async move {
            let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
            let ips: Vec<IpAddr> = if host == "localhost" || host.ends_with(".localhost") {
                vec![IpAddr::from([127, 0, 0, 1])]
            } else {
                dns.lookup_ip(format!("{host}."))
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                    .iter()
                    .collect()
            };
            let ips: Vec<IpAddr> = ips
                .into_iter()
                .filter(|ip| allow_private || !is_private(*ip))
                .collect();
            if ips.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The guarded HTTP client.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    /// For URLs the operator configured (the PLC directory): no address guard, which would
    /// refuse a directory on the operator's own network; still no redirects, deadlines and caps.
    configured: reqwest::Client,
    allow_private: bool,
}

impl Fetcher {
    /// A client resolving names through `dns`.
    pub fn new(dns: TokioResolver, allow_private: bool) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                // A proxy from the environment would resolve names itself, past the guard.
                .no_proxy()
                .user_agent(concat!("atmosphere-mail/", env!("CARGO_PKG_VERSION")))
        };
        let http = builder()
            .dns_resolver(Arc::new(GuardedDns { dns, allow_private }))
            .build()
            .unwrap_or_default();
        Self {
            http,
            configured: builder().build().unwrap_or_default(),
            allow_private,
        }
    }

    /// Checks a URL before any request: http(s) only, `https` unless private endpoints are
    /// allowed, and no private address literal.
    pub fn check(&self, url: &str) -> Result<reqwest::Url, FetchError> {
        let refused = |why| FetchError::Refused(url.to_string(), why);
        let parsed = reqwest::Url::parse(url).map_err(|_| refused("not a URL"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            "http" => return Err(refused("not https")),
            _ => return Err(refused("not http(s)")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused("credentials in the URL"));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(refused("no host")),
        };
        if let Some(ip) = literal
            && !self.allow_private
            && is_private(ip)
        {
            return Err(refused("a private address"));
        }
        Ok(parsed)
    }

    /// The underlying client, for requests that need their own headers (OAuth, XRPC); the URL
    /// must have passed [`Fetcher::check`].
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// GETs `url` and parses at most [`MAX_DOCUMENT`] bytes of JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, FetchError> {
        let parsed = self.check(url)?;
        Self::json_from(&self.http, parsed, url).await
    }

    /// [`Fetcher::get_json`] for a URL under one the operator configured (not one a stranger
    /// named): any http(s) host, private ones included.
    pub async fn get_configured_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, FetchError> {
        let refused = |why| FetchError::Refused(url.to_string(), why);
        let parsed = reqwest::Url::parse(url).map_err(|_| refused("not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(refused("not http(s)"));
        }
        Self::json_from(&self.configured, parsed, url).await
    }

    async fn json_from<T: serde::de::DeserializeOwned>(
        http: &reqwest::Client,
        parsed: reqwest::Url,
        url: &str,
    ) -> Result<T, FetchError> {
        let res = http
            .get(parsed)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Transport(format!("{url}: {e}")))?;
        let status = res.status().as_u16();
        let body = read_capped(res, url).await?;
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::NotJson {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// GETs `url` as text (at most 1 KiB: a handle's `atproto-did`).
    pub async fn get_small_text(&self, url: &str) -> Result<String, FetchError> {
        let parsed = self.check(url)?;
        let res = self
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| FetchError::Transport(format!("{url}: {e}")))?;
        let status = res.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        let body = read_capped(res, url).await?;
        if body.len() > 1024 {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&body).trim().to_string())
    }
}

/// Reads a response body, refusing one larger than [`MAX_DOCUMENT`].
pub async fn read_capped(mut res: reqwest::Response, url: &str) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
    };
    if res
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| FetchError::Transport(format!("{url}: {e}")))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allow_private: bool) -> Fetcher {
        let dns = crate::dns::fresh_resolver(&["127.0.0.1:9".parse().unwrap()]).unwrap();
        Fetcher::new(dns, allow_private)
    }

    #[tokio::test]
    async fn urls_are_checked_before_any_request() {
        let strict = fetcher(false);
        for url in [
            "http://pds.example.com/",
            "https://127.0.0.1/",
            "https://[::1]/x",
            "https://10.1.2.3/",
            "https://user:pw@pds.example.com/",
            "file:///etc/passwd",
            "gopher://x.example/",
        ] {
            assert!(strict.check(url).is_err(), "{url}");
        }
        assert!(strict.check("https://pds.example.com/xrpc").is_ok());
        let dev = fetcher(true);
        assert!(dev.check("http://127.0.0.1:2583/").is_ok());
        // A name answering a private address is refused too (here: localhost, by definition).
        let e = strict
            .get_json::<serde_json::Value>("https://localhost/x")
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Transport(_)), "{e}");
    }
}
