//! The spool: one writer thread that commits every durable write, sharing fsyncs (group commit).
//!
//! Callers hand a closure to [`Spool::write`]; the writer drains all pending closures, runs each in
//! its own savepoint inside one transaction, commits once (SQLite WAL with `synchronous = FULL`
//! fsyncs the log at commit) and only then answers every caller. So N concurrent sessions cost
//! one fsync, and no caller hears "ok" before its data is on disk.

use crate::store::{Store, StoreError};
use rusqlite::{Connection, Transaction};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most jobs folded into one transaction.
const MAX_BATCH: usize = 512;
/// How long a batch of only lazy jobs waits for company before it commits alone.
const LINGER: Duration = Duration::from_millis(5);
/// Lazy jobs that commit without waiting any longer (a queue draining is its own company).
const LAZY_BATCH: usize = 32;

/// A durable write that did not happen.
#[derive(Debug, thiserror::Error, Clone)]
pub enum SpoolError {
    /// The job itself failed (constraint, bad data); nothing of it was kept.
    #[error("write failed: {0}")]
    Job(Arc<StoreError>),
    /// The batch's commit (and so its fsync) failed; nothing of it was kept.
    #[error("commit failed: {0}")]
    Commit(Arc<StoreError>),
    /// The writer has stopped.
    #[error("spool is closed")]
    Closed,
}

type Completion = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;
/// A job runs in the batch transaction and says whether it left the transaction usable
/// (`false`: its savepoint could not be released or rolled back, so the batch must not commit).
type Work = Box<dyn FnOnce(&Transaction<'_>) -> (Completion, bool) + Send>;

/// A queued job: its work, and when it was queued if it may wait for company ([`Spool::write_lazy`]).
struct Job {
    work: Work,
    lazy: Option<Instant>,
}

/// A durable write: runs inside the batch transaction.
pub trait Write<R>: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static {}
impl<R, F: FnOnce(&Transaction<'_>) -> Result<R, StoreError> + Send + 'static> Write<R> for F {}

/// Resolves once the commit that holds a queued write is done.
pub type Written<R> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<R, SpoolError>> + Send>>;

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    jobs: mpsc::Sender<Job>,
    stats: Arc<SpoolStats>,
}

/// Counters kept by the writer (for metrics and benchmarks).
#[derive(Default, Debug)]
pub struct SpoolStats {
    pub commits: std::sync::atomic::AtomicU64,
    pub jobs: std::sync::atomic::AtomicU64,
    pub commit_micros: std::sync::atomic::AtomicU64,
    /// Batches of only lazy writes that waited for company.
    pub lingered: std::sync::atomic::AtomicU64,
    /// Told each commit's duration (the serving relay's latency histogram); the spool itself
    /// knows no metrics registry.
    pub on_commit: CommitObserver,
}

/// A callback for each commit's duration, set once.
#[derive(Default)]
pub struct CommitObserver(std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>);

impl std::fmt::Debug for CommitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "CommitObserver(set)"
        } else {
            "CommitObserver(unset)"
        })
    }
}

impl CommitObserver {
    /// Sets the callback; a second one is ignored.
    pub fn set(&self, f: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.0.set(Box::new(f));
    }

    fn observe(&self, d: Duration) {
        if let Some(f) = self.0.get() {
            f(d);
        }
    }
}

impl Spool {
    /// Starts the writer on a new connection to `store`.
    pub fn start(store: &Store) -> Result<(Self, std::thread::JoinHandle<()>), StoreError> {
        Ok(Self::start_on(store.connect()?))
    }

    /// Starts the writer on a given connection (tests inject faults this way).
    pub fn start_on(conn: Connection) -> (Self, std::thread::JoinHandle<()>) {
        Self::start_lingering(conn, LINGER)
    }

    /// Starts the writer with lazy writes waiting up to `linger` for company.
    fn start_lingering(conn: Connection, linger: Duration) -> (Self, std::thread::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(SpoolStats::default());
        let thread_stats = stats.clone();
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer_loop(conn, rx, &thread_stats, linger))
            .expect("spawn spool writer thread");
        (Self { jobs, stats }, handle)
    }

    /// Runs `f` in the next group transaction; resolves after the commit's fsync.
    pub async fn write<R: Send + 'static>(&self, f: impl Write<R>) -> Result<R, SpoolError> {
        self.enqueue(f)?.await
    }

    /// Like [`Spool::write`] for a write nobody is waiting on (a delivery result): it rides
    /// with the next commit, and commits alone only after [`LINGER`] with no other write, or
    /// once [`LAZY_BATCH`] such writes wait. At part load a delivery result otherwise cost a
    /// commit and an fsync of its own (1.46 commits per message at half the maximum rate).
    pub async fn write_lazy<R: Send + 'static>(&self, f: impl Write<R>) -> Result<R, SpoolError> {
        self.enqueue_lazy(f)?.await
    }

    /// Queues `f` now as a lazy write ([`Spool::write_lazy`]).
    pub fn enqueue_lazy<R: Send + 'static>(
        &self,
        f: impl Write<R>,
    ) -> Result<Written<R>, SpoolError> {
        self.queue(f, Some(Instant::now()))
    }

    /// Queues `f` now; the returned future resolves after the commit that includes it.
    pub fn enqueue<R: Send + 'static>(&self, f: impl Write<R>) -> Result<Written<R>, SpoolError> {
        self.queue(f, None)
    }

    fn queue<R: Send + 'static>(
        &self,
        f: impl Write<R>,
        lazy: Option<Instant>,
    ) -> Result<Written<R>, SpoolError> {
        let (done, result) = oneshot::channel::<Result<R, SpoolError>>();
        let work: Work = Box::new(move |tx: &Transaction<'_>| -> (Completion, bool) {
            let (outcome, usable) = run_in_savepoint(tx, f);
            let completion: Completion = Box::new(move |commit: Result<(), Arc<StoreError>>| {
                let answer = match (outcome, commit) {
                    // A failed commit fails everyone, even jobs that failed on their own.
                    (_, Err(e)) => Err(SpoolError::Commit(e)),
                    (Err(e), Ok(())) => Err(SpoolError::Job(Arc::new(e))),
                    (Ok(r), Ok(())) => Ok(r),
                };
                let _ = done.send(answer);
            });
            (completion, usable)
        });
        self.jobs
            .send(Job { work, lazy })
            .map_err(|_| SpoolError::Closed)?;
        Ok(Box::pin(async move {
            result.await.map_err(|_| SpoolError::Closed)?
        }))
    }

    /// Writer counters.
    pub fn stats(&self) -> &SpoolStats {
        &self.stats
    }
}

/// Runs one job in its own savepoint: its failure (or panic) undoes only its writes. Returns its
/// outcome and whether the transaction is still sound: when the savepoint cannot be released or
/// rolled back, what the job wrote is unknown, and the whole batch must be abandoned (a job
/// reported as failed must never commit, or a retry would queue it twice).
fn run_in_savepoint<R>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<R, StoreError>,
) -> (Result<R, StoreError>, bool) {
    // Cached: parsed once per connection, not twice per job.
    let run = |sql: &str| {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute([]).map(drop))
    };
    if let Err(e) = run("SAVEPOINT job") {
        return (Err(e.into()), false);
    }
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tx)));
    let outcome = match ran {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "spool: a job panicked; it is undone, the writer goes on");
            Err(StoreError::Abandoned(format!("write job panicked: {what}")))
        }
    };
    match outcome {
        Ok(r) => match run("RELEASE job") {
            Ok(()) => (Ok(r), true),
            Err(e) => {
                tracing::error!(error = %e, "spool: cannot release a job's savepoint; abandoning the batch");
                (Err(e.into()), false)
            }
        },
        Err(e) => {
            // Undo only this job; the others in the batch still commit.
            let usable = run("ROLLBACK TO job")
                .and_then(|()| run("RELEASE job"))
                .is_ok();
            (Err(e), usable)
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Job>,
    stats: &SpoolStats,
    linger: Duration,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Ok(first) = rx.recv() {
        let batch = gather(first, &rx, linger, stats);
        let started = Instant::now();
        let n = batch.len();
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                // Dropping the jobs answers each caller with `Closed`: nothing was written.
                tracing::error!(error = %e, jobs = n, "spool: cannot begin transaction");
                drop(batch);
                continue;
            }
        };
        let mut sound = true;
        let completions: Vec<Completion> = batch
            .into_iter()
            .map(|job| {
                let (done, usable) = (job.work)(&tx);
                sound &= usable;
                done
            })
            .collect();
        let commit = if sound && fault::commit_fails(&tx) {
            // Test builds only: the batch is rolled back as a failed fsync would leave it.
            drop(tx);
            tracing::error!(
                jobs = n,
                "spool: injected commit failure; nothing of this batch was accepted"
            );
            Err(Arc::new(StoreError::Abandoned(
                "injected commit failure".into(),
            )))
        } else if sound {
            tx.commit().map_err(|e| {
                tracing::error!(error = %e, jobs = n, "spool: commit failed; nothing of this batch was accepted");
                Arc::new(StoreError::from(e))
            })
        } else {
            // Dropping the transaction rolls it back: nothing of this batch is kept.
            drop(tx);
            Err(Arc::new(StoreError::Abandoned(
                "a job left the batch transaction unusable; nothing of this batch was accepted"
                    .into(),
            )))
        };
        let elapsed = started.elapsed();
        stats.on_commit.observe(elapsed);
        let micros = elapsed.as_micros() as u64;
        stats.commits.fetch_add(1, Relaxed);
        stats.jobs.fetch_add(n as u64, Relaxed);
        stats.commit_micros.fetch_add(micros, Relaxed);
        for done in completions {
            done(commit.clone());
        }
    }
}

/// The jobs of the next batch: `first` and everything queued behind it; a batch of only lazy
/// jobs waits for an urgent one until the oldest has lingered `linger`, or until
/// [`LAZY_BATCH`] are waiting.
fn gather(first: Job, rx: &mpsc::Receiver<Job>, linger: Duration, stats: &SpoolStats) -> Vec<Job> {
    let mut batch = vec![first];
    let mut linger_from = batch[0].lazy;
    if linger_from.is_some() {
        stats
            .lingered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    while batch.len() < MAX_BATCH {
        let next = match linger_from {
            Some(since) if batch.len() < LAZY_BATCH => {
                match (since + linger).checked_duration_since(Instant::now()) {
                    Some(left) => rx.recv_timeout(left).ok(),
                    None => rx.try_recv().ok(),
                }
            }
            _ => rx.try_recv().ok(),
        };
        let Some(job) = next else { break };
        if job.lazy.is_none() {
            // An urgent job commits now, and takes every lazy one waiting with it.
            linger_from = None;
        }
        batch.push(job);
    }
    batch
}

/// A test-only fault hook: in debug builds, a file named [`fault::FAIL_NEXT_COMMIT`] in the
/// data directory makes the next batch's commit fail (and is removed), as a failed fsync would.
/// Release builds compile it to `false`.
pub mod fault {
    /// The trigger file's name, next to `atmos.sqlite`.
    pub const FAIL_NEXT_COMMIT: &str = "fault-fail-next-commit";

    /// Whether this batch must fail (consumes the trigger).
    pub(super) fn commit_fails(conn: &rusqlite::Connection) -> bool {
        if !cfg!(debug_assertions) {
            return false;
        }
        let Some(db) = conn.path().filter(|p| !p.is_empty()) else {
            return false;
        };
        let trigger = std::path::Path::new(db).with_file_name(FAIL_NEXT_COMMIT);
        std::fs::remove_file(trigger).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[tokio::test]
    async fn writes_queued_during_a_commit_share_the_next_one() {
        let (_d, store) = test_store();
        let (spool, _h) = Spool::start(&store).unwrap();
        // The first job holds the writer until 199 more are queued behind it.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = spool
            .enqueue(move |_tx| {
                let _ = hold.recv();
                Ok(())
            })
            .unwrap();
        let rest: Vec<_> = (0..199)
            .map(|i| {
                spool
                    .enqueue(move |tx| {
                        crate::store::events::append(
                            tx,
                            i,
                            &crate::store::events::NewEvent {
                                kind: "t",
                                ..Default::default()
                            },
                        )
                    })
                    .unwrap()
            })
            .collect();
        release.send(()).unwrap();
        first.await.unwrap();
        for r in rest {
            r.await.unwrap();
        }
        let count: i64 = store
            .with(|c| Ok(c.query_row("SELECT count(*) FROM relay_events", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, 199);
        // 200 durable writes, at most two fsyncs: the blocked batch and everything behind it.
        let commits = spool
            .stats()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(commits <= 2, "{commits} commits for 200 writes");
    }

    fn commits(spool: &Spool) -> u64 {
        spool
            .stats()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A lazy write (a delivery result) waits for the next urgent one and shares its commit.
    /// (The linger is long here so the test does not race it.)
    #[tokio::test]
    async fn a_lazy_write_waits_for_the_next_commit() {
        let (_d, store) = test_store();
        let (spool, _h) = Spool::start_lingering(store.connect().unwrap(), Duration::from_secs(60));
        let event = |tx: &Transaction<'_>| crate::store::events::append(tx, 1, &Default::default());
        let lazy = spool.enqueue_lazy(event).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while spool
            .stats()
            .lingered
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never waited for company"
            );
            tokio::task::yield_now().await;
        }
        // The writer holds the lazy write, waiting: the urgent one joins its batch.
        spool.write(event).await.unwrap();
        lazy.await.unwrap();
        assert_eq!(commits(&spool), 1, "one commit for both writes");
    }

    /// Lazy writes alone still commit: after the linger, or at once when enough wait (a
    /// delivery queue draining does not wait for company it has).
    #[tokio::test]
    async fn lazy_writes_alone_commit() {
        let (_d, store) = test_store();
        let (spool, _h) = Spool::start(&store).unwrap();
        spool
            .write_lazy(|tx| crate::store::events::append(tx, 1, &Default::default()))
            .await
            .unwrap();
        assert_eq!(commits(&spool), 1);
        let (spool, _h) = Spool::start_lingering(store.connect().unwrap(), Duration::from_secs(60));
        let writes: Vec<_> = (0..LAZY_BATCH)
            .map(|_| {
                spool
                    .enqueue_lazy(|tx| crate::store::events::append(tx, 1, &Default::default()))
                    .unwrap()
            })
            .collect();
        let all = futures_util::future::try_join_all(writes);
        let done = tokio::time::timeout(Duration::from_secs(30), all).await;
        assert!(
            done.is_ok(),
            "{LAZY_BATCH} lazy writes waited for the linger"
        );
        assert_eq!(commits(&spool), 1, "all of them in one commit");
    }

    #[tokio::test]
    async fn failing_job_does_not_poison_batch() {
        let (_d, store) = test_store();
        let (spool, _h) = Spool::start(&store).unwrap();
        let bad = spool.write(|tx| {
            tx.execute("INSERT INTO nope VALUES (1)", [])?;
            Ok(())
        });
        let good = spool.write(|tx| {
            crate::store::events::append(tx, 1, &Default::default())?;
            Ok(())
        });
        let (bad, good) = tokio::join!(bad, good);
        assert!(matches!(bad, Err(SpoolError::Job(_))));
        good.unwrap();
    }

    /// A job whose savepoint cannot be released (here it releases it itself, standing in for a
    /// RELEASE that fails) fails the whole batch: nothing of it commits, so no caller that heard
    /// "failed" has its message queued anyway.
    #[tokio::test]
    async fn a_failing_release_fails_the_whole_batch() {
        let (_d, store) = test_store();
        let (spool, _h) = Spool::start(&store).unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = spool.enqueue(move |_tx| {
            let _ = hold.recv();
            Ok(())
        });
        let event = |tx: &Transaction<'_>| {
            crate::store::events::append(tx, 1, &Default::default())?;
            Ok(())
        };
        let good = spool.enqueue(event).unwrap();
        let breaking = spool
            .enqueue(move |tx| {
                event(tx)?;
                tx.execute_batch("RELEASE job")?;
                Ok(())
            })
            .unwrap();
        release.send(()).unwrap();
        let _ = first.unwrap().await;
        assert!(matches!(good.await, Err(SpoolError::Commit(_))));
        assert!(matches!(breaking.await, Err(SpoolError::Commit(_))));
        let count: i64 = store
            .with(|c| Ok(c.query_row("SELECT count(*) FROM relay_events", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, 0, "nothing of the abandoned batch was kept");
        // The writer carries on.
        spool.write(event).await.unwrap();
    }

    /// A job that panics fails its own caller; the others in its batch commit and the writer
    /// carries on.
    #[tokio::test]
    async fn a_panicking_job_fails_only_itself() {
        let (_d, store) = test_store();
        let (spool, _h) = Spool::start(&store).unwrap();
        let event = |tx: &Transaction<'_>| {
            crate::store::events::append(tx, 1, &Default::default())?;
            Ok(())
        };
        let bad = spool.write(move |tx| -> Result<(), StoreError> {
            event(tx)?;
            panic!("boom")
        });
        let good = spool.write(event);
        let (bad, good) = tokio::join!(bad, good);
        assert!(matches!(bad, Err(SpoolError::Job(_))));
        good.unwrap();
        spool.write(event).await.unwrap();
        let count: i64 = store
            .with(|c| Ok(c.query_row("SELECT count(*) FROM relay_events", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(count, 2, "the panicking job's write was undone");
    }

    /// A full disk (SQLite's page limit stands in for it) fails the write: no silent success.
    #[tokio::test]
    async fn full_disk_fails_the_write() {
        let (_d, store) = test_store();
        let conn = store.connect().unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        let (spool, _h) = Spool::start_on(conn);
        let blob = vec![7u8; 1 << 20];
        let r = spool
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO relay_events (at, type, data) VALUES (1, 'big', ?1)",
                    [String::from_utf8_lossy(&blob).to_string()],
                )?;
                Ok(())
            })
            .await;
        assert!(r.is_err(), "a write beyond the disk limit must fail");
    }
}
