//! Stored answers for HTTP `Idempotency-Key`s (BEHAVIOUR §4.2: kept 24 h).

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// A remembered answer.
#[derive(Debug, Clone)]
pub struct Stored {
    pub body_sha256: Vec<u8>,
    pub status: u16,
    pub response: String,
}

/// The answer stored for (`did`, `key`) since `since`, if any.
pub fn get(
    conn: &Connection,
    did: &str,
    key: &str,
    since: i64,
) -> Result<Option<Stored>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT body_sha256, status, response FROM idempotency_keys
             WHERE did = ?1 AND key = ?2 AND created_at > ?3",
        )?
        .query_row(params![did, key, since], |r| {
            Ok(Stored {
                body_sha256: r.get(0)?,
                status: r.get(1)?,
                response: r.get(2)?,
            })
        })
        .optional()?)
}

/// Remembers an answer (replacing an expired one); drops entries older than `expire_before`.
pub fn put(
    conn: &Connection,
    did: &str,
    key: &str,
    stored: &Stored,
    now: i64,
    expire_before: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at <= ?1",
        [expire_before],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO idempotency_keys (did, key, body_sha256, status, response, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![did, key, stored.body_sha256, stored.status, stored.response, now],
    )?;
    Ok(())
}
