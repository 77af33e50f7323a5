//! Process metrics in Prometheus text format (`GET /metrics`): latency histograms observed where
//! the work happens, and queue gauges read from the store at scrape time.

use crate::store::{Store, StoreError, now_ms};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

/// Label of a status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

/// Label of a submission source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Spool commit time: one WAL fsync per batch.
    pub fsync_seconds: Histogram,
    /// Time to add the DKIM signatures to one message.
    pub signing_seconds: Histogram,
    /// Messages accepted, by source.
    pub accepted: Family<SourceLabel, Counter>,
    queue_depth: Gauge,
    oldest_age: Gauge<f64, AtomicU64>,
    recipients: Family<StatusLabel, Gauge>,
    /// Reloads (SIGHUP) by outcome: `ok` or `failed` (something kept its old value).
    reloads: Family<StatusLabel, Counter>,
    /// Times the Kafka bridge process died and was started again.
    kafka_bridge_restarts: Counter,
    /// Rule or counter conditions that could not be evaluated (a rule file bug).
    rule_condition_errors: Counter,
}

/// Counts one reload.
pub fn reloaded(ok: bool) {
    let status = if ok { "ok" } else { "failed" };
    METRICS
        .reloads
        .get_or_create(&StatusLabel {
            status: status.into(),
        })
        .inc();
}

/// Counts one death of the Kafka bridge process.
pub fn kafka_bridge_restarted() {
    METRICS.kafka_bridge_restarts.inc();
}

/// Counts one rule or counter condition that could not be evaluated.
pub fn rule_condition_failed() {
    METRICS.rule_condition_errors.inc();
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("atmos");
        let fsync_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let signing_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let accepted = Family::<SourceLabel, Counter>::default();
        let queue_depth = Gauge::default();
        let oldest_age = Gauge::<f64, AtomicU64>::default();
        let recipients = Family::<StatusLabel, Gauge>::default();
        let reloads = Family::<StatusLabel, Counter>::default();
        registry.register(
            "spool_fsync_seconds",
            "Spool commit (WAL fsync) latency per batch",
            fsync_seconds.clone(),
        );
        registry.register(
            "dkim_signing_seconds",
            "Time to add the four DKIM signatures to a message",
            signing_seconds.clone(),
        );
        registry.register(
            "messages_accepted",
            "Messages accepted, by source",
            accepted.clone(),
        );
        registry.register(
            "queue_depth",
            "Recipients not yet delivered or bounced",
            queue_depth.clone(),
        );
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest recipient still queued",
            oldest_age.clone(),
        );
        registry.register(
            "recipients",
            "Recipients by delivery status",
            recipients.clone(),
        );
        registry.register(
            "reloads",
            "Reloads of the TLS certificate and rules (SIGHUP), by outcome",
            reloads.clone(),
        );
        let kafka_bridge_restarts = Counter::default();
        registry.register(
            "kafka_bridge_restarts",
            "Times the Kafka bridge process died and was restarted",
            kafka_bridge_restarts.clone(),
        );
        let rule_condition_errors = Counter::default();
        registry.register(
            "rule_condition_errors",
            "Rule and counter conditions that failed to evaluate (the event was not judged by them)",
            rule_condition_errors.clone(),
        );
        Self {
            reloads,
            kafka_bridge_restarts,
            rule_condition_errors,
            registry,
            fsync_seconds,
            signing_seconds,
            accepted,
            queue_depth,
            oldest_age,
            recipients,
        }
    }

    /// Refreshes the store gauges and renders everything as Prometheus text.
    pub fn render(&self, store: &Store) -> Result<String, StoreError> {
        let (depth, oldest, by_status) = store.with(|c| {
            let depth = crate::store::queue::queue_depth(c)?;
            let oldest = crate::store::queue::oldest_queued_at(c)?;
            let by_status = crate::store::queue::count_by_status(c)?;
            Ok((depth, oldest, by_status))
        })?;
        self.queue_depth.set(depth);
        self.oldest_age.set(
            oldest
                .map(|t| (now_ms() - t).max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
        );
        for status in ["accepted", "deferred", "sent", "bounced"] {
            let n = by_status
                .iter()
                .find(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.recipients
                .get_or_create(&StatusLabel {
                    status: status.into(),
                })
                .set(n);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| StoreError::Invalid(format!("metrics encoding: {e}")))?;
        Ok(out)
    }
}
