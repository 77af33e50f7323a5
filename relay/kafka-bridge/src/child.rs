//! The bridge's side of the pipe to the relay (relay/src/kafka/supervisor.rs has the protocol):
//! publishes the outbox and forwards results until stdin closes (the relay stopped or died).

use crate::outbox::Publisher;
use crate::results::Reader;
use atmos_relay::config::KafkaConfig;
use atmos_relay::kafka::Outcome;
use atmos_relay::kafka::supervisor::MAX_RESULT_BYTES;
use atmos_relay::store::Store;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

/// Why the child could not run.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("store: {0}")]
    Store(#[from] atmos_relay::store::StoreError),
    #[error(transparent)]
    Setup(#[from] crate::broker::KafkaSetupError),
}

/// The child's body: publishes the outbox and forwards results until stdin closes (the relay
/// stopped or died) or `shutdown`.
pub async fn run_child(
    config: KafkaConfig,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> Result<(), ChildError> {
    crate::broker::ensure_topics(&config).await?;
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
