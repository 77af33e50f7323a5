//! The embedded rules engine (BEHAVIOUR §8). It reads the event log in order, counts each event into
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
use crate::spool::Spool;
use crate::store::events::{self, Event};
use crate::store::rules::{self as state, NewVerdict};
use crate::store::{Store, StoreError, labels, members as member_rows, now_ms};
use crate::warming::Tier;
use atmos_labeler::Labeler;
use eval::MemberView;
use spec::{Effect, Entity, Rules};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events judged per spool job: about 8 ms of counting and CEL (≈120 µs an event), so the
/// commits queued behind a batch wait little.
const BATCH: u32 = 64;
const DAY_MS: i64 = 86_400_000;

/// A public label to publish once the verdict is committed.
pub(crate) struct Emission {
    did: String,
    val: String,
    neg: bool,
    source: String,
}

/// The engine over the relay's store.
pub struct Engine {
    store: Arc<Store>,
    /// Swapped whole by a reload; each batch judges with one snapshot.
    rules: std::sync::RwLock<Arc<Rules>>,
    labeler: Option<Arc<Labeler>>,
    /// Conditions that failed to evaluate so far (also `atmos_rule_condition_errors_total`).
    condition_errors: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// An engine judging with `rules`; public labels go to `labeler` when there is one.
    pub fn new(store: Arc<Store>, rules: Arc<Rules>, labeler: Option<Arc<Labeler>>) -> Self {
        Self {
            store,
            rules: std::sync::RwLock::new(rules),
            condition_errors: Default::default(),
            labeler,
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Judges with `rules` from the next batch on (a reload; counters keep their buckets by name).
    pub fn replace(&self, rules: Arc<Rules>) {
        match self.rules.write() {
            Ok(mut r) => *r = rules,
            Err(poisoned) => *poisoned.into_inner() = rules,
        }
    }

    /// Follows the event log until `shutdown`, looking for new events every `interval`.
    ///
    /// Each batch is judged inside the spool writer's group transaction rather than in a write
    /// transaction of its own: two writers on one SQLite file wait for each other in SQLite's
    /// busy handler, and a batch of judging held the acceptance path's commits back by 100–400
    /// ms under load (docs/benchmarks.md, "HTTP send API"). In the writer a batch only queues
    /// behind (or ahead of) commits, a few milliseconds.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        spool: Spool,
        shutdown: CancellationToken,
    ) {
        loop {
            let engine = self.clone();
            let now = now_ms();
            let rules = self.rules();
            match spool.write(move |tx| engine.step_in(tx, &rules, now)).await {
                Ok((n, emissions)) => {
                    for e in emissions {
                        publish(self.labeler.as_deref(), e);
                    }
                    if n > 0 && !shutdown.is_cancelled() {
                        continue;
                    }
                }
                Err(e) => tracing::error!(error = %e, "rules: cannot process events"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Processes the next batch of events in a transaction of its own (tests, the CLI, the
    /// benchmark); returns how many there were.
    pub fn step(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let rules = self.rules();
        let (count, emissions) = self.store.write(|tx| self.step_in(tx, &rules, now))?;
        for e in emissions {
            publish(self.labeler.as_deref(), e);
        }
        Ok(count)
    }

    /// Counts and judges the next batch inside `tx`; returns how many events there were and
    /// the public labels to publish once `tx` commits.
    fn step_in(
        &self,
        tx: &rusqlite::Connection,
        rules: &Rules,
        now: i64,
    ) -> Result<(usize, Vec<Emission>), StoreError> {
        // On its first run the engine counts the history its windows cover, but judges only
        // what happens from then on (old spikes must not suspend anyone today).
        let (cursor, first_run) = match state::cursor(tx)? {
            Some(c) => (c, false),
            None => {
                let since = now - longest_window_minutes(rules) * 60_000;
                (state::initial_cursor(tx, since)?, true)
            }
        };
        let batch = events::after(tx, cursor.event, BATCH)?;
        let mut emissions = Vec::new();
        eval::with_root(|root| {
            for event in &batch {
                let judge = event.id > cursor.judge_from;
                self.judge(rules, root, tx, event, judge, now, &mut emissions)?;
            }
            Ok::<_, StoreError>(())
        })?;
        let last = batch.last().map_or(cursor.event, |e| e.id);
        if first_run || !batch.is_empty() {
            state::set_cursor(
                tx,
                state::Cursor {
                    event: last,
                    judge_from: cursor.judge_from,
                },
            )?;
        }
        if !batch.is_empty() {
            // Now and then, forget buckets older than the longest window.
            if last / 1024 != cursor.event / 1024 {
                state::prune(tx, now / 60_000 - longest_window_minutes(rules))?;
            }
        }
        Ok((batch.len(), emissions))
    }

    /// Conditions that failed to evaluate so far.
    pub fn condition_errors(&self) -> u64 {
        self.condition_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn condition_failed(&self) {
        self.condition_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::rule_condition_failed();
    }

    /// Counts one event, and judges it when `judge` (CEL scopes are children of `root`).
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        rules: &Rules,
        root: &cel::Context<'static, 'static>,
        tx: &rusqlite::Connection,
        e: &Event,
        judge: bool,
        now: i64,
        emissions: &mut Vec<Emission>,
    ) -> Result<(), StoreError> {
        let event = serde_json::json!({
            "id": e.id, "at": e.at, "type": e.kind, "did": e.did, "message_id": e.message_id,
            "actor": e.actor, "data": e.data,
        });
        // The event becomes CEL variables once, for counter conditions and rules alike.
        let base = std::cell::OnceCell::new();
        let base = || base.get_or_init(|| eval::Prepared::event(root, &event));
        let minute = e.at / 60_000;
        let counting: Vec<_> = rules
            .counters
            .iter()
            .filter(|c| c.on.contains(&e.kind))
            .collect();
        for c in counting {
            let Some(entity) = entity_of(e, c.by) else {
                continue;
            };
            let counts = match &c.condition {
                None => Ok(true),
                Some(p) => base().as_ref().map_err(Clone::clone).and_then(|ctx| ctx.test(p)),
            }
            .unwrap_or_else(|err| {
                tracing::warn!(counter = %c.name, event = e.id, error = %err, "rules: counter condition failed");
                self.condition_failed();
                false
            });
            if counts {
                state::bump(tx, &c.name, &entity, minute, 1)?;
            }
        }
        let by_rule = e.actor.as_deref().is_some_and(|a| a.starts_with("rule:"));
        let matching: Vec<_> = rules
            .rules
            .iter()
            .filter(|r| r.on.contains(&e.kind))
            .collect();
        if !judge || by_rule || matching.is_empty() {
            return Ok(());
        }
        // Rules judge members. A stranger's refused attempt (no DID, or a DID that is no
        // member) is counted above, but there is no one to act on, and `member.*` would not
        // evaluate.
        let member = match &e.did {
            Some(did) => member_view(tx, did, e.at, now)?,
            None => None,
        };
        let Some(member) = member else {
            return Ok(());
        };
        // Only the totals some matching rule reads: each is a query.
        let any = matching.iter().any(|r| r.reads.is_none());
        let read = |key: &str| {
            any || matching
                .iter()
                .any(|r| r.reads.as_ref().is_some_and(|keys| keys.contains(key)))
        };
        let mut counters = BTreeMap::new();
        for c in &rules.counters {
            let Some(entity) = entity_of(e, c.by) else {
                continue;
            };
            for (suffix, minutes) in &c.windows {
                let key = format!("{}_{suffix}", c.name);
                if read(&key) {
                    let total = state::sum(tx, &c.name, &entity, *minutes, minute)?;
                    counters.insert(key, total);
                }
            }
        }
        let prepared = base()
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|ctx| ctx.with_member(&member, &counters));
        for rule in matching {
            let fired = match &prepared {
                Ok(ctx) => ctx.test(&rule.when),
                Err(err) => Err(err.clone()),
            }
            .unwrap_or_else(|err| {
                tracing::warn!(rule = %rule.name, event = e.id, error = %err, "rules: condition failed");
                self.condition_failed();
                false
            });
            let (true, Some(did)) = (fired, e.did.as_deref()) else {
                continue;
            };
            for effect in &rule.effects {
                let shadow = rule.shadow || effect.is_shadow();
                let publishes = self.labeler.is_some();
                emissions.extend(enforce(
                    tx, did, effect, &rule.name, shadow, e.id, now, publishes,
                )?);
            }
        }
        Ok(())
    }
}

/// Carries out one verdict for `did` on behalf of `source` (a rule's name, or `osprey`) inside
/// `tx`, and records it when it changed something (or is shadow). A public label comes back to be
/// published after the commit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn enforce(
    tx: &rusqlite::Connection,
    did: &str,
    effect: &Effect,
    source: &str,
    shadow: bool,
    event_id: i64,
    now: i64,
    publishes: bool,
) -> Result<Option<Emission>, StoreError> {
    let actor = format!("rule:{source}");
    let mut emission = None;
    let applied = !shadow
        && match effect {
            Effect::Suspend(reason) => {
                members::transition_in(tx, did, Transition::Suspend, &actor, Some(reason), now)?
                    .is_ok()
            }
            Effect::AddLabel { label, expires } => {
                if labels::active(tx, did, now)?.contains(label) {
                    false
                } else {
                    let expires_at = expires.map(|d| now + d.as_millis() as i64);
                    members::set_label_in(tx, did, label, true, expires_at, &actor, now)?
                        .unwrap_or(false)
                }
            }
            Effect::RemoveLabel(label) => {
                members::set_label_in(tx, did, label, false, None, &actor, now)?.unwrap_or(false)
            }
            Effect::Emit { val, neg } => {
                emission = Some(Emission {
                    did: did.to_string(),
                    val: val.clone(),
                    neg: *neg,
                    source: source.to_string(),
                });
                publishes
            }
        };
    if applied || shadow {
        state::record(
            tx,
            &NewVerdict {
                at: now,
                event_id,
                rule: source,
                did: Some(did),
                effect: &effect.describe(),
                shadow,
                applied,
            },
        )?;
        tracing::info!(source, did, effect = %effect.describe(), shadow, "rules: verdict");
    }
    Ok(emission)
}

/// Publishes (or negates) a public label through the labeler, when there is one.
pub(crate) fn publish(labeler: Option<&Labeler>, e: Emission) {
    let Some(labeler) = labeler else {
        return;
    };
    let reason = format!("rule {}", e.source);
    if let Err(err) = labeler.apply(
        &e.did,
        &e.val,
        !e.neg,
        &reason,
        &format!("rule:{}", e.source),
    ) {
        tracing::error!(did = %e.did, val = %e.val, error = %err, "rules: cannot publish label");
    }
}

/// The entity a counter keys this event by.
fn entity_of(e: &Event, by: Entity) -> Option<String> {
    match by {
        Entity::Did => e.did.clone(),
        Entity::RecipientDomain => e.data["recipient"]
            .as_str()
            .and_then(|r| crate::address::Mailbox::parse(r).ok())
            .map(|m| m.domain_text().to_string()),
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

/// The longest counter window, in minutes (plus the current minute).
fn longest_window_minutes(rules: &Rules) -> i64 {
    rules
        .counters
        .iter()
        .flat_map(|c| c.windows.iter().map(|(_, m)| *m))
        .max()
        .unwrap_or(0)
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::NewEvent;
    use crate::store::members::{Member, MemberState};

    const DID: &str = "did:plc:historyhistoryhistoryhis";

    fn append(store: &Store, kind: &str, data: serde_json::Value, n: usize) {
        store
            .write(|tx| {
                for _ in 0..n {
                    events::append(
                        tx,
                        now_ms(),
                        &NewEvent {
                            kind,
                            did: Some(DID),
                            actor: Some("relay"),
                            data: data.clone(),
                            ..Default::default()
                        },
                    )?;
                }
                Ok(())
            })
            .expect("append");
    }

    #[test]
    fn history_before_the_first_run_is_counted_but_not_judged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        store
            .write(|tx| member_rows::insert(tx, &Member::active(DID, now_ms())))
            .expect("member");
        let sent = serde_json::json!({"status": "sent", "source": "smtp"});
        let bounced = serde_json::json!({"status": "bounced", "source": "smtp"});
        // 3 bounces in 53: judged live this would suspend; as history it must not.
        append(&store, "delivery_result", sent.clone(), 50);
        append(&store, "delivery_result", bounced, 3);
        let engine = Engine::new(
            store.clone(),
            Arc::new(Rules::builtin().expect("rules")),
            None,
        );
        while engine.step().expect("step") > 0 {}
        let state_now = |store: &Store| {
            store
                .with(|c| member_rows::get(c, DID))
                .expect("get")
                .expect("member")
                .state
        };
        assert_eq!(state_now(&store), MemberState::Active);
        // The next result is judged, with the history counted: 3 bounces in 54 recipients.
        append(&store, "delivery_result", sent, 1);
        while engine.step().expect("step") > 0 {}
        assert_eq!(state_now(&store), MemberState::Suspended);
        let verdicts = store
            .with(|c| state::list(c, None, Some(DID), 10))
            .expect("verdicts");
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].rule, "suspend_on_bounce_rate");
    }

    /// Found by the many-sessions benchmark: every refused login (`relay_rejected`,
    /// `RATE_LIMITED`, no member) made the shipped `burst_warming` rule fail on `member.tier`
    /// and log a warning. Events with no member are counted, not judged.
    #[test]
    fn events_without_a_member_are_counted_not_judged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        store
            .write(|tx| {
                for did in [None, Some("did:plc:nomembernomembernomember")] {
                    events::append(
                        tx,
                        now_ms(),
                        &NewEvent {
                            kind: "relay_rejected",
                            did,
                            actor: Some("relay"),
                            data: serde_json::json!({"reject_reason": "RATE_LIMITED"}),
                            ..Default::default()
                        },
                    )?;
                }
                Ok(())
            })
            .expect("append");
        let engine = Engine::new(
            store.clone(),
            Arc::new(Rules::builtin().expect("rules")),
            None,
        );
        // The first step only sets the cursor; judge what comes after it.
        while engine.step().expect("step") > 0 {}
        append(
            &store,
            "relay_rejected",
            serde_json::json!({"reject_reason": "RATE_LIMITED"}),
            3,
        );
        while engine.step().expect("step") > 0 {}
        assert_eq!(engine.condition_errors(), 0);
    }
}
