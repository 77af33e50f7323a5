//! Issue 9 §2: every address that enters is parsed into one strict mailbox type at the edge.
//! A member once could store `a@x>\r\nRSET\r\nMAIL FROM:<ceo@other>` as its forward-to address
//! and have the relay write it into its own outbound SMTP session; each edge now refuses CR,
//! LF, NUL, `>` and over-long parts with a coded error and stores nothing.

use atmos_tests::client;
use atmos_tests::http::{curl, member_headers};
use atmos_tests::relay::{Relay, atmos_bin};
use atmos_tests::setup::{RCPT_DOMAIN, SENDER_DOMAIN, World};
use serde_json::json;

/// The inputs every edge must refuse.
fn hostile() -> Vec<String> {
    vec![
        "owner@rcpt.test>\r\nRSET\r\nMAIL FROM:<ceo@other.test>".into(),
        "owner@rcpt.test\nRCPT TO:<victim@x.test>".into(),
        "owner@rcpt.test\rX".into(),
        "own\0er@rcpt.test".into(),
        "owner@rcpt.test>".into(),
        "\"own\\>er\"@rcpt.test".into(),
        format!("{}@rcpt.test", "l".repeat(65)),
        format!("owner@{}.test", "d".repeat(64)),
    ]
}

fn stored_forward_to(world: &World) -> Option<String> {
    world
        .relay
        .db()
        .query_row(
            "SELECT forward_to FROM sending_domains WHERE domain = ?1",
            [SENDER_DOMAIN],
            |r| r.get(0),
        )
        .expect("domain row")
}

#[test]
fn forward_to_refuses_smtp_injection_over_http_and_cli() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    for bad in hostile() {
        let body = json!({"domain": SENDER_DOMAIN, "address": bad});
        let (status, v, _) = curl(
            "PUT",
            &format!("http://{http}/member/forward-to"),
            &member,
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{bad:?}: {v}"
        );
        assert!(
            v["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("address:"),
            "{v}"
        );
        assert_eq!(
            stored_forward_to(&world),
            None,
            "{bad:?} must not be stored"
        );
        // A NUL cannot travel in argv at all; the other inputs must be refused by the CLI too.
        if bad.contains('\0') {
            continue;
        }
        let out = world.relay.cli(&[
            "member",
            "forward-to",
            "--domain",
            SENDER_DOMAIN,
            "--address",
            &bad,
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--address"));
        assert_eq!(stored_forward_to(&world), None);
    }
    // A valid address is stored in its canonical form (domain folded).
    let body = json!({"domain": "Sender.TEST", "address": "Owner@RCPT.test"});
    let (status, v, _) = curl(
        "PUT",
        &format!("http://{http}/member/forward-to"),
        &member,
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        stored_forward_to(&world).as_deref(),
        Some("Owner@rcpt.test")
    );
}

#[test]
fn send_fields_and_smtp_envelope_refuse_bad_addresses() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let good = || json!({"from": "app@sender.test", "to": format!("a@{RCPT_DOMAIN}"), "text": "t"});
    for field in ["from", "to", "cc", "bcc", "replyTo"] {
        for bad in hostile() {
            let mut body = good();
            body[field] = json!(bad);
            let (status, v, _) = curl(
                "POST",
                &format!("http://{http}/v1/send"),
                &member,
                Some(body.to_string().as_bytes()),
            );
            assert_eq!(
                (status, v["code"].as_str()),
                (400, Some("INVALID_REQUEST")),
                "{field} {bad:?}: {v}"
            );
            assert!(
                v["error"].as_str().unwrap_or_default().starts_with(field),
                "{v}"
            );
        }
    }
    assert_eq!(
        world.relay.count("SELECT count(*) FROM messages"),
        0,
        "nothing queued"
    );

    // SMTP: MAIL FROM and RCPT TO with a NUL, a '>' inside, or over-long parts get 501.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        let long_local = format!("{}@sender.test", "l".repeat(65));
        for bad in [
            "app\0x@sender.test",
            "\"a>b\"@sender.test",
            "\"a\\>b\"@sender.test",
            long_local.as_str(),
        ] {
            let r = c
                .cmd(format!("MAIL FROM:<{bad}>\r\n"))
                .await
                .expect("reply");
            assert_eq!(
                (r.code, r.esc),
                (501, [5, 1, 7]),
                "MAIL {bad:?}: {}",
                r.message
            );
        }
        let r = c
            .cmd("MAIL FROM:<app@sender.test>\r\n")
            .await
            .expect("reply");
        assert_eq!(r.code, 250, "{}", r.message);
        let long_domain = format!("a@{}.test", "d".repeat(64));
        for bad in [
            "a\0b@rcpt.test",
            "\"x>y\"@rcpt.test",
            "\"x\\<y\"@rcpt.test",
            long_domain.as_str(),
            "nodomain",
        ] {
            let r = c.cmd(format!("RCPT TO:<{bad}>\r\n")).await.expect("reply");
            assert!(
                r.code == 501 || r.code == 553,
                "RCPT {bad:?}: {} {}",
                r.code,
                r.message
            );
        }
        let r = c.cmd("DATA\r\n").await.expect("reply");
        assert_eq!(r.code, 554, "no valid recipients: {}", r.message);
    });
    assert_eq!(
        world.relay.count("SELECT count(*) FROM messages"),
        0,
        "nothing queued"
    );
}

#[test]
fn operator_forward_to_is_checked_at_start() {
    // (A NUL cannot travel in the environment; the config unit test covers it in TOML.)
    for bad in ["ops@x.test>\r\nRSET", "ops@x.test\nX: y", "ops@x.test>"] {
        let relay = Relay::new(None, 25, "");
        let out = std::process::Command::new(atmos_bin())
            .args(["serve", "--config"])
            .arg(relay.config())
            .env("ATMOS_SERVER_OPERATOR_FORWARD_TO", bad)
            .output()
            .expect("run atmos");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("server.operator_forward_to"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
