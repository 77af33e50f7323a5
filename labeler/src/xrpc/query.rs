//! `com.atproto.label.queryLabels`: labels by subject pattern and source, paged by `seq`.

use super::XrpcError;
use crate::Labeler;
use crate::store::LabelQuery;
use axum::Json;
use axum::extract::{RawQuery, State};
use std::sync::Arc;

/// Largest page (lexicon maximum).
pub const MAX_LIMIT: u32 = 250;
const DEFAULT_LIMIT: u32 = 50;

/// Parses the query string; repeated `uriPatterns` and `sources` are arrays in XRPC.
pub fn parse(raw: &str) -> Result<LabelQuery, XrpcError> {
    let mut q = LabelQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "uriPatterns" => q.uri_patterns.push(v.into_owned()),
            "sources" => q.sources.push(v.into_owned()),
            "limit" => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| XrpcError::invalid(format!("limit must be 1-{MAX_LIMIT}")))?;
            }
            // An empty cursor is the first page.
            "cursor" if v.is_empty() => {}
            "cursor" => {
                q.after =
                    v.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
                        XrpcError::invalid("cursor must be a non-negative integer")
                    })?;
            }
            _ => {}
        }
    }
    if q.uri_patterns.is_empty() {
        return Err(XrpcError::invalid("uriPatterns is required"));
    }
    if let Some(bad) = q
        .uri_patterns
        .iter()
        .find(|p| p.is_empty() || p.trim_end_matches('*').contains('*'))
    {
        return Err(XrpcError::invalid(format!(
            "uriPattern {bad:?}: '*' is allowed only at the end"
        )));
    }
    Ok(q)
}

/// The `queryLabels` answer.
#[derive(serde::Serialize)]
pub struct QueryOutput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    labels: Vec<crate::label::JsonLabel<'a>>,
}

/// `GET /xrpc/com.atproto.label.queryLabels`.
#[utoipa::path(get, path = "/xrpc/com.atproto.label.queryLabels", tag = "labeler",
    params(
        ("uriPatterns" = Vec<String>, Query, description = "Subjects; a trailing '*' makes a prefix", explode = true, style = Form),
        ("sources" = Option<Vec<String>>, Query, explode = true, style = Form),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 250),
        ("cursor" = Option<String>, Query, description = "seq of the last label seen"),
    ),
    responses(
        (status = 200, description = "Labels (sig as {\"$bytes\": base64})", body = Object),
        (status = 400, description = "InvalidRequest", body = Object),
        (status = 500, description = "InternalServerError", body = Object),
    ))]
pub async fn query_labels(
    State(labeler): State<Arc<Labeler>>,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, XrpcError> {
    let q = parse(raw.as_deref().unwrap_or(""))?;
    // An indexed SQLite read takes microseconds; not worth a blocking-pool hop.
    let rows = labeler.store.query(&q).map_err(XrpcError::internal)?;
    let out = QueryOutput {
        cursor: rows.last().map(|r| r.seq.to_string()),
        labels: rows.iter().map(|r| r.label.json()).collect(),
    };
    Ok(axum::response::IntoResponse::into_response(Json(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repeated_parameters_and_checks_bounds() {
        let q = parse("uriPatterns=did%3Aplc%3Aa&uriPatterns=at%3A%2F%2F*&sources=did%3Aweb%3Ax&limit=10&cursor=5")
            .expect("valid");
        assert_eq!(q.uri_patterns, ["did:plc:a", "at://*"]);
        assert_eq!(q.sources, ["did:web:x"]);
        assert_eq!((q.limit, q.after), (10, 5));
        assert!(parse("uriPatterns=*&limit=251").is_err());
        assert!(parse("uriPatterns=*&limit=0").is_err());
        assert!(parse("uriPatterns=*&cursor=-1").is_err());
        assert!(parse("limit=5").is_err());
        assert!(parse("uriPatterns=a*b").is_err());
    }
}
