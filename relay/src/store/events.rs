//! The `relay_events` log: every significant action, written in the transaction of its change.

use super::StoreError;
use rusqlite::{Connection, params};

/// One event to append.
#[derive(Debug, Clone, Default)]
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub did: Option<&'a str>,
    pub message_id: Option<&'a str>,
    /// Who caused it: `cli`, `admin`, `rule:<name>`, `relay`.
    pub actor: Option<&'a str>,
    pub data: serde_json::Value,
}

/// A stored event.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub did: Option<String>,
    pub message_id: Option<String>,
    pub actor: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Appends an event; returns its id.
pub fn append(conn: &Connection, at: i64, e: &NewEvent<'_>) -> Result<i64, StoreError> {
    let data = if e.data.is_null() {
        "{}".to_string()
    } else {
        e.data.to_string()
    };
    conn.prepare_cached(
        "INSERT INTO relay_events (at, type, did, message_id, actor, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![at, e.kind, e.did, e.message_id, e.actor, data])?;
    Ok(conn.last_insert_rowid())
}

/// Number of events of `kind` for `did` since `since`.
pub fn count_since(
    conn: &Connection,
    did: &str,
    kind: &str,
    since: i64,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM relay_events WHERE did = ?1 AND type = ?2 AND at > ?3",
        )?
        .query_row(params![did, kind, since], |r| r.get(0))?)
}

/// (id, DID) of up to `limit` events of the given kinds after id `after`, oldest first.
pub fn dids_after(
    conn: &Connection,
    after: i64,
    kinds: &[&str],
    limit: u32,
) -> Result<Vec<(i64, String)>, StoreError> {
    let marks = vec!["?"; kinds.len()].join(", ");
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, did FROM relay_events WHERE id > ? AND did IS NOT NULL
         AND type IN ({marks}) ORDER BY id LIMIT ?"
    ))?;
    let mut args: Vec<rusqlite::types::Value> = vec![after.into()];
    args.extend(kinds.iter().map(|t| t.to_string().into()));
    args.push(i64::from(limit).into());
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The member an event belongs to, if the event exists and has one.
pub fn did_of(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT did FROM relay_events WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Events with an id above `after`, oldest first (the rules engine's feed).
pub fn after(conn: &Connection, after: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, type, did, message_id, actor, data FROM relay_events
         WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], row_to_event)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let data: String = r.get(6)?;
    Ok(Event {
        id: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        did: r.get(3)?,
        message_id: r.get(4)?,
        actor: r.get(5)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    })
}

/// Events, newest first, optionally for one DID and/or type.
pub fn list(
    conn: &Connection,
    did: Option<&str>,
    kind: Option<&str>,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    list_between(conn, did, kind, None, None, limit)
}

/// [`list`] within `[since, until)` (ms; either open).
pub fn list_between(
    conn: &Connection,
    did: Option<&str>,
    kind: Option<&str>,
    since: Option<i64>,
    until: Option<i64>,
    limit: u32,
) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, type, did, message_id, actor, data FROM relay_events
         WHERE (?1 IS NULL OR did = ?1) AND (?2 IS NULL OR type = ?2)
           AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
         ORDER BY id DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(params![did, kind, since, until, limit], row_to_event)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
