//! HTTP requests with a real client (curl).

use serde_json::Value;
use std::process::Command;

/// (status, JSON body, raw headers) of one request.
pub fn curl(
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> (u16, Value, String) {
    curl_with(&[], method, url, headers, body)
}

/// [`curl`] with extra curl options first (`--resolve`, `--cacert`…).
pub fn curl_with(
    options: &[&str],
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> (u16, Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("curl");
    cmd.args(options)
        .args(["-s", "-S", "-X", method, "-D", "-", "-o"])
        .arg(dir.path().join("body"))
        .arg(url);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        std::fs::write(dir.path().join("req"), b).expect("write body");
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", dir.path().join("req").display()));
    }
    let out = cmd.output().expect("run curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    // The last status line (large bodies get a `100 Continue` first).
    let status = head
        .lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = std::fs::read(dir.path().join("body")).unwrap_or_default();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        head,
    )
}

/// The member's API headers (`X-Atmos-DID` + bearer API key).
pub fn member_headers(member: &crate::relay::TestMember) -> Vec<String> {
    vec![
        format!("X-Atmos-DID: {}", member.did),
        format!("Authorization: Bearer {}", member.api_key),
    ]
}

/// `POST /v1/send` with `body`, which must be accepted; returns the first message id.
pub fn send_ok(http: std::net::SocketAddr, headers: &[String], body: &Value) -> String {
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        headers,
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(status, 200, "{v}");
    v["accepted"][0]["messageId"]
        .as_str()
        .expect("messageId")
        .to_string()
}
