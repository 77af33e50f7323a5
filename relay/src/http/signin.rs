//! Signing in with atproto (BEHAVIOUR §3): the client metadata and JWKS the authorization server
//! fetches (confidential client), `POST /api/signin` (what the page calls), the OAuth callback,
//! `GET /api/session` and `POST /api/signout`.

use super::AppState;
use super::error::ApiError;
use super::web_session::{self, Changing, SESSION_COOKIE, SIGNIN_COOKIE, set_cookie, token_hash};
use crate::oauth::client::{Callback, PENDING_TTL_S};
use crate::oauth::jose::random_token;
use crate::oauth::{OAuthError, Pending};
use crate::store::{members, now_ms, web_sessions};
use atmos_lexicons::api::{
    SessionDomain, SessionInfo, SessionMember, SigninRequest, SigninStarted,
};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;
use std::time::Duration;

/// `GET /oauth/client-metadata.json`: the confidential client's metadata document.
#[utoipa::path(get, path = "/oauth/client-metadata.json", tag = "signin",
    responses((status = 200, description = "OAuth client metadata", body = Object), (status = 404, description = "Loopback client (no public_url)")))]
pub async fn client_metadata(State(state): State<Arc<AppState>>) -> Response {
    let oauth = &state.web.oauth;
    if !oauth.is_confidential() {
        return StatusCode::NOT_FOUND.into_response();
    }
    // Logged so an operator can see an authorization server fetch it.
    tracing::info!("web: client metadata fetched");
    let client_id = oauth.client_id_for("");
    let origin = client_id
        .trim_end_matches("/oauth/client-metadata.json")
        .to_string();
    Json(serde_json::json!({
        "client_id": client_id,
        "client_name": "Atmosphere Mail",
        "client_uri": origin,
        "redirect_uris": [oauth.redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        // Every scope a request may ask (granular where the server offers it).
        "scope": format!("atproto {} {}", crate::oauth::client::ATTESTATION_SCOPE, crate::oauth::client::GENERIC_SCOPE),
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks_uri": format!("{origin}/oauth/jwks.json"),
        "application_type": "web",
        "dpop_bound_access_tokens": true,
    }))
    .into_response()
}

/// `GET /oauth/jwks.json`: the public keys of the confidential client.
#[utoipa::path(get, path = "/oauth/jwks.json", tag = "signin",
    responses((status = 200, description = "JWKS", body = Object), (status = 404, description = "Loopback client")))]
pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    match state.web.oauth.keys().map(|k| k.jwks()) {
        Some(Ok(jwks)) => {
            tracing::info!("web: client JWKS fetched");
            Json(jwks).into_response()
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "web: cannot read the client keys");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A path of this site, or the default. No control character at all: browsers drop a tab or
/// newline from a URL, so `/\t/evil.example` would leave as `//evil.example`.
fn local_path(p: Option<&str>) -> String {
    match p {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/enroll".to_string(),
    }
}

fn oauth_error(e: &OAuthError) -> ApiError {
    let (status, code) = match e {
        OAuthError::Identity(_) => (400, "IDENTITY"),
        OAuthError::Unreachable(_) => (502, "PDS_UNREACHABLE"),
        OAuthError::BadServer(_) | OAuthError::Refused(_) => (502, "SIGNIN_FAILED"),
        _ => (400, "SIGNIN_FAILED"),
    };
    ApiError::coded(status, code, e.to_string())
}

/// `POST /api/signin`: resolves the identity, pushes the authorization request, and answers
/// the authorization server's URL for the browser.
#[utoipa::path(post, path = "/api/signin", tag = "signin", request_body = SigninRequest,
    responses((status = 200, description = "Go to redirect", body = SigninStarted), super::error::WebErrors))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    super::Peer(peer): super::Peer,
    body: Result<Json<SigninRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body
        .map_err(|e| ApiError::coded(400, "INVALID_REQUEST", format!("body: {}", e.body_text())))?;
    if req.identifier.len() > 300 {
        return Err(ApiError::coded(
            400,
            "INVALID_REQUEST",
            "identifier: too long",
        ));
    }
    let site = crate::connections::ClientNet::site(peer);
    if state.web.signins.check_key(&site).is_err() {
        return Err(ApiError::coded(
            429,
            "RATE_LIMITED",
            "too many sign-ins from your address; wait a minute",
        ));
    }
    let return_to = local_path(req.return_to.as_deref());
    let (url, pending) = state
        .web
        .oauth
        .start(&req.identifier, &return_to)
        .await
        .map_err(|e| oauth_error(&e))?;
    let browser = random_token(24);
    let state_hash = token_hash(&pending.state);
    let sealed = serde_json::to_vec(&pending)
        .ok()
        .and_then(|p| state.secrets.seal(&p, state_hash.as_bytes()).ok())
        .ok_or_else(|| ApiError::coded(500, "INTERNAL", "internal error"))?;
    let now = now_ms();
    let row = web_sessions::PendingRow {
        browser_hash: token_hash(&browser),
        sealed,
        created_at: now,
        net: site.to_string(),
    };
    let caps = web_sessions::PendingCaps::of(state.web.settings.max_pending);
    let stored = state
        .store
        .write(|tx| {
            web_sessions::put_pending(tx, &state_hash, &row, now - PENDING_TTL_S * 1000, caps)
        })
        .map_err(|_| ApiError::coded(500, "INTERNAL", "internal error"))?;
    match stored {
        Ok(()) => {}
        Err(web_sessions::PendingRefused::Network) => {
            return Err(ApiError::TooMany {
                message: "too many sign-ins in progress from your network; finish one or wait a few minutes".into(),
                retry_after: 60,
            });
        }
        Err(web_sessions::PendingRefused::Full) => {
            return Err(ApiError::coded(
                503,
                "BUSY",
                "too many sign-ins in progress; try again in a few minutes",
            ));
        }
    }
    let cookie = set_cookie(
        SIGNIN_COOKIE,
        &browser,
        Duration::from_secs(PENDING_TTL_S as u64),
        state.web.settings.secure_cookies,
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(SigninStarted { redirect: url }),
    )
        .into_response())
}

/// A page-level failure: back to where the sign-in began, with the reason to show.
fn failed(return_to: &str, e: &OAuthError) -> Response {
    // Only a code and, for the wrong account, the two DIDs: free text in a link would let
    // anyone put words of their choosing on the relay's page.
    let code = match e {
        OAuthError::Denied(_) => "denied",
        OAuthError::UnknownState => "expired",
        OAuthError::WrongIssuer => "issuer",
        OAuthError::WrongAccount { .. } => "account",
        OAuthError::Scope(_) => "scope",
        OAuthError::Unreachable(_) => "unreachable",
        _ => "failed",
    };
    let join = if return_to.contains('?') { '&' } else { '?' };
    let mut to = format!("{return_to}{join}signin_error={code}");
    if let OAuthError::WrongAccount { expected, got } = e {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        to.push_str(&format!("&typed={}&got={}", enc(expected), enc(got)));
    }
    Redirect::to(&to).into_response()
}

/// `GET /oauth/callback`: where the authorization server sends the browser back.
#[utoipa::path(get, path = "/oauth/callback", tag = "signin", params(Callback),
    responses((status = 303, description = "Signed in (or not): back to the page")))]
pub async fn callback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let cb = query.map(|Query(q)| q).unwrap_or_default();
    let Some(state_param) = cb
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return failed("/enroll", &OAuthError::UnknownState);
    };
    // A state works once, and only in the browser that started it: the browser is checked
    // before the state is taken, so whoever learns a state cannot cancel the sign-in.
    let (hash, expire_before) = (token_hash(state_param), now_ms() - PENDING_TTL_S * 1000);
    let Ok(Some(row)) = state
        .store
        .with(|c| web_sessions::peek_pending(c, &hash, expire_before))
    else {
        return failed("/enroll", &OAuthError::UnknownState);
    };
    let signin_cookie = web_session::cookie_name(SIGNIN_COOKIE, state.web.settings.secure_cookies);
    let browser = web_session::cookie(&headers, &signin_cookie).unwrap_or_default();
    let same_browser = bool::from(subtle::ConstantTimeEq::ct_eq(
        token_hash(&browser).as_bytes(),
        row.browser_hash.as_bytes(),
    ));
    if !same_browser {
        return failed("/enroll", &OAuthError::UnknownState);
    }
    let taken = state
        .store
        .write(|tx| web_sessions::take_pending(tx, &hash, expire_before));
    let Ok(Some(row)) = taken else {
        return failed("/enroll", &OAuthError::UnknownState);
    };
    let pending: Option<Pending> = state
        .secrets
        .open(&row.sealed, token_hash(state_param).as_bytes())
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok());
    let (Some(pending), true) = (pending, same_browser) else {
        return failed("/enroll", &OAuthError::UnknownState);
    };
    let tokens = match state.web.oauth.finish(&pending, &cb).await {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(error = %e, "web: sign-in refused");
            return failed(&pending.return_to, &e);
        }
    };
    let handle = state
        .web
        .identity
        .resolve(&tokens.sub)
        .await
        .ok()
        .and_then(|i| i.handle)
        .map(|h| h.to_string());
    let token = match state.open_session(&tokens, handle) {
        Ok(t) => t,
        Err(_) => return failed(&pending.return_to, &OAuthError::SessionEnded),
    };
    tracing::info!(did = %tokens.sub, "web: signed in");
    let secure = state.web.settings.secure_cookies;
    let mut res = Redirect::to(&pending.return_to).into_response();
    for c in [
        set_cookie(
            SESSION_COOKIE,
            &token,
            state.web.settings.session_idle,
            secure,
        ),
        set_cookie(SIGNIN_COOKIE, "", Duration::ZERO, secure),
    ] {
        if let Ok(v) = c.parse() {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// `GET /api/session`: who is signed in, and their member record.
#[utoipa::path(get, path = "/api/session", tag = "signin",
    responses((status = 200, description = "The session (signedIn false when none)", body = SessionInfo), super::error::WebErrors))]
pub async fn current(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<SessionInfo>, ApiError> {
    let max_domains = state.web.enrollment.config().server.max_domains_per_member;
    let dev_zone = state.web.settings.dev_zone.is_some();
    let submission = state.web.settings.submission.clone();
    let Some(s) = state.session_of(&headers)? else {
        return Ok(Json(SessionInfo {
            signed_in: false,
            did: None,
            handle: None,
            csrf: None,
            member: None,
            operator: false,
            max_domains,
            dev_zone,
            submission,
        }));
    };
    let member = state
        .store
        .with(|c| {
            let Some(m) = members::get(c, &s.did)? else {
                return Ok(None);
            };
            let domains = members::domains_of(c, &s.did)?
                .into_iter()
                .map(|d| SessionDomain {
                    domain: d.domain,
                    forward_to: d.forward_to,
                    approved: d.approved,
                })
                .collect();
            Ok(Some(SessionMember {
                state: m.state.as_str().to_string(),
                state_reason: m.state_reason,
                domains,
            }))
        })
        .map_err(|_| ApiError::coded(500, "INTERNAL", "internal error"))?;
    Ok(Json(SessionInfo {
        signed_in: true,
        operator: state.web.is_operator(&s.did),
        did: Some(s.did),
        handle: s.handle,
        csrf: Some(s.csrf),
        member,
        max_domains,
        dev_zone,
        submission,
    }))
}

/// `POST /api/signout`: revokes the session's tokens and forgets the session.
#[utoipa::path(post, path = "/api/signout", tag = "signin",
    params(("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses((status = 200, description = "Signed out", body = Object), super::error::WebErrors))]
pub async fn signout(State(state): State<Arc<AppState>>, Changing(s): Changing) -> Response {
    state.close_session(&s).await;
    let cookie = set_cookie(
        SESSION_COOKIE,
        "",
        Duration::ZERO,
        state.web.settings.secure_cookies,
    );
    (
        [(header::SET_COOKIE, cookie)],
        Json(serde_json::json!({ "signedOut": true })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_site() {
        assert_eq!(local_path(Some("/account")), "/account");
        for bad in [
            "//evil.test/x",
            "https://evil.test",
            "/x\r\nSet-Cookie: a",
            "\\\\evil",
            "",
            "/\t/evil.test",
            "/\u{7f}/x",
            "/\u{0}x",
        ] {
            assert_eq!(local_path(Some(bad)), "/enroll", "{bad:?}");
        }
        assert_eq!(local_path(None), "/enroll");
    }
}
