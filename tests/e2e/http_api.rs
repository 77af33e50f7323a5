//! The HTTP send API with a real client (curl): the BEHAVIOUR §4.2 error codes, idempotent replay and
//! conflict, and per-message status moving from accepted to sent as the MX answers.

use atmos_tests::http::curl;
use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use serde_json::{Value, json};
use std::time::Duration;

#[test]
fn send_api_codes_idempotency_and_status() {
    let world = World::start_with_env(Some(&[]), "", &[]);
    let http = world.relay.http.expect("http listener");
    let url = format!("http://{http}/v1/send");
    let did = world.member.did.clone();
    let auth = |did: &str, key: &str| {
        vec![
            format!("X-Atmos-DID: {did}"),
            format!("Authorization: Bearer {key}"),
        ]
    };
    let good = auth(&did, &world.member.api_key);
    let msg = |from: &str| {
        json!({"from": from, "to": format!("r@{RCPT_DOMAIN}"), "subject": "s", "text": "hello"})
            .to_string()
    };
    let pending = world
        .relay
        .add_member("did:plc:pppppppppppppppppppppppp", "pending.test", false);
    let suspended =
        world
            .relay
            .add_member("did:plc:ssssssssssssssssssssssss", "suspended.test", true);
    assert!(
        world
            .relay
            .cli(&["member", "suspend", &suspended.did])
            .status
            .success()
    );

    let big =
        json!({"from": "app@sender.test", "to": "r@rcpt.test", "text": "x".repeat(1_100_000)})
            .to_string();
    let cases: Vec<(&str, Vec<String>, String, u16, &str)> = vec![
        (
            "no credentials",
            vec![],
            msg("app@sender.test"),
            400,
            "AUTH_REQUIRED",
        ),
        (
            "bad DID",
            auth("not a did!", &world.member.api_key),
            msg("app@sender.test"),
            400,
            "INVALID_DID",
        ),
        (
            "wrong key",
            auth(&did, "atmos_wrongwrongwrongwrongwrongwrongwr"),
            msg("app@sender.test"),
            401,
            "AUTH_FAILED",
        ),
        (
            "pending",
            auth(&pending.did, &pending.api_key),
            msg("app@pending.test"),
            403,
            "MEMBER_PENDING",
        ),
        (
            "suspended",
            auth(&suspended.did, &suspended.api_key),
            msg("app@suspended.test"),
            403,
            "MEMBER_SUSPENDED",
        ),
        (
            "foreign from",
            good.clone(),
            msg("ceo@bank.test"),
            403,
            "DOMAIN_MISMATCH",
        ),
        (
            "bad JSON",
            good.clone(),
            "{not json".into(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "unknown field",
            good.clone(),
            json!({"from": "app@sender.test", "to": "r@x.test", "text": "t", "bogus": 1})
                .to_string(),
            400,
            "INVALID_REQUEST",
        ),
        (
            "no body text",
            good.clone(),
            json!({"from": "app@sender.test", "to": "r@x.test"}).to_string(),
            400,
            "INVALID_REQUEST",
        ),
        ("too large", good.clone(), big, 413, "PAYLOAD_TOO_LARGE"),
    ];
    for (name, headers, body, status, code) in &cases {
        let (got, json, _) = curl("POST", &url, headers, Some(body.as_bytes()));
        assert_eq!(
            (got, json["code"].as_str().unwrap_or("")),
            (*status, *code),
            "{name}: {json}"
        );
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: error text"
        );
    }
    // Basic auth with the DID as username works too.
    let basic = {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .encode(format!("{did}:{}", world.member.api_key));
        vec![format!("Authorization: Basic {b}")]
    };

    // Success, then idempotent replay and conflict.
    let mut with_key = good.clone();
    with_key.push("Idempotency-Key: order-42".into());
    let body = msg("app@sender.test");
    let (status, first, _) = curl("POST", &url, &with_key, Some(body.as_bytes()));
    assert_eq!(status, 200, "{first}");
    let id = first["accepted"][0]["messageId"]
        .as_str()
        .expect("messageId")
        .to_string();
    assert_eq!(
        first["accepted"][0]["recipient"],
        format!("r@{RCPT_DOMAIN}")
    );
    assert_eq!(first["rejected"], json!([]));
    let (status, replay, _) = curl("POST", &url, &with_key, Some(body.as_bytes()));
    assert_eq!(
        (status, &replay),
        (200, &first),
        "same key + same body replays the first answer"
    );
    let (status, conflict, _) = curl(
        "POST",
        &url,
        &with_key,
        Some(msg("other@sender.test").as_bytes()),
    );
    assert_eq!(
        (status, conflict["code"].as_str()),
        (409, Some("IDEMPOTENCY_CONFLICT"))
    );
    assert_eq!(
        world
            .relay
            .count("SELECT count(*) FROM messages WHERE source = 'http'"),
        1,
        "replays queue nothing"
    );

    // Status moves to sent; attempts are listed; another member cannot see it.
    let status_url = format!("http://{http}/v1/messages/{id}");
    let sent = poll_until(Duration::from_secs(20), "message sent", || {
        let (_, v, _) = curl("GET", &status_url, &basic, None);
        (v["recipients"][0]["status"] == "sent").then_some(v)
    });
    assert_eq!(sent["id"], id.as_str());
    assert!(
        sent["recipients"][0]["attempts"][0]["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("250")
    );
    let (status, _, _) = curl(
        "GET",
        &status_url,
        &auth(&pending.did, &pending.api_key),
        None,
    );
    assert_eq!(status, 403, "a pending member cannot read status");
    let other = world
        .relay
        .add_member("did:plc:oooooooooooooooooooooooo", "other.test", true);
    let (status, v, _) = curl("GET", &status_url, &auth(&other.did, &other.api_key), None);
    assert_eq!((status, v["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, list, _) = curl(
        "GET",
        &format!("http://{http}/v1/messages?status=sent"),
        &good,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(list["messages"][0]["id"], id.as_str());
    let (status, v, _) = curl(
        "GET",
        &format!("http://{http}/v1/messages?status=lost"),
        &good,
        None,
    );
    assert_eq!((status, v["code"].as_str()), (400, Some("INVALID_REQUEST")));
    assert_eq!(world.sink.messages_with("Subject: s").len(), 1);
    let (status, _, _) = curl("GET", &format!("http://{http}/healthz"), &[], None);
    assert_eq!(status, 200);
}

#[test]
fn full_queue_answers_503_with_retry_after() {
    let world = World::start_with_env(None, "", &[("ATMOS_SERVER_MAX_QUEUE_BYTES", "300000")]);
    let http = world.relay.http.expect("http listener");
    let headers = vec![
        format!("X-Atmos-DID: {}", world.member.did),
        format!("Authorization: Bearer {}", world.member.api_key),
    ];
    let body = json!({"from": "app@sender.test", "to": format!("r@{RCPT_DOMAIN}"), "text": "y".repeat(60_000)}).to_string();
    let mut last = (0, Value::Null, String::new());
    for _ in 0..20 {
        last = curl(
            "POST",
            &format!("http://{http}/v1/send"),
            &headers,
            Some(body.as_bytes()),
        );
        if last.0 != 200 {
            break;
        }
    }
    assert_eq!(
        (last.0, last.1["code"].as_str()),
        (503, Some("QUEUE_FULL")),
        "{}",
        last.1
    );
    assert!(
        last.2.to_ascii_lowercase().contains("retry-after:"),
        "Retry-After header: {}",
        last.2
    );
}

#[test]
fn status_api_follows_deferred_then_sent_and_bounced() {
    let mut world = World::start(Some(&["-r", "rcpt"]), "");
    let http = world.relay.http.expect("http");
    let headers = vec![
        format!("X-Atmos-DID: {}", world.member.did),
        format!("Authorization: Bearer {}", world.member.api_key),
    ];
    let send = |to: &str| -> String {
        let body = json!({"from": "app@sender.test", "to": to, "text": "t"}).to_string();
        let (status, v, _) = curl(
            "POST",
            &format!("http://{http}/v1/send"),
            &headers,
            Some(body.as_bytes()),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["accepted"][0]["recipient"], to);
        v["accepted"][0]["messageId"]
            .as_str()
            .expect("id")
            .to_string()
    };
    let status_of = |id: &str| -> Value {
        let (_, v, _) = curl(
            "GET",
            &format!("http://{http}/v1/messages/{id}"),
            &headers,
            None,
        );
        v["recipients"][0].clone()
    };
    let id = send(&format!("later@{RCPT_DOMAIN}"));
    let r = poll_until(Duration::from_secs(20), "deferred", || {
        let r = status_of(&id);
        (r["status"] == "deferred").then_some(r)
    });
    assert!(
        r["attempts"][0]["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("450"),
        "{r}"
    );
    world.sink.restart(&[]);
    let r = poll_until(Duration::from_secs(30), "sent", || {
        let r = status_of(&id);
        (r["status"] == "sent").then_some(r)
    });
    assert!(
        r["attempts"].as_array().map(Vec::len).unwrap_or(0) >= 2,
        "{r}"
    );
    world
        .sink
        .restart(&["-f", "rcpt", "-B", "550 5.1.1 no such user"]);
    let id = send(&format!("never@{RCPT_DOMAIN}"));
    let r = poll_until(Duration::from_secs(20), "bounced", || {
        let r = status_of(&id);
        (r["status"] == "bounced").then_some(r)
    });
    assert_eq!(r["attempts"][0]["reply"], "550 5.1.1 no such user");
}

/// INTERNAL: a member domain whose DKIM keys are gone cannot be signed for; the relay refuses
/// with 500 rather than send unsigned mail. (The keys are deleted behind the relay's back, the
/// way a broken restore would lose them.)
#[test]
fn unsignable_mail_is_refused_with_internal() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let db = rusqlite::Connection::open(world.relay.data_dir().join("atmos.sqlite")).expect("db");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    db.execute("DELETE FROM dkim_keys WHERE domain = 'sender.test'", [])
        .expect("delete keys");
    let headers = vec![
        format!("X-Atmos-DID: {}", world.member.did),
        format!("Authorization: Bearer {}", world.member.api_key),
    ];
    let body = json!({"from": "app@sender.test", "to": format!("r@{RCPT_DOMAIN}"), "text": "t"})
        .to_string();
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &headers,
        Some(body.as_bytes()),
    );
    assert_eq!((status, v["code"].as_str()), (500, Some("INTERNAL")), "{v}");
    assert_eq!(
        world.relay.count("SELECT count(*) FROM messages"),
        0,
        "nothing unsigned was queued"
    );
}
