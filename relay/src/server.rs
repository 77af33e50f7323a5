//! `atmos serve`: opens the store, starts the spool writer, delivery and the SMTP listeners,
//! and shuts them down in order (listeners, sessions, deliveries, then the writer).

use crate::accept::{AcceptSettings, Acceptor};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::delivery::Delivery;
use crate::dkim::keys::KeyError;
use crate::inbound::route::RouteNames;
use crate::inbound::{Inbound, InboundSettings};
use crate::secrets::{SecretError, Secrets};
use crate::smtp::mx_policy::InboundService;
use crate::smtp::protocol::{Limits, Profile};
use crate::smtp::session::{self, SessionSettings};
use crate::smtp::submission::SubmissionService;
use crate::spool::Spool;
use crate::store::{Store, StoreError};
use crate::tls;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("delivery set-up failed: {0}")]
    Delivery(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("operator DKIM keys: {0}")]
    Keys(#[from] KeyError),
    #[error("labeler: {0}")]
    Labeler(#[from] crate::labeler_host::LabelerSetupError),
    #[error("rules: {0}")]
    Rules(#[from] crate::rules::spec::RulesError),
    #[error("web: {0}")]
    Web(String),
}

/// Addresses actually bound (useful when the configuration asked for port 0).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Listening {
    pub submission: SocketAddr,
    pub inbound: SocketAddr,
    pub http: SocketAddr,
}

/// `server.max_queue_bytes`, or when it is not set, half the space free on the data
/// directory's file system now (so a flood cannot fill the disk the queue lives on).
fn queue_cap(config: &Config) -> u64 {
    if let Some(bytes) = config.server.max_queue_bytes {
        return bytes;
    }
    match rustix::fs::statvfs(&config.server.data_dir) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let cap = free / 2;
            tracing::info!(
                bytes = cap,
                "queue cap: half the free space of data_dir (server.max_queue_bytes)"
            );
            cap.max(1)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read free space of data_dir; queue cap 1 GiB");
            1 << 30
        }
    }
}

/// Raises the open-file limit to its hard maximum: each session and connection is a descriptor,
/// and the caps above (not the kernel's default of 1,024) should decide when to refuse.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}

/// The web side: the OAuth client (confidential with `[web] public_url`, else loopback on the
/// HTTP listener), sessions and enrollment.
fn web(
    config: &Config,
    listening: &Listening,
    store: &Arc<Store>,
    secrets: &Arc<Secrets>,
    identity: &Arc<crate::identity::Resolver>,
    labeler: Option<Arc<atmos_labeler::Labeler>>,
    extras: Extras,
) -> Result<crate::http::web_session::Web, ServeError> {
    use crate::oauth::client::ClientKind;
    let public = config.public_url().ok().flatten();
    let (client_id, redirect_uri, kind) = match &public {
        Some(url) => (
            format!("{url}/oauth/client-metadata.json"),
            format!("{url}/oauth/callback"),
            ClientKind::Confidential(Arc::new(
                crate::oauth::keys::ClientKeys::open(store.clone(), secrets.clone())
                    .map_err(|e| ServeError::Web(e.to_string()))?,
            )),
        ),
        None => {
            // The atproto loopback client: its redirect must be a loopback IP address.
            let ip = if listening.http.ip().is_loopback() {
                listening.http.ip()
            } else {
                std::net::IpAddr::from([127, 0, 0, 1])
            };
            let host = SocketAddr::new(ip, listening.http.port());
            (
                String::new(),
                format!("http://{host}/oauth/callback"),
                ClientKind::Loopback,
            )
        }
    };
    let oauth = crate::oauth::OAuthClient::new(identity.clone(), client_id, redirect_uri, kind);
    let dns = crate::dns::Dns::new(&config.nameservers()).map_err(ServeError::Delivery)?;
    let enrollment = crate::enrollment::Enrollment::new(
        store.clone(),
        secrets.clone(),
        Arc::new(config.clone()),
        dns,
        labeler,
    );
    let w = &config.web;
    Ok(crate::http::web_session::Web::new(
        oauth,
        identity.clone(),
        enrollment,
        crate::http::web_session::WebSettings {
            secure_cookies: public.as_deref().is_some_and(|u| u.starts_with("https://")),
            session_idle: w.session_idle,
            sessions_per_member: w.sessions_per_member,
            max_pending: w.max_pending_signins,
            operator_dids: w.operator_dids.clone(),
            dist_dir: ui_dir(config, extras.ui_bundle.as_deref()),
            dev_zone: extras.dev_zone,
            refresh_margin: w.token_refresh_margin,
            submission: match &public {
                Some(_) => format!("{}:{}", config.server.hostname, listening.submission.port()),
                None => listening.submission.to_string(),
            },
        },
    ))
}

/// Binds a listener; a failure names the configuration key.
async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { key, addr, source })
}

/// Where the UI is served from: `[web] dist_dir` when set, else the build inside the binary
/// (written out under the data directory), else `dist/` in the working directory.
fn ui_dir(config: &Config, bundle: Option<&dyn crate::http::ui_bundle::UiBundle>) -> PathBuf {
    if let Some(dir) = &config.web.dist_dir {
        return dir.clone();
    }
    if let Some(bundle) = bundle {
        match crate::http::ui_bundle::unpack(bundle, &config.server.data_dir) {
            Ok(dir) => return dir,
            Err(e) => tracing::warn!(error = %e, "ui: the binary's own UI cannot be served"),
        }
    }
    PathBuf::from("dist")
}

/// What the binary and `atmos dev` add to a relay.
#[derive(Default)]
pub struct Extras {
    /// The web UI built into the binary.
    pub ui_bundle: Option<Arc<dyn crate::http::ui_bundle::UiBundle>>,
    /// The embedded DNS zone the wizard may publish to.
    pub dev_zone: Option<Arc<dyn crate::dns::ZonePublisher>>,
    /// Attestations the labeler knows without a repository: (DID, record). `atmos dev`'s demo
    /// member has no PDS to hold one.
    pub attestations: Vec<(String, atmos_lexicons::Attestation)>,
}

/// Runs the relay until `shutdown` is cancelled; `on_ready` hears the bound addresses.
pub async fn serve(
    config: Config,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Listening),
) -> Result<(), ServeError> {
    serve_with(config, Extras::default(), shutdown, on_ready).await
}

/// [`serve`] with what `atmos dev` adds.
pub async fn serve_with(
    config: Config,
    extras: Extras,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Listening),
) -> Result<(), ServeError> {
    raise_open_file_limit();
    let store = Arc::new(Store::open(&config.server.data_dir)?);
    let max_queue_bytes = queue_cap(&config);
    let secrets = Arc::new(Secrets::load(
        &config.server.data_dir,
        std::env::var(crate::secrets::KEK_ENV).ok(),
    )?);
    crate::operator::ensure_keys(&store, &secrets, &config)?;
    let identity =
        Arc::new(crate::identity::Resolver::from_config(&config).map_err(ServeError::Delivery)?);
    let labeler = if config.labeler.enabled {
        Some(crate::labeler_host::open(
            &config,
            secrets.clone(),
            identity.clone(),
        )?)
    } else {
        None
    };
    // A bad rule file stops start-up here, naming the rule.
    let rules = config
        .rules
        .enabled
        .then(|| crate::rules::spec::Rules::load(&config.rules.files).map(Arc::new))
        .transpose()?;
    let (spool, writer) = Spool::start(&store)?;
    spool.stats().on_commit.set(|d| {
        crate::metrics::METRICS
            .fsync_seconds
            .observe(d.as_secs_f64())
    });
    let (queued_tx, queued_rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = Arc::new(Acceptor::new(
        store.clone(),
        spool.clone(),
        queued_tx,
        secrets.clone(),
        AcceptSettings {
            max_queue_bytes,
            forward_share_percent: config.server.forward_queue_share,
            hostname: config.server.hostname.clone(),
            operator_domain: config.server.operator_domain.clone(),
            unsubscribe_base: format!("https://{}/unsubscribe/", config.server.hostname),
            limits: config.limits.clone(),
            trace_client_address: config.server.trace_client_address,
        },
    ));
    let delivery = Arc::new(
        Delivery::new(
            &config,
            store.clone(),
            spool.clone(),
            Some(Arc::new(crate::bounces::DsnReporter(acceptor.clone()))),
        )
        .map_err(ServeError::Delivery)?,
    );
    let auth = Arc::new(Authenticator::default());
    let listener = bind("smtp.submission_listen", config.smtp.submission_listen).await?;
    let inbound_listener = bind("smtp.inbound_listen", config.smtp.inbound_listen).await?;
    let http_listener = bind("http.listen", config.http.listen).await?;
    let listening = Listening {
        submission: listener
            .local_addr()
            .unwrap_or(config.smtp.submission_listen),
        inbound: inbound_listener
            .local_addr()
            .unwrap_or(config.smtp.inbound_listen),
        http: http_listener.local_addr().unwrap_or(config.http.listen),
    };
    let certificate = tls::Certificate::load(&config.tls, &config.server.hostname)?;
    let tls = tls::acceptor(&certificate)?;
    let https = config
        .http
        .tls
        .then(|| tls::https_acceptor(&certificate))
        .transpose()?;
    let session_settings = |name: &'static str, profile: Profile| SessionSettings {
        name,
        hostname: config.server.hostname.clone(),
        limits: Limits {
            max_message_size: config.smtp.max_message_size,
            max_recipients: config.smtp.max_recipients,
            profile,
        },
        idle_timeout: config.smtp.idle_timeout,
        command_timeout: config.smtp.command_timeout,
        data_timeout: config.smtp.data_timeout,
        write_timeout: config.smtp.write_timeout,
        max_sessions: config.smtp.max_sessions,
        max_sessions_per_client: config.smtp.max_sessions_per_client,
        max_transactions: config.smtp.max_transactions_per_session,
        max_lifetime: config.smtp.max_session_lifetime,
        tls: tls.clone(),
    };
    let service = Arc::new(SubmissionService {
        settings: session_settings("submission", Profile::Submission),
        auth: auth.clone(),
        acceptor: acceptor.clone(),
        store: store.clone(),
    });
    let inbound = Arc::new(InboundService::new(
        session_settings("inbound", Profile::Mx),
        Arc::new(Inbound::new(
            acceptor.clone(),
            secrets.clone(),
            InboundSettings {
                names: RouteNames {
                    hostname: config.server.hostname.clone(),
                    operator_domain: config.server.operator_domain.clone(),
                },
                // Checked when the configuration was loaded.
                operator_forward_to: config.operator_forward_to().ok().flatten(),
            },
        )),
        NonZeroU32::new(config.smtp.inbound_rate_per_minute).unwrap_or(NonZeroU32::MIN),
        NonZeroU32::new(config.smtp.inbound_rate_burst).unwrap_or(NonZeroU32::MIN),
        NonZeroU32::new(config.smtp.forward_rate_per_domain).unwrap_or(NonZeroU32::MIN),
    ));
    if let Some(l) = &labeler {
        for (did, record) in &extras.attestations {
            if let Err(e) = l.attested(did, &record.domain, record) {
                tracing::warn!(did, error = %e, "labeler: cannot record a known attestation");
            }
        }
    }
    let web = Arc::new(web(
        &config,
        &listening,
        &store,
        &secrets,
        &identity,
        labeler.clone(),
        extras,
    )?);
    let engine = rules.map(|rules| {
        Arc::new(crate::rules::Engine::new(
            store.clone(),
            rules,
            labeler.clone(),
        ))
    });
    let http_state = Arc::new(crate::http::AppState {
        acceptor,
        auth,
        store: store.clone(),
        max_recipients: config.smtp.max_recipients,
        admin_token: std::env::var(crate::http::admin::ADMIN_TOKEN_ENV).ok(),
        secrets: secrets.clone(),
        limits: config.limits.clone(),
        idempotency: Default::default(),
        web,
        labeler: labeler.clone(),
        rules: engine.clone(),
    });

    let deadline = config.server.shutdown_deadline;
    let sessions = TaskTracker::new();
    let listener_task = tokio::spawn(session::serve(
        listener,
        service.clone(),
        shutdown.clone(),
        sessions.clone(),
    ));
    let inbound_task = tokio::spawn(session::serve(
        inbound_listener,
        inbound,
        shutdown.clone(),
        sessions.clone(),
    ));
    let delivery_task = tokio::spawn(delivery.run(queued_rx, shutdown.clone(), deadline));
    let mut labeler_routes = axum::Router::new();
    // Labeler verification, Jetstream, the rules engine, the Kafka bridge, key rollover and
    // the sweeps of what strangers can add (sessions, sign-ins, limiter maps).
    let background = TaskTracker::new();
    background.spawn(crate::dkim::rollover::run(
        store.clone(),
        crate::dns::Dns::new(&config.nameservers()).map_err(ServeError::Delivery)?,
        config.server.key_rollover_interval,
        shutdown.clone(),
    ));
    if let Some(labeler) = &labeler {
        labeler_routes =
            atmos_labeler::xrpc::router(labeler.clone()).merge(atmos_labeler::admin::router(
                labeler.clone(),
                Arc::new(crate::http::access::OperatorGate(http_state.clone())),
            ));
        let dns = crate::dns::Dns::new(&config.nameservers()).map_err(ServeError::Delivery)?;
        let verifier = atmos_labeler::verification::Verifier::new(
            labeler.clone(),
            Arc::new(crate::labeler_host::RelayDirectory(store.clone())),
            Arc::new(dns),
        );
        background.spawn(verifier.run(shutdown.clone()));
        if !config.labeler.jetstream_url.is_empty() {
            let l = &config.labeler;
            let settings = atmos_labeler::jetstream::JetstreamSettings {
                url: l.jetstream_url.clone(),
                compress: l.jetstream_compress,
                zstd_dictionary: (!l.jetstream_zstd_dictionary.as_os_str().is_empty())
                    .then(|| l.jetstream_zstd_dictionary.clone()),
            };
            background.spawn(atmos_labeler::jetstream::run(
                labeler.clone(),
                settings,
                shutdown.clone(),
            ));
        }
    }
    if let Some(engine) = &engine {
        let rules = engine.rules();
        tracing::info!(
            rules = rules.rules.len(),
            counters = rules.counters.len(),
            "rules engine started"
        );
        background.spawn(engine.clone().run(
            config.rules.poll_interval,
            spool.clone(),
            shutdown.clone(),
        ));
    }
    background.spawn(crate::reload::run(
        crate::reload::Reloadable {
            certificate: certificate.clone(),
            rules: engine.clone().map(|e| (e, config.rules.files.clone())),
        },
        config.tls.watch_interval,
        shutdown.clone(),
    ));
    if !config.kafka.brokers.trim().is_empty() {
        crate::kafka::start(
            &config.kafka,
            &config.server.data_dir,
            store.clone(),
            labeler.clone(),
            &background,
            shutdown.clone(),
        );
    }
    background.close();
    tokio::spawn(crate::http::web_session::sweep(
        http_state.clone(),
        shutdown.clone(),
    ));
    for warning in config.warnings() {
        tracing::warn!("config: {warning}");
    }
    let http_task = tokio::spawn(crate::http::serve(
        http_listener,
        http_state,
        labeler_routes,
        crate::http::ListenerLimits {
            max_connections: config.http.max_connections,
            max_connections_per_client: config.http.max_connections_per_client,
            header_timeout: config.http.header_timeout,
            shutdown_deadline: deadline,
            tls: https,
            trusted_proxies: config.http.trusted_proxies.clone(),
        },
        shutdown.clone(),
    ));
    tracing::info!(submission = %listening.submission, inbound = %listening.inbound, http = %listening.http, data_dir = %config.server.data_dir.display(), "relay ready");
    on_ready(listening);

    shutdown.cancelled().await;
    tracing::info!("shutting down: listeners closed, finishing sessions and deliveries");
    if let Some(labeler) = &labeler {
        // Label subscribers are long-lived sockets; close them so the HTTP server can stop.
        labeler.close();
    }
    background.wait().await;
    let _ = listener_task.await;
    let _ = inbound_task.await;
    let _ = http_task.await;
    sessions.close();
    if tokio::time::timeout(deadline, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "sessions still open at the shutdown deadline; their unfinished messages were never acknowledged"
        );
    }
    let _ = delivery_task.await;
    // Last handles to the writer go here; it commits what it holds and stops.
    drop(service);
    drop(spool);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("relay stopped");
    Ok(())
}
