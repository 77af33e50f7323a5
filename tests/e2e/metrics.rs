//! `GET /metrics` parses with a real Prometheus text parser (PyPI prometheus_client) and reports
//! queue depth, recipients by status, fsync and signing latency.

use atmos_tests::http::curl;
use atmos_tests::peers::venv_python;
use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use serde_json::{Value, json};
use std::io::Write;
use std::time::Duration;

fn scrape(url: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", url])
        .output()
        .expect("curl");
    assert!(out.status.success());
    let script = atmos_tests::workspace_root().join("tests/py/parse_metrics.py");
    let mut child = std::process::Command::new(venv_python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("write");
    let parsed = child.wait_with_output().expect("parse");
    assert!(
        parsed.status.success(),
        "metrics do not parse: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    serde_json::from_slice(&parsed.stdout).expect("json")
}

fn sample(v: &Value, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    v["samples"].as_array()?.iter().find_map(|s| {
        let matches = s[0] == name && label.is_none_or(|(k, val)| s[1][k] == val);
        matches.then(|| s[2].as_f64()).flatten()
    })
}

#[test]
fn metrics_parse_and_count_what_happened() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let headers = vec![
        format!("X-Atmos-DID: {}", world.member.did),
        format!("Authorization: Bearer {}", world.member.api_key),
    ];
    let body = json!({"from": "app@sender.test", "to": format!("r@{RCPT_DOMAIN}"), "text": "t"})
        .to_string();
    let (status, _, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &headers,
        Some(body.as_bytes()),
    );
    assert_eq!(status, 200);
    let url = format!("http://{http}/metrics");
    let v = poll_until(Duration::from_secs(20), "sent recipient in metrics", || {
        let v = scrape(&url);
        (sample(&v, "atmos_recipients", Some(("status", "sent"))) == Some(1.0)).then_some(v)
    });
    assert_eq!(v["families"]["atmos_spool_fsync_seconds"], "histogram");
    assert_eq!(v["families"]["atmos_dkim_signing_seconds"], "histogram");
    assert_eq!(v["families"]["atmos_queue_depth"], "gauge");
    assert_eq!(sample(&v, "atmos_queue_depth", None), Some(0.0));
    assert!(sample(&v, "atmos_queue_oldest_age_seconds", None).is_some());
    assert!(
        sample(&v, "atmos_spool_fsync_seconds_count", None).unwrap_or(0.0) >= 2.0,
        "accept + delivery commits"
    );
    assert_eq!(
        sample(&v, "atmos_dkim_signing_seconds_count", None),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &v,
            "atmos_messages_accepted_total",
            Some(("source", "http"))
        ),
        Some(1.0)
    );
}
