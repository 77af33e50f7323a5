//! The signing pool: one thread per core, taking jobs first come, first served.
//!
//! Why not tokio's blocking pool: it starts a thread per waiting job, so 20 sessions signing at
//! once share two cores twenty ways, and every one of them finishes late. Here a job waits in a
//! queue and then runs at full speed, so a message is signed in about the same CPU time under
//! load, accept latency stays close to queueing plus one signing, and throughput is unchanged.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, LazyLock, Mutex};

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: Sender<Job>,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    for i in 0..threads {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dkim-signer-{i}"))
            .spawn(move || work(&rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "dkim: cannot start a signing thread");
        }
    }
    Pool { jobs: tx }
});

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only to take one job, never while it runs.
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// The pool stopped (a job panicked, or no thread could start).
#[derive(Debug, thiserror::Error)]
#[error("the signing pool is unavailable")]
pub struct PoolError;

/// Runs `f` on the signing pool and waits for its result without blocking the async workers.
pub async fn run<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PoolError> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // A panic fails this job alone and keeps the thread.
        if let Ok(v) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let _ = done.send(v);
        }
    });
    // `Sender` is `Sync`: every session sends without a lock.
    POOL.jobs.send(job).map_err(|_| PoolError)?;
    result.await.map_err(|_| PoolError)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn jobs_run_and_return_their_results() {
        let results =
            futures_util::future::join_all((0..16).map(|i| super::run(move || i * 2))).await;
        let got: Vec<i32> = results.into_iter().map(|r| r.expect("ran")).collect();
        assert_eq!(got, (0..16).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        assert!(super::run(|| panic!("boom")).await.is_err());
        assert_eq!(super::run(|| 7).await.expect("the pool survives"), 7);
    }
}
