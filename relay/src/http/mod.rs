//! The HTTP edge (axum) on `[http] listen`: the send API, per-message status, health.
//! Every JSON error is `{"error": text, "code": CODE}` rendered from the shared `SubmitError`.

pub mod admin;
pub mod credentials;
pub mod error;
pub mod member;
pub mod messages;
pub mod send;
pub mod unsubscribe;

use crate::accept::Acceptor;
use crate::auth::Authenticator;
use crate::store::Store;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest accepted `/v1/send` body (SPEC §4.2).
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
}

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/send", post(send::send))
        .route("/v1/messages", get(messages::list))
        .route("/v1/messages/{id}", get(messages::one))
        .route("/member/status", get(member::status))
        .route("/member/metrics", get(member::metrics))
        .route("/member/forward-to", axum::routing::put(member::forward_to))
        .route(
            "/member/suppressions",
            get(member::suppressions_list).delete(member::suppressions_delete),
        )
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::page).post(unsubscribe::confirm),
        )
        .route("/admin/member/{did}/{action}", post(admin::member_action))
        .route("/admin/member/{did}/labels", post(admin::label_add))
        .route(
            "/admin/member/{did}/labels/{label}",
            axum::routing::delete(admin::label_remove),
        )
        .route("/admin/members", get(admin::members_list))
        .route("/admin/members/{did}", get(admin::member_detail))
        .route("/admin/events", get(admin::events_list))
        .route("/admin/inbound", get(admin::inbound_list))
        .route("/admin/verdicts", get(admin::verdicts_list))
        .route("/admin/shadow-verdicts", get(admin::shadow_verdicts))
        .route("/admin/queue", get(admin::queue_list))
        .route("/admin/queue/{id}/retry", post(admin::queue_retry))
        .route(
            "/admin/queue/{id}",
            axum::routing::delete(admin::queue_delete),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SEND_BODY))
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
        member::status, member::metrics, member::forward_to, member::suppressions_list, member::suppressions_delete,
        unsubscribe::page, unsubscribe::confirm,
        admin::member_action, admin::label_add, admin::label_remove, admin::members_list, admin::member_detail,
        admin::events_list, admin::inbound_list, admin::verdicts_list, admin::shadow_verdicts, admin::queue_list, admin::queue_retry, admin::queue_delete,
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

/// Serves until `shutdown`, then lets requests in flight finish.
/// Serves the relay's routes and `extra` (the labeler's) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    extra: Router,
    shutdown: CancellationToken,
) {
    let app = router(state).merge(extra);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "http: server failed");
    }
    tracing::info!("http listener closed");
}
