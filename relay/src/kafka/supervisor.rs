//! The Kafka bridge runs in its own executable (`atmos-kafka-bridge`, relay/kafka-bridge),
//! a child process supervised by the relay; librdkafka is linked into it alone.
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

use super::Outcome;
use super::results::apply_payload;
use crate::config::KafkaConfig;
use crate::store::Store;
use atmos_labeler::Labeler;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// The bridge executable, installed beside `atmos`.
pub const BRIDGE_BIN: &str = "atmos-kafka-bridge";

/// The largest result message the bridge forwards to the relay; a bigger one is skipped.
pub const MAX_RESULT_BYTES: usize = 1 << 20;

/// The bridge's arguments: what it needs of the configuration.
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
            Ok(exe) => exe.with_file_name(BRIDGE_BIN),
            Err(e) => {
                tracing::error!(error = %e, "kafka: cannot find the atmos binary; the bridge is off");
                return;
            }
        };
        if !exe.exists() {
            tracing::error!(path = %exe.display(), "kafka: the bridge executable is missing (install it beside atmos); retrying");
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            let spawned = tokio::process::Command::new(&exe)
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
