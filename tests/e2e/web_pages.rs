//! Issue 11: the web product, walked in Debian's chromium (playwright-core, tests/node/walk.mjs)
//! against a running `atmos serve` with real peers: a real `@atproto/pds` + PLC for signing in,
//! Knot for DNS, smtp-sink as four kinds of MX (one that accepts, one that holds DATA, one that
//! refuses every recipient, none at all), swaks as the member's mail client. Every page is
//! audited by axe-core and photographed at 1280 and 375 px (target/screenshots/web-pages/).

use atmos_tests::atproto::{Pds, create_report};
use atmos_tests::browser::{Wizard, screenshots};
use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::labeler::emit;
use atmos_tests::peers::{Knot, SmtpSink};
use atmos_tests::poll_until;
use atmos_tests::relay::{Relay, TestMember};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// The labeler helpers (`emit`) send this token.
const TOKEN: &str = atmos_tests::labeler::ADMIN_TOKEN;
const REASON: &str = "complaints from a purchased list";

fn admin() -> Vec<String> {
    vec![format!("Authorization: Bearer {TOKEN}")]
}

/// SMTP AUTH and one message to reader@rcpt.test with swaks; (exit code, transcript).
fn swaks(relay: &Relay, user: &str, key: &str, from: &str) -> (i32, String) {
    swaks_to(relay, user, key, from, "reader@rcpt.test")
}

/// [`swaks`] to `to` (comma-separated recipients: one transactional message; bulk mail would
/// be a copy per recipient).
fn swaks_to(relay: &Relay, user: &str, key: &str, from: &str, to: &str) -> (i32, String) {
    let submission = relay.submission.expect("smtp");
    atmos_tests::client::swaks(
        submission,
        user,
        key,
        from,
        to,
        &[("X-Atmos-Category", "transactional")],
    )
}

fn suppressions(http: std::net::SocketAddr, m: &TestMember) -> Vec<String> {
    let (_, v, _) = curl(
        "GET",
        &format!("http://{http}/member/suppressions"),
        &member_headers(m),
        None,
    );
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn queue(http: std::net::SocketAddr, domain: &str) -> Vec<Value> {
    let (_, v, _) = curl(
        "GET",
        &format!("http://{http}/admin/queue?domain={domain}"),
        &admin(),
        None,
    );
    v["entries"].as_array().cloned().unwrap_or_default()
}

fn send(http: std::net::SocketAddr, m: &TestMember, to: &[&str]) -> String {
    let body =
        json!({"from": format!("app@{}", m.domain), "to": to, "subject": "hello", "text": "hello"});
    send_ok(http, &member_headers(m), &body)
}

/// Every `/admin` operation of `/openapi.json`, with its path parameters filled in.
fn admin_operations(http: std::net::SocketAddr, did: &str) -> Vec<(String, String)> {
    let (_, doc, _) = curl("GET", &format!("http://{http}/openapi.json"), &[], None);
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().cloned().unwrap_or_default() {
        if !path.starts_with("/admin") {
            continue;
        }
        let filled = path
            .replace("{did}", did)
            .replace("{domain}", "alice-mail.test")
            .replace("{id}", "1")
            .replace("{action}", "approve");
        for method in item
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            out.push((method.to_uppercase(), filled.clone()));
        }
    }
    out
}

#[test]
fn members_and_operators_use_every_page_in_a_browser() {
    // DNS: the members' domains, and recipients behind four kinds of MX.
    let knot = Knot::start("test");
    let sink = SmtpSink::start(&[]);
    // The relay dials one port on every MX host: other loopback addresses, other behaviours.
    let holding = SmtpSink::start_at("127.0.0.5", sink.port, &["-w", "10"]);
    let refusing = SmtpSink::start_at(
        "127.0.0.6",
        sink.port,
        &["-f", "rcpt", "-B", "550 5.1.1 no such user"],
    );
    for (domain, ip) in [
        ("rcpt.test", "127.0.0.1"),
        ("wait.test", "127.0.0.5"),
        ("gone.test", "127.0.0.6"),
        ("slow.test", "127.0.0.7"),
        ("slow2.test", "127.0.0.8"),
    ] {
        knot.add(domain, "MX", &["10", &format!("mx.{domain}.")]);
        knot.add(&format!("mx.{domain}"), "A", &[ip]);
    }
    let pds = Pds::start();
    let alice = pds.create_account("alice.test");
    let bob = pds.create_account("bob.test");
    let op = pds.create_account("olive.test");
    for a in [&alice, &bob, &op] {
        knot.add_txt(&format!("_atproto.{}", a.handle), &format!("did={}", a.did));
    }
    let dist = atmos_tests::workspace_root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "dist/ missing: tests/run builds the UI (trunk build --release)"
    );
    let mut relay = Relay::new(
        Some(&knot.address()),
        sink.port,
        &format!(
            "[atproto]\nplc_url = \"{}\"\nallow_private_endpoints = true\n\
             [web]\ndist_dir = \"{}\"\noperator_dids = [\"{}\"]\n",
            pds.plc_url(),
            dist.display(),
            op.did
        ),
    );
    // Deferred mail waits an hour unless someone retries it; replies may take 10 s (the
    // holding MX), which the client's timeout must outlast.
    relay.edit_config(|c| {
        c.replace(
            "retry_base = \"1s\"\nretry_max = \"2s\"",
            "retry_base = \"1h\"\nretry_max = \"2h\"",
        )
        .replace("connect_timeout = \"5s\"", "connect_timeout = \"30s\"")
    });
    relay.env = vec![("ADMIN_TOKEN".into(), TOKEN.into())];
    relay.start();
    let http = relay.http.expect("http");
    let base = format!("http://{http}");

    let (mut a, records) = relay.add_member_with_records(&alice.did, "alice-mail.test", true);
    for r in records.iter().filter(|r| r["type"] == "TXT") {
        knot.add_txt(
            r["name"].as_str().unwrap_or_default(),
            r["value"].as_str().unwrap_or_default(),
        );
    }
    relay.trust(&alice.did);
    // A second domain of hers, added while she is active: it waits for the operator's review
    // (the web path that makes it so is in security_web.rs; here the pages show and settle it).
    let out = relay.cli(&[
        "member",
        "add",
        "--did",
        &alice.did,
        "--domain",
        "alice-news.test",
    ]);
    assert!(out.status.success(), "{out:?}");
    let db = rusqlite::Connection::open(relay.data_dir().join("atmos.sqlite")).expect("db");
    db.busy_timeout(Duration::from_secs(5)).expect("busy");
    db.execute(
        "UPDATE sending_domains SET approved = 0 WHERE domain = 'alice-news.test'",
        [],
    )
    .expect("awaiting review");
    drop(db);
    let b = relay.add_member(&bob.did, "bob-mail.test", false);

    // Before the walk: a hard bounce (a suppression), four recipients deferred in three
    // messages, a label to withdraw and a report to settle.
    let bounced = send(http, &a, &["nobody@gone.test"]);
    poll_until(Duration::from_secs(30), "the bounce suppressed", || {
        suppressions(http, &a)
            .contains(&"nobody@gone.test".to_string())
            .then_some(())
    });
    // Over SMTP: one message for two recipients.
    let (code, out) = swaks_to(
        &relay,
        &alice.did,
        &a.api_key,
        "app@alice-mail.test",
        "one@slow.test,two@slow.test",
    );
    assert_eq!(code, 0, "{out}");
    send(http, &a, &["three@slow.test"]);
    send(http, &a, &["four@slow2.test"]);
    poll_until(Duration::from_secs(30), "four deferrals", || {
        let all: Vec<Value> = [queue(http, "slow.test"), queue(http, "slow2.test")].concat();
        (all.len() == 4
            && all
                .iter()
                .all(|e| e["attempts"] == 1 && e["status"] == "deferred"))
        .then_some(())
    });
    let (status, v) = emit(
        http,
        &alice.did,
        "walk-flag",
        false,
        "walk: a label to withdraw",
    );
    assert_eq!(status, 200, "{v}");
    let token = pds.service_auth(
        &bob,
        "did:web:relay.test",
        "com.atproto.moderation.createReport",
    );
    let (status, report) = create_report(
        http,
        &token,
        &json!({"reasonType": "com.atproto.moderation.defs#reasonSpam", "reason": "unwanted mail",
                "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": alice.did}}),
    );
    assert_eq!(status, 200, "{report}");

    let args = json!({
        "relay": base, "shots": screenshots("web-pages"),
        "member": {"did": alice.did, "password": alice.password},
        "operator": {"did": op.did, "password": op.password},
        "pending": bob.did, "suppressed": "nobody@gone.test", "queueDomain": "slow.test",
        "label": "walk-flag", "report": report["id"], "reason": REASON,
    });
    let mut w = Wizard::script("walk.mjs", &args);
    let t = Duration::from_secs(120);
    let step = |w: &Wizard, name: &str| {
        let v = w.step(t);
        assert_eq!(v["step"], name, "{v}");
        v
    };

    let v = step(&w, "account-signed-out");
    assert_eq!(v["status"], 200, "{v}");
    let v = step(&w, "member-signed-in");
    assert_eq!(v["state"], "active", "{v}");
    let member_cookie = v["cookie"].as_str().unwrap_or_default().to_string();

    // A message to the MX that holds DATA: the page sees it queued, then delivered.
    let held = send(http, &a, &["reader@wait.test"]);
    w.go_with(&json!({"id": held, "recipientPart": "reader@wait", "expectRows": 1}));
    let v = step(&w, "message-seen");
    assert_eq!(v["queuedText"], "queued", "{v}");
    assert_eq!(v["sentText"], "delivered", "{v}");
    assert_eq!(v["filtered"], json!([held]), "{v}");
    assert_eq!(v["bouncedRows"], json!([bounced]), "{v}");
    assert!(
        v["replies"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("250"),
        "the remote reply, verbatim: {v}"
    );
    assert_eq!(holding.messages().len(), 1);
    w.go();

    let v = step(&w, "suppression-removed");
    assert!(
        v["outcome"]
            .as_str()
            .unwrap_or_default()
            .contains("nobody@gone.test"),
        "{v}"
    );
    assert!(!suppressions(http, &a).contains(&"nobody@gone.test".to_string()));
    assert_eq!(refusing.messages().len(), 0);
    w.go();

    // The new key works, the old one no longer does.
    let v = step(&w, "new-key");
    let new_key = v["key"].as_str().unwrap_or_default().to_string();
    assert!(new_key.starts_with("atmos_") && new_key != a.api_key, "{v}");
    let (code, out) = swaks(&relay, &alice.did, &a.api_key, "app@alice-mail.test");
    assert!(code != 0 && out.contains("535 5.7.8"), "the old key: {out}");
    let (code, out) = swaks(&relay, &alice.did, &new_key, "app@alice-mail.test");
    assert_eq!(code, 0, "the new key: {out}");
    a.api_key = new_key;
    w.go();

    let v = step(&w, "operator-signed-in");
    assert_eq!(v["memberAdmin"], 403, "a member's /admin page: {v}");
    assert_eq!(v["signedOutAdmin"], 401, "/admin signed out: {v}");
    assert_eq!(v["depth"], "4", "{v}");
    // Every admin operation refuses the member's session: 403 NOT_OPERATOR, CSRF token and all.
    let (_, session, _) = curl(
        "GET",
        &format!("{base}/api/session"),
        &[format!("Cookie: {member_cookie}")],
        None,
    );
    let csrf = session["csrf"].as_str().unwrap_or_default().to_string();
    let as_alice = vec![
        format!("Cookie: {member_cookie}"),
        format!("X-CSRF-Token: {csrf}"),
    ];
    let operations = admin_operations(http, &bob.did);
    assert!(operations.len() >= 20, "{operations:?}");
    for (method, path) in &operations {
        let (status, v, _) = curl(method, &format!("{base}{path}"), &as_alice, Some(b"{}"));
        assert_eq!(
            (status, v["code"].as_str()),
            (403, Some("NOT_OPERATOR")),
            "{method} {path}: {v}"
        );
    }
    for page in [
        "/admin",
        "/admin/members",
        "/admin/queue",
        "/admin/logs",
        "/admin/inbound",
        "/admin/labels",
        &format!("/admin/members/{}", bob.did),
    ] {
        let (status, _, _) = curl(
            "GET",
            &format!("{base}{page}"),
            &[
                format!("Cookie: {member_cookie}"),
                "Accept: text/html".into(),
            ],
            None,
        );
        assert_eq!(status, 403, "the page {page}");
    }
    assert_eq!(
        relay.count("SELECT COUNT(*) FROM members WHERE state = 'pending'"),
        1
    );
    w.go();

    // Approved, bob can send.
    let v = step(&w, "approved");
    assert_eq!(
        v["order"][0],
        json!([bob.did, "pending"]),
        "pending first: {v}"
    );
    assert_eq!(
        v["order"][1],
        json!([alice.did, "active"]),
        "then a domain awaiting review: {v}"
    );
    assert_eq!(v["awaiting"], json!(["alice-news.test"]), "{v}");
    assert_eq!(
        relay.count(
            "SELECT count(*) FROM sending_domains WHERE domain = 'alice-news.test' AND approved = 1"
        ),
        1,
        "approved from the page"
    );
    let (code, out) = swaks(&relay, &bob.did, &b.api_key, "app@bob-mail.test");
    assert_eq!(code, 0, "bob approved: {out}");
    w.go();

    // Suspended with a reason: AUTH is refused and the member's page says why.
    let v = step(&w, "suspended");
    assert!(
        v["noReason"]
            .as_str()
            .unwrap_or_default()
            .contains("Say why"),
        "{v}"
    );
    let (code, out) = swaks(&relay, &alice.did, &a.api_key, "app@alice-mail.test");
    assert!(
        code != 0 && out.contains("535 5.7.8 account suspended"),
        "{out}"
    );
    // The labeler withdraws its verification from a suspended member.
    atmos_tests::labeler::wait_standing(
        http,
        &alice.did,
        "verified-mail-operator",
        false,
        Duration::from_secs(30),
    );
    w.go();
    let v = step(&w, "member-sees-suspension");
    assert_eq!(v["state"], "suspended", "{v}");
    assert!(
        v["reason"].as_str().unwrap_or_default().contains(REASON),
        "{v}"
    );
    assert_eq!(
        v["labels"], "walk-flag",
        "only the labels standing now: {v}"
    );
    w.go();

    // The bulk retry touched the three slow.test recipients, not slow2.test's.
    let v = step(&w, "bulk-retried");
    assert_eq!(v["selection"], "3", "{v}");
    assert!(
        v["dialog"]
            .as_str()
            .unwrap_or_default()
            .contains("3 recipients in 2 messages"),
        "the confirmation states the count: {v}"
    );
    assert!(
        v["outcome"]
            .as_str()
            .unwrap_or_default()
            .contains("3 recipients"),
        "{v}"
    );
    poll_until(Duration::from_secs(30), "the retried attempts", || {
        queue(http, "slow.test")
            .iter()
            .all(|e| e["attempts"] == 2)
            .then_some(())
    });
    assert_eq!(queue(http, "slow2.test")[0]["attempts"], 1);
    // A bulk action over a selection that is not the size confirmed does nothing.
    let (status, v, _) = curl(
        "POST",
        &format!("{base}/admin/queue/bulk"),
        &admin(),
        Some(
            json!({"action": "retry", "filter": {"domain": "slow.test"}, "expect": 2})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("COUNT_CHANGED")),
        "{v}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    for e in queue(http, "slow.test") {
        let next = e["nextAttemptAt"].as_i64().unwrap_or_default();
        assert!(next > now_ms + 30 * 60 * 1000, "not rescheduled: {e}");
    }
    w.go();

    // The negation is public; the report is settled, by the operator.
    let v = step(&w, "labels-done");
    assert!(
        v["labelOutcome"]
            .as_str()
            .unwrap_or_default()
            .contains("Published"),
        "{v}"
    );
    let (_, labels, _) = curl(
        "GET",
        &format!(
            "{base}/xrpc/com.atproto.label.queryLabels?uriPatterns={}",
            alice.did
        ),
        &[],
        None,
    );
    let negated = labels["labels"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .any(|l| l["val"] == "walk-flag" && l["neg"] == true);
    assert!(negated, "{labels}");
    let (_, reports, _) = curl(
        "GET",
        &format!("{base}/admin/labeler/reports"),
        &admin(),
        None,
    );
    let settled = reports["reports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r["id"] == report["id"])
        .unwrap_or_default();
    assert_eq!(
        (settled["status"].as_str(), settled["actedBy"].as_str()),
        (Some("acted"), Some(op.did.as_str())),
        "{reports}"
    );
    w.go();

    let v = step(&w, "done");
    assert_eq!(v["topics"].as_array().map(Vec::len), Some(8), "{v}");
    assert_eq!(v["consoleErrors"], json!([]), "{v}");
    assert_eq!(
        v["accessibility"],
        json!([]),
        "axe-core and the 375 px check: {v}"
    );

    // Guessing IDs with alice's session: bob's message, domain and suppression stay his.
    let bobs = send(http, &b, &["nobody2@gone.test"]);
    poll_until(Duration::from_secs(30), "bob's bounce suppressed", || {
        suppressions(http, &b)
            .contains(&"nobody2@gone.test".to_string())
            .then_some(())
    });
    for path in [
        format!("/v1/messages/{bobs}"),
        "/api/domains/bob-mail.test/dns".to_string(),
        "/api/domains/bob-mail.test/attestation".to_string(),
    ] {
        let (status, v, _) = curl("GET", &format!("{base}{path}"), &as_alice, None);
        assert_eq!(status, 404, "{path}: {v}");
    }
    let (_, list, _) = curl(
        "GET",
        &format!("{base}/v1/messages?recipient=nobody2"),
        &as_alice,
        None,
    );
    assert_eq!(list["messages"], json!([]), "{list}");
    let (_, own, _) = curl(
        "GET",
        &format!("{base}/member/suppressions"),
        &as_alice,
        None,
    );
    assert!(!own.to_string().contains("nobody2@gone.test"), "{own}");
    curl(
        "DELETE",
        &format!("{base}/member/suppressions?address=nobody2@gone.test"),
        &as_alice,
        None,
    );
    assert!(suppressions(http, &b).contains(&"nobody2@gone.test".to_string()));
    for path in [
        "/api/domains/bob-mail.test",
        "/api/domains/bob-mail.test/rotate",
    ] {
        let method = if path.ends_with("rotate") {
            "POST"
        } else {
            "DELETE"
        };
        let (status, v, _) = curl(method, &format!("{base}{path}"), &as_alice, None);
        assert_eq!(status, 404, "{method} {path}: {v}");
    }
    assert_eq!(
        relay.count("SELECT COUNT(*) FROM sending_domains WHERE domain = 'bob-mail.test'"),
        1
    );
    relay.assert_logs_hold_no_secrets();
}

#[test]
fn the_ui_is_served_compressed_with_cache_headers() {
    let dist = atmos_tests::workspace_root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "dist/ missing: tests/run builds the UI"
    );
    let mut relay = Relay::new(
        None,
        25,
        &format!("[web]\ndist_dir = \"{}\"\n", dist.display()),
    );
    relay.start();
    let base = format!("http://{}", relay.http.expect("http"));
    let index = std::fs::read_to_string(dist.join("index.html")).expect("index");
    let wasm = std::fs::read_dir(&dist)
        .expect("dist")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".wasm"))
        .expect("a wasm bundle");
    assert!(
        index.contains(wasm.trim_end_matches("_bg.wasm")),
        "index names the bundle"
    );
    let size = std::fs::metadata(dist.join(&wasm)).expect("wasm").len();
    for (encoding, name) in [("br", "br"), ("gzip", "gzip")] {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-D", "-", "-w", "%{size_download}"])
            .args(["-H", &format!("Accept-Encoding: {encoding}")])
            .arg(format!("{base}/{wasm}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(
            text.contains(&format!("content-encoding: {name}")),
            "{text}"
        );
        assert!(
            text.contains("cache-control: public, max-age=31536000, immutable"),
            "{text}"
        );
        let got: u64 = text
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(u64::MAX);
        assert!(got * 2 < size, "{encoding}: {got} of {size} bytes");
        eprintln!("bundle {wasm}: {size} bytes, {got} with {encoding}");
    }
    // Pages are index.html, never cached; an API path stays the API.
    for (path, accept, want) in [
        ("/account", "text/html", "no-cache"),
        ("/admin/members", "*/*", ""),
        ("/docs/smtp", "text/html", "no-cache"),
    ] {
        let (status, v, head) = curl(
            "GET",
            &format!("{base}{path}"),
            &[format!("Accept: {accept}")],
            None,
        );
        let head = head.to_ascii_lowercase();
        if want.is_empty() {
            assert_eq!(
                (status, v["code"].as_str()),
                (401, Some("ADMIN_AUTH_FAILED")),
                "{path}: {v}"
            );
        } else {
            assert_eq!(status, 200, "{path}");
            assert!(
                head.contains(&format!("cache-control: {want}")),
                "{path}: {head}"
            );
        }
    }
}
