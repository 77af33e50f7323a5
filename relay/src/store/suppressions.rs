//! A member's suppression list: recipients it may no longer send to (BEHAVIOUR §4.1, §7).

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// One suppressed address.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Suppression {
    pub address: String,
    /// `unsubscribe`, `bounce`, `complaint` or `manual`.
    pub reason: String,
    pub message_id: Option<String>,
    pub created_at: i64,
}

/// Adds an address; an existing complaint is never downgraded.
pub fn add(
    conn: &Connection,
    did: &str,
    address: &str,
    reason: &str,
    message_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO suppressions (did, address, reason, message_id, created_at) VALUES (?1, lower(?2), ?3, ?4, ?5)
         ON CONFLICT (did, address) DO UPDATE SET reason = excluded.reason, message_id = excluded.message_id
         WHERE suppressions.reason != 'complaint'",
        params![did, address, reason, message_id, now],
    )?;
    Ok(())
}

/// The reason `address` is suppressed for `did`, if it is.
pub fn reason(conn: &Connection, did: &str, address: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT reason FROM suppressions WHERE did = ?1 AND address = lower(?2)")?
        .query_row(params![did, address], |r| r.get(0))
        .optional()?)
}

/// The whole list, newest first.
pub fn list(conn: &Connection, did: &str) -> Result<Vec<Suppression>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT address, reason, message_id, created_at FROM suppressions WHERE did = ?1 ORDER BY created_at DESC, address",
    )?;
    let rows = stmt.query_map([did], |r| {
        Ok(Suppression {
            address: r.get(0)?,
            reason: r.get(1)?,
            message_id: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes an entry unless it is a complaint (those are never removed by the member).
/// Returns `Some(true)` removed, `Some(false)` refused (complaint), `None` not found.
pub fn remove(conn: &Connection, did: &str, address: &str) -> Result<Option<bool>, StoreError> {
    match reason(conn, did, address)? {
        None => Ok(None),
        Some(r) if r == "complaint" => Ok(Some(false)),
        Some(_) => {
            conn.execute(
                "DELETE FROM suppressions WHERE did = ?1 AND address = lower(?2)",
                params![did, address],
            )?;
            Ok(Some(true))
        }
    }
}
