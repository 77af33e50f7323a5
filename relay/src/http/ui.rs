//! The web UI (Leptos, built by Trunk into `[web] dist_dir`), served by `atmos` itself: files
//! from the build, compressed (brotli or gzip, as the browser accepts), fingerprinted assets
//! cached for a year, and `index.html` for every page route so the app routes on the client.
//!
//! Some pages share their path with a JSON API (`/admin/members` is both). A browser
//! navigation (`Sec-Fetch-Mode: navigate`, or `Accept` led by `text/html`) gets the page; every
//! other request (the pages' own `fetch`es, curl, SDKs) gets the API. `/admin` pages answer 401
//! or 403 (with the app, which explains) to anyone the admin API would refuse.

use super::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::Path;
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

/// The app's page routes (frontend/src/app.rs): a prefix matches itself and what is under it.
const PAGE_PREFIXES: [&str; 5] = ["/enroll", "/account", "/admin", "/docs", "/faq"];

/// Brotli quality for responses compressed on the fly: 11 takes seconds on the wasm bundle,
/// 5 a fraction of one for nearly the same size; browsers then cache the asset for a year.
const BROTLI_QUALITY: i32 = 5;

/// The compression every UI response goes through.
pub fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new()
        .quality(tower_http::CompressionLevel::Precise(BROTLI_QUALITY))
}

fn is_page(path: &str) -> bool {
    path == "/"
        || PAGE_PREFIXES.iter().any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// A browser loading a page, as opposed to a script or a client asking for data.
fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("sec-fetch-mode") == Some("navigate")
        || header("accept").is_some_and(|a| a.trim_start().starts_with("text/html"))
}

/// Middleware before the API routes: a navigation to a page route gets the app.
pub async fn pages(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !(is_page(path) && is_navigation(req.method(), req.headers())) {
        return next.run(req).await;
    }
    let status = if path == "/admin" || path.starts_with("/admin/") {
        let (parts, _) = req.into_parts();
        match super::access::admit_operator(&state, &parts, false) {
            Ok(_) => StatusCode::OK,
            Err(e) => e.0,
        }
    } else {
        StatusCode::OK
    };
    let dist = &state.web.settings.dist_dir;
    let mut res = index(dist).await;
    if res.status().is_success() {
        *res.status_mut() = status;
    }
    res
}

/// The fallback route: UI files, and `index.html` for page routes no API claims.
pub async fn serve(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if API_PREFIXES.iter().any(|p| path.starts_with(p))
        || (req.method() != Method::GET && req.method() != Method::HEAD)
    {
        return super::error::ApiError::NotFound(path).into_response();
    }
    let dist = &state.web.settings.dist_dir;
    let index_path = dist.join("index.html");
    if !index_path.exists() {
        return not_built(dist);
    }
    // A file of the build, or (for a page route) index.html.
    let is_file = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    let service = tower_http::services::ServeDir::new(dist)
        .precompressed_gzip()
        .precompressed_br()
        .fallback(tower_http::services::ServeFile::new(&index_path));
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

/// `index.html`, never cached (it names the current assets).
async fn index(dist: &Path) -> Response {
    let index_path = dist.join("index.html");
    if !index_path.exists() {
        return not_built(dist);
    }
    let req = Request::new(Body::empty());
    let mut res = match tower_http::services::ServeFile::new(&index_path)
        .oneshot(req)
        .await
    {
        Ok(r) => r.map(Body::new),
        Err(e) => match e {},
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

fn not_built(dist: &Path) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "The web UI is not built: run `trunk build --release` (or `atmos dev`, which builds it), \
             or point [web] dist_dir at a build. Looked in {}.\n",
            dist.display()
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_routes_and_their_neighbours() {
        for p in [
            "/",
            "/admin",
            "/admin/members/did:plc:x",
            "/account",
            "/docs/smtp",
            "/faq",
            "/enroll",
        ] {
            assert!(is_page(p), "{p}");
        }
        for p in [
            "/administrator",
            "/faq.txt",
            "/v1/send",
            "/healthz",
            "/accounts",
        ] {
            assert!(!is_page(p), "{p}");
        }
    }

    #[test]
    fn navigations_not_fetches() {
        let mut h = HeaderMap::new();
        h.insert(
            "accept",
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::POST, &h));
        let mut f = HeaderMap::new();
        f.insert("accept", HeaderValue::from_static("*/*"));
        assert!(!is_navigation(&Method::GET, &f));
        f.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(!is_navigation(&Method::GET, &f));
        f.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
        assert!(is_navigation(&Method::GET, &f));
    }
}
