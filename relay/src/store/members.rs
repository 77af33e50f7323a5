//! Members and their sending domains.

use super::StoreError;
use crate::address::Mailbox;
use rusqlite::{Connection, OptionalExtension, params};

/// Lifecycle state of a member (BEHAVIOUR §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Pending,
    Active,
    Suspended,
}

impl MemberState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            other => Err(StoreError::Invalid(format!(
                "unknown member state {other:?}"
            ))),
        }
    }
}

/// A member row. Its `Debug` leaves the key hash out, so no log line can carry it.
#[derive(Clone)]
pub struct Member {
    pub did: String,
    pub handle: Option<String>,
    pub state: MemberState,
    pub state_reason: Option<String>,
    pub api_key_hash: String,
    pub hourly_limit: Option<u32>,
    pub daily_limit: Option<u32>,
    pub created_at: i64,
    pub approved_at: Option<i64>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("did", &self.did)
            .field("handle", &self.handle)
            .field("state", &self.state)
            .field("state_reason", &self.state_reason)
            .field("api_key_hash", &"<redacted>")
            .field("hourly_limit", &self.hourly_limit)
            .field("daily_limit", &self.daily_limit)
            .field("created_at", &self.created_at)
            .field("approved_at", &self.approved_at)
            .finish()
    }
}

/// Why a member who authenticated may not send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Pending,
    Suspended,
    /// The key the session or request authenticated with is no longer the member's key.
    KeyChanged,
    /// The member row is gone.
    Gone,
}

impl Member {
    /// A fingerprint of the stored key hash: what a session keeps to notice a new key.
    pub fn key_fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(self.api_key_hash.as_bytes()).into()
    }

    /// Whether the member may send now, having authenticated with the key of `fingerprint`.
    pub fn may_send(&self, fingerprint: Option<&[u8; 32]>) -> Result<(), Standing> {
        match self.state {
            MemberState::Pending => return Err(Standing::Pending),
            MemberState::Suspended => return Err(Standing::Suspended),
            MemberState::Active => {}
        }
        match fingerprint {
            Some(f)
                if !bool::from(subtle::ConstantTimeEq::ct_eq(
                    &f[..],
                    &self.key_fingerprint()[..],
                )) =>
            {
                Err(Standing::KeyChanged)
            }
            _ => Ok(()),
        }
    }

    /// An active member approved at `approved_at`, with no handle, key or own caps (fixtures
    /// and tests).
    pub fn active(did: &str, approved_at: i64) -> Self {
        Self {
            did: did.into(),
            handle: None,
            state: MemberState::Active,
            state_reason: None,
            api_key_hash: String::new(),
            hourly_limit: None,
            daily_limit: None,
            created_at: approved_at,
            approved_at: Some(approved_at),
        }
    }
}

const MEMBER_COLUMNS: &str = "did, handle, state, state_reason, api_key_hash, hourly_limit, \
     daily_limit, created_at, approved_at";

fn member_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Member, String)> {
    let state: String = row.get(2)?;
    Ok((
        Member {
            did: row.get(0)?,
            handle: row.get(1)?,
            state: MemberState::Pending,
            state_reason: row.get(3)?,
            api_key_hash: row.get(4)?,
            hourly_limit: row.get(5)?,
            daily_limit: row.get(6)?,
            created_at: row.get(7)?,
            approved_at: row.get(8)?,
        },
        state,
    ))
}

fn finish(found: Option<(Member, String)>) -> Result<Option<Member>, StoreError> {
    found
        .map(|(mut m, state)| {
            m.state = MemberState::parse(&state)?;
            Ok(m)
        })
        .transpose()
}

/// Inserts a new member.
pub fn insert(conn: &Connection, m: &Member) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            m.did,
            m.handle,
            m.state.as_str(),
            m.state_reason,
            m.api_key_hash,
            m.hourly_limit,
            m.daily_limit,
            m.created_at,
            m.approved_at
        ],
    )?;
    Ok(())
}

/// Looks a member up by DID.
pub fn get(conn: &Connection, did: &str) -> Result<Option<Member>, StoreError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members WHERE did = ?1"
        ))?
        .query_row([did], member_from_row)
        .optional()?;
    finish(found)
}

/// Looks a member up by handle (case-insensitive).
pub fn get_by_handle(conn: &Connection, handle: &str) -> Result<Option<Member>, StoreError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members WHERE handle = lower(?1)"
        ))?
        .query_row([handle], member_from_row)
        .optional()?;
    finish(found)
}

/// All members, pending first, then newest first.
pub fn list(conn: &Connection) -> Result<Vec<Member>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS} FROM members
         ORDER BY CASE state WHEN 'pending' THEN 0 ELSE 1 END, created_at DESC, did"
    ))?;
    let rows = stmt.query_map([], member_from_row)?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(m) = finish(Some(r?))? {
            out.push(m);
        }
    }
    Ok(out)
}

/// Changes a member's state; `approved_at` is set on the first approval.
pub fn set_state(
    conn: &Connection,
    did: &str,
    state: MemberState,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE members SET state = ?2, state_reason = ?3,
             approved_at = CASE WHEN ?2 = 'active' AND approved_at IS NULL THEN ?4 ELSE approved_at END
         WHERE did = ?1",
        params![did, state.as_str(), reason, now],
    )?;
    Ok(n == 1)
}

/// Replaces the API key hash (the old key stops working at once).
pub fn set_api_key_hash(conn: &Connection, did: &str, hash: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE members SET api_key_hash = ?2 WHERE did = ?1",
        params![did, hash],
    )? == 1)
}

/// A sending domain row.
#[derive(Debug, Clone)]
pub struct SendingDomain {
    pub domain: String,
    pub did: String,
    pub forward_to: Option<String>,
    pub created_at: i64,
    /// Reviewed: it may send (a domain an active member adds waits for an operator).
    pub approved: bool,
}

/// Adds a sending domain to a member.
pub fn insert_domain(conn: &Connection, d: &SendingDomain) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sending_domains (domain, did, forward_to, created_at, approved) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![d.domain, d.did, d.forward_to, d.created_at, d.approved],
    )?;
    Ok(())
}

/// The member's sending domains, oldest first.
pub fn domains_of(conn: &Connection, did: &str) -> Result<Vec<SendingDomain>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT domain, did, forward_to, created_at, approved FROM sending_domains WHERE did = ?1
         ORDER BY created_at, domain",
    )?;
    let rows = stmt.query_map([did], domain_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn domain_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SendingDomain> {
    Ok(SendingDomain {
        domain: r.get(0)?,
        did: r.get(1)?,
        forward_to: r.get(2)?,
        created_at: r.get(3)?,
        approved: r.get(4)?,
    })
}

/// Domains waiting for an operator's review, oldest first.
pub fn domains_awaiting_review(conn: &Connection) -> Result<Vec<SendingDomain>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT domain, did, forward_to, created_at, approved FROM sending_domains
         WHERE approved = 0 ORDER BY created_at, domain",
    )?;
    let rows = stmt.query_map([], domain_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks a domain reviewed; returns whether it was waiting.
pub fn approve_domain(conn: &Connection, domain: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE sending_domains SET approved = 1 WHERE domain = lower(?1) AND approved = 0",
        [domain],
    )? == 1)
}

/// The owner of `domain` and whether it is approved to send.
pub fn domain_standing(
    conn: &Connection,
    domain: &str,
) -> Result<Option<(String, bool)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT did, approved FROM sending_domains WHERE domain = lower(?1)")?
        .query_row([domain], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Clears `handle` from any member but `did` (its holder changed, so it names `did` now).
pub fn release_handle(conn: &Connection, handle: &str, did: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE members SET handle = NULL WHERE handle = lower(?1) AND did <> ?2",
        params![handle.trim(), did],
    )?)
}

/// Sets (or clears) a member's handle.
pub fn set_handle(conn: &Connection, did: &str, handle: Option<&str>) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE members SET handle = lower(?2) WHERE did = ?1",
        params![did, handle.map(str::trim)],
    )? == 1)
}

/// Sets (or clears) the forward-to address of a sending domain.
pub fn set_forward_to(
    conn: &Connection,
    domain: &str,
    address: Option<&Mailbox>,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE sending_domains SET forward_to = ?2 WHERE domain = lower(?1)",
        params![domain, address.map(Mailbox::as_str)],
    )? == 1)
}

/// The forward-to address of a sending domain. A stored value that is not a valid mailbox (left
/// by an older version) counts as none.
pub fn forward_to(conn: &Connection, domain: &str) -> Result<Option<Mailbox>, StoreError> {
    let stored = conn
        .prepare_cached("SELECT forward_to FROM sending_domains WHERE domain = lower(?1)")?
        .query_row([domain], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten();
    Ok(stored.and_then(|a| match Mailbox::parse(&a) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(domain, error = %e, "store: ignoring an invalid forward-to address");
            None
        }
    }))
}

/// Removes a member row (an enrollment undone before it finished); returns whether it existed.
pub fn delete_member(conn: &Connection, did: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM members WHERE did = ?1", [did])? == 1)
}

/// Removes a sending domain; returns whether it existed.
pub fn delete_domain(conn: &Connection, did: &str, domain: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sending_domains WHERE domain = lower(?1) AND did = ?2",
        params![domain, did],
    )? == 1)
}

/// The DID owning `domain`, if any.
pub fn domain_owner(conn: &Connection, domain: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT did FROM sending_domains WHERE domain = lower(?1)")?
        .query_row([domain], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn debug_never_prints_the_key_hash() {
        let mut m = Member::active("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", 0);
        m.api_key_hash = "$2b$12$secrethashsecrethashsecrethash".into();
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("secrethash") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    fn member(did: &str) -> Member {
        Member {
            did: did.into(),
            handle: Some("alice.test".into()),
            state: MemberState::Pending,
            state_reason: None,
            api_key_hash: "$2b$04$x".into(),
            hourly_limit: None,
            daily_limit: None,
            created_at: 1,
            approved_at: None,
        }
    }

    #[test]
    fn member_round_trip_and_domains() {
        let (_d, store) = test_store();
        store
            .write(|tx| {
                insert(tx, &member("did:plc:a"))?;
                insert_domain(
                    tx,
                    &SendingDomain {
                        domain: "a.test".into(),
                        did: "did:plc:a".into(),
                        forward_to: None,
                        created_at: 1,
                        approved: true,
                    },
                )
            })
            .unwrap();
        store
            .with(|c| {
                let m = get(c, "did:plc:a")?.expect("member");
                assert_eq!(m.state, MemberState::Pending);
                assert_eq!(
                    get_by_handle(c, "ALICE.test")?.map(|m| m.did),
                    Some(m.did.clone())
                );
                assert!(set_state(c, "did:plc:a", MemberState::Active, None, 42)?);
                let m = get(c, "did:plc:a")?.expect("member");
                assert_eq!((m.state, m.approved_at), (MemberState::Active, Some(42)));
                assert_eq!(domain_owner(c, "A.TEST")?.as_deref(), Some("did:plc:a"));
                assert_eq!(domains_of(c, "did:plc:a")?.len(), 1);
                assert!(get(c, "did:plc:zz")?.is_none());
                Ok(())
            })
            .unwrap();
    }
}
