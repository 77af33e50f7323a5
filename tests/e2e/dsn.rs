//! Bounces produce RFC 3464 DSNs: to the sending domain's forward-to address (null envelope
//! sender, signed by the operator), or recorded as an event when there is none.

use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::relay::Relay;
use atmos_tests::{client, poll_until};
use std::time::Duration;

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_bounce_sends_a_dsn_to_the_forward_to_address_or_records_it() {
    let dns = Dns::start(
        &["test"],
        &lines(&[
            "mx-host=rcpt.test,mx.rcpt.test,10",
            "host-record=mx.rcpt.test,127.0.0.1",
            "mx-host=null.test,.,0",
        ]),
    );
    let sink = SmtpSink::start(&[]);
    let mut relay = Relay::new(Some(&dns.address()), sink.port, "");
    let m = relay.add_member("did:plc:mmmmmmmmmmmmmmmmmmmmmmmm", "sender.test", true);
    let out = relay.cli(&[
        "member",
        "forward-to",
        "--domain",
        "sender.test",
        "--address",
        "owner@rcpt.test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = relay.start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let send = |to: &str, id: &str| {
        rt.block_on(async {
            let mut s = client::connect(addr, &m.did, &m.api_key)
                .await
                .expect("session");
            let body = client::message("app@sender.test", to, id, 400);
            client::send(&mut s, "app@sender.test", &[to], &body)
                .await
                .expect("accepted");
        })
    };
    send("gone@null.test", "bounce-me");
    let dsn = poll_until(
        Duration::from_secs(30),
        "DSN at the forward-to address",
        || {
            sink.messages_with("Final-Recipient: rfc822; gone@null.test")
                .into_iter()
                .next()
        },
    );
    for needle in [
        "Content-Type: multipart/report",
        "report-type=\"delivery-status\"",
        "Content-Type: message/delivery-status",
        "Action: failed",
        "Status: 5.1.10",
        "Diagnostic-Code: smtp; 556 5.1.10",
        "X-Test-Id: bounce-me",
        "mailer-daemon@operator.test",
        "d=operator.test",
    ] {
        assert!(dsn.contains(needle), "DSN lacks {needle:?}:\n{dsn}");
    }
    assert!(
        !dsn.contains("d=sender.test"),
        "the relay's own notice is signed by the operator only"
    );
    // smtp-sink records the envelope: the notice had a null reverse-path.
    assert!(
        dsn.contains("X-Mail-Args: <>\n"),
        "null envelope sender expected:\n{}",
        &dsn[..dsn.len().min(400)]
    );

    // With no forward-to, the bounce is recorded instead.
    let out = relay.cli(&["member", "forward-to", "--domain", "sender.test"]);
    assert!(out.status.success());
    // (gone@null.test is suppressed by now: the 5.1.10 bounce put it on the list.)
    assert_eq!(relay.count("SELECT count(*) FROM suppressions WHERE address = 'gone@null.test' AND reason = 'bounce'"), 1);
    send("gone2@null.test", "bounce-quietly");
    poll_until(Duration::from_secs(30), "dsn_recorded event", || {
        (relay.count("SELECT count(*) FROM relay_events WHERE type = 'dsn_recorded' AND data LIKE '%gone2@null.test%'") == 1)
            .then_some(())
    });
    assert_eq!(
        sink.messages_with("Final-Recipient").len(),
        1,
        "no second DSN was sent"
    );
}
