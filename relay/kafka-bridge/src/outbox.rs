//! The outbox publisher: follows `relay_events` from its cursor, produces each event in Osprey's
//! action format (`{"send_time", "data": {"action_id", "action_name", "data"}}`), keyed by member
//! DID so one member's events stay in order, and moves the cursor only after the broker
//! acknowledged the whole batch. A crash between the two re-sends the batch: at least once.

use crate::broker::{KafkaSetupError, client_config};
use atmos_relay::config::KafkaConfig;
use atmos_relay::store::events::{self, Event};
use atmos_relay::store::{Store, outbox};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 500;

/// Publishes the event log to the events topic.
pub struct Publisher {
    config: KafkaConfig,
    producer: FutureProducer,
    topic: String,
    store: Arc<Store>,
}

fn producer(config: &KafkaConfig) -> Result<FutureProducer, KafkaSetupError> {
    Ok(client_config(config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// An event as an Osprey action.
pub fn action(e: &Event) -> serde_json::Value {
    let send_time = rfc3339(e.at);
    serde_json::json!({
        "send_time": send_time,
        "data": {
            "action_id": e.id,
            "action_name": e.kind,
            "timestamp": send_time,
            "data": {
                "did": e.did, "message_id": e.message_id, "actor": e.actor, "at": e.at,
                "event": e.data,
            },
        },
    })
}

/// RFC 3339 UTC time of a millisecond timestamp (what both Go and Python parse).
fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

impl Publisher {
    /// A publisher for `config.events_topic`.
    pub fn new(config: &KafkaConfig, store: Arc<Store>) -> Result<Self, KafkaSetupError> {
        Ok(Self {
            config: config.clone(),
            producer: producer(config)?,
            topic: config.events_topic.trim().to_string(),
            store,
        })
    }

    /// Publishes until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let wait = match self.step().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(500);
                    continue;
                }
                Ok(_) => Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka: publishing failed; retrying");
                    // A broker that restarted without its storage knows neither the topics nor
                    // this idempotent producer's id: make both again, as a new bridge process
                    // would (the outbox cursor keeps the order; consumers dedupe by action_id).
                    if let Err(e) = crate::broker::ensure_topics(&self.config).await {
                        tracing::warn!(error = %e, "kafka: cannot check the topics");
                    }
                    match producer(&self.config) {
                        Ok(p) => self.producer = p,
                        Err(e) => tracing::warn!(error = %e, "kafka: cannot make a new producer"),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::info!("kafka outbox stopped");
    }

    /// Publishes the next batch; returns how many events went out.
    pub async fn step(&self) -> Result<usize, String> {
        let store = self.store.clone();
        let batch = tokio::task::spawn_blocking(move || {
            store.with(|c| events::after(c, outbox::cursor(c)?, BATCH))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let Some(last) = batch.last().map(|e| e.id) else {
            return Ok(0);
        };
        tracing::debug!(
            events = batch.len(),
            last,
            "kafka outbox: publishing a batch"
        );
        let mut pending = Vec::with_capacity(batch.len());
        for e in &batch {
            let payload = action(e).to_string();
            let key = e.did.clone().unwrap_or_else(|| "relay".into());
            let record = FutureRecord::to(&self.topic).payload(&payload).key(&key);
            pending.push(
                self.producer
                    .send_result(record)
                    .map_err(|(err, _)| err.to_string())?,
            );
        }
        for delivery in pending {
            delivery
                .await
                .map_err(|_| "delivery cancelled".to_string())?
                .map_err(|(err, _)| err.to_string())?;
        }
        tracing::debug!(last, "kafka outbox: batch acknowledged");
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write(|tx| outbox::advance(tx, last)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(batch.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_osprey_actions() {
        let e = Event {
            id: 42,
            at: 1_795_400_000_123,
            kind: "delivery_result".into(),
            did: Some("did:plc:x".into()),
            message_id: Some("m1".into()),
            actor: Some("relay".into()),
            data: serde_json::json!({"status": "sent"}),
        };
        let a = action(&e);
        assert_eq!(a["data"]["action_id"], 42);
        assert_eq!(a["data"]["action_name"], "delivery_result");
        assert_eq!(a["data"]["data"]["did"], "did:plc:x");
        assert_eq!(a["data"]["data"]["event"]["status"], "sent");
        assert_eq!(a["send_time"], "2026-11-23T02:13:20.123Z");
    }
}
