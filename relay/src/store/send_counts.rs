//! Recipients counted per member (and for the whole relay, `*`) in minute and hour buckets: the
//! rolling windows the warming caps (BEHAVIOUR §6) are checked against.

use super::StoreError;
use rusqlite::{Connection, params};

/// Recipients counted since `since` (ms; the whole minute it falls in is left out) in a bucket:
/// a member's DID, `*` for the whole relay, `fwd:<did>` and `fwd:*` for forwarded mail.
///
/// The minutes of the window's first, partial hour come from the minute buckets and the rest
/// from the hour buckets, so a day's window reads at most 84 rows however steadily the member
/// sends (1,440 minute buckets cost ~0.3 ms a read).
pub fn recipients_since(conn: &Connection, bucket: &str, since: i64) -> Result<i64, StoreError> {
    let after = since.div_euclid(60_000);
    // The first hour whose every minute is inside the window.
    let first_hour = (after + 1 + 59).div_euclid(60);
    Ok(conn
        .prepare_cached(
            "SELECT (SELECT coalesce(sum(n), 0) FROM send_counts
                     WHERE did = ?1 AND minute > ?2 AND minute < ?3 * 60)
                  + (SELECT coalesce(sum(n), 0) FROM send_counts_hourly
                     WHERE did = ?1 AND hour >= ?3)",
        )?
        .query_row(params![bucket, after, first_hour], |r| r.get(0))?)
}

/// When (ms, to the minute) the oldest recipient counted since `since` was accepted: a refused
/// sender may retry once it leaves the window.
pub fn oldest_since(
    conn: &Connection,
    bucket: &str,
    since: i64,
) -> Result<Option<i64>, StoreError> {
    let oldest: Option<i64> = conn
        .prepare_cached("SELECT min(minute) FROM send_counts WHERE did = ?1 AND minute > ?2")?
        .query_row(params![bucket, since.div_euclid(60_000)], |r| r.get(0))?;
    Ok(oldest.map(|m| m * 60_000))
}

/// Adds `n` recipients at `at` to the minute and hour buckets named, dropping buckets older
/// than two days.
pub fn add(conn: &Connection, buckets: &[String], at: i64, n: i64) -> Result<(), StoreError> {
    let minute = at.div_euclid(60_000);
    let hour = minute.div_euclid(60);
    let mut up = conn.prepare_cached(
        "INSERT INTO send_counts (did, minute, n) VALUES (?1, ?2, ?3)
         ON CONFLICT (did, minute) DO UPDATE SET n = n + excluded.n",
    )?;
    let mut up_hour = conn.prepare_cached(
        "INSERT INTO send_counts_hourly (did, hour, n) VALUES (?1, ?2, ?3)
         ON CONFLICT (did, hour) DO UPDATE SET n = n + excluded.n",
    )?;
    let mut prune =
        conn.prepare_cached("DELETE FROM send_counts WHERE did = ?1 AND minute < ?2")?;
    let mut prune_hours =
        conn.prepare_cached("DELETE FROM send_counts_hourly WHERE did = ?1 AND hour < ?2")?;
    for key in buckets {
        up.execute(params![key, minute, n])?;
        up_hour.execute(params![key, hour, n])?;
        prune.execute(params![key, minute - 2 * 1440])?;
        prune_hours.execute(params![key, hour - 2 * 24])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    /// Counts added at jittery times over three days; every window read (an hour, a day, a
    /// minute, at any offset) equals the sum of its minute buckets.
    #[test]
    fn windows_read_from_hours_and_minutes_equal_the_minute_buckets() {
        let (_d, store) = test_store();
        store
            .write(|tx| {
                let mut at = 1_800_000_000_000i64;
                let mut seed = 0x9e37_79b9_7f4a_7c15u64;
                for step in 0..3_000 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    at += (seed % 180_000) as i64;
                    add(tx, &["did:plc:a".into(), "*".into()], at, 1 + (seed % 4) as i64)?;
                    for window in [60_000, 3_600_000, 86_400_000] {
                        let since = at - window + (seed % 60_000) as i64;
                        let scanned: i64 = tx.query_row(
                            "SELECT coalesce(sum(n), 0) FROM send_counts WHERE did = ?1 AND minute > ?2",
                            params!["did:plc:a", since.div_euclid(60_000)],
                            |r| r.get(0),
                        )?;
                        assert_eq!(recipients_since(tx, "did:plc:a", since)?, scanned, "step {step}");
                        assert_eq!(recipients_since(tx, "*", since)?, scanned, "step {step}, relay");
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
