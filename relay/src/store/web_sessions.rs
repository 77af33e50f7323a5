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
    /// The client network that started it (an IPv4 address or an IPv6 /48).
    pub net: String,
}

/// How many sign-ins may wait at once: in all, per client network, and how many of the last
/// places only a network with none waiting may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCaps {
    pub max: usize,
    pub per_net: usize,
    pub reserve: usize,
}

impl PendingCaps {
    /// The caps for a table of `max`: a network may hold 5 % of it, and the last 10 % are kept
    /// for networks with nothing waiting, so filling the table takes many networks and a new
    /// one still gets in.
    pub fn of(max: usize) -> Self {
        Self {
            max,
            per_net: (max / 20).max(1),
            reserve: (max / 10).max(1),
        }
    }
}

/// Why a sign-in could not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingRefused {
    /// The table is full.
    Full,
    /// This network holds its share (or the rest is kept for networks with none).
    Network,
}

/// Stores a pending sign-in, dropping those older than `expire_before`, within `caps` (a
/// stranger can start many).
pub fn put_pending(
    conn: &Connection,
    state_hash: &str,
    row: &PendingRow,
    expire_before: i64,
    caps: PendingCaps,
) -> Result<Result<(), PendingRefused>, StoreError> {
    expire_pending(conn, expire_before)?;
    let total: i64 = conn.query_row("SELECT count(*) FROM signin_states", [], |r| r.get(0))?;
    let mine: i64 = conn.query_row(
        "SELECT count(*) FROM signin_states WHERE net = ?1",
        [&row.net],
        |r| r.get(0),
    )?;
    let (total, mine) = (total as usize, mine as usize);
    if total >= caps.max {
        return Ok(Err(PendingRefused::Full));
    }
    if mine >= caps.per_net || (mine > 0 && total + caps.reserve >= caps.max) {
        return Ok(Err(PendingRefused::Network));
    }
    conn.execute(
        "INSERT INTO signin_states (state_hash, browser_hash, sealed, created_at, net) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![state_hash, row.browser_hash, row.sealed, row.created_at, row.net],
    )?;
    Ok(Ok(()))
}

/// Drops sign-ins started before `expire_before`.
pub fn expire_pending(conn: &Connection, expire_before: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM signin_states WHERE created_at < ?1",
        [expire_before],
    )?)
}

/// Sign-ins waiting now.
pub fn pending_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM signin_states", [], |r| r.get(0))?)
}

fn read_pending(
    conn: &Connection,
    state_hash: &str,
    expire_before: i64,
) -> Result<Option<PendingRow>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT browser_hash, sealed, created_at, net FROM signin_states WHERE state_hash = ?1",
        )?
        .query_row([state_hash], |r| {
            Ok(PendingRow {
                browser_hash: r.get(0)?,
                sealed: r.get(1)?,
                created_at: r.get(2)?,
                net: r.get(3)?,
            })
        })
        .optional()?;
    Ok(row.filter(|r| r.created_at >= expire_before))
}

/// Reads a pending sign-in without taking it: the callback checks the browser first, so
/// someone who learnt a `state` (a log, a Referer) cannot cancel another's sign-in.
pub fn peek_pending(
    conn: &Connection,
    state_hash: &str,
    expire_before: i64,
) -> Result<Option<PendingRow>, StoreError> {
    take_pending_inner(conn, state_hash, expire_before, false)
}

/// Takes (reads and deletes) a pending sign-in: a state works once, and not after
/// `expire_before`.
pub fn take_pending(
    conn: &Connection,
    state_hash: &str,
    expire_before: i64,
) -> Result<Option<PendingRow>, StoreError> {
    take_pending_inner(conn, state_hash, expire_before, true)
}

fn take_pending_inner(
    conn: &Connection,
    state_hash: &str,
    expire_before: i64,
    delete: bool,
) -> Result<Option<PendingRow>, StoreError> {
    let row = read_pending(conn, state_hash, expire_before)?;
    if delete {
        conn.execute(
            "DELETE FROM signin_states WHERE state_hash = ?1",
            [state_hash],
        )?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn pending(at: i64) -> PendingRow {
        pending_from(at, "192.0.2.1")
    }

    fn pending_from(at: i64, net: &str) -> PendingRow {
        PendingRow {
            browser_hash: "b".into(),
            sealed: vec![1, 2, 3],
            created_at: at,
            net: net.into(),
        }
    }

    #[test]
    fn one_network_holds_its_share_and_the_last_places_go_to_new_networks() {
        let (_d, store) = test_store();
        let caps = PendingCaps::of(40);
        assert_eq!((caps.per_net, caps.reserve), (2, 4));
        store
            .write(|tx| {
                let put = |state: String, net: &str| {
                    put_pending(tx, &state, &pending_from(1_000, net), 0, caps)
                };
                assert_eq!(put("a1".into(), "a")?, Ok(()));
                assert_eq!(put("a2".into(), "a")?, Ok(()));
                assert_eq!(put("a3".into(), "a")?, Err(PendingRefused::Network));
                // Other networks, one each, up to the reserve...
                for i in 0..34 {
                    assert_eq!(put(format!("n{i}"), &format!("net{i}"))?, Ok(()));
                }
                // ...then only a network with nothing waiting gets in, until the table is full.
                assert_eq!(put("n0b".into(), "net0")?, Err(PendingRefused::Network));
                for i in 0..4 {
                    assert_eq!(put(format!("f{i}"), &format!("fresh{i}"))?, Ok(()));
                }
                assert_eq!(put("late".into(), "fresh-late")?, Err(PendingRefused::Full));
                Ok(())
            })
            .expect("store");
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
                let two = PendingCaps {
                    max: 2,
                    per_net: 2,
                    reserve: 0,
                };
                let five = PendingCaps { max: 5, ..two };
                assert!(put_pending(tx, "s1", &pending(1_000), 0, two)?.is_ok());
                assert!(put_pending(tx, "s2", &pending(1_000), 0, two)?.is_ok());
                // A stranger starting sign-ins cannot go past the cap...
                assert!(put_pending(tx, "s3", &pending(1_000), 0, two)?.is_err());
                // ...until the old ones expire.
                assert!(put_pending(tx, "s3", &pending(9_000), 5_000, two)?.is_ok());
                // A state works once; an expired one not at all.
                assert!(take_pending(tx, "s3", 5_000)?.is_some());
                assert!(take_pending(tx, "s3", 5_000)?.is_none());
                assert!(put_pending(tx, "old", &pending(4_000), 0, five)?.is_ok());
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
