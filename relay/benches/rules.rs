//! Rules engine throughput: events counted and judged per second with the built-in rules (five
//! counters, six rules), next to the rate at which the same events are appended to the log, in the
//! same run and on the same database.
//!
//! Run: `cargo bench -p atmos-relay --bench rules` (see docs/benchmarks.md).

use atmos_relay::rules::Engine;
use atmos_relay::rules::spec::Rules;
use atmos_relay::store::events::{self, NewEvent};
use atmos_relay::store::members::{self, Member};
use atmos_relay::store::{Store, now_ms};
use std::sync::Arc;
use std::time::Instant;

const MEMBERS: usize = 100;
const EVENTS: usize = 50_000;

fn did(i: usize) -> String {
    format!("did:plc:bench{i:019}")
}

/// A fresh store with `members` warmed members (approved 40 days ago, so nobody is suspended
/// and every rule is evaluated on every event) and an engine that has run once.
fn setup(members: usize) -> (tempfile::TempDir, Arc<Store>, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let approved = now_ms() - 40 * 86_400_000;
    store
        .write(|tx| {
            for i in 0..members {
                members::insert(tx, &Member::active(&did(i), approved))?;
            }
            Ok(())
        })
        .expect("members");
    let engine = Engine::new(
        store.clone(),
        Arc::new(Rules::builtin().expect("rules")),
        None,
    );
    engine.step().expect("first run");
    (dir, store, engine)
}

/// Appends `n` `delivery_result` events spread over `members` members.
fn append(store: &Store, n: usize, members: usize) {
    store
        .write(|tx| {
            let data =
                serde_json::json!({"status": "sent", "source": "smtp", "recipient": "r@x.test"});
            for i in 0..n {
                let d = did(i % members);
                events::append(
                    tx,
                    now_ms(),
                    &NewEvent {
                        kind: "delivery_result",
                        did: Some(&d),
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

/// Steps the engine until it has judged `n` events (or runs dry); returns how many it judged.
fn judge_all(engine: &Engine, n: usize) -> usize {
    let mut judged = 0;
    while judged < n {
        let step = engine.step().expect("step");
        if step == 0 {
            break;
        }
        judged += step;
    }
    judged
}

fn main() {
    let (_dir, store, engine) = setup(MEMBERS);
    let started = Instant::now();
    append(&store, EVENTS, MEMBERS);
    let append_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let judged = judge_all(&engine, usize::MAX);
    let judge = started.elapsed().as_secs_f64();
    // The events, plus one `label_applied` per member (highly_trusted fires once each).
    assert_eq!(judged, EVENTS + MEMBERS);
    let steady = steady_state();
    println!(
        "rules: {EVENTS} delivery_result events, {MEMBERS} members, built-in rules\n\
         append to the event log: {:>9.0} events/s\n\
         count + judge + verdicts: {:>9.0} events/s ({:.1} µs/event, {:.2}× the append rate)",
        EVENTS as f64 / append_s,
        EVENTS as f64 / judge,
        judge * 1e6 / EVENTS as f64,
        append_s / judge,
    );
    println!(
        "after 30 days of sending (a bucket per minute for every counter): {steady:>9.0} events/s ({:.1} µs/event)",
        1e6 / steady
    );
}

/// Members that have sent every minute for 30 days: each counter holds a bucket per minute, so
/// a 30-day window covers 43,200 of them. Returns events counted and judged per second.
fn steady_state() -> f64 {
    const SENDERS: usize = 10;
    const STEADY_EVENTS: usize = 5_000;
    let (_dir, store, engine) = setup(SENDERS);
    let minute = now_ms() / 60_000;
    store
        .write(|tx| {
            let mut put = tx.prepare(
                "INSERT INTO rule_counters (counter, entity, minute, n) VALUES (?1, ?2, ?3, 3)",
            )?;
            for i in 0..SENDERS {
                let d = did(i);
                for counter in ["recipients", "member_mail"] {
                    for m in (minute - 30 * 1440)..minute {
                        put.execute(rusqlite::params![counter, d, m])?;
                    }
                }
            }
            Ok(())
        })
        .expect("history");
    append(&store, STEADY_EVENTS, SENDERS);
    let started = Instant::now();
    let judged = judge_all(&engine, STEADY_EVENTS);
    judged as f64 / started.elapsed().as_secs_f64()
}
