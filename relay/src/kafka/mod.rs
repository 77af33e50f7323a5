//! The Kafka bridge (SPEC §8), on when `[kafka] brokers` is set: every event is published to the
//! events topic in Osprey's action format through an outbox (stored first, published in order,
//! at least once — consumers dedupe by `action_id`, the event id), and verdicts an external engine
//! writes to the results topic are applied like the embedded engine's.

pub mod outbox;
pub mod process;
pub mod results;

use crate::config::KafkaConfig;
use crate::store::Store;
use atmos_labeler::Labeler;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// Base client settings shared by the producer, the consumer and the admin client.
fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers.trim())
        .set("client.id", "atmos-relay")
        .set("socket.timeout.ms", "10000");
    c
}

/// Creates the topics when the broker does not have them yet (Osprey's sink does the same).
async fn ensure_topics(config: &KafkaConfig) -> Result<(), KafkaSetupError> {
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

/// Starts the bridge process (see [`process`]): the outbox publisher and, when a results topic
/// is set, the verdict consumer, whose verdicts this process applies.
pub fn start(
    config: &KafkaConfig,
    data_dir: &std::path::Path,
    store: Arc<Store>,
    labeler: Option<Arc<Labeler>>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let supervisor = process::Supervisor {
        config: config.clone(),
        data_dir: data_dir.to_path_buf(),
        store,
        labeler,
    };
    tasks.spawn(supervisor.run(shutdown));
    tracing::info!(brokers = %config.brokers, events = %config.events_topic, results = %config.results_topic, "kafka bridge started");
}
