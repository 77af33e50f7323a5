//! Messages, their bodies, recipients and delivery attempts.

use super::StoreError;
use crate::address::Mailbox;
use rusqlite::{Connection, OptionalExtension, params};

/// Per-recipient status vocabulary (BEHAVIOUR §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    Accepted,
    Deferred,
    Sent,
    Bounced,
}

impl RecipientStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Deferred => "deferred",
            Self::Sent => "sent",
            Self::Bounced => "bounced",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(Self::Accepted),
            "deferred" => Some(Self::Deferred),
            "sent" => Some(Self::Sent),
            "bounced" => Some(Self::Bounced),
            _ => None,
        }
    }

    /// Sent and bounced are final.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Bounced)
    }
}

/// Sources of mail the relay itself writes (bounce notices, forwarded inbound mail): never
/// counted against a member, never suppressing or bounced back to one.
pub const RELAY_SOURCES: [&str; 2] = ["dsn", "forward"];

/// True for a source in [`RELAY_SOURCES`].
pub fn is_relay_source(source: &str) -> bool {
    RELAY_SOURCES.contains(&source)
}

/// A message to queue.
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub did: &'a str,
    pub mail_from: &'a str,
    /// Envelope sender used for delivery (VERP on the operator domain; empty: null sender).
    pub return_path: &'a str,
    /// Each recipient's own envelope sender from its row id (per-recipient VERP), when set.
    pub recipient_return_path: Option<&'a dyn Fn(i64) -> String>,
    pub category: &'a str,
    pub from_domain: &'a str,
    pub source: &'a str,
    pub received_at: i64,
    pub body: &'a [u8],
    pub recipients: &'a [Mailbox],
    /// `Message-ID` header value without `<>` (member mail).
    pub header_message_id: Option<&'a str>,
    /// The send-count buckets its recipients are counted in (`warming::Budget::buckets`; empty
    /// for DSNs and the operator's mail, which no cap holds back).
    pub counted: &'a [String],
}

/// Inserts a message, its body and its recipients (all `accepted`, due now); returns the
/// recipients as delivery will see them.
pub fn insert(conn: &Connection, m: &NewMessage<'_>) -> Result<Vec<DueRecipient>, StoreError> {
    let counted = if m.counted.is_empty() {
        0
    } else {
        m.recipients.len() as i64
    };
    conn.prepare_cached(
        "INSERT INTO messages (id, did, mail_from, from_domain, size, source, received_at, return_path, category, counted, header_message_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        m.id,
        m.did,
        m.mail_from,
        m.from_domain,
        m.body.len() as i64,
        m.source,
        m.received_at,
        m.return_path,
        m.category,
        counted,
        m.header_message_id
    ])?;
    if counted > 0 {
        super::send_counts::add(conn, m.counted, m.received_at, counted)?;
    }
    conn.prepare_cached("INSERT INTO message_bodies (message_id, data) VALUES (?1, ?2)")?
        .execute(params![m.id, m.body])?;
    let mut rcpt = conn.prepare_cached(
        "INSERT INTO recipients (message_id, address, domain, status, next_attempt_at, updated_at)
         VALUES (?1, ?2, ?3, 'accepted', ?4, ?4)",
    )?;
    let mut set_path =
        conn.prepare_cached("UPDATE recipients SET return_path = ?2 WHERE id = ?1")?;
    let mut due = Vec::with_capacity(m.recipients.len());
    for address in m.recipients {
        let domain = address.domain_text().to_string();
        rcpt.execute(params![m.id, address.as_str(), domain, m.received_at])?;
        let id = conn.last_insert_rowid();
        let (mail_from, own_return_path) = match m.recipient_return_path {
            Some(path) => {
                let p = path(id);
                set_path.execute(params![id, p])?;
                (p, true)
            }
            None => (m.return_path.to_string(), false),
        };
        due.push(DueRecipient {
            id,
            message_id: m.id.to_string(),
            address: address.to_string(),
            domain,
            attempts: 0,
            mail_from,
            own_return_path,
            received_at: m.received_at,
        });
    }
    Ok(due)
}

/// Bytes the database uses (pages in use, free pages excluded).
pub fn used_bytes(conn: &Connection) -> Result<u64, StoreError> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// Bytes of queued messages (bodies still held) from one source, for per-source queue shares.
pub fn queued_bytes_of_source(conn: &Connection, source: &str) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(m.size), 0) FROM messages m JOIN message_bodies b ON b.message_id = m.id
             WHERE m.source = ?1",
        )?
        .query_row([source], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// A recipient that is due for a delivery attempt, with what delivery needs of its message.
#[derive(Debug, Clone)]
pub struct DueRecipient {
    pub id: i64,
    pub message_id: String,
    pub address: String,
    pub domain: String,
    pub attempts: u32,
    /// The envelope sender for delivery (the VERP return path).
    pub mail_from: String,
    /// `mail_from` is this recipient's own VERP return path (member mail): delivery also
    /// writes it into the copy (`X-Atmos-Copy`).
    pub own_return_path: bool,
    pub received_at: i64,
}

/// The delivery queue's poll (a const, so a test can read its statement's counters).
pub(crate) const DUE: &str = "SELECT r.id, r.message_id, r.address, r.domain, r.attempts, coalesce(r.return_path, m.return_path, m.mail_from), m.received_at, r.return_path IS NOT NULL
         FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE r.status IN ('accepted', 'deferred') AND r.next_attempt_at <= ?1
         ORDER BY r.next_attempt_at, r.id LIMIT ?2";

/// Up to `limit` recipients not final and due at `now`, oldest due first.
pub fn due(conn: &Connection, now: i64, limit: usize) -> Result<Vec<DueRecipient>, StoreError> {
    let mut stmt = conn.prepare_cached(DUE)?;
    let rows = stmt.query_map(params![now, limit as i64], |r| {
        Ok(DueRecipient {
            id: r.get(0)?,
            message_id: r.get(1)?,
            address: r.get(2)?,
            domain: r.get(3)?,
            attempts: r.get(4)?,
            mail_from: r.get(5)?,
            received_at: r.get(6)?,
            own_return_path: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The earliest `next_attempt_at` among unfinished recipients.
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM recipients WHERE status IN ('accepted', 'deferred')",
        )?
        .query_row([], |r| r.get(0))?)
}

/// The messages of `did` that left with the `Message-ID` header `header_id` (without `<>`):
/// several when bulk mail was split into one copy per recipient.
pub fn by_header_id(
    conn: &Connection,
    did: &str,
    header_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM messages WHERE header_message_id = ?1 AND did = ?2 ORDER BY received_at DESC LIMIT 1000",
    )?;
    let rows = stmt.query_map([header_id, did], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One recipient row of a message: (row id, address, status).
pub fn recipient_rows(
    conn: &Connection,
    message_id: &str,
) -> Result<Vec<(i64, String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, address, status FROM recipients WHERE message_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([message_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Who sent a message and how: (DID, sending domain, source).
pub fn origin(
    conn: &Connection,
    message_id: &str,
) -> Result<Option<(String, String, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT did, from_domain, source FROM messages WHERE id = ?1")?
        .query_row([message_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// The stored body of a message (gone once every recipient is final).
pub fn body(conn: &Connection, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT data FROM message_bodies WHERE message_id = ?1")?
        .query_row([message_id], |r| r.get(0))
        .optional()?)
}

/// The outcome of one attempt for one recipient.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub recipient_id: i64,
    pub at: i64,
    pub mx: Option<&'a str>,
    pub code: Option<u16>,
    pub reply: &'a str,
    pub status: RecipientStatus,
    /// When deferred: the next attempt time.
    pub next_attempt_at: i64,
}

/// Stores an attempt and moves a recipient still queued to its new status; returns the message
/// id and whether every recipient of that message is now final. `None`: the recipient was
/// already final (a late, duplicate attempt), and nothing is changed: a sent or bounced
/// recipient is never reopened.
pub fn record_attempt(
    conn: &Connection,
    a: &AttemptRecord<'_>,
) -> Result<Option<(String, bool)>, StoreError> {
    let updated: Option<String> = conn
        .prepare_cached(
            "UPDATE recipients SET status = ?2, attempts = attempts + 1, last_reply = ?3,
                 next_attempt_at = ?4, updated_at = ?5
             WHERE id = ?1 AND status IN ('accepted', 'deferred') RETURNING message_id",
        )?
        .query_row(
            params![
                a.recipient_id,
                a.status.as_str(),
                a.reply,
                a.next_attempt_at,
                a.at
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(message_id) = updated else {
        return Ok(None);
    };
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (recipient_id, at, mx, code, reply, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        a.recipient_id,
        a.at,
        a.mx,
        a.code,
        a.reply,
        a.status.as_str()
    ])?;
    let open: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM recipients WHERE message_id = ?1
             AND status IN ('accepted', 'deferred')",
        )?
        .query_row([&message_id], |r| r.get(0))?;
    Ok(Some((message_id, open == 0)))
}

/// Those of `ids` still queued (accepted or deferred), in the order given.
pub fn still_open(conn: &Connection, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1 FROM recipients WHERE id = ?1 AND status IN ('accepted', 'deferred')",
    )?;
    let mut open = Vec::with_capacity(ids.len());
    for &id in ids {
        if stmt.exists([id])? {
            open.push(id);
        }
    }
    Ok(open)
}

/// Deletes a message body (after its final state; metadata stays).
pub fn delete_body(conn: &Connection, message_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM message_bodies WHERE message_id = ?1")?
        .execute([message_id])?;
    Ok(())
}

/// One recipient's status, for status APIs and tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipientView {
    pub address: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    pub last_reply: Option<String>,
}

/// The recipients of a message with their status.
pub fn recipients_of(
    conn: &Connection,
    message_id: &str,
) -> Result<Vec<RecipientView>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT address, status, attempts, last_reply FROM recipients WHERE message_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([message_id], |r| {
        let status: String = r.get(1)?;
        Ok(RecipientView {
            address: r.get(0)?,
            status: RecipientStatus::parse(&status).unwrap_or(RecipientStatus::Accepted),
            attempts: r.get(2)?,
            last_reply: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A message as the status API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    #[serde(skip)]
    pub did: String,
    pub from: String,
    pub category: Option<String>,
    pub source: String,
    pub size: i64,
    /// Milliseconds since the epoch.
    pub received_at: i64,
}

fn message_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageView> {
    Ok(MessageView {
        id: r.get(0)?,
        did: r.get(1)?,
        from: r.get(2)?,
        category: r.get(3)?,
        source: r.get(4)?,
        size: r.get(5)?,
        received_at: r.get(6)?,
    })
}

/// One message by id.
pub fn get(conn: &Connection, message_id: &str) -> Result<Option<MessageView>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, did, mail_from, category, source, size, received_at FROM messages WHERE id = ?1",
        )?
        .query_row([message_id], message_view)
        .optional()?)
}

/// A member's messages, newest first: optionally only those with a recipient in `status`,
/// received at or after `since`, and older than the `before` id (the cursor).
pub fn list_for(
    conn: &Connection,
    did: &str,
    filter: &MessageFilter<'_>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<MessageView>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.did, m.mail_from, m.category, m.source, m.size, m.received_at FROM messages m
         WHERE m.did = ?1 AND (?2 IS NULL OR m.received_at >= ?2) AND (?3 IS NULL OR m.id < ?3)
           AND (?4 IS NULL OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.status = ?4))
           AND (?5 IS NULL OR m.received_at < ?5)
           AND (?6 IS NULL OR EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id
                                      AND instr(lower(r.address), lower(?6)) > 0))
           AND (?7 IS NULL OR m.category = ?7)
         ORDER BY m.id DESC LIMIT ?8",
    )?;
    let rows = stmt.query_map(
        params![
            did,
            filter.since,
            before,
            filter.status,
            filter.until,
            filter.recipient,
            filter.category,
            limit
        ],
        message_view,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Which of a member's messages a list shows.
#[derive(Debug, Default, Clone)]
pub struct MessageFilter<'a> {
    /// A recipient in this state.
    pub status: Option<&'a str>,
    /// Arrived at or after (ms).
    pub since: Option<i64>,
    /// Arrived before (ms).
    pub until: Option<i64>,
    /// A recipient address containing this (case-insensitive).
    pub recipient: Option<&'a str>,
    /// `X-Atmos-Category` (none: every category).
    pub category: Option<&'a str>,
}

/// One delivery attempt as the status API shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub at: i64,
    pub mx: Option<String>,
    pub code: Option<i64>,
    pub reply: String,
}

/// Attempts for one recipient of a message, oldest first.
pub fn attempts_of(
    conn: &Connection,
    message_id: &str,
    address: &str,
) -> Result<Vec<AttemptView>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.at, a.mx, a.code, a.reply FROM delivery_attempts a
         JOIN recipients r ON r.id = a.recipient_id
         WHERE r.message_id = ?1 AND r.address = ?2 ORDER BY a.id",
    )?;
    let rows = stmt.query_map(params![message_id, address], |r| {
        Ok(AttemptView {
            at: r.get(0)?,
            mx: r.get(1)?,
            code: r.get(2)?,
            reply: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A member's recipient counts by status for mail received since `since` (DSNs excluded).
pub fn member_counts_since(
    conn: &Connection,
    did: &str,
    since: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.status, count(*) FROM recipients r JOIN messages m ON m.id = r.message_id
         WHERE m.did = ?1 AND m.received_at > ?2 AND m.source != 'dsn' GROUP BY r.status",
    )?;
    let rows = stmt.query_map(params![did, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes a message with its recipients and attempts; returns whether it existed.
pub fn delete(conn: &Connection, message_id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM messages WHERE id = ?1", [message_id])? == 1)
}

/// Marks a recipient bounced because a DSN reported it (after delivery or while queued), with
/// an attempt row saying so. Returns false when it was already bounced.
pub fn mark_bounced(conn: &Connection, id: i64, reply: &str, now: i64) -> Result<bool, StoreError> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM recipients WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if status.as_deref().is_none_or(|s| s == "bounced") {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (recipient_id, at, mx, code, reply, outcome)
         VALUES (?1, ?2, NULL, NULL, ?3, 'bounced')",
    )?
    .execute(params![id, now, reply])?;
    conn.prepare_cached(
        "UPDATE recipients SET status = 'bounced', last_reply = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, reply, now])?;
    Ok(true)
}

/// A message of `did:plc:a` from `s@a.test`, received at 100 with the body `hello` (tests).
#[cfg(test)]
pub(crate) fn test_message<'a>(
    id: &'a str,
    recipients: &'a [Mailbox],
    header_message_id: Option<&'a str>,
) -> NewMessage<'a> {
    NewMessage {
        id,
        did: "did:plc:a",
        mail_from: "s@a.test",
        return_path: "bounces+m1-00@pool.test",
        recipient_return_path: None,
        category: "bulk",
        from_domain: "a.test",
        source: "smtp",
        received_at: 100,
        body: b"hello",
        recipients,
        header_message_id,
        // Counted for its member and the relay (leaked once per test message: test code only).
        counted: Box::leak(Box::new(["did:plc:a".to_string(), "*".to_string()])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn insert_due_attempt_and_final() {
        let (_d, store) = test_store();
        let rcpts = vec![
            Mailbox::parse("a@x.test").unwrap(),
            Mailbox::parse("b@Y.test").unwrap(),
        ];
        store
            .write(|tx| insert(tx, &test_message("m1", &rcpts, Some("m1@a.test"))))
            .unwrap();
        assert_eq!(store.with(|c| due(c, 100, 10)).unwrap().len(), 2);
        store
            .with(|c| {
                assert!(due(c, 99, 10)?.is_empty());
                let d = due(c, 100, 10)?;
                assert_eq!(d.len(), 2);
                assert_eq!(d[1].domain, "y.test");
                let rec = |id, status| AttemptRecord {
                    recipient_id: id,
                    at: 200,
                    mx: Some("mx"),
                    code: Some(250),
                    reply: "250 ok",
                    status,
                    next_attempt_at: 300,
                };
                assert_eq!(
                    record_attempt(c, &rec(d[0].id, RecipientStatus::Sent))?,
                    Some(("m1".into(), false))
                );
                assert_eq!(
                    record_attempt(c, &rec(d[1].id, RecipientStatus::Deferred))?,
                    Some(("m1".into(), false))
                );
                assert_eq!(next_due_at(c)?, Some(300));
                assert_eq!(
                    record_attempt(c, &rec(d[1].id, RecipientStatus::Bounced))?,
                    Some(("m1".into(), true))
                );
                assert_eq!(crate::store::queue::queue_depth(c)?, 0);
                assert_eq!(body(c, "m1")?.as_deref(), Some(&b"hello"[..]));
                delete_body(c, "m1")?;
                assert!(body(c, "m1")?.is_none());
                // A DSN after delivery turns a sent recipient bounced, once.
                assert!(mark_bounced(c, d[0].id, "DSN failed 5.1.1", 400)?);
                assert!(!mark_bounced(c, d[0].id, "DSN failed 5.1.1", 400)?);
                assert!(!mark_bounced(c, 999, "DSN failed 5.1.1", 400)?);
                assert_eq!(recipients_of(c, "m1")?[0].status, RecipientStatus::Bounced);
                let v = recipients_of(c, "m1")?;
                assert_eq!(v[1].attempts, 2);
                assert_eq!(v[1].status, RecipientStatus::Bounced);
                assert_eq!(
                    by_header_id(c, "did:plc:a", "m1@a.test")?,
                    vec!["m1".to_string()]
                );
                assert!(by_header_id(c, "did:plc:b", "m1@a.test")?.is_empty());
                assert!(by_header_id(c, "did:plc:a", "other@a.test")?.is_empty());
                Ok(())
            })
            .unwrap();
    }

    /// A recipient handed to delivery twice (acceptance's hand-over arriving after a scan had
    /// already sent it) must not be reopened by the late attempt: the CI soak once kept such a
    /// recipient deferred for ever, its body already gone.
    #[test]
    fn a_late_attempt_does_not_reopen_a_final_recipient() {
        let (_d, store) = test_store();
        let rcpts = vec![Mailbox::parse("a@x.test").unwrap()];
        store
            .write(|tx| insert(tx, &test_message("m1", &rcpts, None)))
            .unwrap();
        store
            .with(|c| {
                let id = due(c, 100, 10)?[0].id;
                assert_eq!(still_open(c, &[id, 999])?, vec![id]);
                let rec = |status, reply| AttemptRecord {
                    recipient_id: id,
                    at: 200,
                    mx: Some("mx"),
                    code: Some(250),
                    reply,
                    status,
                    next_attempt_at: 300,
                };
                assert_eq!(
                    record_attempt(c, &rec(RecipientStatus::Sent, "250 ok"))?,
                    Some(("m1".into(), true))
                );
                assert!(still_open(c, &[id])?.is_empty());
                let late = rec(
                    RecipientStatus::Deferred,
                    "451 4.3.0 message body unavailable",
                );
                assert_eq!(
                    record_attempt(c, &late)?,
                    None,
                    "a final recipient was reopened"
                );
                let v = recipients_of(c, "m1")?;
                assert_eq!((v[0].status, v[0].attempts), (RecipientStatus::Sent, 1));
                let attempts: i64 =
                    c.query_row("SELECT count(*) FROM delivery_attempts", [], |r| r.get(0))?;
                assert_eq!(attempts, 1, "the late attempt was stored");
                Ok(())
            })
            .unwrap();
    }
}
