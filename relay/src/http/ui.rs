//! The web UI (Leptos, built by Trunk into `[web] dist_dir`), served by `atmos` itself: files
//! from the build, compressed (gzip or brotli, as the browser accepts), fingerprinted assets
//! cached for a year, and `index.html` for every page route so the app routes on the client.

use super::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tower::ServiceExt;

/// Path prefixes that belong to the JSON APIs: an unknown path there is a JSON 404, not a page.
const API_PREFIXES: [&str; 6] = [
    "/api/",
    "/v1/",
    "/member/",
    "/xrpc/",
    "/oauth/",
    "/unsubscribe/",
];

/// The fallback route: UI files and pages.
pub async fn serve(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if API_PREFIXES.iter().any(|p| path.starts_with(p))
        || (req.method() != Method::GET && req.method() != Method::HEAD)
    {
        return super::error::ApiError::NotFound(format!("{path}")).into_response();
    }
    let dist = state.web.settings.dist_dir.clone();
    let index = dist.join("index.html");
    if !index.exists() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "The web UI is not built: run `trunk build --release` (or `atmos dev`, which builds it), \
                 or point [web] dist_dir at a build. Looked in {}.\n",
                dist.display()
            ),
        )
            .into_response();
    }
    // A file of the build, or (for a page route) index.html.
    let is_file = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    let service = tower_http::services::ServeDir::new(&dist)
        .precompressed_gzip()
        .precompressed_br()
        .fallback(tower_http::services::ServeFile::new(&index));
    let mut res = match service.oneshot(req).await {
        Ok(r) => r.map(Body::new),
        Err(e) => match e {},
    };
    let cache = if is_file && res.status().is_success() && path != "/index.html" {
        // Trunk names assets by content hash: a changed file is a new name.
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}
