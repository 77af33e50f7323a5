//! Finding a member's authorization server: the PDS's protected-resource metadata names it, and
//! its own metadata (RFC 8414) must name itself as issuer and offer what atproto requires (PAR,
//! PKCE S256, DPoP with ES256, the `iss` callback parameter).

use super::OAuthError;
use crate::identity::fetch::Fetcher;
use serde::Deserialize;

/// `/.well-known/oauth-protected-resource` of a PDS (RFC 9728).
#[derive(Debug, Deserialize)]
struct ProtectedResource {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
}

/// The authorization server metadata this client uses.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub pushed_authorization_request_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl ServerMetadata {
    /// Whether the server lists a scope (granular `repo:` scopes are not offered everywhere).
    pub fn supports_scope(&self, scope: &str) -> bool {
        self.scopes_supported.iter().any(|s| s == scope)
    }
}

/// Origin (`scheme://host[:port]`) of a URL.
pub fn origin(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// The authorization server of the PDS at `pds`.
pub async fn for_pds(fetch: &Fetcher, pds: &str) -> Result<ServerMetadata, OAuthError> {
    let unreachable = |e: crate::identity::fetch::FetchError| {
        tracing::info!(%pds, error = %e, "oauth: PDS metadata");
        OAuthError::Unreachable(origin(pds).unwrap_or_else(|| pds.to_string()))
    };
    let url = format!(
        "{}/.well-known/oauth-protected-resource",
        pds.trim_end_matches('/')
    );
    let pr: ProtectedResource = fetch.get_json(&url).await.map_err(unreachable)?;
    if !pr.resource.is_empty() && origin(&pr.resource) != origin(pds) {
        return Err(OAuthError::BadServer(
            "the PDS's metadata names another resource".into(),
        ));
    }
    let issuer = pr
        .authorization_servers
        .first()
        .ok_or_else(|| OAuthError::BadServer("the PDS names no authorization server".into()))?;
    metadata(fetch, issuer).await
}

/// The metadata of the authorization server `issuer`, checked.
pub async fn metadata(fetch: &Fetcher, issuer: &str) -> Result<ServerMetadata, OAuthError> {
    let issuer = issuer.trim_end_matches('/');
    let url = format!("{issuer}/.well-known/oauth-authorization-server");
    let m: ServerMetadata = fetch.get_json(&url).await.map_err(|e| {
        tracing::info!(%issuer, error = %e, "oauth: authorization server metadata");
        OAuthError::Unreachable(origin(issuer).unwrap_or_else(|| issuer.to_string()))
    })?;
    let bad = |what: &str| Err(OAuthError::BadServer(what.to_string()));
    if m.issuer.trim_end_matches('/') != issuer {
        return bad("the authorization server names another issuer");
    }
    for endpoint in [
        &m.authorization_endpoint,
        &m.token_endpoint,
        &m.pushed_authorization_request_endpoint,
    ] {
        if fetch.check(endpoint).is_err() {
            return bad("an endpoint of the authorization server is not a URL this relay may call");
        }
    }
    if let Some(r) = &m.revocation_endpoint
        && fetch.check(r).is_err()
    {
        return bad("the revocation endpoint is not a URL this relay may call");
    }
    if !m
        .dpop_signing_alg_values_supported
        .iter()
        .any(|a| a == "ES256")
    {
        return bad("the authorization server does not take ES256 DPoP proofs");
    }
    if !m.code_challenge_methods_supported.is_empty()
        && !m
            .code_challenge_methods_supported
            .iter()
            .any(|a| a == "S256")
    {
        return bad("the authorization server does not take PKCE S256");
    }
    if !m.authorization_response_iss_parameter_supported {
        return bad("the authorization server does not send iss with its answers");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://pds.example/xrpc").as_deref(),
            Some("https://pds.example")
        );
        assert_eq!(
            origin("http://localhost:2583/").as_deref(),
            Some("http://localhost:2583")
        );
        assert_eq!(origin("nonsense"), None);
    }
}
