//! Reloading without a restart: SIGHUP, or a certificate file that changed on disk (a certbot
//! renewal), re-reads the TLS certificate and the rule files. Sessions in progress keep the
//! certificate they shook hands with; new handshakes and the next rules batch use the new ones.
//! A file that does not load leaves what is in force untouched and says why in the log.

use crate::rules::Engine;
use crate::rules::spec::Rules;
use crate::tls::Certificate;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a reload re-reads.
pub struct Reloadable {
    pub certificate: Arc<Certificate>,
    /// The engine and its rule files (none: the engine is off).
    pub rules: Option<(Arc<Engine>, Vec<PathBuf>)>,
}

impl Reloadable {
    /// Re-reads everything; returns what failed (empty: all reloaded).
    pub fn reload_all(&self) -> Vec<String> {
        let mut failed = Vec::new();
        match self.certificate.reload() {
            Ok(()) => tracing::info!("reload: TLS certificate loaded"),
            Err(e) => {
                tracing::error!(error = %e, "reload: TLS certificate kept, the new one does not load");
                failed.push(e.to_string());
            }
        }
        if let Some((engine, files)) = &self.rules {
            match Rules::load(files) {
                Ok(rules) => {
                    tracing::info!(
                        rules = rules.rules.len(),
                        counters = rules.counters.len(),
                        "reload: rules loaded"
                    );
                    engine.replace(Arc::new(rules));
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload: rules kept, the files do not load");
                    failed.push(e.to_string());
                }
            }
        }
        crate::metrics::reloaded(failed.is_empty());
        failed
    }
}

/// Reloads on SIGHUP, and the certificate alone when its files change (checked every
/// `watch_interval`), until `shutdown`.
pub async fn run(r: Reloadable, watch_interval: Duration, shutdown: CancellationToken) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reload by restarting");
            None
        }
    };
    let mut watch = tokio::time::interval(watch_interval.max(Duration::from_millis(100)));
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::info!("SIGHUP received: reloading the TLS certificate and the rules");
                let _ = r.reload_all();
            }
            _ = watch.tick() => {
                if r.certificate.changed_on_disk() {
                    match r.certificate.reload() {
                        Ok(()) => tracing::info!("reload: TLS certificate changed on disk, loaded"),
                        Err(e) => tracing::warn!(error = %e, "reload: TLS certificate changed on disk but does not load yet"),
                    }
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
}
