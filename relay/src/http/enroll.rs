//! The enrollment API the `/enroll` wizard calls (BEHAVIOUR §3), JSON under `/api/`: the ownership
//! check, adding / removing / re-enrolling a domain, the per-record DNS check, regenerating the
//! API key, and (in `atmos dev`) publishing a domain's records to the embedded DNS zone.

use super::AppState;
use super::error::ApiError;
use super::web_session::{Changing, PerDid, Session, SessionRepo};
use crate::enrollment::dnscheck::RecordCheck;
use crate::enrollment::ownership::OwnershipCheck;
use crate::enrollment::{EnrollError, Enrolled};
use atmos_lexicons::api::{AddDomain, NewKey};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use std::sync::Arc;

impl From<EnrollError> for ApiError {
    fn from(e: EnrollError) -> Self {
        if let EnrollError::RateLimited { retry_after, .. } = e {
            return ApiError::TooMany {
                message: e.to_string(),
                retry_after,
            };
        }
        let details = match &e {
            EnrollError::NotProven { check, .. } => serde_json::to_value(check).ok(),
            _ => None,
        };
        ApiError::Coded {
            status: e.status(),
            code: e.code(),
            message: e.to_string(),
            details,
        }
    }
}

/// `?domain=` of the ownership check.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DomainQuery {
    pub domain: String,
}

/// `GET /api/ownership?domain=`: whether the signed-in DID has proven the domain, and what DNS
/// serves.
#[utoipa::path(get, path = "/api/ownership", tag = "enroll", params(DomainQuery),
    responses((status = 200, description = "The check", body = OwnershipCheck), super::error::WebErrors))]
pub async fn ownership(
    State(state): State<Arc<AppState>>,
    Session(s): Session,
    query: Result<Query<DomainQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OwnershipCheck>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::coded(400, "INVALID_REQUEST", format!("query: {e}")))?;
    PerDid::take(&state.web.per_did.dns_checks, &s.did, "DNS checks")?;
    Ok(Json(
        state.web.enrollment.ownership(&s.did, &q.domain).await?,
    ))
}

/// `POST /api/domains`: enrolls a proven domain — keys, the API key (first domain only, shown
/// once), the attestation in the member's repo — and leaves the member pending approval.
#[utoipa::path(post, path = "/api/domains", tag = "enroll", request_body = AddDomain,
    params(("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses((status = 200, description = "Enrolled", body = Enrolled), super::error::WebErrors))]
pub async fn add(
    State(state): State<Arc<AppState>>,
    super::Peer(peer): super::Peer,
    Changing(s): Changing,
    body: Result<Json<AddDomain>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Enrolled>, ApiError> {
    let Json(req) = body
        .map_err(|e| ApiError::coded(400, "INVALID_REQUEST", format!("body: {}", e.body_text())))?;
    PerDid::take(&state.web.per_did.domain_adds, &s.did, "domains added")?;
    state.web.per_did.take_key_work(peer)?;
    // The handle as it is now, not as it was at sign-in: a session outlives a handle's owner.
    let handle = current_handle(&state, &s.did).await;
    let (did, repo) = SessionRepo::of(&state, s);
    let handle = match &handle {
        Ok(h) => crate::enrollment::HandleNow::Resolved(h.as_deref()),
        Err(()) => crate::enrollment::HandleNow::Unknown,
    };
    Ok(Json(
        state
            .web
            .enrollment
            .add_domain(&did, handle, &req.domain, &repo)
            .await?,
    ))
}

/// The DID's handle resolved now: `Ok(None)` when the DID names none that resolves back to it,
/// `Err` when the DID could not be resolved at all (the stored handle is then left alone).
async fn current_handle(state: &AppState, did: &str) -> Result<Option<String>, ()> {
    state.web.identity.forget(did);
    let identity = state.web.identity.resolve(did).await.map_err(|_| ())?;
    Ok(identity.handle.map(|h| h.to_string()))
}

/// `GET /api/domains/{domain}/dns`: each record to publish, checked against DNS now.
#[utoipa::path(get, path = "/api/domains/{domain}/dns", tag = "enroll", params(("domain" = String, Path)),
    responses((status = 200, description = "Per-record checks", body = Vec<RecordCheck>), super::error::WebErrors))]
pub async fn dns(
    State(state): State<Arc<AppState>>,
    Session(s): Session,
    Path(domain): Path<String>,
) -> Result<Json<Vec<RecordCheck>>, ApiError> {
    PerDid::take(&state.web.per_did.dns_checks, &s.did, "DNS checks")?;
    Ok(Json(
        state.web.enrollment.check_domain(&s.did, &domain).await?,
    ))
}

/// `DELETE /api/domains/{domain}`: the domain leaves the relay; its keys are deleted and its
/// attestation removed from the repo.
#[utoipa::path(delete, path = "/api/domains/{domain}", tag = "enroll", params(("domain" = String, Path),
        ("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses((status = 200, description = "Removed", body = Object), super::error::WebErrors))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Changing(s): Changing,
    Path(domain): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (did, repo) = SessionRepo::of(&state, s);
    state
        .web
        .enrollment
        .remove_domain(&did, &domain, &repo)
        .await?;
    Ok(Json(
        serde_json::json!({ "domain": domain.to_ascii_lowercase(), "removed": true }),
    ))
}

/// `POST /api/domains/{domain}/rotate`: re-enrolls the domain with new DKIM keys and updates
/// the attestation.
#[utoipa::path(post, path = "/api/domains/{domain}/rotate", tag = "enroll", params(("domain" = String, Path),
        ("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses((status = 200, description = "New keys", body = Enrolled), super::error::WebErrors))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    super::Peer(peer): super::Peer,
    Changing(s): Changing,
    Path(domain): Path<String>,
) -> Result<Json<Enrolled>, ApiError> {
    PerDid::take(&state.web.per_did.rotations, &s.did, "re-enrollments")?;
    state.web.per_did.take_key_work(peer)?;
    let (did, repo) = SessionRepo::of(&state, s);
    Ok(Json(
        state
            .web
            .enrollment
            .rotate_domain(&did, &domain, &repo)
            .await?,
    ))
}

/// `POST /api/key`: a new API key; the old one stops working at once.
#[utoipa::path(post, path = "/api/key", tag = "enroll",
    params(("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses((status = 200, description = "The new key, once", body = NewKey), super::error::WebErrors))]
pub async fn regenerate_key(
    State(state): State<Arc<AppState>>,
    super::Peer(peer): super::Peer,
    Changing(s): Changing,
) -> Result<Json<NewKey>, ApiError> {
    PerDid::take(&state.web.per_did.new_keys, &s.did, "new keys")?;
    state.web.per_did.take_key_work(peer)?;
    Ok(Json(NewKey {
        api_key: state.web.enrollment.regenerate_key(&s.did).await?,
    }))
}

/// `POST /api/dev/publish/{domain}` (`atmos dev` only): puts the domain's ownership and DNS
/// records into the embedded DNS zone, as the member would at their DNS provider.
#[utoipa::path(post, path = "/api/dev/publish/{domain}", tag = "enroll", params(("domain" = String, Path),
        ("X-CSRF-Token" = String, Header, description = "The session's CSRF token")),
    responses((status = 200, description = "Published", body = Object), super::error::WebErrors))]
pub async fn dev_publish(
    State(state): State<Arc<AppState>>,
    Changing(s): Changing,
    Path(domain): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(zone) = &state.web.settings.dev_zone else {
        return Err(ApiError::NotFound("the development DNS zone".into()));
    };
    let domain = crate::address::Domain::parse(&domain)
        .map_err(|e| ApiError::coded(400, "INVALID_REQUEST", format!("domain: {e}")))?;
    if !zone.serves(&domain) {
        return Err(ApiError::coded(
            400,
            "INVALID_REQUEST",
            format!("the dev zone serves only *.localhost and the demo domains, not {domain}"),
        ));
    }
    // Another member's domain is theirs to publish, even in the dev zone.
    let owner = state
        .store
        .with(|c| crate::store::members::domain_owner(c, domain.as_str()))
        .map_err(|_| ApiError::coded(500, "INTERNAL", "internal error"))?;
    if owner.is_some_and(|o| o != s.did) {
        return Err(ApiError::NotFound(format!("your domain {domain}")));
    }
    let mut records = vec![(domain.under("_atmos"), format!("did={}", s.did))];
    let keys = state
        .store
        .with(|c| crate::store::dkim_keys::current(c, domain.as_str()))
        .map_err(|_| ApiError::coded(500, "INTERNAL", "internal error"))?;
    for r in crate::records::member(
        state.web.enrollment.config(),
        &s.did,
        domain.as_str(),
        &keys,
    ) {
        if r.kind == "TXT" {
            records.push((r.name, r.value));
        }
    }
    zone.publish(&records).await;
    Ok(Json(
        serde_json::json!({ "domain": domain, "published": records.len() }),
    ))
}

/// `GET /api/domains/{domain}/attestation`: whether the member's repo holds the attestation with
/// the relay's current selectors.
#[utoipa::path(get, path = "/api/domains/{domain}/attestation", tag = "enroll", params(("domain" = String, Path)),
    responses((status = 200, description = "The record against the relay's keys", body = atmos_lexicons::api::AttestationCheck), super::error::WebErrors))]
pub async fn attestation(
    State(state): State<Arc<AppState>>,
    Session(s): Session,
    Path(domain): Path<String>,
) -> Result<Json<atmos_lexicons::api::AttestationCheck>, ApiError> {
    // A read from the member's PDS: counted with the DNS checks.
    PerDid::take(&state.web.per_did.dns_checks, &s.did, "checks")?;
    let (did, repo) = SessionRepo::of(&state, s);
    Ok(Json(
        state
            .web
            .enrollment
            .check_attestation(&did, &domain, &repo)
            .await?,
    ))
}
