//! The inbound log (BEHAVIOUR §7): one row per accepted inbound recipient, for `/admin/inbound`.

use super::StoreError;
use rusqlite::{Connection, params};

/// One row to record.
#[derive(Debug, Clone)]
pub struct NewInbound<'a> {
    pub received_at: i64,
    pub peer: &'a str,
    pub mail_from: &'a str,
    pub recipient: &'a str,
    /// `dsn`, `arf`, `operator`, `reply`, `srs_bounce` or `other`.
    pub classification: &'a str,
    pub did: Option<&'a str>,
    /// The relay's message this mail is about (a bounced or complained-of message).
    pub message_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// What the relay did (`bounce_recorded`, `forwarded`, `logged`...).
    pub action: &'a str,
    pub size: usize,
}

/// One row of the inbound log.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboundEntry {
    pub id: i64,
    pub received_at: i64,
    pub peer: String,
    pub mail_from: String,
    pub recipient: String,
    pub classification: String,
    pub did: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub action: String,
    pub size: i64,
}

/// Appends a row.
pub fn insert(conn: &Connection, m: &NewInbound<'_>) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO inbound_messages (received_at, peer, mail_from, recipient, classification, did,
             message_id, subject, action, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        m.received_at,
        m.peer,
        m.mail_from,
        m.recipient,
        m.classification,
        m.did,
        m.message_id,
        m.subject,
        m.action,
        m.size as i64
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Rows, newest first, optionally of one classification and/or member.
pub fn list(
    conn: &Connection,
    classification: Option<&str>,
    did: Option<&str>,
    limit: u32,
) -> Result<Vec<InboundEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, received_at, peer, mail_from, recipient, classification, did, message_id,
                subject, action, size
         FROM inbound_messages
         WHERE (?1 IS NULL OR classification = ?1) AND (?2 IS NULL OR did = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![classification, did, limit], |r| {
        Ok(InboundEntry {
            id: r.get(0)?,
            received_at: r.get(1)?,
            peer: r.get(2)?,
            mail_from: r.get(3)?,
            recipient: r.get(4)?,
            classification: r.get(5)?,
            did: r.get(6)?,
            message_id: r.get(7)?,
            subject: r.get(8)?,
            action: r.get(9)?,
            size: r.get(10)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records that a verified report of `kind` touched `recipient_id`; false when one already did
/// (a fact is counted once per recipient of a message).
pub fn first_report_fact(
    tx: &Connection,
    recipient_id: i64,
    kind: &str,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "INSERT OR IGNORE INTO report_facts (recipient_id, kind, at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![recipient_id, kind, now])?
        == 1)
}
