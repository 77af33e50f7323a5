//! Internal member labels (BEHAVIOUR §6, §8): `highly_trusted`, `burst_warming`, and whatever rules
//! add later; each may expire.

use super::StoreError;
use rusqlite::{Connection, params};

// The lookups sort in Rust, not with ORDER BY: SQLite re-prepared an ORDER BY form of them at
// every call (each new `now` binding expired the plan), and the spool writer makes one per
// event; that re-parsing was 12 % of its CPU.

const ACTIVE: &str =
    "SELECT label FROM member_labels WHERE did = ?1 AND (expires_at IS NULL OR expires_at > ?2)";

/// Labels of `did` that have not expired at `now`, sorted.
pub fn active(conn: &Connection, did: &str, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(ACTIVE)?;
    let rows = stmt.query_map(params![did, now], |r| r.get(0))?;
    let mut labels: Vec<String> = rows.collect::<Result<_, _>>()?;
    labels.sort_unstable();
    Ok(labels)
}

/// Labels of `did` not expired at `now`, with their expiry (ms; `None` = never), sorted.
pub fn with_expiry(
    conn: &Connection,
    did: &str,
    now: i64,
) -> Result<Vec<(String, Option<i64>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT label, expires_at FROM member_labels WHERE did = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
    )?;
    let rows = stmt.query_map(params![did, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut labels: Vec<(String, Option<i64>)> = rows.collect::<Result<_, _>>()?;
    labels.sort_unstable();
    Ok(labels)
}

/// Adds (or renews) a label.
pub fn add(
    conn: &Connection,
    did: &str,
    label: &str,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO member_labels (did, label, expires_at, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (did, label) DO UPDATE SET expires_at = excluded.expires_at",
        params![did, label, expires_at, now],
    )?;
    Ok(())
}

/// Removes a label; true when it was there.
pub fn remove(conn: &Connection, did: &str, label: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM member_labels WHERE did = ?1 AND label = ?2",
        params![did, label],
    )? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    #[test]
    fn lookups_are_sorted_and_not_prepared_again_at_each_call() {
        let (_dir, store) = crate::store::test_store();
        store
            .with(|conn| {
                add(conn, "did:plc:a", "zz_rule_label", None, 1)?;
                add(conn, "did:plc:a", "highly_trusted", Some(5_000), 1)?;
                add(conn, "did:plc:a", "burst_warming", Some(900), 1)?;
                for now in 0..50 {
                    assert_eq!(
                        active(conn, "did:plc:a", 1000 + now)?,
                        ["highly_trusted", "zz_rule_label"]
                    );
                }
                assert_eq!(
                    with_expiry(conn, "did:plc:a", 800)?,
                    [
                        ("burst_warming".to_string(), Some(900)),
                        ("highly_trusted".to_string(), Some(5_000)),
                        ("zz_rule_label".to_string(), None)
                    ]
                );
                // With `ORDER BY label` this was 49: every call parsed the statement again.
                let stmt = conn.prepare_cached(ACTIVE)?;
                assert_eq!(
                    stmt.get_status(StatementStatus::Run),
                    50,
                    "not active's statement"
                );
                let n = stmt.get_status(StatementStatus::RePrepare);
                assert_eq!(n, 0, "re-prepared {n} times in 50 calls");
                Ok(())
            })
            .unwrap();
    }
}
