//! The embedded rules engine (SPEC §8). It reads the event log in order, counts each event into
//! the windowed counters it matches, and judges it against every rule `on` its type: a CEL
//! `when` over the event, the member and the counters. Effects (suspend, internal labels, public
//! labels) act back on the relay.
//!
//! Counting, judging, acting and moving the cursor happen in one transaction per batch, so after a
//! crash a batch is either wholly done or wholly redone: no event is counted twice or skipped.
//! Public labels go to the labeler after that commit (its own database). Events written by rules
//! (`actor = rule:<name>`) are counted but not judged, so rules cannot chain into loops.

pub mod eval;
pub mod fixtures;
pub mod spec;

use crate::members::{self, Transition};
use crate::store::events::{self, Event};
use crate::store::rules::{self as state, NewVerdict};
use crate::store::{Store, StoreError, labels, members as member_rows, now_ms};
use crate::warming::Tier;
use atmos_labeler::Labeler;
use eval::{MemberView, Scope};
use spec::{Effect, Entity, Rules};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events judged per transaction.
const BATCH: u32 = 256;
const DAY_MS: i64 = 86_400_000;

/// A public label to publish once the batch is committed.
struct Emission {
    did: String,
    val: String,
    neg: bool,
    rule: String,
}

/// The engine over the relay's store.
pub struct Engine {
    store: Arc<Store>,
    rules: Arc<Rules>,
    labeler: Option<Arc<Labeler>>,
}

impl Engine {
    /// An engine judging with `rules`; public labels go to `labeler` when there is one.
    pub fn new(store: Arc<Store>, rules: Arc<Rules>, labeler: Option<Arc<Labeler>>) -> Self {
        Self {
            store,
            rules,
            labeler,
        }
    }

    /// Follows the event log until `shutdown`, looking for new events every `interval`.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            let engine = self.clone();
            match tokio::task::spawn_blocking(move || engine.step()).await {
                Ok(Ok(n)) if n > 0 && !shutdown.is_cancelled() => continue,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "rules: cannot process events"),
                Err(e) => tracing::error!(error = %e, "rules: worker failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Processes the next batch of events; returns how many there were.
    pub fn step(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let (count, emissions) = self.store.write(|tx| {
            let cursor = state::cursor(tx)?;
            let batch = events::after(tx, cursor, BATCH)?;
            let mut emissions = Vec::new();
            for event in &batch {
                self.judge(tx, event, now, &mut emissions)?;
            }
            if let Some(last) = batch.last() {
                state::set_cursor(tx, last.id)?;
                // Now and then, forget buckets older than the longest window.
                if last.id / 1024 != cursor / 1024 {
                    state::prune(tx, now / 60_000 - self.longest_window_minutes())?;
                }
            }
            Ok((batch.len(), emissions))
        })?;
        for e in emissions {
            self.publish(e);
        }
        Ok(count)
    }

    fn longest_window_minutes(&self) -> i64 {
        self.rules
            .counters
            .iter()
            .flat_map(|c| c.windows.iter().map(|(_, m)| *m))
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Counts and judges one event.
    fn judge(
        &self,
        tx: &rusqlite::Connection,
        e: &Event,
        now: i64,
        emissions: &mut Vec<Emission>,
    ) -> Result<(), StoreError> {
        let event = serde_json::json!({
            "id": e.id, "at": e.at, "type": e.kind, "did": e.did, "message_id": e.message_id,
            "actor": e.actor, "data": e.data,
        });
        let no_counters = BTreeMap::new();
        let bare = Scope {
            event: &event,
            member: None,
            counters: &no_counters,
        };
        let minute = e.at / 60_000;
        for c in self
            .rules
            .counters
            .iter()
            .filter(|c| c.on.contains(&e.kind))
        {
            let Some(entity) = entity_of(e, c.by) else {
                continue;
            };
            let counts = match &c.condition {
                None => true,
                Some(p) => eval::test(p, &bare).unwrap_or_else(|err| {
                    tracing::warn!(counter = %c.name, event = e.id, error = %err, "rules: counter condition failed");
                    false
                }),
            };
            if counts {
                state::bump(tx, &c.name, &entity, minute, 1)?;
            }
        }
        let by_rule = e.actor.as_deref().is_some_and(|a| a.starts_with("rule:"));
        let matching: Vec<_> = self
            .rules
            .rules
            .iter()
            .filter(|r| r.on.contains(&e.kind))
            .collect();
        if by_rule || matching.is_empty() {
            return Ok(());
        }
        let member = match &e.did {
            Some(did) => member_view(tx, did, e.at, now)?,
            None => None,
        };
        let mut counters = BTreeMap::new();
        for c in &self.rules.counters {
            let Some(entity) = entity_of(e, c.by) else {
                continue;
            };
            for (suffix, minutes) in &c.windows {
                let total = state::sum(tx, &c.name, &entity, minute - minutes + 1)?;
                counters.insert(format!("{}_{suffix}", c.name), total);
            }
        }
        let scope = Scope {
            event: &event,
            member: member.as_ref(),
            counters: &counters,
        };
        for rule in matching {
            let fired = eval::test(&rule.when, &scope).unwrap_or_else(|err| {
                tracing::warn!(rule = %rule.name, event = e.id, error = %err, "rules: condition failed");
                false
            });
            let (true, Some(did)) = (fired, e.did.as_deref()) else {
                continue;
            };
            let actor = format!("rule:{}", rule.name);
            for effect in &rule.effects {
                let shadow = rule.shadow || effect.is_shadow();
                let applied =
                    !shadow && self.act(tx, did, effect, &actor, &rule.name, now, emissions)?;
                if applied || shadow {
                    state::record(
                        tx,
                        &NewVerdict {
                            at: now,
                            event_id: e.id,
                            rule: &rule.name,
                            did: Some(did),
                            effect: &effect.describe(),
                            shadow,
                            applied,
                        },
                    )?;
                    tracing::info!(rule = %rule.name, did, effect = %effect.describe(), shadow, "rules: verdict");
                }
            }
        }
        Ok(())
    }

    /// Carries out one effect; false when it changed nothing.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        tx: &rusqlite::Connection,
        did: &str,
        effect: &Effect,
        actor: &str,
        rule: &str,
        now: i64,
        emissions: &mut Vec<Emission>,
    ) -> Result<bool, StoreError> {
        Ok(match effect {
            Effect::Suspend(reason) => {
                members::transition_in(tx, did, Transition::Suspend, actor, Some(reason), now)?
                    .is_ok()
            }
            Effect::AddLabel { label, expires } => {
                if labels::active(tx, did, now)?.contains(label) {
                    false
                } else {
                    let expires_at = expires.map(|d| now + d.as_millis() as i64);
                    members::set_label_in(tx, did, label, true, expires_at, actor, now)?
                        .unwrap_or(false)
                }
            }
            Effect::RemoveLabel(label) => {
                members::set_label_in(tx, did, label, false, None, actor, now)?.unwrap_or(false)
            }
            Effect::Emit { val, neg } => {
                emissions.push(Emission {
                    did: did.to_string(),
                    val: val.clone(),
                    neg: *neg,
                    rule: rule.to_string(),
                });
                self.labeler.is_some()
            }
        })
    }

    fn publish(&self, e: Emission) {
        let Some(labeler) = &self.labeler else {
            return;
        };
        let reason = format!("rule {}", e.rule);
        if let Err(err) =
            labeler.apply(&e.did, &e.val, !e.neg, &reason, &format!("rule:{}", e.rule))
        {
            tracing::error!(did = %e.did, val = %e.val, error = %err, "rules: cannot publish label");
        }
    }
}

/// The entity a counter keys this event by.
fn entity_of(e: &Event, by: Entity) -> Option<String> {
    match by {
        Entity::Did => e.did.clone(),
        Entity::RecipientDomain => e.data["recipient"]
            .as_str()
            .and_then(crate::accept::domain_of),
    }
}

/// The member as rules see it at event time `at` (labels as they are `now`).
fn member_view(
    tx: &rusqlite::Connection,
    did: &str,
    at: i64,
    now: i64,
) -> Result<Option<MemberView>, StoreError> {
    let Some(m) = member_rows::get(tx, did)? else {
        return Ok(None);
    };
    Ok(Some(MemberView {
        state: m.state.as_str().to_string(),
        tier: Tier::at(m.approved_at, at).name().to_string(),
        age_days: m.approved_at.map(|a| (at - a).max(0) / DAY_MS).unwrap_or(0),
        labels: labels::active(tx, did, now)?,
    }))
}
