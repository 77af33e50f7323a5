//! The store: the only module that speaks SQL (rusqlite, bundled SQLite, WAL).
//!
//! Writes that must be durable go through the spool's single writer (group commit); reads use a
//! small pool of read connections. Submodules hold the typed queries of one domain word each.

pub mod dkim_keys;
pub mod events;
pub mod idempotency;
pub mod inbound_log;
pub mod labels;
pub mod members;
pub mod messages;
pub mod oauth_keys;
pub mod outbox;
pub mod queue;
pub mod rules;
mod schema;
pub mod send_counts;
pub mod series;
pub mod suppressions;
pub mod web_sessions;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub use rusqlite::Transaction;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database schema version {found} is newer than this binary knows ({known})")]
    FutureSchema { found: i64, known: i64 },
    #[error("{0}")]
    Invalid(String),
    /// The queue holds as much as the operator allows (`server.max_queue_bytes`).
    #[error("queue full")]
    QueueFull,
    /// A sending cap is reached; retry after this many seconds.
    #[error("rate limited")]
    RateLimited(u64),
    /// The member may no longer send: its state changed, or its key was regenerated, since it
    /// authenticated.
    #[error("member may not send: {0:?}")]
    MayNotSend(members::Standing),
    /// A write was abandoned (a job panicked, or left the transaction unusable).
    #[error("write abandoned: {0}")]
    Abandoned(String),
}

/// Milliseconds since the Unix epoch, the time unit of every column.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Handle to the database: file path and a pool of read connections.
pub struct Store {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
}

impl Store {
    /// Opens (creating and migrating when needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.into(),
            source,
        })?;
        let path = data_dir.join("atmos.sqlite");
        let mut conn = open_connection(&path)?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            path,
            readers: Mutex::new(vec![conn]),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a new read-write connection (the spool writer owns one).
    pub fn connect(&self) -> Result<Connection, StoreError> {
        open_connection(&self.path)
    }

    /// Runs `f` with a pooled connection. Intended for short reads and for CLI writes.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self.readers.lock().map(|mut p| p.pop()).unwrap_or(None);
        let mut conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let result = f(&mut conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 8
        {
            pool.push(conn);
        }
        result
    }

    /// Runs `f` in one immediate transaction on a pooled connection (CLI and admin writes).
    pub fn write<R>(
        &self,
        f: impl FnOnce(&Transaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let r = f(&tx)?;
            tx.commit()?;
            Ok(r)
        })
    }
}

/// Waits for a lock another connection holds: 1 ms at a time, for up to 10 s. SQLite's own
/// busy timeout backs off to 100 ms sleeps, so a writer could sleep long after the lock was
/// free, and an acceptance commit behind it with it.
fn busy_wait(attempt: i32) -> bool {
    if attempt >= 10_000 {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_millis(1));
    true
}

/// Prepared statements kept per connection. The spool writer alone runs ~40 distinct cached
/// statements per message (accept, delivery result, rules); rusqlite's default of 16 evicted
/// them in turn, and re-parsing them was 18 % of the writer's CPU (perf, 2026-12-05).
const STATEMENT_CACHE: usize = 256;

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_handler(Some(busy_wait))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // A stable plan per statement: without it SQLite re-prepared some cached statements (the
    // delivery poll, any `ORDER BY` with a bound time) at every call because a new binding
    // might pick a better plan. The plans of the hot queries are the same either way.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // FULL: in WAL mode the log is fsynced at every commit, which is what "accepted" promises.
    // temp_store MEMORY: the spool's per-job savepoints write every page a job changes to a
    // statement journal, which past 64 KiB spilled to a temp file (26 page writes per message
    // on the send path; it is discarded at each RELEASE, so never needed on disk).
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = ON;",
    )?;
    Ok(conn)
}

#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection keeps every statement the store caches prepared, however many run in turn:
    /// the second round runs the statements of the first (with rusqlite's default 16-entry
    /// cache, each was parsed again).
    #[test]
    fn a_connection_keeps_the_store_statements_prepared() {
        let (_dir, store) = test_store();
        store
            .with(|conn| {
                let sql = |i: usize| format!("SELECT {i} FROM members WHERE did = ?1");
                for _ in 0..2 {
                    for i in 0..STATEMENT_CACHE / 2 {
                        conn.prepare_cached(&sql(i))?.execute(["did:plc:none"]).ok();
                    }
                }
                for i in 0..STATEMENT_CACHE / 2 {
                    let runs = conn
                        .prepare_cached(&sql(i))?
                        .get_status(rusqlite::StatementStatus::Run);
                    assert_eq!(runs, 2, "statement {i} was prepared again");
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn cached_statements_are_not_prepared_again_when_a_binding_changes() {
        let (_dir, store) = test_store();
        store
            .with(|conn| {
                for now in 0..20 {
                    messages::due(conn, 1_000 + now, 64)?;
                }
                let stmt = conn.prepare_cached(messages::DUE)?;
                assert_eq!(stmt.get_status(rusqlite::StatementStatus::Run), 20);
                // Without the stable-plan setting this was 20: one parse per poll.
                let n = stmt.get_status(rusqlite::StatementStatus::RePrepare);
                assert_eq!(
                    n, 0,
                    "the delivery poll was re-prepared {n} times in 20 calls"
                );
                Ok(())
            })
            .unwrap();
    }
}
