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

/// Takes (reads and deletes) a pending sign-in: a state works once, and not after
/// `expire_before`.
pub fn take_pending(
    conn: &Connection,
    state_hash: &str,
    expire_before: i64,
) -> Result<Option<PendingRow>, StoreError> {
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
    Ok(row.filter(|r| r.created_at >= expire_before))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn pending(at: i64) -> PendingRow {
        PendingRow {
            browser_hash: "b".into(),
            sealed: vec![1, 2, 3],
            created_at: at,
        }
    }

    fn session_row(did: &str, at: i64) -> SessionRow {
        SessionRow {
            did: did.into(),
            handle: None,
            csrf: "c".into(),
            sealed: vec![],
            created_at: at,
            last_used: at,
        }
    }

    #[test]
    fn pending_sign_ins_are_capped_single_use_and_expire() {
        let (_d, store) = test_store();
        store
            .write(|tx| {
                assert!(put_pending(tx, "s1", &pending(1_000), 0, 2)?);
                assert!(put_pending(tx, "s2", &pending(1_000), 0, 2)?);
                // A stranger starting sign-ins cannot go past the cap...
                assert!(!put_pending(tx, "s3", &pending(1_000), 0, 2)?);
                // ...until the old ones expire.
                assert!(put_pending(tx, "s3", &pending(9_000), 5_000, 2)?);
                // A state works once; an expired one not at all.
                assert!(take_pending(tx, "s3", 5_000)?.is_some());
                assert!(take_pending(tx, "s3", 5_000)?.is_none());
                assert!(put_pending(tx, "old", &pending(4_000), 0, 5)?);
                assert!(take_pending(tx, "old", 5_000)?.is_none());
                assert!(
                    take_pending(tx, "old", 0)?.is_none(),
                    "the expired row is gone too"
                );
                Ok(())
            })
            .expect("store");
    }

    #[test]
    fn a_member_keeps_at_most_its_cap_of_sessions_and_idle_ones_end() {
        let (_d, store) = test_store();
        store
            .write(|tx| {
                for (i, at) in [100, 200, 300].into_iter().enumerate() {
                    put_session(tx, &format!("h{i}"), &session_row("did:plc:a", at), 2)?;
                }
                put_session(tx, "other", &session_row("did:plc:b", 50), 2)?;
                assert!(session(tx, "h0", 0)?.is_none(), "the oldest went");
                assert!(session(tx, "h1", 0)?.is_some() && session(tx, "h2", 0)?.is_some());
                assert!(session(tx, "other", 0)?.is_some(), "another member's stay");
                // Idle sessions are not honoured, and pruning removes them.
                assert!(session(tx, "h1", 250)?.is_none());
                touch(tx, "h1", 400, None)?;
                assert!(session(tx, "h1", 250)?.is_some());
                assert_eq!(prune_sessions(tx, 350)?, 2);
                Ok(())
            })
            .expect("store");
    }
}
