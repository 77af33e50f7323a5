//! The Kafka outbox (BEHAVIOUR §8): events are stored first (`relay_events`), then published in id
//! order; this cursor is the last one the broker acknowledged.

use super::StoreError;
use rusqlite::{Connection, OptionalExtension};

/// The last event published (0 before the first).
pub fn cursor(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT event FROM outbox_cursor WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Moves the cursor forward (never back).
pub fn advance(conn: &Connection, event: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO outbox_cursor (id, event) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET event = max(event, excluded.event)",
    )?
    .execute([event])?;
    Ok(())
}
