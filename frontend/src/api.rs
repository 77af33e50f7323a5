//! Every call the pages make to the relay's JSON API, with the relay's own types.

use atmos_lexicons::api::{
    AddDomain, ApiErrorBody, Enrolled, NewKey, OwnershipCheck, RecordCheck, SessionInfo,
    SigninRequest, SigninStarted,
};
use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;

/// A failed call: the API's stable code and its message (or a network failure).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    fn network(e: impl std::fmt::Display) -> Self {
        Self {
            code: "NETWORK".into(),
            message: format!(
                "the relay could not be reached ({e}); check your connection and try again"
            ),
            details: None,
        }
    }

    /// `CODE: message`, as the pages show it.
    pub fn shown(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

async fn read<T: DeserializeOwned>(res: Result<Response, gloo_net::Error>) -> Result<T, ApiError> {
    let res = res.map_err(ApiError::network)?;
    if res.ok() {
        return res.json::<T>().await.map_err(ApiError::network);
    }
    let status = res.status();
    match res.json::<ApiErrorBody>().await {
        Ok(b) => Err(ApiError {
            code: b.code,
            message: b.error,
            details: b.details,
        }),
        Err(_) => Err(ApiError {
            code: format!("HTTP_{status}"),
            message: "the relay answered unexpectedly".into(),
            details: None,
        }),
    }
}

/// `GET path` as JSON (the pages' reads of member and admin endpoints).
pub async fn get(path: &str) -> Result<serde_json::Value, ApiError> {
    read(
        Request::get(path)
            .header("Accept", "application/json")
            .send()
            .await,
    )
    .await
}

/// A state-changing call with the session's CSRF token and an optional JSON body.
pub async fn send(
    method: &str,
    path: &str,
    csrf: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ApiError> {
    let req = match method {
        "PUT" => Request::put(path),
        "DELETE" => Request::delete(path),
        _ => Request::post(path),
    };
    let req = changing(req, csrf);
    let res = match body {
        Some(b) => req.json(b).map_err(ApiError::network)?.send().await,
        None => req.send().await,
    };
    read(res).await
}

/// A query string from `pairs`, skipping empty values (`?a=1&b=2`, or empty).
pub fn query(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v.trim())))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn changing(req: RequestBuilder, csrf: &str) -> RequestBuilder {
    req.header("X-CSRF-Token", csrf)
        .header("Accept", "application/json")
}

pub fn enc(s: &str) -> String {
    js_sys_encode(s)
}

/// `encodeURIComponent`.
fn js_sys_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/session`.
pub async fn session() -> Result<SessionInfo, ApiError> {
    read(Request::get("/api/session").send().await).await
}

/// `POST /api/signin`.
pub async fn signin(identifier: &str, return_to: &str) -> Result<SigninStarted, ApiError> {
    let body = SigninRequest {
        identifier: identifier.to_string(),
        return_to: Some(return_to.to_string()),
    };
    let req = Request::post("/api/signin")
        .json(&body)
        .map_err(ApiError::network)?;
    read(req.send().await).await
}

/// `POST /api/signout`.
pub async fn signout(csrf: &str) -> Result<serde_json::Value, ApiError> {
    read(changing(Request::post("/api/signout"), csrf).send().await).await
}

/// `GET /api/ownership?domain=`.
pub async fn ownership(domain: &str) -> Result<OwnershipCheck, ApiError> {
    read(
        Request::get(&format!("/api/ownership?domain={}", enc(domain)))
            .send()
            .await,
    )
    .await
}

/// `POST /api/domains`.
pub async fn add_domain(csrf: &str, domain: &str) -> Result<Enrolled, ApiError> {
    let req = changing(Request::post("/api/domains"), csrf)
        .json(&AddDomain {
            domain: domain.to_string(),
        })
        .map_err(ApiError::network)?;
    read(req.send().await).await
}

/// `GET /api/domains/{domain}/dns`.
pub async fn domain_dns(domain: &str) -> Result<Vec<RecordCheck>, ApiError> {
    read(
        Request::get(&format!("/api/domains/{}/dns", enc(domain)))
            .send()
            .await,
    )
    .await
}

/// `POST /api/key`.
pub async fn regenerate_key(csrf: &str) -> Result<NewKey, ApiError> {
    read(changing(Request::post("/api/key"), csrf).send().await).await
}

/// `POST /api/dev/publish/{domain}` (`atmos dev` only).
pub async fn dev_publish(csrf: &str, domain: &str) -> Result<serde_json::Value, ApiError> {
    read(
        changing(
            Request::post(&format!("/api/dev/publish/{}", enc(domain))),
            csrf,
        )
        .send()
        .await,
    )
    .await
}
