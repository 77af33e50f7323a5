//! Sign-ins in progress and signed-in web sessions. Rows are keyed by SHA-256 of the browser's
//! token (the store never holds a usable token), and what they carry (PKCE verifier, DPoP key,
//! OAuth tokens) is sealed with the KEK by the caller.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension, params};

/// A sign-in waiting for its callback.
#[derive(Debug, Clone)]
pub struct PendingRow {
    /// SHA-256 of the cookie that started it (the callback must come from the same browser).
    pub browser_hash: String,
    pub sealed: Vec<u8>,
    pub created_at: i64,
}

/// Stores a pending sign-in, dropping those older than `expire_before` and refusing when
/// `max` are pending (a stranger can start many).
pub fn put_pending(
    conn: &Connection,
    state_hash: &str,
    row: &PendingRow,
    expire_before: i64,
    max: usize,
) -> Result<bool, StoreError> {
    conn.execute(
        "DELETE FROM signin_states WHERE created_at < ?1",
        [expire_before],
    )?;
    let n: i64 = conn.query_row("SELECT count(*) FROM signin_states", [], |r| r.get(0))?;
    if n as usize >= max {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO signin_states (state_hash, browser_hash, sealed, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![state_hash, row.browser_hash, row.sealed, row.created_at],
    )?;
    Ok(true)
}

/// Takes (reads and deletes) a pending sign-in: a state works once.
pub fn take_pending(conn: &Connection, state_hash: &str) -> Result<Option<PendingRow>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT browser_hash, sealed, created_at FROM signin_states WHERE state_hash = ?1",
        )?
        .query_row([state_hash], |r| {
            Ok(PendingRow {
                browser_hash: r.get(0)?,
                sealed: r.get(1)?,
                created_at: r.get(2)?,
            })
        })
        .optional()?;
    conn.execute(
        "DELETE FROM signin_states WHERE state_hash = ?1",
        [state_hash],
    )?;
    Ok(row)
}

/// A signed-in session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub did: String,
    pub handle: Option<String>,
    pub csrf: String,
    /// The OAuth tokens and DPoP key, sealed.
    pub sealed: Vec<u8>,
    pub created_at: i64,
    pub last_used: i64,
}

/// Stores a session; a member keeps at most `per_member` (the oldest go).
pub fn put_session(
    conn: &Connection,
    id_hash: &str,
    s: &SessionRow,
    per_member: usize,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO web_sessions (id_hash, did, handle, csrf, sealed, created_at, last_used)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id_hash,
            s.did,
            s.handle,
            s.csrf,
            s.sealed,
            s.created_at,
            s.last_used
        ],
    )?;
    conn.execute(
        "DELETE FROM web_sessions WHERE did = ?1 AND id_hash NOT IN
           (SELECT id_hash FROM web_sessions WHERE did = ?1 ORDER BY created_at DESC LIMIT ?2)",
        params![s.did, per_member as i64],
    )?;
    Ok(())
}

/// A session used since `idle_since`.
pub fn session(
    conn: &Connection,
    id_hash: &str,
    idle_since: i64,
) -> Result<Option<SessionRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT did, handle, csrf, sealed, created_at, last_used FROM web_sessions
             WHERE id_hash = ?1 AND last_used >= ?2",
        )?
        .query_row(params![id_hash, idle_since], |r| {
            Ok(SessionRow {
                did: r.get(0)?,
                handle: r.get(1)?,
                csrf: r.get(2)?,
                sealed: r.get(3)?,
                created_at: r.get(4)?,
                last_used: r.get(5)?,
            })
        })
        .optional()?)
}

/// Records use (and, when tokens were refreshed, the new sealed tokens).
pub fn touch(
    conn: &Connection,
    id_hash: &str,
    now: i64,
    sealed: Option<&[u8]>,
) -> Result<(), StoreError> {
    match sealed {
        Some(s) => conn.execute(
            "UPDATE web_sessions SET last_used = ?2, sealed = ?3 WHERE id_hash = ?1",
            params![id_hash, now, s],
        )?,
        None => conn.execute(
            "UPDATE web_sessions SET last_used = ?2 WHERE id_hash = ?1",
            params![id_hash, now],
        )?,
    };
    Ok(())
}

/// Ends a session.
pub fn delete_session(conn: &Connection, id_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM web_sessions WHERE id_hash = ?1", [id_hash])?;
    Ok(())
}

/// Drops sessions idle since before `idle_before`.
pub fn prune_sessions(conn: &Connection, idle_before: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM web_sessions WHERE last_used < ?1",
        [idle_before],
    )?)
}
