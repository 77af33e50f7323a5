//! The results topic, read in the bridge: each message goes to the relay, which applies its
//! verdicts (relay/src/kafka/results.rs); the offset is committed only after the relay said
//! `done`, so a crash re-reads the message.

use crate::broker::{KafkaSetupError, client_config};
use atmos_relay::config::KafkaConfig;
use atmos_relay::kafka::Outcome;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reads the results topic (in the bridge process) and hands each message to `apply`.
pub struct Reader {
    consumer: StreamConsumer,
}

impl Reader {
    /// A reader subscribed to `config.results_topic`.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaSetupError> {
        let consumer: StreamConsumer = client_config(config)
            .set("group.id", config.group_id.trim())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        consumer.subscribe(&[config.results_topic.trim()])?;
        Ok(Self { consumer })
    }

    /// Reads until `shutdown`, committing each message `apply` is done with.
    pub async fn run<F, Fut>(self, mut apply: F, shutdown: CancellationToken)
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        loop {
            let message = tokio::select! {
                m = self.consumer.recv() => m,
                _ = shutdown.cancelled() => break,
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka: cannot read results; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let payload = message.payload().unwrap_or_default().to_vec();
            let outcome = tokio::select! {
                o = apply(payload) => o,
                _ = shutdown.cancelled() => break,
            };
            if outcome == Outcome::Failed {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if let Err(e) = self.consumer.commit_message(&message, CommitMode::Async) {
                tracing::warn!(error = %e, "kafka: cannot commit offset");
            }
        }
        tracing::info!("kafka results reader stopped");
    }
}
