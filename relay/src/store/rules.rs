//! State of the rules engine (SPEC §8): per-minute counter buckets, verdicts, and the position in
//! the event log up to which events have been counted and judged.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// Adds `n` to a counter's bucket for `entity` at `minute`.
pub fn bump(
    conn: &Connection,
    counter: &str,
    entity: &str,
    minute: i64,
    n: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO rule_counters (counter, entity, minute, n) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (counter, entity, minute) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![counter, entity, minute, n])?;
    Ok(())
}

/// A counter's total for `entity` from `since_minute` on.
pub fn sum(
    conn: &Connection,
    counter: &str,
    entity: &str,
    since_minute: i64,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(n), 0) FROM rule_counters
             WHERE counter = ?1 AND entity = ?2 AND minute >= ?3",
        )?
        .query_row(params![counter, entity, since_minute], |r| r.get(0))?)
}

/// Drops buckets older than `before_minute` (past every window).
pub fn prune(conn: &Connection, before_minute: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM rule_counters WHERE minute < ?1",
        [before_minute],
    )?)
}

/// Where the engine is in the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The last event processed.
    pub event: i64,
    /// Events up to this id are only counted, not judged (history from before the engine ran).
    pub judge_from: i64,
}

/// The cursor; `None` before the engine first ran.
pub fn cursor(conn: &Connection) -> Result<Option<Cursor>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT event, judge_from FROM rule_cursor WHERE id = 1")?
        .query_row([], |r| {
            Ok(Cursor {
                event: r.get(0)?,
                judge_from: r.get(1)?,
            })
        })
        .optional()?)
}

/// Moves the cursor.
pub fn set_cursor(conn: &Connection, c: Cursor) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO rule_cursor (id, event, judge_from) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET event = excluded.event, judge_from = excluded.judge_from",
    )?
    .execute(params![c.event, c.judge_from])?;
    Ok(())
}

/// The first cursor: history inside `since` (ms) is counted but not judged; older events skipped.
pub fn initial_cursor(conn: &Connection, since: i64) -> Result<Cursor, StoreError> {
    let (before, last): (Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT (SELECT max(id) FROM relay_events WHERE at < ?1), (SELECT max(id) FROM relay_events)",
        )?
        .query_row([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Cursor {
        event: before.unwrap_or(0),
        judge_from: last.unwrap_or(0),
    })
}

/// A verdict to record.
#[derive(Debug, Clone)]
pub struct NewVerdict<'a> {
    pub at: i64,
    pub event_id: i64,
    pub rule: &'a str,
    pub did: Option<&'a str>,
    /// The effect, as the rule file spells it (`suspend: …`, `add_label: …`).
    pub effect: &'a str,
    pub shadow: bool,
    /// False when it changed nothing (already suspended, label already there) or is shadow.
    pub applied: bool,
}

/// A recorded verdict.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub id: i64,
    pub at: i64,
    pub event_id: i64,
    pub rule: String,
    pub did: Option<String>,
    pub effect: String,
    pub shadow: bool,
    pub applied: bool,
}

/// Records a verdict.
pub fn record(conn: &Connection, v: &NewVerdict<'_>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO rule_verdicts (at, event_id, rule, did, effect, shadow, applied)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        v.at, v.event_id, v.rule, v.did, v.effect, v.shadow, v.applied
    ])?;
    Ok(())
}

/// Verdicts, newest first, optionally only shadow (or only enforced) ones, of one member.
pub fn list(
    conn: &Connection,
    shadow: Option<bool>,
    did: Option<&str>,
    limit: u32,
) -> Result<Vec<Verdict>, StoreError> {
    list_filtered(conn, shadow, did, None, (None, None), limit)
}

/// [`list`] of one rule (when given) since `since` (ms).
pub fn list_filtered(
    conn: &Connection,
    shadow: Option<bool>,
    did: Option<&str>,
    rule: Option<&str>,
    (since, until): (Option<i64>, Option<i64>),
    limit: u32,
) -> Result<Vec<Verdict>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, event_id, rule, did, effect, shadow, applied FROM rule_verdicts
         WHERE (?1 IS NULL OR shadow = ?1) AND (?2 IS NULL OR did = ?2)
           AND (?3 IS NULL OR rule = ?3) AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)
         ORDER BY id DESC LIMIT ?6",
    )?;
    let rows = stmt.query_map(params![shadow, did, rule, since, until, limit], |r| {
        Ok(Verdict {
            id: r.get(0)?,
            at: r.get(1)?,
            event_id: r.get(2)?,
            rule: r.get(3)?,
            did: r.get(4)?,
            effect: r.get(5)?,
            shadow: r.get(6)?,
            applied: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
