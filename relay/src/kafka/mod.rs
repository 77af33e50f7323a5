//! The Kafka bridge, on when `[kafka] brokers` is set: every event is published to the
//! events topic in Osprey's action format through an outbox (stored first, published in order,
//! at least once — consumers dedupe by `action_id`, the event id), and verdicts an external engine
//! writes to the results topic are applied like the embedded engine's.

pub mod results;
pub mod supervisor;

use crate::config::KafkaConfig;
use crate::store::Store;
use atmos_labeler::Labeler;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Whether a result message is done with (its offset may be committed): the relay's answer
/// to the bridge, one line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, or skipped as unreadable: commit.
    Done,
    /// The store failed: leave it uncommitted, so it is read again after a restart.
    Failed,
}

/// Starts the bridge process (see [`supervisor`]): the outbox publisher and, when a results topic
/// is set, the verdict consumer, whose verdicts this process applies.
pub fn start(
    config: &KafkaConfig,
    data_dir: &std::path::Path,
    store: Arc<Store>,
    labeler: Option<Arc<Labeler>>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let supervisor = supervisor::Supervisor {
        config: config.clone(),
        data_dir: data_dir.to_path_buf(),
        store,
        labeler,
    };
    tasks.spawn(supervisor.run(shutdown));
    tracing::info!(brokers = %config.brokers, events = %config.events_topic, results = %config.results_topic, "kafka bridge started");
}
