//! The queue as operators see it: unfinished recipients (filtered), their count and age, and
//! the bulk "retry now" the queue browser offers.

use super::StoreError;
use rusqlite::{Connection, params};

/// One queued (not final) recipient for the admin queue browser.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    pub message_id: String,
    pub did: String,
    pub recipient: String,
    pub domain: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_reply: Option<String>,
    pub received_at: i64,
}

/// Queued recipients, oldest due first, filtered by status, member DID and recipient domain.
pub fn queue(
    conn: &Connection,
    filter: &QueueFilter<'_>,
    limit: u32,
) -> Result<Vec<QueueEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.message_id, m.did, r.address, r.domain, r.status, r.attempts, r.next_attempt_at, r.last_reply, m.received_at
         FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE {QUEUE_WHERE} ORDER BY r.next_attempt_at, r.id LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        rusqlite::params_from_iter(filter.params(Some(&limit))),
        |r| {
            Ok(QueueEntry {
                message_id: r.get(0)?,
                did: r.get(1)?,
                recipient: r.get(2)?,
                domain: r.get(3)?,
                status: r.get(4)?,
                attempts: r.get(5)?,
                next_attempt_at: r.get(6)?,
                last_reply: r.get(7)?,
                received_at: r.get(8)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Which unfinished recipients the queue browser (and its bulk actions) selects.
#[derive(Debug, Default, Clone)]
pub struct QueueFilter<'a> {
    /// `accepted` or `deferred`.
    pub status: Option<&'a str>,
    pub did: Option<&'a str>,
    /// The recipient's domain.
    pub domain: Option<&'a str>,
    /// Messages that arrived before this (ms): older than an age.
    pub received_before: Option<i64>,
}

impl QueueFilter<'_> {
    /// `?1`..`?4` of [`QUEUE_WHERE`], then `extra` as `?5`.
    fn params<'p>(
        &'p self,
        extra: Option<&'p dyn rusqlite::ToSql>,
    ) -> Vec<&'p dyn rusqlite::ToSql> {
        let mut p: Vec<&dyn rusqlite::ToSql> =
            vec![&self.status, &self.did, &self.domain, &self.received_before];
        p.extend(extra);
        p
    }
}

const QUEUE_WHERE: &str = "r.status IN ('accepted', 'deferred') AND (?1 IS NULL OR r.status = ?1)
    AND (?2 IS NULL OR m.did = ?2) AND (?3 IS NULL OR r.domain = lower(?3))
    AND (?4 IS NULL OR m.received_at < ?4)";

/// How many recipients, in how many messages, `filter` selects.
pub fn queue_count(conn: &Connection, filter: &QueueFilter<'_>) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row(
        &format!(
            "SELECT count(*), count(DISTINCT r.message_id) FROM recipients r JOIN messages m ON m.id = r.message_id
             WHERE {QUEUE_WHERE}"
        ),
        rusqlite::params_from_iter(filter.params(None)),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Makes the recipients `filter` selects due now; returns how many.
pub fn queue_retry_now(
    conn: &Connection,
    filter: &QueueFilter<'_>,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        &format!(
            "UPDATE recipients SET next_attempt_at = ?5 WHERE id IN
               (SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id WHERE {QUEUE_WHERE})"
        ),
        rusqlite::params_from_iter(filter.params(Some(&now))),
    )?)
}

/// The messages (id, DID) with a recipient `filter` selects.
pub fn queue_messages(
    conn: &Connection,
    filter: &QueueFilter<'_>,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT DISTINCT r.message_id, m.did FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE {QUEUE_WHERE}"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(filter.params(None)), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Makes a message's unfinished recipients due now; returns how many.
pub fn retry_now(conn: &Connection, message_id: &str, now: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE recipients SET next_attempt_at = ?2 WHERE message_id = ?1 AND status IN ('accepted', 'deferred')",
        params![message_id, now],
    )?)
}

/// When the oldest unfinished recipient's message arrived.
pub fn oldest_queued_at(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT min(m.received_at) FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.status IN ('accepted', 'deferred')",
        [],
        |r| r.get(0),
    )?)
}

/// Recipient counts by status.
pub fn count_by_status(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT status, count(*) FROM recipients GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Number of recipients not yet final (queue depth).
pub fn queue_depth(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM recipients WHERE status IN ('accepted', 'deferred')",
        [],
        |r| r.get(0),
    )?)
}
