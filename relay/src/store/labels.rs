//! Internal member labels (SPEC §6, §8): `highly_trusted`, `burst_warming`, and whatever rules
//! add later; each may expire.

use super::StoreError;
use rusqlite::{Connection, params};

/// Labels of `did` that have not expired at `now`.
pub fn active(conn: &Connection, did: &str, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT label FROM member_labels WHERE did = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY label",
    )?;
    let rows = stmt.query_map(params![did, now], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Labels of `did` not expired at `now`, with their expiry (ms; `None` = never).
pub fn with_expiry(
    conn: &Connection,
    did: &str,
    now: i64,
) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT label, expires_at FROM member_labels WHERE did = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY label",
    )?;
    let rows = stmt.query_map(params![did, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds (or renews) a label.
pub fn add(
    conn: &Connection,
    did: &str,
    label: &str,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO member_labels (did, label, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (did, label) DO UPDATE SET expires_at = excluded.expires_at",
        params![did, label, expires_at, now],
    )?;
    Ok(())
}

/// Removes a label; true when it was there.
pub fn remove(conn: &Connection, did: &str, label: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM member_labels WHERE did = ?1 AND label = ?2",
        params![did, label],
    )? == 1)
}
