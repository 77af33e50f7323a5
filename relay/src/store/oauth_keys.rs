//! The confidential OAuth client's signing keys (sealed with the KEK).

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// A stored client key.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub kid: String,
    pub sealed: Vec<u8>,
    pub state: String,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        kid: r.get(0)?,
        sealed: r.get(1)?,
        state: r.get(2)?,
    })
}

/// Adds a key in `state` (`active` or `next`).
pub fn insert(
    conn: &Connection,
    kid: &str,
    sealed: &[u8],
    state: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO oauth_client_keys (kid, sealed, state, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![kid, sealed, state, now],
    )?;
    Ok(())
}

fn one_in(conn: &Connection, state: &str) -> Result<Option<KeyRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT kid, sealed, state FROM oauth_client_keys WHERE state = ?1 ORDER BY created_at DESC LIMIT 1",
        )?
        .query_row([state], row)
        .optional()?)
}

/// The signing key.
pub fn active(conn: &Connection) -> Result<Option<KeyRow>, StoreError> {
    one_in(conn, "active")
}

/// The published key waiting to sign.
pub fn next(conn: &Connection) -> Result<Option<KeyRow>, StoreError> {
    one_in(conn, "next")
}

/// The keys in the JWKS: the signing key and the next one.
pub fn published(conn: &Connection) -> Result<Vec<KeyRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kid, sealed, state FROM oauth_client_keys WHERE state IN ('active', 'next') ORDER BY created_at",
    )?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Makes `kid` (the next key) sign and retires the current signing key.
pub fn promote(conn: &Connection, kid: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE oauth_client_keys SET state = 'retired', retired_at = ?1 WHERE state = 'active'",
        [now],
    )?;
    conn.execute(
        "UPDATE oauth_client_keys SET state = 'active' WHERE kid = ?1 AND state = 'next'",
        [kid],
    )?;
    Ok(())
}
