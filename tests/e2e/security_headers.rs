//! Issue 9 §3 and §6: exactly one From (and at most one of the other originator fields), over
//! SMTP and HTTP alike; what receivers check — a `Received` trace field, one Message-ID rule on
//! both paths matching the id the API returns, a display name on the HTTP `from`.

use atmos_tests::client;
use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use serde_json::json;
use std::time::Duration;

#[test]
fn one_from_and_the_other_originator_limits() {
    let mut world = World::start(Some(&[]), "");
    // A rival member whose domain the attacker wants to appear as.
    world
        .relay
        .add_member("did:plc:rrrrrrrrrrrrrrrrrrrrrrrr", "rival.test", true);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let to = format!("reader@{RCPT_DOMAIN}");
    let cases = [
        (
            "two From, the second a rival's",
            "From: <app@sender.test>\r\nFrom: <ceo@rival.test>\r\n",
        ),
        (
            "two From, both the member's",
            "From: <app@sender.test>\r\nFrom: <b@sender.test>\r\n",
        ),
        (
            "several authors and no Sender",
            "From: <app@sender.test>, <b@sender.test>\r\n",
        ),
        (
            "two Subject",
            "From: <app@sender.test>\r\nSubject: a\r\nSubject: b\r\n",
        ),
        (
            "two Message-ID",
            "From: <app@sender.test>\r\nMessage-ID: <1@x>\r\nMessage-ID: <2@x>\r\n",
        ),
        (
            "two Sender",
            "From: <app@sender.test>\r\nSender: <app@sender.test>\r\nSender: <b@sender.test>\r\n",
        ),
        (
            "a Sender at a rival's domain",
            "From: <app@sender.test>\r\nSender: <ceo@rival.test>\r\n",
        ),
        ("no From", "Subject: hi\r\n"),
    ];
    rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        for (what, head) in cases {
            let body = format!("{head}To: <{to}>\r\nX-Test-Id: bad\r\n\r\nhello\r\n");
            let err = client::send(&mut s, "app@sender.test", &[&to], body.as_bytes())
                .await
                .expect_err(what);
            let mail_send::Error::UnexpectedReply(r) = err else {
                panic!("{what}: {err}")
            };
            assert_eq!((r.code, r.esc[0], r.esc[1], r.esc[2]), (550, 5, 7, 1), "{what}: {}", r.message);
        }
        // Several authors with a Sender of the member's domain are fine.
        let body = format!("From: <app@sender.test>, <b@sender.test>\r\nSender: <app@sender.test>\r\nTo: <{to}>\r\nX-Test-Id: ok\r\n\r\nhi\r\n");
        client::send(&mut s, "app@sender.test", &[&to], body.as_bytes()).await.expect("accepted");
    });
    assert_eq!(world.relay.count("SELECT count(*) FROM messages"), 1);
    world.relay.terminate();
}

#[test]
fn trace_field_message_id_and_display_name() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let to = format!("mid@{RCPT_DOMAIN}");
    let body = json!({"from": "App Team <app@sender.test>", "to": to, "subject": "hi", "text": "t",
                      "category": "transactional", "headers": {"X-Test-Id": "mid-1"}});
    let id = send_ok(http, &member, &body);
    let copy = poll_until(Duration::from_secs(20), "HTTP message delivered", || {
        world
            .sink
            .messages_with("X-Test-Id: mid-1")
            .into_iter()
            .next()
    });
    assert!(
        copy.contains(&format!("Message-ID: <{id}@relay.test>")),
        "Message-ID is the API's id on server.hostname: {copy}"
    );
    assert!(
        copy.contains("From: \"App Team\" <app@sender.test>"),
        "display name kept: {copy}"
    );
    assert!(
        copy.contains(&format!("Received: by relay.test with HTTP id {id};")),
        "one trace field, without the client's address by default: {copy}"
    );

    // SMTP: the trace field names the EHLO host (loadgen.test for the test client).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        let body = client::message("app@sender.test", &to, "mid-2", 300);
        client::send(&mut s, "app@sender.test", &[&to], &body)
            .await
            .expect("accepted");
    });
    let copy = poll_until(Duration::from_secs(20), "SMTP message delivered", || {
        world
            .sink
            .messages_with("X-Test-Id: mid-2")
            .into_iter()
            .next()
    });
    assert!(
        copy.contains("Received: from loadgen.test by relay.test with ESMTPSA id "),
        "{copy}"
    );

    // HTTP headers may not set trace, authentication or relay fields.
    for name in [
        "Received",
        "Sender",
        "Resent-From",
        "Return-Path",
        "Authentication-Results",
        "ARC-Seal",
        "DKIM-Signature",
        "List-Unsubscribe",
        "Feedback-ID",
    ] {
        let body =
            json!({"from": "app@sender.test", "to": to, "text": "t", "headers": {name: "x"}});
        let (status, v, _) = curl(
            "POST",
            &format!("http://{http}/v1/send"),
            &member,
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{name}: {v}"
        );
    }
}

#[test]
fn the_client_address_is_traced_only_when_configured() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[("ATMOS_SERVER_TRACE_CLIENT_ADDRESS", "true")],
    );
    let http = world.relay.http.expect("http");
    let body = json!({"from": "app@sender.test", "to": format!("t@{RCPT_DOMAIN}"), "text": "t",
                      "category": "transactional", "headers": {"X-Test-Id": "trace-ip"}});
    send_ok(http, &member_headers(&world.member), &body);
    let copy = poll_until(Duration::from_secs(20), "delivered", || {
        world
            .sink
            .messages_with("X-Test-Id: trace-ip")
            .into_iter()
            .next()
    });
    assert!(
        copy.contains("Received: from [127.0.0.1] by relay.test with HTTP id "),
        "{copy}"
    );
}

/// Found by the `headers` fuzz target: a member's Message-ID that is not one `<left@right>`
/// leaves replaced by the relay's (reports are matched on it), and a message whose header
/// block never ends is checked as it is sent — a From that only parses without the line end is
/// refused with `550 5.7.1`, nothing queued.
#[test]
fn malformed_message_ids_are_replaced_and_unterminated_headers_checked_as_sent() {
    let world = World::start(Some(&[]), "");
    let to = format!("mid@{RCPT_DOMAIN}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        let body = format!(
            "From: <app@sender.test>\r\nTo: <{to}>\r\nX-Test-Id: bad-mid\r\nMessage-ID: <1@From: App <app@x\r\n\r\nhi\r\n"
        );
        client::send(&mut s, "app@sender.test", &[&to], body.as_bytes())
            .await
            .expect("accepted with the relay's Message-ID");
        let body = "From: App <app@sender.test>tMessagApp?= <Fromapp@s:e =?n";
        let err = client::send(&mut s, "app@sender.test", &[&to], body.as_bytes())
            .await
            .expect_err("an unterminated From that reads two ways");
        let mail_send::Error::UnexpectedReply(r) = err else {
            panic!("{err}")
        };
        assert_eq!((r.code, r.esc[0], r.esc[1], r.esc[2]), (550, 5, 7, 1), "{}", r.message);
    });
    let copy = poll_until(Duration::from_secs(20), "message delivered", || {
        world
            .sink
            .messages_with("X-Test-Id: bad-mid")
            .into_iter()
            .next()
    });
    let ids: Vec<&str> = copy
        .lines()
        .filter(|l| l.starts_with("Message-ID:"))
        .collect();
    assert_eq!(ids.len(), 1, "{copy}");
    assert!(
        ids[0].ends_with("@relay.test>"),
        "the relay's own id: {copy}"
    );
    assert_eq!(world.relay.count("SELECT count(*) FROM messages"), 1);
}

/// Issue 12 (found by the `headers` fuzz target): a header line that RFC 5322 does not allow —
/// a bare LF or CR, a colon-less line, a space in a field name, a fold of only white space, a
/// control byte — is read differently by different parsers, so it could carry a second author
/// past the one-From check. Over SMTP each is refused with 550 5.6.0 and nothing is queued; the
/// HTTP builder only ever makes lines the check accepts, and its edge refuses the rest.
#[test]
fn header_lines_outside_rfc_5322_are_refused_over_smtp_and_http() {
    let world = World::start(Some(&[]), "");
    world
        .relay
        .add_member("did:plc:rrrrrrrrrrrrrrrrrrrrrrrr", "rival.test", true);
    let to = format!("reader@{RCPT_DOMAIN}");
    let fuzzed: &[u8] = include_bytes!("../fuzz/corpus/headers/folded-bare-lf");
    let cases: [(&str, Vec<u8>); 7] = [
        ("the fuzzer's folded bare LF", fuzzed.to_vec()),
        (
            "a space in a second From's name",
            b"From: <app@sender.test>\r\nFr om: <ceo@rival.test>\r\n\r\nhi\r\n".to_vec(),
        ),
        (
            "a bare LF hiding a Sender",
            b"From: <app@sender.test>\nSender: <ceo@rival.test>\r\n\r\nhi\r\n".to_vec(),
        ),
        (
            "a fold of only white space before a second From",
            b"From: <app@sender.test>\r\nX-A: a\r\n \r\nFrom: <ceo@rival.test>\r\n\r\nhi\r\n"
                .to_vec(),
        ),
        (
            "a line without a colon",
            b"From: <app@sender.test>\r\nFrom <ceo@rival.test>\r\n\r\nhi\r\n".to_vec(),
        ),
        (
            "a NUL in a Sender",
            b"From: <app@sender.test>\r\nSender: <app@sender.test\0>\r\n\r\nhi\r\n".to_vec(),
        ),
        (
            "a bare LF before the blank line",
            b"From: <app@sender.test>\r\nX-A: a\n\r\nFrom: <ceo@rival.test>\r\n\r\nhi\r\n".to_vec(),
        ),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        for (what, body) in &cases {
            let err = client::send(&mut s, "app@sender.test", &[&to], body)
                .await
                .expect_err(what);
            let mail_send::Error::UnexpectedReply(r) = err else {
                panic!("{what}: {err}")
            };
            assert_eq!(
                (r.code, r.esc[0], r.esc[1], r.esc[2]),
                (550, 5, 6, 0),
                "{what}: {}",
                r.message
            );
            assert!(r.message.contains("malformed"), "{what}: {}", r.message);
        }
        // The session survives, and well-formed folds are fine.
        let body = format!(
            "From: <app@sender.test>\r\nTo: <{to}>\r\nSubject: a\r\n\tfolded\r\n subject\r\nX-Test-Id: smtp-ok\r\n\r\nhi\r\n"
        );
        client::send(&mut s, "app@sender.test", &[&to], body.as_bytes())
            .await
            .expect("a folded subject is accepted");
    });
    assert_eq!(world.relay.count("SELECT count(*) FROM messages"), 1);

    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let post = |body: serde_json::Value| {
        curl(
            "POST",
            &format!("http://{http}/v1/send"),
            &member,
            Some(body.to_string().as_bytes()),
        )
    };
    // What mail-builder folds or leaves blank passes the strict check.
    let subject = "Grüße aus Köln, ".repeat(12);
    let long = "word ".repeat(60);
    let (status, v, _) = post(
        json!({"from": "app@sender.test", "to": to, "subject": subject,
        "text": "t", "headers": {"X-Test-Id": "http-ok", "X-Blank": "   ", "X-Long": long}}),
    );
    assert_eq!(status, 200, "{v}");
    for (what, headers) in [
        ("a space in a name", json!({"Fr om": "<ceo@rival.test>"})),
        (
            "a C1 control",
            json!({"X-A": "a\u{85}Sender: <ceo@rival.test>"}),
        ),
        ("a bare LF", json!({"X-A": "a\nFrom: <ceo@rival.test>"})),
    ] {
        let (status, v, _) =
            post(json!({"from": "app@sender.test", "to": to, "text": "t", "headers": headers}));
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{what}: {v}"
        );
    }
    for id in ["smtp-ok", "http-ok"] {
        let copy = poll_until(Duration::from_secs(20), "message delivered", || {
            world
                .sink
                .messages_with(&format!("X-Test-Id: {id}"))
                .into_iter()
                .next()
        });
        let froms = copy.lines().filter(|l| l.starts_with("From:")).count();
        assert_eq!(froms, 1, "{copy}");
    }
    assert_eq!(world.relay.count("SELECT count(*) FROM messages"), 2);
}
