//! State of the rules engine (BEHAVIOUR §8): per-minute counter buckets, verdicts, and the position in
//! the event log up to which events have been counted and judged.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// Adds `n` to a counter's bucket for `entity` at `minute`, and to the running total of every
/// window of it that covers `minute`.
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
    conn.prepare_cached(
        "UPDATE rule_windows SET total = total + ?4
         WHERE counter = ?1 AND entity = ?2 AND through < ?3",
    )?
    .execute(params![counter, entity, minute, n])?;
    Ok(())
}

/// A counter's total for `entity` over the window of `minutes` that ends at `minute` (the
/// buckets from `minute - minutes + 1` on).
///
/// The total is kept per window and moved, not recomputed: each read adds or subtracts only the
/// buckets between the window's last start and this one, so after 30 days of steady sending a
/// 30-day window reads a few buckets instead of 43,200 (7 ms an event before, measured by
/// `cargo bench --bench rules`). Events arrive in log order, so windows mostly move forward.
pub fn sum(
    conn: &Connection,
    counter: &str,
    entity: &str,
    minutes: i64,
    minute: i64,
) -> Result<i64, StoreError> {
    // The last minute outside the window.
    let edge = minute - minutes;
    let kept: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT through, total FROM rule_windows
             WHERE counter = ?1 AND entity = ?2 AND minutes = ?3",
        )?
        .query_row(params![counter, entity, minutes], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let between = |after: i64, upto: i64| -> Result<i64, StoreError> {
        Ok(conn
            .prepare_cached(
                "SELECT coalesce(sum(n), 0) FROM rule_counters
                 WHERE counter = ?1 AND entity = ?2 AND minute > ?3 AND minute <= ?4",
            )?
            .query_row(params![counter, entity, after, upto], |r| r.get(0))?)
    };
    let total = match kept {
        Some((through, total)) if through == edge => return Ok(total),
        Some((through, total)) if through < edge => total - between(through, edge)?,
        Some((through, total)) => total + between(edge, through)?,
        None => between(edge, i64::MAX)?,
    };
    conn.prepare_cached(
        "INSERT INTO rule_windows (counter, entity, minutes, through, total)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (counter, entity, minutes) DO UPDATE SET through = excluded.through,
             total = excluded.total",
    )?
    .execute(params![counter, entity, minutes, edge, total])?;
    Ok(total)
}

/// Drops buckets older than `before_minute` (past every window), and the running totals that
/// still count some of them (they are recomputed at their next read).
pub fn prune(conn: &Connection, before_minute: i64) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM rule_windows WHERE through < ?1 - 1",
        [before_minute],
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    /// The sum the running totals must equal: every bucket of the window, read afresh.
    fn scanned(conn: &Connection, counter: &str, entity: &str, minutes: i64, minute: i64) -> i64 {
        conn.query_row(
            "SELECT coalesce(sum(n), 0) FROM rule_counters
             WHERE counter = ?1 AND entity = ?2 AND minute > ?3",
            params![counter, entity, minute - minutes],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// Bumps and reads in a mostly forward but jittery order (events carry the time they were
    /// made, not the time they were logged), with pruning: every read equals a full scan.
    #[test]
    fn running_window_totals_equal_a_scan_of_the_buckets() {
        let (_d, store) = test_store();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as i64
        };
        store
            .write(|tx| {
                let windows = [60, 1440, 43_200];
                let mut minute = 1_000_000i64;
                for step in 0..20_000 {
                    // Mostly a minute or less forward, sometimes hours, sometimes a little back.
                    minute += match next(100) {
                        0..=79 => next(2),
                        80..=94 => -next(5),
                        _ => next(600),
                    };
                    let entity = ["a", "b"][next(2) as usize];
                    if next(3) > 0 {
                        bump(tx, "c", entity, minute, 1 + next(3))?;
                    }
                    let minutes = windows[next(3) as usize];
                    assert_eq!(
                        sum(tx, "c", entity, minutes, minute)?,
                        scanned(tx, "c", entity, minutes, minute),
                        "step {step}, window {minutes} at {minute}"
                    );
                    if step % 2_000 == 1_999 {
                        prune(tx, minute - 43_201)?;
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    /// A window is read by moving its total, not by scanning: after 30 days of buckets, a read
    /// one minute later looks only at the bucket that left the window. (The old buckets are
    /// deleted behind the total's back here; a scan would miss them, the moved total does not.)
    #[test]
    fn a_long_window_is_not_rescanned() {
        let (_d, store) = test_store();
        store
            .write(|tx| {
                for m in 0..43_200 {
                    bump(tx, "c", "e", m, 1)?;
                }
                assert_eq!(sum(tx, "c", "e", 43_200, 43_199)?, 43_200);
                bump(tx, "c", "e", 43_200, 5)?;
                tx.execute(
                    "DELETE FROM rule_counters WHERE minute BETWEEN 1 AND 43000",
                    [],
                )?;
                assert_eq!(sum(tx, "c", "e", 43_200, 43_200)?, 43_204);
                Ok(())
            })
            .unwrap();
    }
}
