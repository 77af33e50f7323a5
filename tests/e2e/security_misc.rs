//! Issue 9 §5 and §6, each attack against the running relay: one-click unsubscribe touches only
//! the recipient it was issued for; auth-category mail has one recipient; concurrent requests
//! with one Idempotency-Key send once; a recipient that stops routing between RCPT and DATA fails
//! the whole transaction; delivery never connects to private addresses; logs at debug level
//! carry no secret; `operator dns` prints the pool domain's MX.

use atmos_tests::client;
use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::poll_until;
use atmos_tests::setup::{DID, RCPT_DOMAIN, World};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[test]
fn one_click_unsubscribe_is_per_recipient() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let (to, cc, bcc) = (
        format!("to@{RCPT_DOMAIN}"),
        format!("cc@{RCPT_DOMAIN}"),
        format!("hidden@{RCPT_DOMAIN}"),
    );
    let body = json!({"from": "news@sender.test", "to": to, "cc": cc, "bcc": bcc,
                      "subject": "news", "text": "hello", "headers": {"X-Test-Id": "fanout"}});
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &member,
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(status, 200, "{v}");
    let ids: Vec<&str> = v["accepted"]
        .as_array()
        .expect("accepted")
        .iter()
        .filter_map(|a| a["messageId"].as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2],
        "one copy per recipient: {v}"
    );
    let copies = poll_until(Duration::from_secs(20), "three copies", || {
        let m = world.sink.messages_with("X-Test-Id: fanout");
        (m.len() == 3).then_some(m)
    });
    // The Bcc'd recipient's copy names nobody else's link; each copy has its own.
    let link = |m: &String| {
        m.lines()
            .find_map(|l| l.strip_prefix("List-Unsubscribe: <https://relay.test/unsubscribe/"))
            .and_then(|t| t.strip_suffix('>'))
            .expect("link")
            .to_string()
    };
    let links: Vec<String> = copies.iter().map(link).collect();
    assert!(links[0] != links[1] && links[1] != links[2]);
    let cc_copy = copies
        .iter()
        .find(|m| m.contains(&format!("X-Rcpt-Args: <{cc}>")))
        .expect("cc copy");
    let (status, _, _) = curl(
        "POST",
        &format!("http://{http}/unsubscribe/{}", link(cc_copy)),
        &[],
        None,
    );
    assert_eq!(status, 200);
    let suppressed: Vec<String> = {
        let db = world.relay.db();
        let mut stmt = db
            .prepare("SELECT address FROM suppressions")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .flatten()
            .collect()
    };
    assert_eq!(suppressed, vec![cc], "only the reader who clicked");
}

#[test]
fn auth_category_mail_has_one_recipient() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let two = [format!("a@{RCPT_DOMAIN}"), format!("b@{RCPT_DOMAIN}")];
    let body = json!({"from": "app@sender.test", "to": two, "text": "your code is 123456", "category": "mfa-otp"});
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &member,
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("auth_single_recipient"),
        "{v}"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key).await.expect("session");
        let msg = format!("From: <app@sender.test>\r\nTo: <{}>, <{}>\r\nX-Atmos-Category: password-reset\r\n\r\nreset\r\n", two[0], two[1]);
        let err = client::send(&mut s, "app@sender.test", &[&two[0], &two[1]], msg.as_bytes()).await.expect_err("refused");
        let mail_send::Error::UnexpectedReply(r) = err else { panic!("{err}") };
        assert_eq!((r.code, r.esc), (550, [5, 7, 1]), "{}", r.message);
        assert!(r.message.contains("auth_single_recipient"), "{}", r.message);
    });
    assert_eq!(world.relay.count("SELECT count(*) FROM messages"), 0);
    // One recipient is fine, and the rules see its category.
    let body =
        json!({"from": "app@sender.test", "to": two[0], "text": "123456", "category": "mfa-otp"});
    send_ok(http, &member, &body);
    assert_eq!(
        world.relay.count("SELECT count(*) FROM relay_events WHERE type = 'relay_attempt' AND json_extract(data, '$.category') = 'mfa-otp'"),
        1
    );
}

#[test]
fn concurrent_requests_with_one_idempotency_key_send_once() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let url = format!("http://{http}/v1/send");
    let body = json!({"from": "app@sender.test", "to": format!("once@{RCPT_DOMAIN}"), "text": "t", "category": "transactional"});
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let answers: Vec<(u16, Value)> = rt.block_on(async {
        let c = reqwest::Client::new();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (c, url, body, did, key) = (
                    c.clone(),
                    url.clone(),
                    body.clone(),
                    world.member.did.clone(),
                    world.member.api_key.clone(),
                );
                tokio::spawn(async move {
                    let r = c
                        .post(&url)
                        .header("X-Atmos-DID", did)
                        .bearer_auth(key)
                        .header("Idempotency-Key", "order-42")
                        .json(&body)
                        .send()
                        .await
                        .expect("request");
                    (
                        r.status().as_u16(),
                        r.json::<Value>().await.unwrap_or_default(),
                    )
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(
        answers.iter().all(|(_, v)| *v == answers[0].1),
        "every answer is the first one"
    );
    assert_eq!(
        world.relay.count("SELECT count(*) FROM messages"),
        1,
        "sent once"
    );
    assert_eq!(
        world.relay.count("SELECT count(*) FROM idempotency_keys"),
        1
    );
}

#[test]
fn a_recipient_that_stops_routing_before_data_fails_the_whole_transaction() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let inbound = world.relay.inbound.expect("inbound");
    let set_forward = |address: Value| {
        let (status, v, _) = curl(
            "PUT",
            &format!("http://{http}/member/forward-to"),
            &member,
            Some(
                json!({"domain": "sender.test", "address": address})
                    .to_string()
                    .as_bytes(),
            ),
        );
        assert_eq!(status, 200, "{v}");
    };
    set_forward(json!("owner@rcpt.test"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let final_reply = rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(inbound)
            .await
            .expect("connect");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut reply = async || loop {
            let l = lines.next_line().await.expect("read").expect("line");
            if l.as_bytes().get(3) == Some(&b' ') {
                return l;
            }
        };
        reply().await;
        for cmd in [
            "EHLO mx.remote.test",
            "MAIL FROM:<friend@remote.test>",
            "RCPT TO:<postmaster@operator.test>",
            "RCPT TO:<hello@sender.test>",
        ] {
            write
                .write_all(format!("{cmd}\r\n").as_bytes())
                .await
                .expect("write");
            let r = reply().await;
            assert!(r.starts_with('2'), "{cmd}: {r}");
        }
        // Between RCPT and DATA the member removes its forward-to address.
        set_forward(Value::Null);
        write.write_all(b"DATA\r\n").await.expect("write");
        assert!(reply().await.starts_with("354"));
        write
            .write_all(b"From: friend@remote.test\r\nSubject: hi\r\n\r\nhello\r\n.\r\n")
            .await
            .expect("write");
        reply().await
    });
    assert!(
        final_reply.starts_with("451 4.3.0"),
        "one reply for the whole transaction: {final_reply}"
    );
    assert_eq!(
        world.relay.count("SELECT count(*) FROM inbound_messages"),
        0,
        "nothing was taken"
    );
    assert_eq!(
        world.relay.count("SELECT count(*) FROM messages"),
        0,
        "nothing was forwarded"
    );
}

#[test]
fn delivery_never_connects_to_private_addresses() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[("ATMOS_DELIVERY_ALLOW_PRIVATE_DESTINATIONS", "false")],
    );
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    // rcpt.test's MX resolves to 127.0.0.1; an address literal names a private address directly.
    for (to, tag) in [
        (format!("a@{RCPT_DOMAIN}"), "mx"),
        ("a@[127.0.0.1]".to_string(), "literal"),
        ("a@[10.0.0.1]".to_string(), "rfc1918"),
        // Issue 27 (L6): ranges the filter missed. Behind a NAT64 gateway the first reaches
        // 127.0.0.1; 6to4 embeds 10.0.0.1; the others are benchmarking and IETF ranges.
        ("a@[IPv6:64:ff9b::7f00:1]".to_string(), "nat64"),
        ("a@[IPv6:2002:a00:1::1]".to_string(), "6to4"),
        ("a@[IPv6:fec0::1]".to_string(), "site-local"),
        ("a@[198.18.0.1]".to_string(), "benchmarking"),
        ("a@[192.0.0.8]".to_string(), "ietf"),
    ] {
        let body = json!({"from": "app@sender.test", "to": to, "text": "t", "category": "transactional", "headers": {"X-Test-Id": tag}});
        let id = send_ok(http, &member, &body);
        let reply = poll_until(
            Duration::from_secs(20),
            "private destination refused",
            || {
                let (_, v, _) = curl(
                    "GET",
                    &format!("http://{http}/v1/messages/{id}"),
                    &member,
                    None,
                );
                (v["recipients"][0]["status"] == "bounced").then(|| {
                    v["recipients"][0]["attempts"][0]["reply"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
            },
        );
        assert!(
            reply.starts_with("550 5.4.4") && reply.contains("private"),
            "{tag}: {reply}"
        );
    }
    assert!(
        world.sink.messages().is_empty(),
        "nothing reached the loopback MX"
    );
}

#[test]
fn debug_logs_carry_no_secret_and_operator_dns_prints_the_mx() {
    let token = "security-admin-token-0123456789abcdef";
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[("ADMIN_TOKEN", token), ("ATMOS_LOG", "debug")],
    );
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    // Logins that succeed and fail over both protocols, admin calls, sends.
    let body = json!({"from": "app@sender.test", "to": format!("l@{RCPT_DOMAIN}"), "text": "t", "category": "transactional"});
    send_ok(http, &member, &body);
    let wrong = vec![
        format!("X-Atmos-DID: {DID}"),
        format!("Authorization: Bearer {}x", &world.member.api_key[..37]),
    ];
    let (status, _, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &wrong,
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(status, 401);
    let admin = vec![format!("Authorization: Bearer {token}")];
    let (status, _, _) = curl("GET", &format!("http://{http}/admin/members"), &admin, None);
    assert_eq!(status, 200);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(world.submission, DID, &world.member.api_key)
            .await
            .expect("session");
        let msg = client::message(
            "app@sender.test",
            &format!("l2@{RCPT_DOMAIN}"),
            "log-2",
            300,
        );
        client::send(
            &mut s,
            "app@sender.test",
            &[&format!("l2@{RCPT_DOMAIN}")],
            &msg,
        )
        .await
        .expect("sent");
        assert!(
            client::connect(
                world.submission,
                DID,
                "atmos_00000000000000000000000000000000"
            )
            .await
            .is_err()
        );
    });
    poll_until(Duration::from_secs(20), "deliveries", || {
        (world.sink.messages().len() == 2).then_some(())
    });
    world.relay.assert_logs_hold_no_secrets();
    assert!(
        world.relay.log(1).contains("DEBUG"),
        "the log was at debug level"
    );
    // The pool domain's MX, and the host's addresses the operator must publish.
    let out = world.relay.cli(&["operator", "dns"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let records = v["dns_records"].as_array().expect("records");
    assert!(
        records.iter().any(|r| r["name"] == "operator.test"
            && r["type"] == "MX"
            && r["value"] == "10 relay.test."),
        "{v}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["name"] == "relay.test" && r["type"] == "A"),
        "{v}"
    );
}
