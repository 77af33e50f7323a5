//! Warming (BEHAVIOUR §6): a new member's 6th recipient within an hour is refused on SMTP (451 4.7.1)
//! and HTTP (429 + Retry-After); a restart does not reset the count; `burst_warming` halves the
//! cap; `highly_trusted` lifts it. Labels are set through the admin API.

use atmos_tests::client;
use atmos_tests::http::curl;
use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::relay::{Relay, TestMember};
use serde_json::json;
use std::net::SocketAddr;

const TOKEN: &str = "warming-admin-token";

/// Sends one message to `n` recipients over SMTP; returns the first refusal's reply, if any.
fn smtp_send(addr: SocketAddr, m: &TestMember, n: usize) -> Option<String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (mut c, _) = client::probe_tls(addr).await;
        let r = c
            .cmd(format!(
                "{}\r\n",
                client::auth_plain_line(&m.did, &m.api_key)
            ))
            .await
            .expect("auth");
        assert_eq!(r.code, 235);
        let from = format!("app@{}", m.domain);
        assert_eq!(
            c.cmd(format!("MAIL FROM:<{from}>\r\n"))
                .await
                .expect("mail")
                .code,
            250
        );
        for i in 0..n {
            let r = c
                .cmd(format!("RCPT TO:<r{i}@rcpt.test>\r\n"))
                .await
                .expect("rcpt");
            if r.code != 250 {
                return Some(format!(
                    "{} {}.{}.{} {}",
                    r.code, r.esc[0], r.esc[1], r.esc[2], r.message
                ));
            }
        }
        assert_eq!(c.cmd(b"DATA\r\n").await.expect("data").code, 354);
        let body = format!("From: <{from}>\r\nSubject: w\r\n\r\nhi\r\n.\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut c.stream, body.as_bytes())
            .await
            .expect("body");
        let r = c.read().await.expect("reply");
        (r.code != 250).then(|| format!("{} {}", r.code, r.message))
    })
}

#[test]
fn sixth_recipient_is_refused_until_labels_change_it() {
    let dns = Dns::with_mx(&["rcpt.test"]);
    let sink = SmtpSink::start(&[]);
    let mut relay = Relay::new(Some(&dns.address()), sink.port, "");
    relay.env.push(("ADMIN_TOKEN".into(), TOKEN.into()));
    let m = relay.add_member("did:plc:wwwwwwwwwwwwwwwwwwwwwwww", "warm.test", true);
    let b = relay.add_member("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "burst.test", true);
    let addr = relay.start();
    let http = relay.http.expect("http");

    // Five recipients in two messages fit the warming tier's 5 per hour.
    assert_eq!(smtp_send(addr, &m, 3), None);
    assert_eq!(smtp_send(addr, &m, 2), None);
    let refusal = smtp_send(addr, &m, 1).expect("6th recipient refused");
    assert_eq!(
        refusal,
        "451 4.7.1 RATE_LIMITED hourly limit reached, retry later"
    );
    let headers = vec![
        format!("X-Atmos-DID: {}", m.did),
        format!("Authorization: Bearer {}", m.api_key),
    ];
    let body = json!({"from": "app@warm.test", "to": "x@rcpt.test", "text": "t"}).to_string();
    let (status, v, head) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &headers,
        Some(body.as_bytes()),
    );
    assert_eq!((status, v["code"].as_str()), (429, Some("RATE_LIMITED")));
    let retry_after: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header");
    assert!(retry_after > 0 && retry_after <= 3600, "{retry_after}");

    // A restart does not reset the rolling window.
    relay.terminate();
    let addr = relay.start();
    let http = relay.http.expect("http");
    assert!(
        smtp_send(addr, &m, 1).is_some(),
        "still limited after restart"
    );

    // burst_warming halves the hourly cap: 2 recipients, not 5.
    let admin = vec![
        format!("Authorization: Bearer {TOKEN}"),
        "Content-Type: application/json".to_string(),
    ];
    let label = |did: &str, l: &str| {
        let (status, v, _) = curl(
            "POST",
            &format!("http://{http}/admin/member/{did}/labels"),
            &admin,
            Some(json!({"label": l}).to_string().as_bytes()),
        );
        assert_eq!(status, 200, "{v}");
    };
    label(&b.did, "burst_warming");
    assert_eq!(smtp_send(addr, &b, 2), None);
    assert!(
        smtp_send(addr, &b, 1).is_some(),
        "burst_warming: 3rd recipient refused"
    );

    // highly_trusted lifts warming.
    label(&m.did, "highly_trusted");
    assert_eq!(smtp_send(addr, &m, 5), None);
    let (status, _, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &headers,
        Some(body.as_bytes()),
    );
    assert_eq!(status, 200);
    let (status, _, _) = curl(
        "DELETE",
        &format!("http://{http}/admin/member/{}/labels/highly_trusted", m.did),
        &admin,
        None,
    );
    assert_eq!(status, 200);
    assert!(
        smtp_send(addr, &m, 1).is_some(),
        "limited again once the label is removed"
    );
    assert_eq!(
        relay.count("SELECT count(*) FROM relay_events WHERE type = 'label_applied'"),
        2
    );
}

#[test]
fn relay_wide_cap_protects_the_ip() {
    let world = atmos_tests::setup::World::start_with_env(
        Some(&[]),
        "",
        &[("ATMOS_LIMITS_GLOBAL_PER_MINUTE", "3")],
    );
    assert_eq!(
        smtp_send(world.submission, &world.member, 3),
        None,
        "three recipients fit"
    );
    let refusal =
        smtp_send(world.submission, &world.member, 1).expect("4th recipient in the minute refused");
    assert!(refusal.starts_with("451 4.7.1"), "{refusal}");
}
