//! DKIM key rows: one per (domain, selector); the private half is sealed with the KEK.

use super::StoreError;
use rusqlite::{Connection, params};

/// A stored DKIM key.
#[derive(Debug, Clone)]
pub struct DkimKeyRow {
    pub id: i64,
    pub domain: String,
    pub owner: String,
    pub selector: String,
    pub algorithm: String,
    pub private_sealed: Vec<u8>,
    pub public_key: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

const COLUMNS: &str =
    "id, domain, owner, selector, algorithm, private_sealed, public_key, created_at, retired_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DkimKeyRow> {
    Ok(DkimKeyRow {
        id: r.get(0)?,
        domain: r.get(1)?,
        owner: r.get(2)?,
        selector: r.get(3)?,
        algorithm: r.get(4)?,
        private_sealed: r.get(5)?,
        public_key: r.get(6)?,
        created_at: r.get(7)?,
        retired_at: r.get(8)?,
    })
}

/// Inserts a key; returns its id.
pub fn insert(conn: &Connection, k: &DkimKeyRow) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO dkim_keys (domain, owner, selector, algorithm, private_sealed, public_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![k.domain, k.owner, k.selector, k.algorithm, k.private_sealed, k.public_key, k.created_at],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Marks every active key of `domain` retired at `now`.
pub fn retire_active(conn: &Connection, domain: &str, now: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE dkim_keys SET retired_at = ?2 WHERE domain = ?1 AND retired_at IS NULL",
        params![domain, now],
    )?)
}

/// Active (signing) keys of `domain`, newest first.
pub fn active(conn: &Connection, domain: &str) -> Result<Vec<DkimKeyRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dkim_keys WHERE domain = lower(?1) AND retired_at IS NULL ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([domain], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Keys of `domain` still to be published: active ones, and ones retired after `since`.
pub fn published(
    conn: &Connection,
    domain: &str,
    since: i64,
) -> Result<Vec<DkimKeyRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dkim_keys WHERE domain = lower(?1) AND (retired_at IS NULL OR retired_at > ?2)
         ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map(params![domain, since], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ids of the active keys of `domain` (cheap check for a cache).
pub fn active_ids(conn: &Connection, domain: &str) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM dkim_keys WHERE domain = lower(?1) AND retired_at IS NULL ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([domain], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes every key of `domain` (the domain left the relay; its mail can no longer be signed).
pub fn delete_domain(conn: &Connection, domain: &str) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM dkim_keys WHERE domain = lower(?1)", [domain])?)
}

/// Whether a selector is taken for `domain`.
pub fn selector_exists(
    conn: &Connection,
    domain: &str,
    selector: &str,
) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM dkim_keys WHERE domain = lower(?1) AND selector = ?2",
        params![domain, selector],
        |r| r.get::<_, i64>(0),
    )? > 0)
}
