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
    /// Published but not signing yet: a rotation's new keys wait until DNS serves them.
    pub pending: bool,
}

const COLUMNS: &str = "id, domain, owner, selector, algorithm, private_sealed, public_key, created_at, retired_at, pending";

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
        pending: r.get(9)?,
    })
}

/// Inserts a key; returns its id.
pub fn insert(conn: &Connection, k: &DkimKeyRow) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO dkim_keys (domain, owner, selector, algorithm, private_sealed, public_key, created_at, pending)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![k.domain, k.owner, k.selector, k.algorithm, k.private_sealed, k.public_key, k.created_at, k.pending],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Marks the active (signing) keys of `owner` for `domain` retired at `now`; another owner's
/// keys of the same name are never touched.
pub fn retire_active(
    conn: &Connection,
    domain: &str,
    owner: &str,
    now: i64,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE dkim_keys SET retired_at = ?3
         WHERE domain = lower(?1) AND owner = ?2 AND retired_at IS NULL AND pending = 0",
        params![domain, owner, now],
    )?)
}

/// Drops the pending keys of `owner` for `domain` (a newer rotation replaces them).
pub fn delete_pending(conn: &Connection, domain: &str, owner: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM dkim_keys WHERE domain = lower(?1) AND owner = ?2 AND pending = 1",
        params![domain, owner],
    )?)
}

/// Makes the pending keys of `domain` sign, retiring the ones they replace; returns how many
/// were promoted.
pub fn promote_pending(conn: &Connection, domain: &str, now: i64) -> Result<usize, StoreError> {
    let owners: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT owner FROM dkim_keys WHERE domain = lower(?1) AND pending = 1",
        )?
        .query_map([domain], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut promoted = 0;
    for owner in owners {
        retire_active(conn, domain, &owner, now)?;
        promoted += conn.execute(
            "UPDATE dkim_keys SET pending = 0 WHERE domain = lower(?1) AND owner = ?2 AND pending = 1",
            params![domain, owner],
        )?;
    }
    Ok(promoted)
}

/// Domains with keys waiting to be seen in DNS.
pub fn domains_with_pending(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT domain FROM dkim_keys WHERE pending = 1 ORDER BY domain",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes member keys retired before `before` (after their records' overlap, nothing signs or
/// checks with them); the operator's stay, so reports about old mail still verify.
pub fn prune_retired_member_keys(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM dkim_keys WHERE owner = 'member' AND retired_at IS NOT NULL AND retired_at < ?1",
        [before],
    )?)
}

/// Active (signing) keys of `domain`, newest first.
pub fn active(conn: &Connection, domain: &str) -> Result<Vec<DkimKeyRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dkim_keys WHERE domain = lower(?1) AND retired_at IS NULL AND pending = 0 ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([domain], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Keys of `domain` not retired: the signing ones and those waiting for DNS, newest first.
pub fn current(conn: &Connection, domain: &str) -> Result<Vec<DkimKeyRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dkim_keys WHERE domain = lower(?1) AND retired_at IS NULL ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([domain], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest key set of `domain`: the pending keys when a rotation waits for DNS, else the
/// signing ones (what the attestation should name).
pub fn newest(conn: &Connection, domain: &str) -> Result<Vec<DkimKeyRow>, StoreError> {
    let all = current(conn, domain)?;
    let pending = all.iter().any(|k| k.pending);
    Ok(all.into_iter().filter(|k| k.pending == pending).collect())
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

/// Which row a key was loaded from: id, selector and creation time (a cache's check; SQLite
/// gives a new row the id of a deleted one, so the id alone could name another key).
pub type KeyStamp = (i64, String, i64);

/// Stamps of the active keys of `domain` (cheap check for a cache).
pub fn active_ids(conn: &Connection, domain: &str) -> Result<Vec<KeyStamp>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, selector, created_at FROM dkim_keys WHERE domain = lower(?1) AND retired_at IS NULL AND pending = 0 ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([domain], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes every key of `domain` (the domain left the relay; its mail can no longer be signed).
pub fn delete_domain(conn: &Connection, domain: &str) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM dkim_keys WHERE domain = lower(?1)", [domain])?)
}

/// The selectors of `domain` that start with `prefix` (one query, however many rotations a
/// day saw).
pub fn selectors_like(
    conn: &Connection,
    domain: &str,
    prefix: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT selector FROM dkim_keys WHERE domain = lower(?1) AND substr(selector, 1, length(?2)) = ?2",
    )?;
    let rows = stmt.query_map(params![domain, prefix], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
