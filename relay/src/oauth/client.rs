//! The authorization-code flow itself: [`OAuthClient::start`] (PAR), [`OAuthClient::finish`]
//! (the callback: `iss`, code exchange, `sub`, scope), [`OAuthClient::refresh`],
//! [`OAuthClient::revoke`], and DPoP-bound calls to the member's PDS.

use super::OAuthError;
use super::discovery::{self, ServerMetadata};
use super::dpop::{self, Nonces};
use super::jose::{EsKey, now_s, random_token, sha256_b64};
use super::keys::ClientKeys;
use crate::identity::Resolver;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The granular scope for writing attestation records, where the server offers it.
pub const ATTESTATION_SCOPE: &str = "repo:email.atmos.attestation";
/// The fallback that grants repo writes on servers without granular scopes.
pub const GENERIC_SCOPE: &str = "transition:generic";
/// How long a started sign-in may take.
pub const PENDING_TTL_S: i64 = 600;

/// How the client authenticates to authorization servers.
pub enum ClientKind {
    /// The atproto loopback client (`http://localhost?…`, no client secret): development.
    Loopback,
    /// A confidential web client with `private_key_jwt`, its keys sealed in the store.
    Confidential(Arc<ClientKeys>),
}

/// A sign-in that went to the authorization server and has not come back yet (stored sealed,
/// keyed by `state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    /// The client id the request was made under (the loopback id carries its scope).
    pub client_id: String,
    pub verifier: String,
    /// The DPoP key's scalar: the tokens will be bound to it.
    pub dpop_key: Vec<u8>,
    pub server: ServerMetadata,
    /// The DID the person named (none when they started from a PDS URL).
    pub expected_did: Option<String>,
    pub pds: String,
    pub scope: String,
    pub created_at: i64,
    /// Where the browser goes once signed in (a path of this site).
    pub return_to: String,
}

/// What the authorization server sent back to the callback.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A signed-in session's tokens (stored sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub client_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds since the epoch.
    pub expires_at: i64,
    pub scope: String,
    /// The member's DID.
    pub sub: String,
    pub dpop_key: Vec<u8>,
    pub server: ServerMetadata,
    pub pds: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    sub: String,
}

#[derive(Deserialize)]
struct ParAnswer {
    request_uri: String,
}

/// What a PDS answered to an XRPC call.
#[derive(Debug)]
pub struct PdsAnswer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// The OAuth client.
pub struct OAuthClient {
    identity: Arc<Resolver>,
    nonces: Nonces,
    /// The confidential client's id (`<public_url>/oauth/client-metadata.json`); unused for the
    /// loopback client, whose id is made per scope.
    client_id: String,
    pub redirect_uri: String,
    kind: ClientKind,
}

/// The error text an OAuth endpoint returned, for logs and `Refused`.
fn error_text(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = match (v["error"].as_str(), v["error_description"].as_str()) {
        (Some(e), Some(d)) => format!("{e}: {d}"),
        (Some(e), None) => e.to_string(),
        _ => "no reason given".to_string(),
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

impl OAuthClient {
    /// A client with `client_id` and `redirect_uri`.
    pub fn new(
        identity: Arc<Resolver>,
        client_id: String,
        redirect_uri: String,
        kind: ClientKind,
    ) -> Self {
        Self {
            identity,
            nonces: Nonces::default(),
            client_id,
            redirect_uri,
            kind,
        }
    }

    /// The client id for a request asking `scope`.
    pub fn client_id_for(&self, scope: &str) -> String {
        match self.kind {
            ClientKind::Loopback => Self::loopback_client_id(&self.redirect_uri, scope),
            ClientKind::Confidential(_) => self.client_id.clone(),
        }
    }

    /// Whether this is the confidential web client.
    pub fn is_confidential(&self) -> bool {
        matches!(self.kind, ClientKind::Confidential(_))
    }

    /// The confidential client's keys.
    pub fn keys(&self) -> Option<&ClientKeys> {
        match &self.kind {
            ClientKind::Confidential(k) => Some(k),
            ClientKind::Loopback => None,
        }
    }

    /// The atproto loopback client id for a callback on `redirect_uri`, asking for `scope`.
    pub fn loopback_client_id(redirect_uri: &str, scope: &str) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "http://localhost?redirect_uri={}&scope={}",
            enc(redirect_uri),
            enc(scope)
        )
    }

    /// The scope asked of `server`: atproto, plus attestation writes (granular where offered).
    pub fn scope_for(server: &ServerMetadata) -> String {
        if server.supports_scope(ATTESTATION_SCOPE) {
            format!("atproto {ATTESTATION_SCOPE}")
        } else {
            format!("atproto {GENERIC_SCOPE}")
        }
    }

    /// Client authentication for a request to `server`: the client id, and for a confidential
    /// client a fresh `private_key_jwt` assertion.
    fn client_auth(
        &self,
        server: &ServerMetadata,
        client_id: &str,
    ) -> Result<Vec<(&'static str, String)>, OAuthError> {
        let mut params = vec![("client_id", client_id.to_string())];
        if let ClientKind::Confidential(keys) = &self.kind {
            let (kid, key) = keys.signing().map_err(|e| {
                tracing::error!(error = %e, "oauth: no client signing key");
                OAuthError::BadServer("the relay's client key is unavailable".into())
            })?;
            let now = now_s();
            let assertion = key.sign(
                serde_json::json!({ "kid": kid }),
                &serde_json::json!({
                    "iss": client_id, "sub": client_id, "aud": server.issuer,
                    "jti": random_token(16), "iat": now, "exp": now + 60,
                }),
            );
            params.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            params.push(("client_assertion", assertion));
        }
        Ok(params)
    }

    /// A DPoP-bound form POST to an endpoint of `server`.
    async fn post_form(
        &self,
        key: &EsKey,
        url: &str,
        form: &[(&str, String)],
    ) -> Result<dpop::Answer, OAuthError> {
        let fetch = self.identity.fetcher();
        let checked = fetch.check(url).map_err(|_| {
            OAuthError::BadServer("an endpoint is not a URL this relay may call".into())
        })?;
        dpop::send(&self.nonces, key, "POST", url, None, |proof| {
            fetch
                .client()
                .post(checked.clone())
                .header("DPoP", proof)
                .form(form)
        })
        .await
        .map_err(|e| {
            tracing::info!(%url, error = %e, "oauth: request failed");
            OAuthError::Unreachable(discovery::origin(url).unwrap_or_default())
        })
    }

    /// Starts a sign-in for what the person typed (a handle, a DID, or their PDS's URL): pushes
    /// the authorization request and returns where to send the browser, and what to keep until
    /// it comes back.
    pub async fn start(
        &self,
        input: &str,
        return_to: &str,
    ) -> Result<(String, Pending), OAuthError> {
        let input = input.trim();
        let (pds, expected_did, login_hint) = if input.starts_with("https://")
            || input.starts_with("http://")
        {
            let pds = discovery::origin(input).ok_or(OAuthError::BadServer("not a URL".into()))?;
            (pds, None, None)
        } else {
            let identity = self.identity.resolve(input).await?;
            (
                identity.pds.clone(),
                Some(identity.did.as_str().to_string()),
                Some(input.to_string()),
            )
        };
        let fetch = self.identity.fetcher();
        let server = discovery::for_pds(fetch, &pds).await?;
        let scope = Self::scope_for(&server);
        let client_id = self.client_id_for(&scope);
        let verifier = random_token(32);
        let key = EsKey::generate();
        let state = random_token(24);
        let mut form = vec![
            ("response_type", "code".to_string()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", scope.clone()),
            ("state", state.clone()),
            ("code_challenge", sha256_b64(&verifier)),
            ("code_challenge_method", "S256".to_string()),
        ];
        if let Some(hint) = &login_hint {
            form.push(("login_hint", hint.clone()));
        }
        form.extend(self.client_auth(&server, &client_id)?);
        let answer = self
            .post_form(&key, &server.pushed_authorization_request_endpoint, &form)
            .await?;
        if !(200..300).contains(&answer.status) {
            let why = error_text(&answer.body);
            tracing::info!(issuer = %server.issuer, status = answer.status, %why, "oauth: PAR refused");
            return Err(OAuthError::Refused(why));
        }
        let par: ParAnswer = serde_json::from_slice(&answer.body).map_err(|_| {
            OAuthError::BadServer("the authorization request was not acknowledged".into())
        })?;
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let url = format!(
            "{}?client_id={}&request_uri={}",
            server.authorization_endpoint,
            enc(&client_id),
            enc(&par.request_uri)
        );
        Ok((
            url,
            Pending {
                state,
                client_id,
                verifier,
                dpop_key: key.to_bytes(),
                server,
                expected_did,
                pds,
                scope,
                created_at: now_s(),
                return_to: return_to.to_string(),
            },
        ))
    }

    /// Finishes a sign-in at the callback. `pending` was found by the callback's `state`; this
    /// checks everything else and returns the member's tokens.
    pub async fn finish(&self, pending: &Pending, cb: &Callback) -> Result<Tokens, OAuthError> {
        let code = check_callback(pending, cb, now_s())?;
        let key = EsKey::from_bytes(&pending.dpop_key).ok_or(OAuthError::UnknownState)?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("code_verifier", pending.verifier.clone()),
        ];
        form.extend(self.client_auth(&pending.server, &pending.client_id)?);
        let answer = self
            .post_form(&key, &pending.server.token_endpoint, &form)
            .await?;
        let tokens = tokens_from(
            answer,
            &key,
            &pending.server,
            &pending.pds,
            &pending.client_id,
        )?;
        if let Some(expected) = &pending.expected_did
            && &tokens.sub != expected
        {
            return Err(OAuthError::WrongAccount {
                expected: expected.clone(),
                got: tokens.sub.clone(),
            });
        }
        // The account's own PDS must be served by the issuer that answered (atproto OAuth §
        // "identity authentication"): resolve the sub afresh and compare.
        self.identity.forget(&tokens.sub);
        let identity = self.identity.resolve(&tokens.sub).await?;
        let their_server = discovery::for_pds(self.identity.fetcher(), &identity.pds).await?;
        if their_server.issuer.trim_end_matches('/') != pending.server.issuer.trim_end_matches('/')
        {
            return Err(OAuthError::WrongIssuer);
        }
        Ok(Tokens {
            pds: identity.pds,
            ..tokens
        })
    }

    /// New tokens for `old` (refresh tokens are single-use: the caller stores the new ones and
    /// never refreshes one session twice at once).
    pub async fn refresh(&self, old: &Tokens) -> Result<Tokens, OAuthError> {
        let refresh = old
            .refresh_token
            .as_deref()
            .ok_or(OAuthError::SessionEnded)?;
        let key = EsKey::from_bytes(&old.dpop_key).ok_or(OAuthError::SessionEnded)?;
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.to_string()),
        ];
        form.extend(self.client_auth(&old.server, &old.client_id)?);
        let answer = self
            .post_form(&key, &old.server.token_endpoint, &form)
            .await?;
        let tokens = tokens_from(answer, &key, &old.server, &old.pds, &old.client_id)?;
        if tokens.sub != old.sub {
            return Err(OAuthError::WrongAccount {
                expected: old.sub.clone(),
                got: tokens.sub,
            });
        }
        Ok(tokens)
    }

    /// Revokes a session's tokens (best effort: signing out never fails).
    pub async fn revoke(&self, tokens: &Tokens) {
        let Some(endpoint) = tokens.server.revocation_endpoint.clone() else {
            return;
        };
        let Some(key) = EsKey::from_bytes(&tokens.dpop_key) else {
            return;
        };
        for token in [
            tokens.refresh_token.as_deref(),
            Some(tokens.access_token.as_str()),
        ]
        .into_iter()
        .flatten()
        {
            let Ok(mut form) = self.client_auth(&tokens.server, &tokens.client_id) else {
                return;
            };
            form.push(("token", token.to_string()));
            if let Err(e) = self.post_form(&key, &endpoint, &form).await {
                tracing::info!(error = %e, "oauth: revocation failed");
            }
        }
    }

    /// A DPoP-bound XRPC call to the member's PDS (`POST` with a JSON body, or `GET`). A 401
    /// means the access token must be refreshed (`SessionEnded` after a refresh failed).
    pub async fn pds_call(
        &self,
        tokens: &Tokens,
        method: &str,
        nsid: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<PdsAnswer, OAuthError> {
        let key = EsKey::from_bytes(&tokens.dpop_key).ok_or(OAuthError::SessionEnded)?;
        let mut url = reqwest::Url::parse(&format!("{}/xrpc/{nsid}", tokens.pds))
            .map_err(|_| OAuthError::BadServer("the PDS URL is not valid".into()))?;
        url.query_pairs_mut().extend_pairs(query);
        let fetch = self.identity.fetcher();
        let checked = fetch.check(url.as_str()).map_err(|_| {
            OAuthError::BadServer("the PDS URL is not one this relay may call".into())
        })?;
        let answer = dpop::send(
            &self.nonces,
            &key,
            method,
            url.as_str(),
            Some(&tokens.access_token),
            |proof| {
                let req = if method == "GET" {
                    fetch.client().get(checked.clone())
                } else {
                    fetch.client().post(checked.clone())
                };
                let req = req
                    .header("Authorization", format!("DPoP {}", tokens.access_token))
                    .header("DPoP", proof);
                match body {
                    Some(b) => req.json(b),
                    None => req,
                }
            },
        )
        .await
        .map_err(|e| {
            tracing::info!(%nsid, error = %e, "oauth: PDS call failed");
            OAuthError::Unreachable(discovery::origin(&tokens.pds).unwrap_or_default())
        })?;
        Ok(PdsAnswer {
            status: answer.status,
            body: serde_json::from_slice(&answer.body).unwrap_or_default(),
        })
    }
}

/// The callback's own checks, before any network: not expired, not an error, the issuer the
/// sign-in started with; returns the authorization code.
pub fn check_callback<'a>(
    pending: &Pending,
    cb: &'a Callback,
    now: i64,
) -> Result<&'a str, OAuthError> {
    if now - pending.created_at > PENDING_TTL_S {
        return Err(OAuthError::UnknownState);
    }
    if let Some(error) = &cb.error {
        let why = cb.error_description.as_deref().unwrap_or(error);
        return Err(OAuthError::Denied(
            why.chars().filter(|c| !c.is_control()).take(200).collect(),
        ));
    }
    if cb.iss.as_deref().map(|i| i.trim_end_matches('/'))
        != Some(pending.server.issuer.trim_end_matches('/'))
    {
        return Err(OAuthError::WrongIssuer);
    }
    cb.code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(OAuthError::UnknownState)
}

/// Reads a token answer and checks its type, scope and subject.
pub fn tokens_from(
    answer: dpop::Answer,
    key: &EsKey,
    server: &ServerMetadata,
    pds: &str,
    client_id: &str,
) -> Result<Tokens, OAuthError> {
    if !(200..300).contains(&answer.status) {
        let why = error_text(&answer.body);
        tracing::info!(issuer = %server.issuer, status = answer.status, %why, "oauth: token request refused");
        if why.starts_with("invalid_grant") {
            return Err(OAuthError::SessionEnded);
        }
        return Err(OAuthError::Refused(why));
    }
    let t: TokenAnswer = serde_json::from_slice(&answer.body)
        .map_err(|_| OAuthError::BadServer("the token answer could not be read".into()))?;
    if !t.token_type.eq_ignore_ascii_case("DPoP") {
        return Err(OAuthError::BadServer(
            "the tokens are not DPoP-bound".into(),
        ));
    }
    let granted: Vec<&str> = t.scope.split_whitespace().collect();
    if !granted.contains(&"atproto")
        || !(granted.contains(&ATTESTATION_SCOPE) || granted.contains(&GENERIC_SCOPE))
    {
        return Err(OAuthError::Scope(t.scope.clone()));
    }
    let sub = atmos_lexicons::did::parse(&t.sub)
        .map_err(|_| OAuthError::BadServer("the token names no valid account (sub)".into()))?;
    Ok(Tokens {
        client_id: client_id.to_string(),
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        expires_at: now_s() + t.expires_in.unwrap_or(300).clamp(0, 86_400),
        scope: t.scope,
        sub: sub.as_str().to_string(),
        dpop_key: key.to_bytes(),
        server: server.clone(),
        pds: pds.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(scopes: &[&str]) -> ServerMetadata {
        ServerMetadata {
            issuer: "https://as.example".into(),
            authorization_endpoint: "https://as.example/authorize".into(),
            token_endpoint: "https://as.example/token".into(),
            pushed_authorization_request_endpoint: "https://as.example/par".into(),
            revocation_endpoint: None,
            scopes_supported: scopes.iter().map(|s| s.to_string()).collect(),
            dpop_signing_alg_values_supported: vec!["ES256".into()],
            code_challenge_methods_supported: vec!["S256".into()],
            token_endpoint_auth_methods_supported: vec!["none".into(), "private_key_jwt".into()],
            authorization_response_iss_parameter_supported: true,
        }
    }

    #[test]
    fn scopes_and_loopback_ids() {
        assert_eq!(
            OAuthClient::scope_for(&meta(&["atproto", "transition:generic"])),
            "atproto transition:generic"
        );
        assert_eq!(
            OAuthClient::scope_for(&meta(&["atproto", ATTESTATION_SCOPE])),
            format!("atproto {ATTESTATION_SCOPE}")
        );
        let id = OAuthClient::loopback_client_id(
            "http://127.0.0.1:8080/oauth/callback",
            "atproto transition:generic",
        );
        assert_eq!(
            id,
            "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Foauth%2Fcallback&scope=atproto+transition%3Ageneric"
        );
        assert_eq!(
            error_text(br#"{"error":"invalid_grant","error_description":"bad\ncode"}"#),
            "invalid_grant: badcode"
        );
    }
}
