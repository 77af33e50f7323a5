//! `/openapi.json` (OpenAPI 3.1, generated from the code by utoipa) describes every endpoint, and
//! schemathesis (PyPI) fuzzes the live API against it: no 5xx, no schema violations.

use atmos_tests::http::curl;
use atmos_tests::setup::World;

#[test]
fn openapi_describes_the_api_and_schemathesis_finds_nothing() {
    let world = World::start_with_env(Some(&[]), "", &[("ADMIN_TOKEN", "schemathesis-admin")]);
    let http = world.relay.http.expect("http");
    let (status, doc, _) = curl("GET", &format!("http://{http}/openapi.json"), &[], None);
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/send",
        "/v1/messages",
        "/v1/messages/{id}",
        "/member/status",
        "/member/metrics",
        "/member/forward-to",
        "/member/suppressions",
        "/unsubscribe/{token}",
        "/admin/members",
        "/admin/member/{did}/{action}",
        "/admin/events",
        "/admin/queue",
        "/metrics",
        "/healthz",
        "/xrpc/com.atproto.label.queryLabels",
        "/xrpc/com.atproto.moderation.createReport",
        "/admin/labeler/labels",
        "/.well-known/did.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    let st = atmos_tests::workspace_root().join("tests/.venv/bin/st");
    assert!(st.exists(), "schemathesis missing: run tests/install-peers");
    // Its cache (.schemathesis/) goes to a scratch directory, not the source tree.
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(st)
        .current_dir(scratch.path())
        .args(["run", &format!("http://{http}/openapi.json")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--max-examples", "30", "--request-timeout", "30"])
        .args(["-H", &format!("X-Atmos-DID: {}", world.member.did)])
        .args(["-H", &format!("Authorization: Bearer {}", world.member.api_key)])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
}
