//! Issue 9 §1: reports act only with proof the relay sent the message, touch only that
//! message's recipients, and count once per recipient. The attacks are mounted against a running
//! relay whose member has sent 50 messages (enough for the default rules to judge rates), with
//! Python's smtplib as the reporting MTA and smtp-sink holding the delivered copies.

use atmos_tests::http::{member_headers, send_ok};
use atmos_tests::mx::{self, code};
use atmos_tests::poll_until;
use atmos_tests::setup::{DID, RCPT_DOMAIN, World};
use serde_json::json;
use std::time::Duration;

/// Waits until the rules engine has judged every event written so far, so "nothing happened" is
/// a fact and not a race.
fn rules_caught_up(world: &World) {
    let last = world
        .relay
        .count("SELECT coalesce(max(id), 0) FROM relay_events");
    poll_until(Duration::from_secs(30), "rules engine to catch up", || {
        (world
            .relay
            .count("SELECT coalesce(max(event), 0) FROM rule_cursor")
            >= last)
            .then_some(())
    });
}

fn state(world: &World) -> String {
    world
        .relay
        .db()
        .query_row("SELECT state FROM members WHERE did = ?1", [DID], |r| {
            r.get(0)
        })
        .expect("member state")
}

fn count(world: &World, sql: &str) -> i64 {
    world.relay.count(sql)
}

#[test]
fn forged_reports_change_nothing_and_genuine_ones_touch_only_their_recipients() {
    // One reporting MTA sends every report here: lift the per-client inbound rate.
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ATMOS_SMTP_INBOUND_RATE_PER_MINUTE", "1000"),
            ("ATMOS_SMTP_INBOUND_RATE_BURST", "100"),
        ],
    );
    let inbound = world.relay.inbound.expect("inbound listener");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let rcpt = |i: usize| format!("r{i}@{RCPT_DOMAIN}");
    for i in 0..50 {
        let body = json!({"from": "app@sender.test", "to": rcpt(i), "subject": format!("n{i}"),
                          "text": "hello", "category": "transactional"});
        send_ok(http, &member, &body);
    }
    let copy = |i: usize| -> String {
        poll_until(Duration::from_secs(30), "delivered copy", || {
            world
                .sink
                .messages_with(&format!("To: <{}>", rcpt(i)))
                .into_iter()
                .next()
        })
    };
    for i in 0..50 {
        copy(i);
    }
    poll_until(Duration::from_secs(30), "50 deliveries recorded", || {
        (count(
            &world,
            "SELECT count(*) FROM recipients WHERE status = 'sent'",
        ) == 50)
            .then_some(())
    });
    rules_caught_up(&world);
    assert_eq!(state(&world), "active");

    // (a) A stranger's ARF to fbl@ naming the member by header, and one quoting a real delivered
    // Message-ID: accepted (an MTA must not learn what we believe), recorded as unverified,
    // nothing suppressed, the member stays active.
    let delivered = copy(1);
    let real_id = delivered
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("Message-ID")
        .to_string();
    let by_header = format!(
        "From: app@sender.test\nTo: {}\nSubject: hi\nX-Atmos-Member-Did: {DID}\n\nbuy now\n",
        rcpt(1)
    );
    let by_message_id = format!(
        "From: app@sender.test\nTo: {}\nSubject: n1\nMessage-ID: {real_id}\nX-Atmos-Member-Did: {DID}\n\
         Feedback-ID: transactional:{DID}:sender.test:atmosphere-mail\n\nhello\n",
        rcpt(1)
    );
    for original in [&by_header, &by_message_id] {
        let v = mx::send(
            inbound,
            "fbl@provider.test",
            &["fbl@operator.test"],
            &mx::arf("fbl@operator.test", &rcpt(1), original),
            false,
        );
        assert_eq!(code(&v["data"]), 250, "{v}");
    }
    rules_caught_up(&world);
    assert_eq!(count(&world, "SELECT count(*) FROM suppressions"), 0);
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM relay_events WHERE type = 'complaint_received'"
        ),
        0
    );
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM inbound_messages WHERE classification = 'arf' AND action = 'unverified'"
        ),
        2
    );
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM relay_events WHERE type = 'report_unverified'"
        ),
        2
    );
    assert_eq!(
        state(&world),
        "active",
        "a forged complaint must not suspend"
    );

    // (d) Ten forged DSNs to postmaster@ naming the member, each with three failed blocks for
    // real recipients: no bounce is counted, no one is suppressed, no suspension.
    let headers =
        format!("From: app@sender.test\nMessage-ID: {real_id}\nX-Atmos-Member-Did: {DID}\n");
    for n in 0..10 {
        let (a, b, c) = (rcpt(3 * n), rcpt(3 * n + 1), rcpt(3 * n + 2));
        let blocks = [
            (a.as_str(), "failed", "5.1.1"),
            (b.as_str(), "failed", "5.1.1"),
            (c.as_str(), "failed", "5.1.1"),
        ];
        let v = mx::send(
            inbound,
            "",
            &["postmaster@operator.test"],
            &mx::dsn_blocks("postmaster@operator.test", &blocks, &headers),
            false,
        );
        assert_eq!(code(&v["data"]), 250, "{v}");
    }
    rules_caught_up(&world);
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM relay_events WHERE type = 'bounce_received'"
        ),
        0
    );
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM recipients WHERE status = 'bounced'"
        ),
        0
    );
    assert_eq!(count(&world, "SELECT count(*) FROM suppressions"), 0);
    assert_eq!(state(&world), "active", "forged DSNs must not suspend");

    // A recipient bounces its own copy through the message's per-recipient VERP address, with
    // three blocks about itself and one about someone else: one bounce, for itself only; sending
    // it again counts nothing more.
    let own = copy(7);
    let verp = mx::envelope_sender(&own);
    assert!(
        verp.starts_with("bounces+") && verp.contains('='),
        "per-recipient VERP: {verp}"
    );
    let me = rcpt(7);
    let other = rcpt(8);
    let blocks = [
        (me.as_str(), "failed", "5.1.1"),
        (me.as_str(), "failed", "5.1.1"),
        (me.as_str(), "failed", "5.2.2"),
        (other.as_str(), "failed", "5.1.1"),
    ];
    for _ in 0..3 {
        let v = mx::send(
            inbound,
            "",
            &[&verp],
            &mx::dsn_blocks(&verp, &blocks, &mx::headers_of(&own)),
            false,
        );
        assert_eq!(code(&v["data"]), 250, "{v}");
    }
    rules_caught_up(&world);
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM relay_events WHERE type = 'bounce_received'"
        ),
        1
    );
    assert_eq!(
        count(
            &world,
            &format!("SELECT count(*) FROM suppressions WHERE address = '{me}'")
        ),
        1
    );
    assert_eq!(
        count(
            &world,
            &format!("SELECT count(*) FROM suppressions WHERE address = '{other}'")
        ),
        0
    );
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM inbound_messages WHERE classification = 'dsn' AND action = 'duplicate'"
        ),
        2
    );
    assert_eq!(
        state(&world),
        "active",
        "one bounce in 50 is under the 5% threshold"
    );

    // (b) A genuine complaint: the delivered copy enclosed, its operator signature intact. The
    // complainant is suppressed for good; the same report again counts nothing more.
    let genuine = copy(2);
    let report = mx::arf("fbl@operator.test", &rcpt(2), &genuine);
    for _ in 0..2 {
        let v = mx::send(
            inbound,
            "fbl@provider.test",
            &["fbl@operator.test"],
            &report,
            false,
        );
        assert_eq!(code(&v["data"]), 250, "{v}");
    }
    assert_eq!(
        count(
            &world,
            &format!(
                "SELECT count(*) FROM suppressions WHERE address = '{}' AND reason = 'complaint'",
                rcpt(2)
            )
        ),
        1
    );
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM relay_events WHERE type = 'complaint_received'"
        ),
        1
    );
    assert_eq!(
        count(
            &world,
            "SELECT count(*) FROM inbound_messages WHERE classification = 'arf' AND action = 'complaint_recorded'"
        ),
        1
    );

    // (c) A genuine report that lists five addresses, only one of them a recipient of the
    // enclosed message (another is a recipient of a different message): only that one is
    // suppressed.
    let genuine = copy(4);
    let named = [
        rcpt(4),
        rcpt(5),
        "x1@elsewhere.test".into(),
        "x2@elsewhere.test".into(),
        "x3@elsewhere.test".into(),
    ];
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    let v = mx::send(
        inbound,
        "fbl@provider.test",
        &["fbl@operator.test"],
        &mx::arf_many("fbl@operator.test", &named, &genuine),
        false,
    );
    assert_eq!(code(&v["data"]), 250, "{v}");
    assert_eq!(
        count(
            &world,
            &format!(
                "SELECT count(*) FROM suppressions WHERE address = '{}'",
                rcpt(4)
            )
        ),
        1
    );
    for n in &named[1..] {
        assert_eq!(
            count(
                &world,
                &format!("SELECT count(*) FROM suppressions WHERE address = '{n}'")
            ),
            0,
            "{n}"
        );
    }
}
