//! Verdicts from an external rules engine. Each message on the results topic is an Osprey
//! execution result (its extracted features as JSON); the relay reads the action id (`__action_id`
//! or `action_id`: the id of one of its own events, which names the member) and the verdicts
//! (`__verdicts` or `verdicts`), and applies them through the same code as embedded rules:
//!
//! - `suspend` suspends the member;
//! - `emit:<val>` / `emit:-<val>` publishes or negates a public label;
//! - `remove:<label>` removes an internal label;
//! - `<label>` or `<label>@<duration>` adds an internal label (expiring after the duration);
//! - a `shadow:` label is recorded, never enforced.
//!
//! The offset is committed after the verdicts are, so a crash re-reads a message; applying one
//! twice changes nothing (effects are idempotent and a public label is only re-published when its
//! state differs).

use super::Outcome;
use crate::rules::spec::Effect;
use crate::rules::{Emission, enforce, publish};
use crate::store::{Store, StoreError, events, now_ms};
use atmos_labeler::Labeler;
use std::sync::Arc;

/// The rule name external verdicts are recorded under.
pub const SOURCE: &str = "osprey";

/// One execution result, as the relay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalResult {
    pub action_id: i64,
    pub verdicts: Vec<Effect>,
}

/// Why a message was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no action id")]
    NoActionId,
    #[error("verdict {0:?} is not understood")]
    BadVerdict(String),
}

/// Reads one result message.
pub fn parse(payload: &[u8]) -> Result<ExternalResult, ResultError> {
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ResultError::NotJson(e.to_string()))?;
    let id = ["__action_id", "action_id", "ActionId"]
        .iter()
        .find_map(|k| match &v[*k] {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .ok_or(ResultError::NoActionId)?;
    let verdicts = ["__verdicts", "verdicts"]
        .iter()
        .find_map(|k| v[*k].as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(verdict)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ExternalResult {
        action_id: id,
        verdicts,
    })
}

/// One verdict string as an effect.
pub fn verdict(text: &str) -> Result<Effect, ResultError> {
    let bad = || ResultError::BadVerdict(text.to_string());
    if text == "suspend" {
        return Ok(Effect::Suspend(format!("{SOURCE} verdict")));
    }
    if let Some(val) = text.strip_prefix("emit:") {
        let (val, neg) = match val.strip_prefix('-') {
            Some(v) => (v, true),
            None => (val, false),
        };
        return Effect::emit(val, neg).ok_or_else(bad);
    }
    if let Some(l) = text.strip_prefix("remove:") {
        return Effect::remove_label(l).ok_or_else(bad);
    }
    let (name, expires) = match text.split_once('@') {
        Some((name, d)) => (name, Some(humantime::parse_duration(d).map_err(|_| bad())?)),
        None => (text, None),
    };
    Effect::add_label(name, expires).ok_or_else(bad)
}

/// Parses one result message and applies its verdicts (in the relay process, which owns the
/// labeler).
pub async fn apply_payload(
    store: &Arc<Store>,
    labeler: Option<&Arc<Labeler>>,
    payload: &[u8],
) -> Outcome {
    let result = match parse(payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "kafka: result skipped");
            return Outcome::Done;
        }
    };
    if result.verdicts.is_empty() {
        return Outcome::Done;
    }
    let store = store.clone();
    let publishes = labeler.is_some();
    let applied =
        tokio::task::spawn_blocking(move || apply_verdicts(&store, &result, publishes, now_ms()))
            .await
            .map_err(|e| StoreError::Invalid(e.to_string()))
            .and_then(|r| r);
    match applied {
        Ok(emissions) => {
            for e in emissions {
                publish(labeler.map(|l| l.as_ref()), e);
            }
            Outcome::Done
        }
        Err(e) => {
            tracing::error!(error = %e, "kafka: cannot apply verdicts");
            Outcome::Failed
        }
    }
}

/// Applies one result's verdicts to the member of its event, in one transaction.
pub(crate) fn apply_verdicts(
    store: &Store,
    result: &ExternalResult,
    publishes: bool,
    now: i64,
) -> Result<Vec<Emission>, StoreError> {
    store.write(|tx| {
        let did = events::did_of(tx, result.action_id)?;
        let Some(did) = did else {
            tracing::warn!(
                action_id = result.action_id,
                "kafka: verdicts for an event without a member, skipped"
            );
            return Ok(Vec::new());
        };
        let mut emissions = Vec::new();
        for effect in &result.verdicts {
            emissions.extend(enforce(
                tx,
                &did,
                effect,
                SOURCE,
                effect.is_shadow(),
                result.action_id,
                now,
                publishes,
            )?);
        }
        Ok(emissions)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_and_verdicts_parse() {
        let r = parse(
            br#"{"__action_id": 7, "__verdicts": ["suspend", "burst_warming@24h", "remove:highly_trusted", "emit:-clean-sender", "shadow:watch"]}"#,
        )
        .unwrap();
        assert_eq!(r.action_id, 7);
        assert_eq!(
            r.verdicts,
            vec![
                Effect::Suspend("osprey verdict".into()),
                Effect::AddLabel {
                    label: "burst_warming".into(),
                    expires: Some(Duration::from_secs(86_400))
                },
                Effect::RemoveLabel("highly_trusted".into()),
                Effect::Emit {
                    val: "clean-sender".into(),
                    neg: true
                },
                Effect::AddLabel {
                    label: "shadow:watch".into(),
                    expires: None
                },
            ]
        );
        assert!(r.verdicts[4].is_shadow());
        assert_eq!(
            parse(br#"{"action_id": "9"}"#).unwrap(),
            ExternalResult {
                action_id: 9,
                verdicts: vec![]
            }
        );
        assert_eq!(
            parse(b"nope").unwrap_err().to_string().get(..8),
            Some("not JSON")
        );
        assert_eq!(
            parse(br#"{"__verdicts": []}"#),
            Err(ResultError::NoActionId)
        );
        assert_eq!(
            parse(br#"{"__action_id": 1, "__verdicts": ["bad label"]}"#),
            Err(ResultError::BadVerdict("bad label".into()))
        );
        assert!(verdict("x@soon").is_err());
        assert!(verdict("emit:BAD").is_err());
    }
}
