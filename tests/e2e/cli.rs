//! The `atmos` command line: configuration errors (exit 2, naming the key), `member add`,
//! lifecycle commands, and `atmos dev` delivering a first message sent with swaks.

use atmos_tests::poll_until;
use atmos_tests::relay::{Relay, atmos_bin};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn unknown_or_invalid_config_keys_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[smtp]\nsubmision_listen = \"127.0.0.1:0\"\n",
            "smtp.submision_listen",
        ),
        (
            "[delivery]\nmx_port = \"twenty-five\"\n",
            "delivery.mx_port",
        ),
        (
            "[delivery]\nmax_queue_lifetime = \"forever\"\n",
            "delivery.max_queue_lifetime",
        ),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ];
    for (text, key) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).expect("write");
        let out = Command::new(atmos_bin())
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key), "message must name {key}: {err}");
    }
    // An environment override with an unknown key is refused the same way.
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "").expect("write");
    let out = Command::new(atmos_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env("ATMOS_SMTP_LISTEN_EVERYWHERE", "yes")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("smtp.listen_everywhere"));
}

#[test]
fn member_add_prints_the_key_once_and_stores_only_a_bcrypt_hash() {
    let relay = Relay::new(None, 25, "");
    let m = relay.add_member("did:plc:dddddddddddddddddddddddd", "example.test", false);
    assert!(
        m.api_key.starts_with("atmos_") && m.api_key.len() == 38,
        "{}",
        m.api_key
    );
    assert!(m.api_key[6..].chars().all(|c| c.is_ascii_alphanumeric()));
    let hash: String = relay
        .db()
        .query_row("SELECT api_key_hash FROM members", [], |r| r.get(0))
        .expect("member row");
    assert!(hash.starts_with("$2"), "bcrypt hash expected: {hash}");
    assert!(!hash.contains(&m.api_key[6..]));
    // The printed DNS records name the domain.
    let out = relay.cli(&[
        "member",
        "add",
        "--did",
        "did:plc:eeeeeeeeeeeeeeeeeeeeeeee",
        "--domain",
        "other.test",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let records = v["dns_records"].as_array().expect("records");
    assert!(
        records
            .iter()
            .any(|r| r["name"] == "_dmarc.other.test" && r["type"] == "TXT")
    );
    // Bad input: a clear message and exit 2, nothing stored.
    let out = relay.cli(&["member", "add", "--did", "alice", "--domain", "x.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid DID"));
    let out = relay.cli(&[
        "member",
        "add",
        "--did",
        "did:plc:ffffffffffffffffffffffff",
        "--domain",
        "example.test",
    ]);
    assert_eq!(out.status.code(), Some(2), "a taken domain is refused");
    // Lifecycle: pending → active → suspended → active; a wrong transition exits 2.
    for (cmd, state) in [
        ("approve", "active"),
        ("suspend", "suspended"),
        ("reactivate", "active"),
    ] {
        let out = relay.cli(&["member", cmd, &m.did, "--reason", "test"]);
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(state));
    }
    assert_eq!(
        relay.cli(&["member", "approve", &m.did]).status.code(),
        Some(2)
    );
    let events = relay.count("SELECT count(*) FROM relay_events WHERE type LIKE 'member_%'");
    assert_eq!(events, 5, "enrolled ×2, approved, suspended, reactivated");
}

#[test]
fn dev_mode_delivers_a_first_message_sent_with_swaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(atmos_bin())
        .args([
            "dev",
            "--submission-listen",
            "127.0.0.1:0",
            "--inbound-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--ui-dir",
        ])
        .arg(atmos_tests::workspace_root().join("dist"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start atmos dev");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let info: serde_json::Value = serde_json::from_str(&first).expect("dev prints JSON first");
    let (sub, did, key) = (
        info["submission"].as_str().expect("submission"),
        info["did"].as_str().expect("did"),
        info["api_key"].as_str().expect("key"),
    );
    let out = Command::new("swaks")
        .args([
            "--server",
            sub,
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            did,
            "--auth-password",
            key,
        ])
        .args([
            "--from",
            "hello@demo.localhost",
            "--to",
            "you@example.com",
            "--h-X-Test-Id",
            "dev-first",
        ])
        .output()
        .expect("run swaks");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let captured = dir.path().join("captured");
    let found = poll_until(Duration::from_secs(20), "captured message", || {
        std::fs::read_dir(&captured)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|m| m.contains("X-Test-Id: dev-first"))
    });
    assert!(found.contains("X-Capture-Rcpt-To: you@example.com"));
    // The UI is served by the same binary, and the demo domain's DKIM records are in the
    // embedded zone, so the labeler verifies the demo member as it would a real one.
    let http = info["http"].as_str().expect("http");
    let (status, _, head) =
        atmos_tests::http::curl("GET", &format!("http://{http}/enroll"), &[], None);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    poll_until(
        Duration::from_secs(60),
        "the demo member's verified-mail-operator label",
        || {
            let (_, v, _) = atmos_tests::http::curl(
                "GET",
                &format!("http://{http}/xrpc/com.atproto.label.queryLabels?uriPatterns={did}"),
                &[],
                None,
            );
            v["labels"]
                .as_array()?
                .iter()
                .any(|l| {
                    l["val"] == "verified-mail-operator" && l.get("neg").is_none_or(|n| n == false)
                })
                .then_some(())
        },
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn oauth_rotate_key_publishes_the_next_key_before_it_signs() {
    use atmos_tests::http::curl;
    let mut relay = Relay::new(
        None,
        25,
        "[web]\npublic_url = \"https://relay.atmos.internal\"\n",
    );
    relay.start();
    let jwks = |relay: &Relay| {
        let (status, v, _) = curl(
            "GET",
            &format!("http://{}/oauth/jwks.json", relay.http.expect("http")),
            &[],
            None,
        );
        assert_eq!(status, 200, "{v}");
        v["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|k| {
                assert!(
                    k.get("d").is_none(),
                    "only public halves are published: {k}"
                );
                k["kid"].as_str().unwrap_or_default().to_string()
            })
            .collect::<Vec<_>>()
    };
    let first = jwks(&relay);
    assert_eq!(first.len(), 1, "{first:?}");
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };

    // Promoting with no next key is refused, naming the first step.
    let out = relay.cli(&["oauth", "rotate-key", "--promote"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotate-key"));

    // Step one: the next key is published by the running relay, the old one still signs.
    let v = json(relay.cli(&["oauth", "rotate-key"]));
    let next = v["next"].as_str().expect("next kid").to_string();
    assert_eq!(v["signing"], first[0].as_str(), "{v}");
    let both = jwks(&relay);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.contains(&next) && both.contains(&first[0]));
    // Running it again does not make a third key.
    assert_eq!(
        json(relay.cli(&["oauth", "rotate-key"]))["next"],
        next.as_str()
    );

    // Step two: the next key signs and the old one is no longer published.
    let v = json(relay.cli(&["oauth", "rotate-key", "--promote"]));
    assert_eq!(
        (v["promoted"].as_str(), v["signing"].as_str()),
        (Some(next.as_str()), Some(next.as_str())),
        "{v}"
    );
    assert_eq!(jwks(&relay), vec![next]);
}
