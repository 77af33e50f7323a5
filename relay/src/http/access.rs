//! Who is calling the JSON API. A member: its API key (active members, the SMTP rules), or its
//! web session (any state, so a pending or suspended member can read its standing). An
//! operator: the admin token (API and CLI), or the web session of a DID in `[web]
//! operator_dids` — the token never enters a browser. Web sessions carry the CSRF header on
//! every request that changes state.

use super::AppState;
use super::csrf;
use super::error::ApiError;
use crate::store::members::{self as member_rows, Member};
use atmos_labeler::admin::AdminError;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Whether `parts` changes state (anything but GET and HEAD).
pub fn changes_state(parts: &Parts) -> bool {
    !matches!(parts.method, Method::GET | Method::HEAD)
}

/// The member a request acts for: by API key, or by web session.
pub struct Account(pub Member);

impl axum::extract::FromRequestParts<Arc<AppState>> for Account {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            let peer = super::peer_of(&parts.extensions);
            return super::credentials::member(state, &parts.headers, peer)
                .await
                .map(Account);
        }
        let Some(s) = state.session_of(&parts.headers)? else {
            return Err(crate::accept::SubmitError::AuthRequired.into());
        };
        if changes_state(parts) && !csrf::carries(parts, &s.csrf) {
            return Err(csrf::refused());
        }
        state
            .store
            .with(|c| member_rows::get(c, &s.did))
            .map_err(|_| ApiError::coded(500, "INTERNAL", "internal error"))?
            .map(Account)
            .ok_or_else(|| {
                ApiError::coded(
                    404,
                    "NOT_A_MEMBER",
                    "you are signed in but not a member yet: enroll a domain first",
                )
            })
    }
}

/// The operator of an admin request: `admin` (the token) or the operator's DID.
pub struct Operator(pub String);

/// Admits the admin token, or an operator's web session (with CSRF when `changing`).
pub fn admit_operator(
    state: &AppState,
    parts: &Parts,
    changing: bool,
) -> Result<String, AdminError> {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return atmos_labeler::admin::authorize(&parts.headers, state.admin_token.as_deref())
            .map(|()| "admin".to_string());
    }
    let session = state
        .session_of(&parts.headers)
        .map_err(|_| atmos_labeler::admin::internal("reading the session"))?;
    let Some(s) = session else {
        return Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "ADMIN_AUTH_FAILED",
            "sign in as an operator, or send the admin token".into(),
        ));
    };
    if !state.web.settings.operator_dids.iter().any(|d| d == &s.did) {
        return Err(AdminError(
            StatusCode::FORBIDDEN,
            "NOT_OPERATOR",
            "this account is not an operator of this relay".into(),
        ));
    }
    if changing && !csrf::carries(parts, &s.csrf) {
        return Err(AdminError(
            StatusCode::FORBIDDEN,
            csrf::REFUSED.0,
            csrf::REFUSED.1.into(),
        ));
    }
    Ok(s.did)
}

impl axum::extract::FromRequestParts<Arc<AppState>> for Operator {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, AdminError> {
        admit_operator(state, parts, changes_state(parts)).map(Operator)
    }
}

/// The labeler's admin endpoints behind the same rule.
pub struct OperatorGate(pub Arc<AppState>);

impl atmos_labeler::admin::Gate for OperatorGate {
    fn admit<'a>(
        &'a self,
        parts: &'a Parts,
        changing: bool,
    ) -> BoxFuture<'a, Result<String, AdminError>> {
        Box::pin(async move { admit_operator(&self.0, parts, changing) })
    }
}
