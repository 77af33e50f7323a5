//! The HTTP edge (axum) on `[http] listen`: the send API, per-message status, health.
//! Every JSON error is `{"error": text, "code": CODE}` rendered from the shared `SubmitError`.

pub mod access;
pub mod admin;
pub mod credentials;
pub mod csrf;
pub mod enroll;
pub mod error;
pub mod headers;
pub mod member;
pub mod messages;
pub mod send;
pub mod signin;
pub mod ui;
pub mod ui_bundle;
pub mod unsubscribe;
pub mod web_session;

use crate::accept::Acceptor;
use crate::auth::Authenticator;
use crate::connections::ConnectionLimiter;
use crate::store::Store;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest accepted `/v1/send` body (BEHAVIOUR §4.2).
pub const MAX_SEND_BODY: usize = 1024 * 1024;

/// What handlers share.
pub struct AppState {
    pub acceptor: Arc<Acceptor>,
    pub auth: Arc<Authenticator>,
    pub store: Arc<Store>,
    pub max_recipients: usize,
    /// `ADMIN_TOKEN` from the environment; `None` disables the admin API.
    pub admin_token: Option<String>,
    /// Checks unsubscribe tokens.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// Sending caps, for `/member/status`.
    pub limits: crate::config::LimitsConfig,
    /// One lock per (DID, Idempotency-Key) in use, so lookup and send are one step.
    pub idempotency: IdempotencyLocks,
    /// Sign-in, sessions and enrollment.
    pub web: Arc<web_session::Web>,
    /// The co-located labeler (public labels on the pages), when enabled.
    pub labeler: Option<Arc<atmos_labeler::Labeler>>,
    /// The rules engine (its rules in force give the pages' suspension thresholds).
    pub rules: Option<Arc<crate::rules::Engine>>,
}

/// A suspending rule's threshold, as pages show it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleThreshold {
    pub rule: String,
    #[serde(flatten)]
    pub threshold: crate::rules::spec::Threshold,
}

impl RuleThreshold {
    /// The thresholds of the enforcing rules that suspend.
    pub fn of(rules: &crate::rules::spec::Rules) -> Vec<Self> {
        rules
            .rules
            .iter()
            .filter(|r| {
                !r.shadow
                    && r.effects
                        .iter()
                        .any(|e| matches!(e, crate::rules::spec::Effect::Suspend(_)))
            })
            .filter_map(|r| {
                r.threshold.clone().map(|threshold| Self {
                    rule: r.name.clone(),
                    threshold,
                })
            })
            .collect()
    }
}

impl AppState {
    /// What the rules in force suspend at, for the pages' rate charts.
    pub fn thresholds(&self) -> Vec<RuleThreshold> {
        self.rules
            .as_ref()
            .map(|e| RuleThreshold::of(&e.rules()))
            .unwrap_or_default()
    }

    /// The lock of one idempotency key.
    pub fn idempotency_gate(&self, did: &str, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.idempotency.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((did.to_string(), key.to_string()))
            .or_default()
            .clone()
    }

    /// Forgets an idempotency lock nobody else is waiting for.
    pub fn idempotency_done(&self, did: &str, key: &str, gate: Arc<tokio::sync::Mutex<()>>) {
        let mut m = self.idempotency.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: no one else holds it.
        if Arc::strong_count(&gate) <= 2 {
            m.remove(&(did.to_string(), key.to_string()));
        }
    }
}

/// The client address the listener recorded for a request.
pub fn peer_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The client address of a request, as an extractor.
pub struct Peer(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_of(&parts.extensions)))
    }
}

/// Caps of the HTTP listener.
#[derive(Clone)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Longest time a request's header block may take to arrive.
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_deadline: Duration,
    /// HTTPS (`http.tls`): the listener terminates TLS itself.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    pub trusted_proxies: Vec<crate::connections::Cidr>,
}

/// Per-client caps for requests that arrive through a trusted proxy: the proxy's connections
/// carry many clients, so the cap a direct client gets per connection applies per request.
struct Proxied {
    trusted: Vec<crate::connections::Cidr>,
    in_flight: Arc<ConnectionLimiter>,
}

impl Proxied {
    fn is_proxy(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(peer))
    }
}

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let mut routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/send", post(send::send))
        .route("/v1/messages", get(messages::list))
        .route("/v1/messages/{id}", get(messages::one))
        .route("/member/status", get(member::status))
        .route("/member/metrics", get(member::metrics))
        .route("/member/metrics/series", get(member::metrics_series))
        .route("/member/forward-to", axum::routing::put(member::forward_to))
        .route(
            "/member/suppressions",
            get(member::suppressions_list).delete(member::suppressions_delete),
        )
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::page).post(unsubscribe::confirm),
        )
        .route("/oauth/client-metadata.json", get(signin::client_metadata))
        .route("/oauth/jwks.json", get(signin::jwks))
        .route("/oauth/callback", get(signin::callback))
        .route("/api/signin", post(signin::start))
        .route("/api/session", get(signin::current))
        .route("/api/signout", post(signin::signout))
        .route("/api/ownership", get(enroll::ownership))
        .route("/api/domains", post(enroll::add))
        .route(
            "/api/domains/{domain}",
            axum::routing::delete(enroll::remove),
        )
        .route("/api/domains/{domain}/dns", get(enroll::dns))
        .route(
            "/api/domains/{domain}/attestation",
            get(enroll::attestation),
        )
        .route("/api/domains/{domain}/rotate", post(enroll::rotate))
        .route("/api/key", post(enroll::regenerate_key))
        .route("/admin/member/{did}/{action}", post(admin::member_action))
        .route("/admin/member/{did}/labels", post(admin::label_add))
        .route(
            "/admin/member/{did}/labels/{label}",
            axum::routing::delete(admin::label_remove),
        )
        .route("/admin/members", get(admin::members_list))
        .route(
            "/admin/domains/{domain}/approve",
            post(admin::domain_approve),
        )
        .route("/admin/members/{did}", get(admin::member_detail))
        .route("/admin/members/{did}/series", get(admin::member_series))
        .route("/admin/members/{did}/dns/{domain}", get(admin::member_dns))
        .route("/admin/events", get(admin::events_list))
        .route("/admin/inbound", get(admin::inbound_list))
        .route("/admin/verdicts", get(admin::verdicts_list))
        .route("/admin/shadow-verdicts", get(admin::shadow_verdicts))
        .route("/admin/overview", get(admin::overview))
        .route("/admin/queue", get(admin::queue_list))
        .route("/admin/queue/bulk", post(admin::queue_bulk))
        .route("/admin/queue/{id}/retry", post(admin::queue_retry))
        .route(
            "/admin/queue/{id}",
            axum::routing::delete(admin::queue_delete),
        );
    // Only `atmos dev` has a zone to publish into; a production relay has no such route.
    if state.web.settings.dev_zone.is_some() {
        routes = routes.route("/api/dev/publish/{domain}", post(enroll::dev_publish));
    }
    routes
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SEND_BODY))
        .fallback_service(
            tower::ServiceBuilder::new()
                .layer(ui::compression())
                .service(axum::routing::any(ui::serve).with_state(state.clone())),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ui::pages,
        ))
        .with_state(state)
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "ok", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /openapi.json`: this API, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.merge(<atmos_labeler::LabelerApiDoc as utoipa::OpenApi>::openapi());
    axum::Json(doc)
}

/// Member credentials (`X-Atmos-DID` + Bearer API key) and the admin token.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme,
        };
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "member",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "member_did",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Atmos-DID"))),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document of every endpoint above.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Atmosphere Mail relay API", description = "Send mail, follow its delivery, and run the cooperative."),
    paths(
        send::send, messages::one, messages::list,
        member::status, member::metrics, member::metrics_series, member::forward_to, member::suppressions_list, member::suppressions_delete,
        unsubscribe::page, unsubscribe::confirm,
        admin::member_action, admin::domain_approve, admin::label_add, admin::label_remove, admin::members_list, admin::member_detail,
        admin::events_list, admin::inbound_list, admin::verdicts_list, admin::shadow_verdicts, admin::queue_list, admin::queue_bulk, admin::overview, admin::member_series, admin::member_dns, admin::queue_retry, admin::queue_delete,
        signin::client_metadata, signin::jwks, signin::start, signin::callback, signin::current, signin::signout,
        enroll::ownership, enroll::add, enroll::dns, enroll::attestation, enroll::remove, enroll::rotate, enroll::regenerate_key, enroll::dev_publish,
        healthz, metrics, openapi,
    ),
    modifiers(&SecuritySchemes)
)]
pub struct ApiDoc;

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
    (status = 500, description = "Store unavailable")))]
async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match crate::metrics::METRICS.render(&state.store) {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot render");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Serves the relay's routes and `extra` (the labeler's) until `shutdown`, then lets requests in
/// flight finish (up to the deadline).
///
/// Its own accept loop on hyper, rather than `axum::serve`, for what a stranger must not be able
/// to hold: connections are capped in all (more wait in the kernel's backlog) and per client
/// network (more are closed), and a request's headers must arrive within `header_timeout`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    extra: Router,
    limits: ListenerLimits,
    shutdown: CancellationToken,
) {
    let app = router(state.clone())
        .merge(extra)
        .layer(axum::middleware::from_fn_with_state(state, headers::secure));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // The total is enforced by `slots`; the limiter counts per client network.
    let per_client = ConnectionLimiter::new(usize::MAX, limits.max_connections_per_client);
    let proxied = Arc::new(Proxied {
        trusted: limits.trusted_proxies.clone(),
        in_flight: ConnectionLimiter::new(usize::MAX, limits.max_connections_per_client),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // A trusted proxy's connections are counted per client, request by request.
        let admitted = if proxied.is_proxy(peer.ip()) {
            None
        } else {
            match per_client.admit(peer.ip()) {
                Ok(a) => Some(a),
                Err(_) => {
                    tracing::debug!(%peer, "http: too many connections from this client, closing");
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        let (tls, header_timeout) = (limits.tls.clone(), limits.header_timeout);
        let proxied = proxied.clone();
        tokio::spawn(async move {
            let served = match tls {
                // The handshake counts against the header deadline: a stranger cannot hold a
                // slot by never finishing it.
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        serve_connection(stream, app, peer, proxied, header_timeout, watcher).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "https: handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "https: handshake timed out");
                        Ok(())
                    }
                },
                None => serve_connection(stream, app, peer, proxied, header_timeout, watcher).await,
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "http: connection ended with an error");
            }
            drop((slot, admitted));
        });
    }
    if tokio::time::timeout(limits.shutdown_deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http: requests still in flight at the shutdown deadline");
    }
    tracing::info!("http listener closed");
}

/// 429 for a client behind a proxy with too many requests in flight.
fn too_many_in_flight() -> axum::response::Response {
    use axum::response::IntoResponse;
    error::ApiError::coded(
        429,
        "RATE_LIMITED",
        "too many requests in flight from your address",
    )
    .into_response()
}

/// One HTTP/1.1 connection (plain or TLS) until it closes or shutdown asks it to.
async fn serve_connection<S>(
    stream: S,
    app: Router,
    peer: SocketAddr,
    proxied: Arc<Proxied>,
    header_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let from_proxy = proxied.is_proxy(peer.ip());
    let service = hyper::service::service_fn(
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            let proxied = proxied.clone();
            async move {
                // Every per-client control reads the client from here (`peer_of`).
                let client = if from_proxy {
                    crate::connections::client_address(
                        peer.ip(),
                        req.headers()
                            .get_all("x-forwarded-for")
                            .iter()
                            .map(|v| v.as_bytes()),
                        &proxied.trusted,
                    )
                } else {
                    peer.ip()
                };
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
                let _held = if from_proxy {
                    match proxied.in_flight.admit(client) {
                        Ok(a) => Some(a),
                        Err(_) => {
                            tracing::debug!(%client, "http: too many requests in flight from this client");
                            return Ok(too_many_in_flight());
                        }
                    }
                } else {
                    None
                };
                app.oneshot(req).await
            }
        },
    );
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    watcher.watch(conn.into_owned()).await
}

/// One lock per (DID, Idempotency-Key) in use.
pub type IdempotencyLocks = Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>;
