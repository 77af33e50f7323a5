//! The embedded rules engine (BEHAVIOUR §8) acting on real traffic: a bounce spike suspends the member
//! (the next AUTH is refused), a shadow rule only records, a member with 30 clean days becomes
//! `highly_trusted` and gets the public `clean-sender` label; bad rule files and failing fixtures
//! are reported.

use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::labeler::wait_standing;
use atmos_tests::mx::{self, code};
use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::relay::{Relay, atmos_bin};
use atmos_tests::setup::{DID, RCPT_DOMAIN, World};
use atmos_tests::{client, poll_until};
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "rules-admin-token-0123456789abcdefgh";

/// Sends one message with five recipients over HTTP; returns the message id.
fn send5(http: std::net::SocketAddr, headers: &[String], tag: &str) -> String {
    let to: Vec<String> = (0..5).map(|i| format!("{tag}{i}@{RCPT_DOMAIN}")).collect();
    let body = json!({"from": "app@sender.test", "to": to, "subject": "hi", "text": "hello"});
    send_ok(http, headers, &body)
}

/// `atmos rules test [FILE]`.
fn rules_test(file: Option<&std::path::Path>) -> std::process::Output {
    let mut cmd = std::process::Command::new(atmos_bin());
    cmd.args(["rules", "test"]);
    if let Some(f) = file {
        cmd.arg(f);
    }
    cmd.output().expect("run atmos rules test")
}

fn admin_get(http: std::net::SocketAddr, path: &str) -> Value {
    let (status, v, _) = curl(
        "GET",
        &format!("http://{http}{path}"),
        &[format!("Authorization: Bearer {TOKEN}")],
        None,
    );
    assert_eq!(status, 200, "{path}: {v}");
    v
}

#[test]
fn a_bounce_spike_suspends_and_shadow_rules_only_record() {
    let mut world = World::start_with_env(Some(&[]), "", &[("ADMIN_TOKEN", TOKEN)]);
    let http = world.relay.http.expect("http");
    let headers = member_headers(&world.member);
    // 50 recipients delivered...
    for i in 0..10 {
        send5(http, &headers, &format!("ok{i}-"));
    }
    poll_until(Duration::from_secs(30), "50 deliveries", || {
        (world
            .relay
            .count("SELECT count(*) FROM recipients WHERE status = 'sent'")
            == 50)
            .then_some(())
    });
    assert_eq!(
        world.relay.count("SELECT count(*) FROM rule_verdicts"),
        0,
        "no verdict while the member is clean"
    );
    // ... then the MX refuses every mailbox: 5 bounces out of 55 is over 5 %.
    world
        .sink
        .restart(&["-f", "rcpt", "-B", "550 5.1.1 no such user"]);
    send5(http, &headers, "gone-");
    poll_until(Duration::from_secs(30), "automatic suspension", || {
        (world.relay.count(&format!(
            "SELECT count(*) FROM members WHERE did = '{DID}' AND state = 'suspended'"
        )) == 1)
            .then_some(())
    });
    let verdicts = admin_get(http, &format!("/admin/verdicts?did={DID}"));
    assert!(
        verdicts.as_array().is_some_and(|v| v
            .iter()
            .any(|v| v["rule"] == "suspend_on_bounce_rate"
                && v["applied"] == true
                && v["shadow"] == false)),
        "{verdicts}"
    );
    let events = admin_get(
        http,
        &format!("/admin/events?did={DID}&type=member_suspended"),
    );
    assert_eq!(
        events[0]["actor"], "rule:suspend_on_bounce_rate",
        "{events}"
    );
    // The suspension applies at once: the next AUTH is refused.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let refused = rt
        .block_on(client::connect(
            world.submission,
            &world.member.did,
            &world.member.api_key,
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("535") && refused.contains("suspended"),
        "{refused}"
    );

    // A complaint arrives: the shadow rule records it, and it is not enforced.
    // The copy ok0-0 received (every copy of that bulk message names all five in To:, and a
    // complaint about one reader's copy counts only for that reader).
    let original = poll_until(Duration::from_secs(20), "a delivered message", || {
        world.sink.messages().into_iter().find(|m| {
            m.lines()
                .any(|l| l.starts_with("X-Rcpt-Args:") && l.contains("ok0-0@"))
        })
    });
    let inbound = world.relay.inbound.expect("inbound");
    let v = mx::send(
        inbound,
        "fbl@provider.test",
        &["fbl@operator.test"],
        &mx::arf(
            "fbl@operator.test",
            &format!("ok0-0@{RCPT_DOMAIN}"),
            &original,
        ),
        false,
    );
    assert_eq!(code(&v["data"]), 250, "{v}");
    let shadow = poll_until(Duration::from_secs(20), "a shadow verdict", || {
        let v = admin_get(http, "/admin/shadow-verdicts");
        (v.as_array().is_some_and(|a| !a.is_empty())).then_some(v)
    });
    assert_eq!(
        (
            &shadow[0]["rule"],
            &shadow[0]["effect"],
            &shadow[0]["applied"]
        ),
        (
            &json!("watch_first_complaint"),
            &json!("add_label: shadow:complained"),
            &json!(false)
        )
    );
    assert_eq!(
        world
            .relay
            .count("SELECT count(*) FROM member_labels WHERE label LIKE 'shadow:%'"),
        0,
        "shadow labels are never applied"
    );
}

#[test]
fn thirty_clean_days_earn_highly_trusted_and_clean_sender() {
    let dns = Dns::with_mx(&[RCPT_DOMAIN]);
    let sink = SmtpSink::start(&[]);
    let mut relay = Relay::new(Some(&dns.address()), sink.port, "");
    let member = relay.add_member(DID, "sender.test", true);
    // Approved 40 days ago (set behind the relay's back, before it starts).
    let db = rusqlite::Connection::open(relay.data_dir().join("atmos.sqlite")).expect("db");
    db.execute(
        "UPDATE members SET approved_at = approved_at - 40 * 86400000, created_at = created_at - 40 * 86400000",
        [],
    )
    .expect("age the member");
    drop(db);
    relay.start();
    let http = relay.http.expect("http");
    let headers = member_headers(&member);
    send5(http, &headers, "fan-");
    wait_standing(http, DID, "clean-sender", true, Duration::from_secs(30));
    assert_eq!(
        relay.count(&format!(
            "SELECT count(*) FROM member_labels WHERE did = '{DID}' AND label = 'highly_trusted'"
        )),
        1
    );
    // The operator suspends: the public label is withdrawn.
    let out = relay.cli(&["member", "suspend", DID, "--reason", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_standing(http, DID, "clean-sender", false, Duration::from_secs(30));
}

#[test]
fn rule_files_are_checked_and_their_fixtures_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        r#"
[counters.sent]
on = ["delivery_result"]
windows = ["1h"]

[[rules]]
name = "label_busy"
on = ["delivery_result"]
when = "counters.sent_1h >= 2"
effects = [{ add_label = "busy", expires = "1h" }]

[[tests]]
name = "expects the wrong thing"
events = [{ type = "delivery_result", repeat = 3 }]
expect = []
"#,
    )
    .expect("write");
    let out = rules_test(Some(&failing));
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (&v["passed"], &v["tests"][0]["fired"]),
        (&json!(false), &json!(["label_busy"]))
    );

    let invalid = dir.path().join("invalid.toml");
    std::fs::write(
        &invalid,
        "[[rules]]\nname = \"broken\"\non = [\"delivery_result\"]\nwhen = \"counters.x >\"\neffects = [{ suspend = \"r\" }]\n",
    )
    .expect("write");
    let out = rules_test(Some(&invalid));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("rule broken: invalid CEL"), "{err}");

    // The README's example file passes as printed.
    let readme =
        std::fs::read_to_string(atmos_tests::workspace_root().join("README.md")).expect("README");
    let example = readme
        .split("```toml\n")
        .find(|b| b.starts_with("[counters."))
        .and_then(|b| b.split("```").next())
        .expect("README rule example");
    let example_path = dir.path().join("readme.toml");
    std::fs::write(&example_path, example).expect("write");
    let out = rules_test(Some(&example_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The built-in rules pass, and `serve` refuses to start on an invalid file, naming the rule.
    let out = rules_test(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let relay = Relay::new(
        None,
        9,
        &format!("[rules]\nfiles = [\"{}\"]\n", invalid.display()),
    );
    let out = relay.cli(&["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve must not start");
    assert!(err.contains("rule broken"), "{err}");
}
