//! Time series for the pages' charts, aggregated here (the browser never downloads raw rows):
//! recipients by status per bucket of their message's arrival, complaints per bucket, and
//! delivery latency. `did = None` is the whole relay.

use super::StoreError;
use rusqlite::{Connection, params};

/// One bucket of a series.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Start of the bucket (ms since the epoch).
    pub start: i64,
    /// Recipients of the messages that arrived in the bucket.
    pub accepted: i64,
    /// …of which delivered, waiting for a retry, bounced (their current state).
    pub sent: i64,
    pub deferred: i64,
    pub bounced: i64,
    /// Verified complaints received in the bucket.
    pub complained: i64,
}

/// `buckets` buckets of `bucket_ms` ending at `now` (the last one holds `now`), oldest first.
pub fn series(
    conn: &Connection,
    did: Option<&str>,
    now: i64,
    bucket_ms: i64,
    buckets: i64,
) -> Result<Vec<Bucket>, StoreError> {
    let bucket_ms = bucket_ms.max(1);
    let first = (now / bucket_ms - (buckets - 1)) * bucket_ms;
    let mut out: Vec<Bucket> = (0..buckets)
        .map(|i| Bucket {
            start: first + i * bucket_ms,
            ..Bucket::default()
        })
        .collect();
    let slot = |t: i64| usize::try_from((t - first) / bucket_ms).ok();
    let mut stmt = conn.prepare_cached(
        "SELECT (m.received_at - ?3) / ?4, r.status, count(*)
         FROM messages m JOIN recipients r ON r.message_id = m.id
         WHERE (?1 IS NULL OR m.did = ?1) AND m.received_at >= ?2 AND m.source IN ('smtp', 'http')
         GROUP BY 1, 2",
    )?;
    let rows = stmt.query_map(params![did, first, first, bucket_ms], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (i, status, n) = row?;
        let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        b.accepted += n;
        match status.as_str() {
            "sent" => b.sent += n,
            "deferred" => b.deferred += n,
            "bounced" => b.bounced += n,
            _ => {}
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT at, count(*) FROM relay_events
         WHERE type = 'complaint_received' AND (?1 IS NULL OR did = ?1) AND at >= ?2
         GROUP BY at / ?3",
    )?;
    let rows = stmt.query_map(params![did, first, bucket_ms], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (at, n) = row?;
        if let Some(b) = slot(at).and_then(|i| out.get_mut(i)) {
            b.complained += n;
        }
    }
    Ok(out)
}

/// Delivery latency of recipients delivered since `since`: (count, median ms, 95th percentile ms)
/// from arrival to the attempt that delivered them.
pub fn delivery_latency(conn: &Connection, since: i64) -> Result<(i64, i64, i64), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.at - m.received_at FROM delivery_attempts a
         JOIN recipients r ON r.id = a.recipient_id JOIN messages m ON m.id = r.message_id
         WHERE a.at >= ?1 AND a.outcome = 'sent' ORDER BY 1",
    )?;
    let all: Vec<i64> = stmt
        .query_map([since], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let at = |q: f64| {
        if all.is_empty() {
            0
        } else {
            all[((all.len() - 1) as f64 * q).round() as usize]
        }
    };
    Ok((all.len() as i64, at(0.5), at(0.95)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn buckets_count_recipients_by_state_and_complaints_by_time() {
        let (_d, store) = test_store();
        let hour = 3_600_000;
        let now = 100 * hour + 10;
        store
            .write(|tx| {
                for (id, did, at, statuses) in [
                    ("m1", "did:a", now - 1, vec!["sent", "bounced"]),
                    ("m2", "did:a", now - hour, vec!["deferred"]),
                    ("m3", "did:b", now - 1, vec!["sent"]),
                    ("m4", "did:a", now - 30 * hour, vec!["sent"]),
                ] {
                    tx.execute(
                        "INSERT INTO messages (id, did, mail_from, from_domain, size, source, received_at)
                         VALUES (?1, ?2, 'a@x.test', 'x.test', 1, 'smtp', ?3)",
                        params![id, did, at],
                    )?;
                    for s in statuses {
                        tx.execute(
                            "INSERT INTO recipients (message_id, address, domain, status, next_attempt_at, updated_at)
                             VALUES (?1, 'r@y.test', 'y.test', ?2, 0, 0)",
                            params![id, s],
                        )?;
                    }
                }
                tx.execute(
                    "INSERT INTO relay_events (at, type, did) VALUES (?1, 'complaint_received', 'did:a')",
                    [now - 5],
                )?;
                Ok(())
            })
            .expect("rows");
        let s = store
            .with(|c| series(c, Some("did:a"), now, hour, 24))
            .expect("series");
        assert_eq!(s.len(), 24);
        let last = s.last().expect("last");
        assert_eq!(
            (last.accepted, last.sent, last.bounced, last.complained),
            (2, 1, 1, 1)
        );
        assert_eq!((s[22].accepted, s[22].deferred), (1, 1));
        assert_eq!(
            s.iter().map(|b| b.accepted).sum::<i64>(),
            3,
            "older than 24 h is out"
        );
        let all = store.with(|c| series(c, None, now, hour, 24)).expect("all");
        assert_eq!(
            all.last().map(|b| b.sent),
            Some(2),
            "the relay counts every member"
        );
    }
}
