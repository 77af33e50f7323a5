//! The Kafka bridge runs in a child process (`atmos kafka-bridge`), supervised by the relay.
//!
//! Why: librdkafka is C, and a broker can crash it. tansu 0.6, once restarted, answers with a
//! leader-change tag whose topic name is null, and librdkafka 2.12.1 dereferences it (SIGSEGV in
//! `rd_kafka_metadata_update_op`, in producers and consumers alike). In-process that kills the
//! relay and every SMTP session with it; out of process only the bridge dies, and the supervisor
//! starts a new one. It resumes from the outbox cursor in the store (SQLite, WAL: both processes
//! share it) and from the consumer group's committed offset.
//!
//! The child does all the Kafka work; the relay keeps what only it can do, applying verdicts
//! (the labeler lives in its process). The pipe protocol, one line each way per result message:
//! child → relay `{"result": "<payload>"}`, relay → child `done` or `failed`; the child commits
//! the offset only after `done`. The child exits when its stdin closes, so it never outlives the
//! relay, even after SIGKILL.

use super::outbox::Publisher;
use super::results::{Outcome, Reader, apply_payload};
use crate::config::KafkaConfig;
use crate::store::Store;
use atmos_labeler::Labeler;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "kafka-bridge";

/// The largest result message forwarded to the relay; a bigger one is skipped.
const MAX_RESULT_BYTES: usize = 1 << 20;

/// The child's arguments after [`SUBCOMMAND`]: what it needs of the configuration.
pub fn child_args(config: &KafkaConfig, data_dir: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--data-dir".into(),
        data_dir.into(),
        "--brokers".into(),
        config.brokers.trim().into(),
        "--events-topic".into(),
        config.events_topic.trim().into(),
        "--results-topic".into(),
        config.results_topic.trim().into(),
        "--group-id".into(),
        config.group_id.trim().into(),
    ]
}

/// What the relay side of the bridge needs to apply verdicts.
pub struct Supervisor {
    pub config: KafkaConfig,
    pub data_dir: PathBuf,
    pub store: Arc<Store>,
    pub labeler: Option<Arc<Labeler>>,
}

impl Supervisor {
    /// Starts, serves and restarts the bridge process until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                tracing::error!(error = %e, "kafka: cannot find the atmos binary; the bridge is off");
                return;
            }
        };
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let spawned = tokio::process::Command::new(&exe)
                .arg(SUBCOMMAND)
                .args(child_args(&self.config, &self.data_dir))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Ok(mut child) => {
                    tracing::info!(pid = child.id(), "kafka bridge process started");
                    let serving = match (child.stdin.take(), child.stdout.take()) {
                        (Some(stdin), Some(stdout)) => Some(tokio::spawn(serve(
                            stdout,
                            stdin,
                            self.store.clone(),
                            self.labeler.clone(),
                        ))),
                        _ => None,
                    };
                    let stopping = tokio::select! {
                        status = child.wait() => {
                            crate::metrics::kafka_bridge_restarted();
                            match status {
                                Ok(s) => tracing::warn!(status = %s, "kafka bridge process died; restarting it"),
                                Err(e) => tracing::warn!(error = %e, "kafka bridge process lost; restarting it"),
                            }
                            false
                        }
                        _ = shutdown.cancelled() => true,
                    };
                    // Aborting the server closes the child's stdin: its signal to stop.
                    if let Some(s) = serving {
                        s.abort();
                    }
                    if stopping {
                        if tokio::time::timeout(Duration::from_secs(5), child.wait())
                            .await
                            .is_err()
                        {
                            let _ = child.kill().await;
                        }
                        break;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "kafka: cannot start the bridge process"),
            }
            // A bridge that ran a while earns a quick restart; one that keeps dying backs off.
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        tracing::info!("kafka bridge supervisor stopped");
    }
}

/// The relay side of the pipe: applies each forwarded result and answers `done` or `failed`.
async fn serve(
    stdout: tokio::process::ChildStdout,
    mut stdin: tokio::process::ChildStdin,
    store: Arc<Store>,
    labeler: Option<Arc<Labeler>>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let payload = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["result"].as_str().map(str::to_owned));
        let outcome = match payload {
            Some(p) => apply_payload(&store, labeler.as_ref(), p.as_bytes()).await,
            None => {
                tracing::warn!("kafka bridge: a line the relay cannot read, skipped");
                Outcome::Done
            }
        };
        let reply: &[u8] = match outcome {
            Outcome::Done => b"done\n",
            Outcome::Failed => b"failed\n",
        };
        if stdin.write_all(reply).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

/// Why the child could not run.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Setup(#[from] super::KafkaSetupError),
}

/// The child's body: publishes the outbox and forwards results until stdin closes (the relay
/// stopped or died) or `shutdown`.
pub async fn run_child(
    config: KafkaConfig,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> Result<(), ChildError> {
    super::ensure_topics(&config).await?;
    let store = Arc::new(Store::open(data_dir)?);
    let publisher = Publisher::new(&config, store)?;
    let (replies, answers) = mpsc::channel(1);
    tokio::spawn(read_replies(replies, shutdown.clone()));
    let publishing = tokio::spawn(publisher.run(shutdown.clone()));
    if !config.results_topic.trim().is_empty() {
        let reader = Reader::new(&config)?;
        let pipe = Arc::new(Mutex::new((tokio::io::stdout(), answers)));
        reader
            .run(
                move |payload| forward(pipe.clone(), payload),
                shutdown.clone(),
            )
            .await;
    }
    let _ = publishing.await;
    Ok(())
}

/// The relay's answers, read from stdin; EOF or an error means the relay is gone.
async fn read_replies(replies: mpsc::Sender<Outcome>, shutdown: CancellationToken) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let outcome = match line.trim() {
            "done" => Outcome::Done,
            _ => Outcome::Failed,
        };
        if replies.send(outcome).await.is_err() {
            break;
        }
    }
    shutdown.cancel();
}

/// Sends one result to the relay and waits for its answer.
async fn forward(
    pipe: Arc<Mutex<(tokio::io::Stdout, mpsc::Receiver<Outcome>)>>,
    payload: Vec<u8>,
) -> Outcome {
    if payload.len() > MAX_RESULT_BYTES {
        tracing::warn!(bytes = payload.len(), "kafka: result too large, skipped");
        return Outcome::Done;
    }
    let Ok(text) = String::from_utf8(payload) else {
        tracing::warn!("kafka: result is not UTF-8, skipped");
        return Outcome::Done;
    };
    let mut line = serde_json::json!({ "result": text }).to_string();
    line.push('\n');
    let mut pipe = pipe.lock().await;
    let (out, answers) = &mut *pipe;
    if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
        return Outcome::Failed;
    }
    answers.recv().await.unwrap_or(Outcome::Failed)
}
