//! Inbound MX (BEHAVIOUR §7), with Python's smtplib as the remote mail server and smtp-sink as the
//! next hop. A DSN to a message's VERP address bounces that recipient and suppresses it; an ARF
//! complaint to `fbl@` suppresses the complainant; operator aliases and replies to a member domain
//! are forwarded with an SRS sender, and a bounce of such a forward goes back to its sender;
//! everything else is refused, loops are stopped, and `/admin/inbound` shows what happened.

use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::mx::{self, code};
use atmos_tests::poll_until;
use atmos_tests::setup::{DID, RCPT_DOMAIN, World};
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "inbound-admin-token-0123456789abcdef";

fn query_one(world: &World, sql: &str, arg: &str) -> String {
    world
        .relay
        .db()
        .query_row(sql, [arg], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql} [{arg}]: {e}"))
}

#[test]
fn bounces_complaints_forwards_and_refusals() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ADMIN_TOKEN", TOKEN),
            ("ATMOS_SERVER_OPERATOR_FORWARD_TO", "ops@rcpt.test"),
        ],
    );
    let inbound = world.relay.inbound.expect("inbound listener");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let admin = vec![format!("Authorization: Bearer {TOKEN}")];
    let send = |to: &str| -> String {
        let body = json!({"from": "app@sender.test", "to": to, "subject": "hi", "text": "hello"});
        send_ok(http, &member, &body)
    };
    // Each test message goes to its own recipient, which finds it at the sink.
    let delivered = |to: &str| -> String {
        poll_until(Duration::from_secs(20), "delivery to the sink", || {
            world.sink.messages_with(to).into_iter().next()
        })
    };

    // A delivered message, then a DSN to its VERP return path: the recipient becomes bounced and
    // suppressed before the MX answers 250.
    let reader = format!("reader@{RCPT_DOMAIN}");
    let id = send(&reader);
    let original = delivered(&reader);
    let verp = query_one(
        &world,
        "SELECT return_path FROM messages WHERE id = ?1",
        &id,
    );
    let report = mx::dsn(
        &verp,
        &reader,
        "failed",
        "5.1.1",
        &mx::headers_of(&original),
    );
    let v = mx::send(inbound, "", &[&verp], &report, false);
    assert_eq!(code(&v["data"]), 250, "{v}");
    assert_eq!(world.relay.statuses(&id), vec!["bounced"]);
    let (_, status, _) = curl(
        "GET",
        &format!("http://{http}/v1/messages/{id}"),
        &member,
        None,
    );
    assert_eq!(status["recipients"][0]["status"], "bounced", "{status}");
    assert_eq!(
        query_one(
            &world,
            "SELECT reason FROM suppressions WHERE address = ?1",
            &reader
        ),
        "bounce"
    );
    assert_eq!(
        world.relay.count(&format!(
            "SELECT count(*) FROM relay_events WHERE type = 'bounce_received' AND did = '{DID}'"
        )),
        1
    );

    // A forged return path (one tag digit changed) is refused at RCPT; nothing is taken.
    let last = verp.find('@').expect("@") - 1;
    let flipped = if &verp[last..=last] == "0" { "1" } else { "0" };
    let forged = format!("{}{flipped}{}", &verp[..last], &verp[last + 1..]);
    let v = mx::send(inbound, "", &[&forged], &report, false);
    assert_eq!(
        (code(&v["rcpt"][0]), v["rcpt"][0][1].as_str()),
        (550, Some("5.1.1 unknown bounce address")),
        "{v}"
    );
    assert!(v["data"].is_null());

    // An ARF complaint to fbl@ (over STARTTLS), enclosing the delivered message: the complainant
    // is suppressed for good and counted in the member's metrics.
    let fan = format!("fan@{RCPT_DOMAIN}");
    let id2 = send(&fan);
    let original = delivered(&fan);
    let v = mx::send(
        inbound,
        "fbl@provider.test",
        &["fbl@operator.test"],
        &mx::arf("fbl@operator.test", &fan, &original),
        true,
    );
    assert_eq!(
        (code(&v["data"]), v["tls"].as_bool()),
        (250, Some(true)),
        "{v}"
    );
    assert_eq!(
        query_one(
            &world,
            "SELECT reason FROM suppressions WHERE address = ?1",
            &fan
        ),
        "complaint"
    );
    let (_, metrics, _) = curl(
        "GET",
        &format!("http://{http}/member/metrics"),
        &member,
        None,
    );
    assert_eq!(metrics["24h"]["complaints"], 1, "{metrics}");

    // Operator aliases go to operator_forward_to, keeping From and Subject, signed by the operator
    // and sent with an SRS envelope sender.
    let notice = "From: NOC <noc@provider.test>\nTo: postmaster@operator.test\n\
        Subject: verify your sender\nX-Test-Id: op-1\n\nclick here\n";
    let v = mx::send(
        inbound,
        "noc@provider.test",
        &["postmaster@operator.test"],
        notice,
        false,
    );
    assert_eq!(code(&v["data"]), 250, "{v}");
    let copy = poll_until(Duration::from_secs(20), "operator forward", || {
        world
            .sink
            .messages_with("X-Test-Id: op-1")
            .into_iter()
            .next()
    });
    for needle in [
        "From: NOC <noc@provider.test>",
        "Subject: verify your sender",
        "Received: from mx.remote.test (127.0.0.1)",
        "d=operator.test",
    ] {
        assert!(copy.contains(needle), "{needle} missing in {copy}");
    }
    let srs = query_one(
        &world,
        "SELECT m.return_path FROM messages m JOIN recipients r ON r.message_id = m.id
         WHERE m.source = 'forward' AND r.address = ?1",
        "ops@rcpt.test",
    );
    assert!(
        srs.starts_with("SRS0=") && srs.ends_with("=provider.test=noc@relay.test"),
        "{srs}"
    );

    // A reply to the member's domain: refused while it has no forward-to address, then forwarded.
    let reply = "From: friend@rcpt.test\nTo: hello@sender.test\nSubject: re: hi\nX-Test-Id: reply-1\n\nthanks\n";
    let send_reply = || {
        mx::send(
            inbound,
            "friend@rcpt.test",
            &["hello@sender.test"],
            reply,
            false,
        )
    };
    let v = send_reply();
    assert_eq!(
        (code(&v["rcpt"][0]), v["rcpt"][0][1].as_str()),
        (550, Some("5.1.1 address not available")),
        "{v}"
    );
    let (status, _, _) = curl(
        "PUT",
        &format!("http://{http}/member/forward-to"),
        &member,
        Some(
            json!({"domain": "sender.test", "address": "owner@rcpt.test"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(status, 200);
    let v = send_reply();
    assert_eq!(code(&v["data"]), 250, "{v}");
    poll_until(Duration::from_secs(20), "reply forwarded", || {
        world
            .sink
            .messages_with("X-Test-Id: reply-1")
            .into_iter()
            .next()
    });
    let srs = query_one(
        &world,
        "SELECT m.return_path FROM messages m JOIN recipients r ON r.message_id = m.id
         WHERE m.source = 'forward' AND r.address = ?1",
        "owner@rcpt.test",
    );
    assert!(srs.starts_with("SRS0="), "{srs}");

    // The forward bounces: the DSN comes back to the SRS address and goes on to the original
    // sender, with a null envelope sender.
    let bounce = mx::dsn(
        &srs,
        "owner@rcpt.test",
        "failed",
        "5.2.2",
        "From: friend@rcpt.test\nX-Test-Id: reply-1",
    );
    let v = mx::send(inbound, "", &[&srs], &bounce, false);
    assert_eq!(code(&v["data"]), 250, "{v}");
    let returned = query_one(
        &world,
        "SELECT m.return_path FROM messages m JOIN recipients r ON r.message_id = m.id
         WHERE m.source = 'forward' AND r.address = ?1",
        "friend@rcpt.test",
    );
    assert_eq!(returned, "", "returned bounces carry a null sender");
    poll_until(
        Duration::from_secs(20),
        "bounce returned to the sender",
        || {
            world
                .sink
                .messages_with("Final-Recipient: rfc822; owner@rcpt.test")
                .into_iter()
                .next()
        },
    );

    // Anything else is relaying; a message that has looped too often is refused whole.
    let v = mx::send(
        inbound,
        "a@b.test",
        &["someone@elsewhere.test"],
        "Subject: x\n\nx\n",
        false,
    );
    assert_eq!(
        (code(&v["rcpt"][0]), v["rcpt"][0][1].as_str()),
        (550, Some("5.7.1 relaying denied")),
        "{v}"
    );
    let looped = format!(
        "{}Subject: loop\n\nround and round\n",
        "Received: from a by b; Mon, 23 Nov 2026 10:00:00 +0000\n".repeat(31)
    );
    let v = mx::send(
        inbound,
        "a@b.test",
        &["postmaster@operator.test"],
        &looped,
        false,
    );
    assert_eq!(
        (code(&v["data"]), v["data"][1].as_str()),
        (554, Some("5.4.6 routing loop detected")),
        "{v}"
    );

    // The admin log, behind the token.
    let url = format!("http://{http}/admin/inbound");
    let (status, _, _) = curl("GET", &url, &[], None);
    assert_eq!(status, 401);
    let (status, rows, _) = curl("GET", &format!("{url}?classification=dsn"), &admin, None);
    assert_eq!(status, 200, "{rows}");
    assert_eq!(
        (&rows[0]["did"], &rows[0]["messageId"], &rows[0]["action"]),
        (&json!(DID), &json!(id), &json!("bounce_recorded")),
        "{rows}"
    );
    let (_, rows, _) = curl("GET", &url, &admin, None);
    let classes: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["classification"].as_str())
        .collect();
    for c in ["dsn", "arf", "operator", "reply", "srs_bounce"] {
        assert!(classes.contains(&c), "{c} missing in {classes:?}");
    }
    let arf_row = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["classification"] == "arf"))
        .cloned()
        .unwrap_or(Value::Null);
    // The provider sent the complaint to fbl@, not to a VERP address: the enclosed Message-ID
    // found the message itself.
    assert_eq!(
        (&arf_row["did"], &arf_row["messageId"], &arf_row["subject"]),
        (&json!(DID), &json!(id2), &json!("FW: complaint"))
    );
    let (status, err, _) = curl("GET", &format!("{url}?classification=bogus"), &admin, None);
    assert_eq!((status, &err["code"]), (400, &json!("INVALID_REQUEST")));
}

/// Each client address may start `inbound_rate_burst` transactions at once, then
/// `inbound_rate_per_minute`: the next MAIL gets 450 4.7.1 and nothing is taken.
#[test]
fn inbound_rate_limit_per_client_address() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ATMOS_SMTP_INBOUND_RATE_BURST", "2"),
            ("ATMOS_SMTP_INBOUND_RATE_PER_MINUTE", "1"),
        ],
    );
    let inbound = world.relay.inbound.expect("inbound listener");
    let note = "From: a@b.test\nSubject: hello postmaster\n\nhi\n";
    let send = || {
        mx::send(
            inbound,
            "a@b.test",
            &["postmaster@operator.test"],
            note,
            false,
        )
    };
    for _ in 0..2 {
        let v = send();
        assert_eq!(code(&v["data"]), 250, "{v}");
    }
    let v = send();
    assert_eq!(
        (code(&v["mail"]), v["mail"][1].as_str()),
        (
            450,
            Some("4.7.1 Too much mail from your address, try again later")
        ),
        "{v}"
    );
    assert_eq!(
        world
            .relay
            .count("SELECT count(*) FROM inbound_messages WHERE classification = 'operator'"),
        2,
        "without operator_forward_to, alias mail is logged, and the refused one is not"
    );
}
