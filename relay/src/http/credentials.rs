//! Member credentials on HTTP (BEHAVIOUR §4.2): `X-Atmos-DID` + `Authorization: Bearer atmos_…`, or
//! Basic with the DID (or handle) as username and the key as password.

use super::error::ApiError;
use crate::accept::SubmitError;
use crate::store::members::Member;
use axum::http::HeaderMap;
use base64::Engine;
use std::net::IpAddr;

/// (username, key) from the request headers.
pub fn from_headers(headers: &HeaderMap) -> Result<(String, String), ApiError> {
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(SubmitError::AuthRequired)?;
    let (scheme, value) = auth.split_once(' ').ok_or(SubmitError::AuthRequired)?;
    let (user, key) = if scheme.eq_ignore_ascii_case("bearer") {
        let did = headers
            .get("x-atmos-did")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .ok_or(SubmitError::AuthRequired)?;
        (did.to_string(), value.trim().to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                SubmitError::InvalidRequest("Authorization: Basic is not valid base64".into())
            })?;
        // The DID itself contains colons: the key is after the last one.
        let (user, key) = decoded.rsplit_once(':').ok_or(SubmitError::AuthRequired)?;
        (user.to_string(), key.to_string())
    } else {
        return Err(SubmitError::AuthRequired.into());
    };
    if !valid_username(&user) {
        return Err(SubmitError::InvalidDid(user).into());
    }
    Ok((user, key))
}

/// A DID (`did:plc:`/`did:web:`) or a handle-shaped name.
fn valid_username(user: &str) -> bool {
    if user.starts_with("did:") {
        return crate::members::valid_did(user);
    }
    crate::address::Domain::parse(user).is_ok()
}

/// Authenticates the request's member (active members only); failures count against the
/// client's network in the same throttle as SMTP.
pub async fn member(
    state: &super::AppState,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<Member, ApiError> {
    let (user, key) = from_headers(headers)?;
    state
        .auth
        .authenticate(&state.store, &user, &key, peer)
        .await
        .map_err(|e| ApiError::Submit(e.into()))
}
