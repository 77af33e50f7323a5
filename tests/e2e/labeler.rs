//! The labeler end to end: labels signed by the relay verify with an independent implementation
//! (Python ecdsa + cbor2), subscribeLabels replays and streams over a real WebSocket client, and
//! DKIM records served by a real DNS server (Knot) earn and lose `verified-mail-operator`.

use atmos_tests::http::curl;
use atmos_tests::labeler::{
    ADMIN_TOKEN, Subscriber, base, emit, force_verify, query, standing, verify_independently,
    wait_standing,
};
use atmos_tests::peers::Knot;
use atmos_tests::poll_until;
use atmos_tests::relay::Relay;
use atmos_tests::setup::{DID, SENDER_DOMAIN, World};
use std::time::{Duration, Instant};

const VMO: &str = "verified-mail-operator";
const OTHER: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";

fn world() -> World {
    World::start_with_env(Some(&[]), "", &[("ADMIN_TOKEN", ADMIN_TOKEN)])
}

#[test]
fn labels_verify_independently_from_the_served_did_document() {
    let mut world = world();
    let http = world.relay.http.expect("http");
    let (status, doc, _) = curl(
        "GET",
        &format!("{}/.well-known/did.json", base(http)),
        &[],
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(doc["id"], "did:web:relay.test");
    assert_eq!(
        doc["verificationMethod"][0]["id"],
        "did:web:relay.test#atproto_label"
    );
    assert_eq!(doc["verificationMethod"][0]["type"], "Multikey");
    assert_eq!(doc["service"][0]["id"], "#atproto_labeler");
    assert_eq!(doc["service"][0]["type"], "AtprotoLabeler");

    assert_eq!(
        emit(http, OTHER, "clean-sender", false, "manual review").0,
        200
    );
    assert_eq!(
        emit(http, OTHER, "clean-sender", true, "complaint spike").0,
        200
    );
    let post = format!("at://{OTHER}/app.bsky.feed.post/3kabc");
    assert_eq!(emit(http, &post, "spam", false, "reported").0, 200);

    let v = verify_independently(http);
    let n = v["labels"].as_u64().expect("count");
    assert!(n >= 3, "{v}");
    assert_eq!(v["verified"], n, "every label verifies: {v}");
    assert_eq!(v["tampered_rejected"], n, "every tampered copy fails: {v}");
    assert_eq!(v["all_src_match"], true);

    // The key survives a restart (stored sealed), so old labels still verify.
    world.relay.terminate();
    world.relay.start();
    let http = world.relay.http.expect("http");
    let again = verify_independently(http);
    assert_eq!(again["verified"], again["labels"], "{again}");
}

#[test]
fn query_labels_filters_pages_and_refuses_bad_parameters() {
    let world = world();
    let http = world.relay.http.expect("http");
    for i in 0..5 {
        assert_eq!(
            emit(http, OTHER, &format!("test-{i}"), false, "paging").0,
            200
        );
    }
    let post = format!("at://{OTHER}/app.bsky.feed.post/1");
    emit(http, &post, "spam", false, "reported");

    // Prefix patterns with a trailing '*'; exact patterns match only themselves.
    let (_, body) = query(http, &format!("uriPatterns=at://{OTHER}/*"));
    let labels = body["labels"].as_array().expect("labels");
    assert_eq!(labels.len(), 1, "{body}");
    assert_eq!(labels[0]["uri"], post);
    let (_, body) = query(http, &format!("uriPatterns={OTHER}"));
    assert_eq!(body["labels"].as_array().map(Vec::len), Some(5));
    let (_, body) = query(http, "uriPatterns=*&sources=did:web:someone.else");
    assert_eq!(body["labels"].as_array().map(Vec::len), Some(0));
    let (_, body) = query(http, "uriPatterns=*&sources=did:web:relay.test");
    assert!(body["labels"].as_array().map(Vec::len) >= Some(6));

    // Paging: limit 2, then follow the cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, page) = query(
            http,
            &format!("uriPatterns={OTHER}&limit=2&cursor={cursor}"),
        );
        assert_eq!(s, 200, "{page}");
        let labels = page["labels"].as_array().expect("labels");
        if labels.is_empty() {
            break;
        }
        assert!(labels.len() <= 2);
        seen.extend(
            labels
                .iter()
                .map(|l| l["val"].as_str().unwrap_or_default().to_string()),
        );
        cursor = page["cursor"].as_str().expect("cursor").to_string();
    }
    assert_eq!(seen, ["test-0", "test-1", "test-2", "test-3", "test-4"]);

    for bad in [
        "uriPatterns=*&limit=251",
        "uriPatterns=*&limit=0",
        "limit=5",
        "uriPatterns=a*b",
        "uriPatterns=*&cursor=x",
    ] {
        let (s, body) = query(http, bad);
        assert_eq!(s, 400, "{bad}: {body}");
        assert_eq!(body["error"], "InvalidRequest", "{bad}");
    }

    // Admin endpoints need the token and a reason.
    let (s, body, _) = curl(
        "GET",
        &format!("{}/admin/labeler/labels", base(http)),
        &[],
        None,
    );
    assert_eq!((s, body["code"].as_str()), (401, Some("ADMIN_AUTH_FAILED")));
    assert_eq!(emit(http, OTHER, "x", false, " ").0, 400);
    assert_eq!(emit(http, "not a uri", "x", false, "r").0, 400);
    assert_eq!(emit(http, OTHER, "Not A Value", false, "r").0, 400);
    let (s, body, _) = curl(
        "GET",
        &format!("{}/admin/labeler/labels?limit=many", base(http)),
        &[format!("Authorization: Bearer {ADMIN_TOKEN}")],
        None,
    );
    assert_eq!(
        (s, body["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{body}"
    );
    // None of the refused requests published anything.
    let (_, all) = query(http, &format!("uriPatterns={OTHER}"));
    assert_eq!(all["labels"].as_array().map(Vec::len), Some(5));
    let (s, body, _) = curl(
        "GET",
        &format!("{}/admin/labeler/labels?uri={OTHER}", base(http)),
        &[format!("Authorization: Bearer {ADMIN_TOKEN}")],
        None,
    );
    assert_eq!(s, 200);
    let first = &body["labels"][0];
    assert_eq!(
        (first["actor"].as_str(), first["reason"].as_str()),
        (Some("admin"), Some("paging"))
    );
}

#[test]
fn subscribe_labels_replays_from_zero_then_streams_live_and_refuses_future_cursors() {
    let world = world();
    let http = world.relay.http.expect("http");
    for i in 0..3 {
        emit(http, OTHER, &format!("backlog-{i}"), false, "test");
    }
    let sub = Subscriber::start(http, Some(0), 4);
    let frames = sub.wait_frames(3, Duration::from_secs(15));
    let seqs: Vec<i64> = frames
        .iter()
        .filter_map(|f| f["body"]["seq"].as_i64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for f in &frames {
        assert_eq!(f["header"]["t"], "#labels");
        assert_eq!(f["header"]["op"], 1);
        assert_eq!(f["verified"], true, "{f}");
    }
    let last_backlog = *seqs.last().expect("seq");

    emit(http, OTHER, "live-one", false, "test");
    let frames = sub.wait_frames(4, Duration::from_secs(15));
    let live = &frames[3];
    assert_eq!(live["body"]["labels"][0]["val"], "live-one");
    assert_eq!(live["verified"], true);
    assert!(live["body"]["seq"].as_i64() > Some(last_backlog));

    // A live-only subscriber gets only what follows.
    let tail = Subscriber::start(http, None, 1);
    emit(http, OTHER, "live-two", false, "test");
    let got = tail.wait_frames(1, Duration::from_secs(15));
    assert_eq!(got[0]["body"]["labels"][0]["val"], "live-two");

    // A cursor before the retained history gets #info OutdatedCursor, then everything.
    let outdated = Subscriber::start(http, Some(-5), 6);
    let got = outdated.wait_frames(6, Duration::from_secs(15));
    assert_eq!(got[0]["header"]["t"], "#info", "{got:?}");
    assert_eq!(got[0]["body"]["name"], "OutdatedCursor");
    assert!(got[1..].iter().all(|f| f["header"]["t"] == "#labels"));

    // A cursor that is not a number is refused with an XRPC error before the upgrade.
    let (status, body, _) = curl(
        "GET",
        &format!(
            "{}/xrpc/com.atproto.label.subscribeLabels?cursor=abc",
            base(http)
        ),
        &[
            "Connection: Upgrade".into(),
            "Upgrade: websocket".into(),
            "Sec-WebSocket-Version: 13".into(),
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
        ],
        None,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("InvalidRequest")),
        "{body}"
    );

    let future = Subscriber::start(http, Some(1_000_000), 1);
    let got = future.wait_frames(1, Duration::from_secs(15));
    assert_eq!(got[0]["header"]["op"], -1, "{got:?}");
    assert_eq!(got[0]["body"]["error"], "FutureCursor");
    poll_until(Duration::from_secs(10), "the socket to close", || {
        future.closed().then_some(())
    });
}

#[test]
fn dkim_records_in_dns_earn_and_lose_verified_mail_operator() {
    let knot = Knot::start(SENDER_DOMAIN);
    let mut relay = Relay::new(
        Some(&knot.address()),
        25,
        "[labeler]\nretry_base = \"1s\"\nretry_max = \"5s\"\n",
    );
    relay.env = vec![("ADMIN_TOKEN".into(), ADMIN_TOKEN.into())];
    relay.start();
    let http = relay.http.expect("http");
    let sub = Subscriber::start(http, None, 10);

    // Enrolled while the records are not in DNS yet: the first checks fail and retry.
    let (_, records) = relay.add_member_with_records(DID, SENDER_DOMAIN, true);
    let dkim: Vec<(String, String)> = records
        .iter()
        .filter(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.contains("._domainkey."))
        })
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(dkim.len(), 2, "RSA and Ed25519 selectors: {records:?}");
    let labeler_db = relay.dir.path().join("data/labeler.sqlite");
    poll_until(Duration::from_secs(30), "a failed first check", || {
        let c = rusqlite::Connection::open(&labeler_db).ok()?;
        let attempts: i64 = c
            .query_row("SELECT attempts FROM subjects WHERE did = ?1", [DID], |r| {
                r.get(0)
            })
            .ok()?;
        (attempts >= 1).then_some(())
    });
    assert_eq!(standing(http, DID, VMO), None);

    for (name, value) in &dkim {
        knot.add_txt(name, value);
    }
    let published = Instant::now();
    wait_standing(http, DID, VMO, true, Duration::from_secs(60));
    let took = published.elapsed();
    eprintln!("verified-mail-operator {took:?} after the DKIM records appeared");
    assert!(took < Duration::from_secs(60));
    // Not attested relayMember: true, so no relay-member label.
    assert_eq!(standing(http, DID, "relay-member"), None);

    // A suspension negates at once (member events reach the labeler); reactivation restores.
    assert!(relay.cli(&["member", "suspend", DID]).status.success());
    wait_standing(http, DID, VMO, false, Duration::from_secs(20));
    assert!(relay.cli(&["member", "reactivate", DID]).status.success());
    wait_standing(http, DID, VMO, true, Duration::from_secs(20));

    // DNS degrades: the records go, re-verification is forced, the negation is published.
    for (name, _) in &dkim {
        knot.remove_txt(name);
    }
    force_verify(http, DID);
    wait_standing(http, DID, VMO, false, Duration::from_secs(20));
    let frames = sub.wait_frames(4, Duration::from_secs(15));
    let vals: Vec<(String, bool)> = frames
        .iter()
        .map(|f| {
            let l = &f["body"]["labels"][0];
            (
                l["val"].as_str().unwrap_or_default().to_string(),
                l["neg"] == true,
            )
        })
        .collect();
    assert_eq!(
        vals,
        [
            (VMO.into(), false),
            (VMO.into(), true),
            (VMO.into(), false),
            (VMO.into(), true)
        ],
        "subscribeLabels carried each change"
    );
    assert!(frames.iter().all(|f| f["verified"] == true));
    let v = verify_independently(http);
    assert_eq!(v["verified"], v["labels"], "{v}");
}

#[test]
fn a_configured_did_plc_signs_with_its_given_key() {
    const PLC_DID: &str = "did:plc:labelerlabelerlabelerlab";
    let key_hex = "6c".repeat(32);
    let mut relay = Relay::new(None, 25, &format!("[labeler]\ndid = \"{PLC_DID}\"\n"));
    relay.env = vec![
        ("ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ("ATMOS_LABELER_SIGNING_KEY".into(), key_hex.clone()),
    ];
    // Without the key the relay refuses to start with a clear error.
    let out = relay.cli(&["labeler", "identity"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATMOS_LABELER_SIGNING_KEY"));

    let out = std::process::Command::new(atmos_tests::relay::atmos_bin())
        .args(["labeler", "identity", "--config"])
        .arg(&relay.config_path)
        .env("ATMOS_LABELER_SIGNING_KEY", "not-hex")
        .output()
        .expect("run atmos");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not 64 hex digits"));

    let id = atmos_tests::run_json(
        std::process::Command::new(atmos_tests::relay::atmos_bin())
            .args(["labeler", "identity", "--config"])
            .arg(&relay.config_path)
            .env("ATMOS_LABELER_SIGNING_KEY", &key_hex),
    );
    assert_eq!(id["did"], PLC_DID);
    let multikey = id["signingKey"].as_str().expect("key").to_string();
    assert!(multikey.starts_with("zQ3s"), "{multikey}");

    relay.start();
    let http = relay.http.expect("http");
    let (status, _, _) = curl(
        "GET",
        &format!("{}/.well-known/did.json", base(http)),
        &[],
        None,
    );
    assert_eq!(status, 404, "a did:plc labeler serves no did:web document");
    assert_eq!(emit(http, OTHER, "clean-sender", false, "test").0, 200);
    let (_, body) = query(http, &format!("uriPatterns={OTHER}"));
    assert_eq!(body["labels"][0]["src"], PLC_DID);
}

#[test]
fn periodic_reverification_notices_a_removed_record_without_being_asked() {
    let knot = Knot::start(SENDER_DOMAIN);
    let mut relay = Relay::new(
        Some(&knot.address()),
        25,
        "[labeler]\nretry_base = \"1s\"\nretry_max = \"2s\"\nreverify_interval = \"2s\"\n",
    );
    let (_, records) = relay.add_member_with_records(DID, SENDER_DOMAIN, true);
    let dkim: Vec<String> = records
        .iter()
        .filter_map(|r| {
            let name = r["name"].as_str()?;
            name.contains("._domainkey.").then(|| {
                knot.add_txt(name, r["value"].as_str().unwrap_or_default());
                name.to_string()
            })
        })
        .collect();
    relay.start();
    let http = relay.http.expect("http");
    wait_standing(http, DID, VMO, true, Duration::from_secs(30));
    // Only one of the two attested selectors goes: the domain no longer verifies.
    knot.remove_txt(&dkim[0]);
    wait_standing(http, DID, VMO, false, Duration::from_secs(30));
}
