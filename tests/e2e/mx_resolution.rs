//! MX resolution against a real DNS server (dnsmasq): preference order, fallback to the next MX,
//! implicit MX (A record only), null MX (RFC 7505) and a domain that does not exist.

use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::relay::Relay;
use atmos_tests::{client, poll_until};
use std::time::Duration;

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn mx_order_fallback_implicit_null_and_nxdomain() {
    let dns = Dns::start(
        &["test"],
        &lines(&[
            // Listed backup-first: the relay must sort by preference itself.
            "mx-host=order.test,backup.order.test,20",
            "mx-host=order.test,primary.order.test,10",
            "host-record=backup.order.test,127.0.0.1",
            "host-record=primary.order.test,127.0.0.1",
            // The preferred host does not answer: the next one is used.
            "mx-host=fallback.test,dead.fallback.test,10",
            "mx-host=fallback.test,live.fallback.test,20",
            "host-record=dead.fallback.test,127.0.0.2",
            "host-record=live.fallback.test,127.0.0.1",
            "host-record=implicit.test,127.0.0.1",
            "mx-host=null.test,.,0",
        ]),
    );
    let sink = SmtpSink::start(&[]);
    let mut relay = Relay::new(Some(&dns.address()), sink.port, "");
    let m = relay.add_member("did:plc:gggggggggggggggggggggggg", "sender.test", true);
    let addr = relay.start();
    let rcpts = [
        "a@order.test",
        "b@fallback.test",
        "c@implicit.test",
        "d@null.test",
        "e@nosuch.test",
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(addr, &m.did, &m.api_key)
            .await
            .expect("session");
        let body = client::message("app@sender.test", "a@order.test", "mx-1", 512);
        client::send(&mut s, "app@sender.test", &rcpts, &body)
            .await
            .expect("accepted");
    });
    let rows = poll_until(Duration::from_secs(30), "all recipients final", || {
        let db = relay.db();
        let mut stmt = db
            .prepare(
                "SELECT r.address, r.status, coalesce(r.last_reply, ''),
                        (SELECT a.mx FROM delivery_attempts a WHERE a.recipient_id = r.id ORDER BY a.id DESC LIMIT 1)
                 FROM recipients r ORDER BY r.id",
            )
            .expect("prepare");
        let rows: Vec<(String, String, String, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect();
        rows.iter()
            .all(|r| r.1 == "sent" || r.1 == "bounced")
            .then_some(rows)
    });
    let get = |a: &str| rows.iter().find(|r| r.0 == a).cloned().expect("recipient");
    let order = get("a@order.test");
    assert_eq!(
        (order.1.as_str(), order.3.as_deref()),
        ("sent", Some("primary.order.test"))
    );
    let fallback = get("b@fallback.test");
    assert_eq!(
        (fallback.1.as_str(), fallback.3.as_deref()),
        ("sent", Some("live.fallback.test"))
    );
    let implicit = get("c@implicit.test");
    assert_eq!(
        (implicit.1.as_str(), implicit.3.as_deref()),
        ("sent", Some("implicit.test"))
    );
    let null = get("d@null.test");
    assert_eq!(null.1, "bounced");
    assert!(null.2.starts_with("556 5.1.10"), "{}", null.2);
    let nx = get("e@nosuch.test");
    assert_eq!(nx.1, "bounced");
    assert!(nx.2.starts_with("550 5.1.2"), "{}", nx.2);
    assert_eq!(
        sink.messages_with("X-Test-Id: mx-1").len(),
        3,
        "one copy per reachable domain"
    );
}
