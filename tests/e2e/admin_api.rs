//! The admin API with a real client (curl): the token is required, lifecycle actions write events
//! and take effect at once on SMTP AUTH and on HTTP sends.

use atmos_tests::client;
use atmos_tests::http::curl;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use serde_json::json;

const TOKEN: &str = "correct horse battery staple";

#[test]
fn admin_token_lifecycle_and_immediate_effect() {
    let world = World::start_with_env(Some(&[]), "", &[("ADMIN_TOKEN", TOKEN)]);
    let http = world.relay.http.expect("http");
    let base = format!("http://{http}");
    let admin = vec![format!("Authorization: Bearer {TOKEN}")];
    let pending =
        world
            .relay
            .add_member("did:plc:qqqqqqqqqqqqqqqqqqqqqqqq", "newcomer.test", false);

    for (name, headers) in [
        ("missing", vec![]),
        ("wrong", vec!["Authorization: Bearer nope".to_string()]),
    ] {
        let (status, v, _) = curl("GET", &format!("{base}/admin/members"), &headers, None);
        assert_eq!(
            (status, v["code"].as_str()),
            (401, Some("ADMIN_AUTH_FAILED")),
            "{name} token"
        );
        let (status, _, _) = curl(
            "POST",
            &format!("{base}/admin/member/{}/approve", pending.did),
            &headers,
            None,
        );
        assert_eq!(status, 401, "{name} token cannot approve");
    }

    let (status, list, _) = curl("GET", &format!("{base}/admin/members"), &admin, None);
    assert_eq!(status, 200);
    assert_eq!(
        list[0]["did"],
        pending.did.as_str(),
        "pending members first: {list}"
    );
    assert_eq!(list[0]["state"], "pending");

    let (status, v, _) = curl(
        "POST",
        &format!("{base}/admin/member/{}/approve", pending.did),
        &admin,
        None,
    );
    assert_eq!((status, v["state"].as_str()), (200, Some("active")));
    let (status, v, _) = curl(
        "POST",
        &format!("{base}/admin/member/{}/approve", pending.did),
        &admin,
        None,
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("INVALID_TRANSITION"))
    );
    let (status, _, _) = curl(
        "POST",
        &format!("{base}/admin/member/did:plc:zzzzzzzzzzzzzzzzzzzzzzzz/approve"),
        &admin,
        None,
    );
    assert_eq!(status, 404);

    // Suspension: the next AUTH and the next HTTP send are refused.
    let did = world.member.did.clone();
    let (status, v, _) = curl(
        "POST",
        &format!("{base}/admin/member/{did}/suspend?reason=complaint%20spike"),
        &admin,
        None,
    );
    assert_eq!((status, v["state"].as_str()), (200, Some("suspended")));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let reply = rt.block_on(async {
        let (mut c, _) = client::probe_tls(world.submission).await;
        c.cmd(format!(
            "{}\r\n",
            client::auth_plain_line(&did, &world.member.api_key)
        ))
        .await
        .expect("reply")
    });
    assert_eq!(
        (reply.code, reply.message.as_str()),
        (535, "account suspended")
    );
    let send = |expect: u16, code: Option<&str>| {
        let headers = vec![
            format!("X-Atmos-DID: {did}"),
            format!("Authorization: Bearer {}", world.member.api_key),
        ];
        let body =
            json!({"from": "app@sender.test", "to": format!("r@{RCPT_DOMAIN}"), "text": "t"})
                .to_string();
        let (status, v, _) = curl(
            "POST",
            &format!("{base}/v1/send"),
            &headers,
            Some(body.as_bytes()),
        );
        assert_eq!((status, v["code"].as_str()), (expect, code), "{v}");
    };
    send(403, Some("MEMBER_SUSPENDED"));

    let (status, events, _) = curl(
        "GET",
        &format!("{base}/admin/events?did={did}&type=member_suspended"),
        &admin,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(events[0]["actor"], "admin");
    assert_eq!(events[0]["data"]["reason"], "complaint spike");

    let (status, detail, _) = curl("GET", &format!("{base}/admin/members/{did}"), &admin, None);
    assert_eq!(status, 200);
    assert_eq!(detail["member"]["state"], "suspended");
    assert_eq!(
        detail["domains"][0]["dkimSelectors"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let (status, _, _) = curl(
        "POST",
        &format!("{base}/admin/member/{did}/reactivate"),
        &admin,
        None,
    );
    assert_eq!(status, 200);
    send(200, None);
}

#[test]
fn queue_browser_retry_and_delete() {
    let mut world = World::start_with_env(None, "", &[("ADMIN_TOKEN", TOKEN)]);
    let http = world.relay.http.expect("http");
    let base = format!("http://{http}");
    let admin = vec![format!("Authorization: Bearer {TOKEN}")];
    let headers = vec![
        format!("X-Atmos-DID: {}", world.member.did),
        format!("Authorization: Bearer {}", world.member.api_key),
    ];
    let mut ids = Vec::new();
    for subject in ["keep", "drop"] {
        let body = json!({"from": "app@sender.test", "to": format!("r@{RCPT_DOMAIN}"), "subject": subject, "text": "t"});
        let (status, v, _) = curl(
            "POST",
            &format!("{base}/v1/send"),
            &headers,
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(status, 200);
        ids.push(
            v["accepted"][0]["messageId"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let (status, _, _) = curl("GET", &format!("{base}/admin/queue"), &[], None);
    assert_eq!(status, 401);
    let q = atmos_tests::poll_until(
        std::time::Duration::from_secs(20),
        "two deferred entries",
        || {
            let (_, q, _) = curl(
                "GET",
                &format!("{base}/admin/queue?status=deferred&domain={RCPT_DOMAIN}"),
                &admin,
                None,
            );
            (q["entries"].as_array().map(Vec::len) == Some(2)).then_some(q)
        },
    );
    assert_eq!(q["selected"]["recipients"], 2, "{q}");
    assert!(
        q["entries"][0]["lastReply"]
            .as_str()
            .unwrap_or("")
            .contains("cannot connect"),
        "{q}"
    );
    let (status, _, _) = curl(
        "DELETE",
        &format!("{base}/admin/queue/{}", ids[1]),
        &admin,
        None,
    );
    assert_eq!(status, 200);
    let (status, _, _) = curl(
        "DELETE",
        &format!("{base}/admin/queue/{}", ids[1]),
        &admin,
        None,
    );
    assert_eq!(status, 404);
    let (_, q, _) = curl(
        "GET",
        &format!("{base}/admin/queue?did={}", world.member.did),
        &admin,
        None,
    );
    assert_eq!(q["entries"].as_array().map(Vec::len), Some(1));
    world.sink.restart(&[]);
    let (status, v, _) = curl(
        "POST",
        &format!("{base}/admin/queue/{}/retry", ids[0]),
        &admin,
        None,
    );
    assert_eq!((status, v["recipients"].as_u64()), (200, Some(1)));
    atmos_tests::poll_until(
        std::time::Duration::from_secs(20),
        "kept message delivered",
        || (world.sink.messages_with("Subject: keep").len() == 1).then_some(()),
    );
    assert!(
        world.sink.messages_with("Subject: drop").is_empty(),
        "a deleted message is never sent"
    );
    assert_eq!(
        world
            .relay
            .count("SELECT count(*) FROM relay_events WHERE type = 'message_deleted'"),
        1
    );
}
