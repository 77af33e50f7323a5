//! Versioned migrations. `PRAGMA user_version` holds the number of migrations applied.

use super::StoreError;
use rusqlite::Connection;

/// Each entry is one migration; never edit a released one, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: members, domains, messages, recipients, attempts, events.
    "
    CREATE TABLE members (
        did           TEXT PRIMARY KEY,
        handle        TEXT,
        state         TEXT NOT NULL CHECK (state IN ('pending', 'active', 'suspended')),
        state_reason  TEXT,
        api_key_hash  TEXT NOT NULL,
        hourly_limit  INTEGER,
        daily_limit   INTEGER,
        created_at    INTEGER NOT NULL,
        approved_at   INTEGER
    );
    CREATE UNIQUE INDEX members_handle ON members(handle) WHERE handle IS NOT NULL;

    CREATE TABLE sending_domains (
        domain      TEXT PRIMARY KEY,
        did         TEXT NOT NULL REFERENCES members(did) ON DELETE CASCADE,
        forward_to  TEXT,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX sending_domains_did ON sending_domains(did);

    CREATE TABLE messages (
        id           TEXT PRIMARY KEY,
        did          TEXT NOT NULL,
        mail_from    TEXT NOT NULL,
        from_domain  TEXT NOT NULL,
        size         INTEGER NOT NULL,
        source       TEXT NOT NULL,
        received_at  INTEGER NOT NULL
    );
    CREATE INDEX messages_did ON messages(did, received_at);

    CREATE TABLE message_bodies (
        message_id  TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        data        BLOB NOT NULL
    );

    CREATE TABLE recipients (
        id               INTEGER PRIMARY KEY,
        message_id       TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        address          TEXT NOT NULL,
        domain           TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('accepted', 'deferred', 'sent', 'bounced')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_reply       TEXT,
        updated_at       INTEGER NOT NULL
    );
    CREATE INDEX recipients_message ON recipients(message_id);
    CREATE INDEX recipients_due ON recipients(next_attempt_at) WHERE status IN ('accepted', 'deferred');

    CREATE TABLE delivery_attempts (
        id            INTEGER PRIMARY KEY,
        recipient_id  INTEGER NOT NULL REFERENCES recipients(id) ON DELETE CASCADE,
        at            INTEGER NOT NULL,
        mx            TEXT,
        code          INTEGER,
        reply         TEXT NOT NULL,
        outcome       TEXT NOT NULL
    );
    CREATE INDEX delivery_attempts_recipient ON delivery_attempts(recipient_id);

    CREATE TABLE relay_events (
        id          INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,
        type        TEXT NOT NULL,
        did         TEXT,
        message_id  TEXT,
        actor       TEXT,
        data        TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX relay_events_did ON relay_events(did, at);
    CREATE INDEX relay_events_type ON relay_events(type, at);
    ",
    // 2: DKIM keys (private halves sealed with the KEK).
    "
    CREATE TABLE dkim_keys (
        id              INTEGER PRIMARY KEY,
        domain          TEXT NOT NULL,
        owner           TEXT NOT NULL CHECK (owner IN ('member', 'operator')),
        selector        TEXT NOT NULL,
        algorithm       TEXT NOT NULL CHECK (algorithm IN ('rsa', 'ed25519')),
        private_sealed  BLOB NOT NULL,
        public_key      TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        retired_at      INTEGER,
        UNIQUE (domain, selector)
    );
    CREATE INDEX dkim_keys_active ON dkim_keys(domain) WHERE retired_at IS NULL;
    ",
    // 3: the VERP return path and the category of each message.
    "
    ALTER TABLE messages ADD COLUMN return_path TEXT;
    ALTER TABLE messages ADD COLUMN category TEXT;
    ",
    // 4: HTTP idempotency keys (kept 24 h).
    "
    CREATE TABLE idempotency_keys (
        did          TEXT NOT NULL,
        key          TEXT NOT NULL,
        body_sha256  BLOB NOT NULL,
        status       INTEGER NOT NULL,
        response     TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (did, key)
    );
    ",
    // 5: internal member labels (highly_trusted, burst_warming...), optionally expiring.
    "
    CREATE TABLE member_labels (
        did         TEXT NOT NULL,
        label       TEXT NOT NULL,
        expires_at  INTEGER,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (did, label)
    );
    CREATE INDEX recipients_recent ON messages(received_at);
    ",
    // 6: per-member suppression list.
    "
    CREATE TABLE suppressions (
        did         TEXT NOT NULL,
        address     TEXT NOT NULL,
        reason      TEXT NOT NULL CHECK (reason IN ('unsubscribe', 'bounce', 'complaint', 'manual')),
        message_id  TEXT,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (did, address)
    );
    ",
    // 7: recipients counted per message (0 for DSNs: the relay's own mail never counts).
    "
    ALTER TABLE messages ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;
    UPDATE messages SET counted = (SELECT count(*) FROM recipients r WHERE r.message_id = messages.id)
        WHERE source != 'dsn';
    ",
    // 8: per-minute recipient counts per member ('*' = the whole relay), so a rolling window
    // sums at most 1,440 rows however much mail there is.
    "
    CREATE TABLE send_counts (
        did     TEXT NOT NULL,
        minute  INTEGER NOT NULL,
        n       INTEGER NOT NULL,
        PRIMARY KEY (did, minute)
    ) WITHOUT ROWID;
    INSERT INTO send_counts (did, minute, n)
        SELECT did, received_at / 60000, sum(counted) FROM messages WHERE counted > 0 GROUP BY did, received_at / 60000;
    INSERT INTO send_counts (did, minute, n)
        SELECT '*', received_at / 60000, sum(counted) FROM messages WHERE counted > 0 GROUP BY received_at / 60000;
    ",
    // 9: the inbound log (BEHAVIOUR §7): every message the MX accepted, how it was classified and
    // what was done with it; and each message's Message-ID header, so reports can find it.
    "
    CREATE TABLE inbound_messages (
        id              INTEGER PRIMARY KEY,
        received_at     INTEGER NOT NULL,
        peer            TEXT NOT NULL,
        mail_from       TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        classification  TEXT NOT NULL CHECK (classification IN ('dsn', 'arf', 'operator', 'reply', 'srs_bounce', 'other')),
        did             TEXT,
        message_id      TEXT,
        subject         TEXT,
        action          TEXT NOT NULL,
        size            INTEGER NOT NULL
    );
    CREATE INDEX inbound_messages_at ON inbound_messages(received_at);
    CREATE INDEX inbound_messages_did ON inbound_messages(did, received_at);
    ALTER TABLE messages ADD COLUMN header_message_id TEXT;
    CREATE INDEX messages_header_id ON messages(header_message_id) WHERE header_message_id IS NOT NULL;
    ",
    // 10: the rules engine (BEHAVIOUR §8): windowed counters in per-minute buckets, every verdict
    // (shadow ones too), and how far the engine and the Kafka outbox have read the event log.
    "
    CREATE TABLE rule_counters (
        counter  TEXT NOT NULL,
        entity   TEXT NOT NULL,
        minute   INTEGER NOT NULL,
        n        INTEGER NOT NULL,
        PRIMARY KEY (counter, entity, minute)
    ) WITHOUT ROWID;
    CREATE TABLE rule_verdicts (
        id        INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        event_id  INTEGER NOT NULL,
        rule      TEXT NOT NULL,
        did       TEXT,
        effect    TEXT NOT NULL,
        shadow    INTEGER NOT NULL,
        applied   INTEGER NOT NULL
    );
    CREATE INDEX rule_verdicts_at ON rule_verdicts(at);
    CREATE TABLE rule_cursor (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        event       INTEGER NOT NULL,
        judge_from  INTEGER NOT NULL
    );
    -- The Kafka outbox: the last event published to the events topic.
    CREATE TABLE outbox_cursor (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        event  INTEGER NOT NULL
    );
    ",
    "
    -- Per-recipient VERP: each recipient's own envelope sender.
    ALTER TABLE recipients ADD COLUMN return_path TEXT;
    -- Verified bounce and complaint reports, once per recipient of a message: what the rules count.
    CREATE TABLE report_facts (
        recipient_id  INTEGER NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('bounce', 'complaint')),
        at            INTEGER NOT NULL,
        PRIMARY KEY (recipient_id, kind)
    ) WITHOUT ROWID;
    ",
    "
    -- The confidential OAuth client's keys (sealed); 'next' is published before it signs.
    CREATE TABLE oauth_client_keys (
        kid         TEXT PRIMARY KEY,
        sealed      BLOB NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('active', 'next', 'retired')),
        created_at  INTEGER NOT NULL,
        retired_at  INTEGER
    );
    -- Sign-ins waiting for their callback, by SHA-256 of the OAuth state.
    CREATE TABLE signin_states (
        state_hash    TEXT PRIMARY KEY,
        browser_hash  TEXT NOT NULL,
        sealed        BLOB NOT NULL,
        created_at    INTEGER NOT NULL
    );
    -- Signed-in browsers, by SHA-256 of the session cookie.
    CREATE TABLE web_sessions (
        id_hash     TEXT PRIMARY KEY,
        did         TEXT NOT NULL,
        handle      TEXT,
        csrf        TEXT NOT NULL,
        sealed      BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        last_used   INTEGER NOT NULL
    );
    CREATE INDEX web_sessions_did ON web_sessions(did, created_at);
    ",
    "
    -- Running totals of the rules' windows: `total` is the sum of a counter's buckets after
    -- minute `through`. Reading a window subtracts only the buckets that left it since the last
    -- read, so a 30-day window costs a lookup, not a scan of 43,200 minute buckets.
    CREATE TABLE rule_windows (
        counter  TEXT NOT NULL,
        entity   TEXT NOT NULL,
        minutes  INTEGER NOT NULL,
        through  INTEGER NOT NULL,
        total    INTEGER NOT NULL,
        PRIMARY KEY (counter, entity, minutes)
    ) WITHOUT ROWID;
    -- Recipient counts per hour beside the per-minute ones: a day's window reads at most 59
    -- minute buckets and 25 hour buckets, not 1,440 minutes (the warming check runs twice a
    -- message).
    CREATE TABLE send_counts_hourly (
        did   TEXT NOT NULL,
        hour  INTEGER NOT NULL,
        n     INTEGER NOT NULL,
        PRIMARY KEY (did, hour)
    ) WITHOUT ROWID;
    INSERT INTO send_counts_hourly (did, hour, n)
        SELECT did, minute / 60, sum(n) FROM send_counts GROUP BY did, minute / 60;
    ",
    "
    -- A rotation publishes first and switches later: new keys wait, listed but not signing,
    -- until DNS serves their records.
    ALTER TABLE dkim_keys ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
    -- A domain an active member adds waits for an operator's review (existing ones are in use).
    ALTER TABLE sending_domains ADD COLUMN approved INTEGER NOT NULL DEFAULT 1;
    -- The client network that started a sign-in, so one network cannot fill the table.
    ALTER TABLE signin_states ADD COLUMN net TEXT NOT NULL DEFAULT '';
    CREATE INDEX signin_states_net ON signin_states(net);
    CREATE INDEX web_sessions_last_used ON web_sessions(last_used);
    ",
];

/// Number of migrations this binary knows.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to `VERSION`, one transaction per migration.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        return Err(StoreError::FutureSchema {
            found: current,
            known: VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_future_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::FutureSchema { .. })
        ));
    }
}
