//! The broker connection both directions share: client settings and the topics.

use atmos_relay::config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::time::Duration;

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// Base client settings shared by the producer, the consumer and the admin client.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers.trim())
        .set("client.id", "atmos-relay")
        .set("socket.timeout.ms", "10000");
    c
}

/// Creates the topics when the broker does not have them yet (Osprey's sink does the same).
pub async fn ensure_topics(config: &KafkaConfig) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config).create()?;
    let names: Vec<&str> = [config.events_topic.trim(), config.results_topic.trim()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics(topics.iter(), &opts).await {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(topic) => tracing::info!(topic, "kafka: topic created"),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        tracing::warn!(topic, %code, "kafka: cannot create topic")
                    }
                }
            }
        }
        // The broker may be down now; the producer and consumer retry on their own.
        Err(e) => tracing::warn!(error = %e, "kafka: cannot create topics"),
    }
    Ok(())
}
