//! Security headers on every response of the HTTP listener, pages and API alike: a Content
//! Security Policy that allows only this origin's scripts (and WebAssembly) and no framing, no
//! MIME sniffing, no Referer (an OAuth callback URL carries its `state`), and HSTS when the UI
//! is served over https.
//!
//! Trunk starts the app with one inline `<script type="module">`; the policy names it by its
//! SHA-256, read from the `index.html` being served (and read again when the build changes), so
//! no inline script the relay did not ship can run.

use super::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Adds the headers to whatever the routes answered.
pub async fn secure(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&policy(&state.web.settings.dist_dir)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if state.web.settings.secure_cookies {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// The policy: this origin only, the app's own inline start-up script by hash, WebAssembly
/// compiled, inline `style` attributes (the charts set widths), no plugins, no framing.
pub fn policy(dist: &Path) -> String {
    let scripts: String = inline_script_hashes(dist)
        .iter()
        .map(|h| format!(" 'sha256-{h}'"))
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{scripts}; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Base64 SHA-256 of each inline `<script>` of `dist/index.html`, cached until the file changes.
fn inline_script_hashes(dist: &Path) -> Vec<String> {
    type Cached = Option<(std::path::PathBuf, SystemTime, Vec<String>)>;
    static CACHE: Mutex<Cached> = Mutex::new(None);
    let index = dist.join("index.html");
    let Some(modified) = std::fs::metadata(&index).and_then(|m| m.modified()).ok() else {
        return Vec::new();
    };
    if let Ok(cache) = CACHE.lock()
        && let Some((path, at, hashes)) = cache.as_ref()
        && *path == index
        && *at == modified
    {
        return hashes.clone();
    }
    let hashes = std::fs::read_to_string(&index)
        .map(|html| hashes_of(&html))
        .unwrap_or_default();
    if let Ok(mut cache) = CACHE.lock() {
        *cache = Some((index, modified, hashes.clone()));
    }
    hashes
}

/// The hashes of the inline scripts (no `src`) in `html`.
fn hashes_of(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let tag = &after[..open_end];
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") {
            let digest = Sha256::digest(&body.as_bytes()[..close]);
            out.push(base64::engine::general_purpose::STANDARD.encode(digest));
        }
        rest = &body[close..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_named_by_hash_and_external_ones_are_not() {
        let html = "<head><script type=\"module\">import init from '/a.js';</script>\
                    <script src=\"/b.js\"></script></head>";
        let hashes = hashes_of(html);
        assert_eq!(hashes.len(), 1);
        let expected = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(b"import init from '/a.js';"));
        assert_eq!(hashes[0], expected);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), html).unwrap();
        let p = policy(dir.path());
        assert!(p.contains(&format!("'sha256-{expected}'")), "{p}");
        assert!(p.contains("frame-ancestors 'none'"));
        let scripts = p.split("script-src").nth(1).unwrap_or_default();
        assert!(
            !scripts
                .split(';')
                .next()
                .unwrap_or_default()
                .contains("unsafe-inline"),
            "{p}"
        );
    }
}
