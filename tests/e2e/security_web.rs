//! Issue 27, the web side: what anyone who can sign in (a self-hosted PDS gives unlimited
//! DIDs), a stale identity and a stranger who learnt an OAuth `state` can do, mounted against a
//! running relay with a real `@atproto/pds` and PLC (npm), Knot for the DNS records that change
//! mid-test, Debian's chromium signing in on the PDS's own pages, smtp-sink as the MX.

use atmos_tests::atproto::{Account, Pds};
use atmos_tests::browser::{Wizard, screenshots};
use atmos_tests::http::{curl, member_headers};
use atmos_tests::peers::{Knot, SmtpSink};
use atmos_tests::poll_until;
use atmos_tests::relay::{Relay, TestMember};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TOKEN: &str = "security-web-admin-token-0123456789";
const BOB_CLI: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";

struct World {
    pds: Pds,
    knot: Knot,
    sink: SmtpSink,
    relay: Relay,
}

fn world(web: &str, env: &[(&str, &str)]) -> World {
    let pds = Pds::start();
    let knot = Knot::start("test");
    knot.add("rcpt.test", "MX", &["10", "mx.rcpt.test."]);
    knot.add("mx.rcpt.test", "A", &["127.0.0.1"]);
    let sink = SmtpSink::start(&[]);
    let dist = atmos_tests::workspace_root().join("dist");
    let mut relay = Relay::new(
        Some(&knot.address()),
        sink.port,
        &format!(
            "[atproto]\nplc_url = \"{}\"\nallow_private_endpoints = true\n[web]\ndist_dir = \"{}\"\n{web}\n",
            pds.plc_url(),
            dist.display()
        ),
    );
    relay.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("ADMIN_TOKEN".to_string(), TOKEN.to_string())])
        .collect();
    relay.start();
    World {
        pds,
        knot,
        sink,
        relay,
    }
}

impl World {
    fn base(&self) -> String {
        format!("http://{}", self.relay.http.expect("http"))
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[String],
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, v, _) = curl(
            method,
            &format!("{}{path}", self.base()),
            headers,
            body.as_deref().map(str::as_bytes),
        );
        (status, v)
    }

    /// Signs `account` in through the browser (`extra` options for enroll.mjs); returns the
    /// browser's report of each step and the session's cookie and CSRF headers.
    fn sign_in(&self, account: &Account, extra: Value, shots: &str) -> (Vec<Value>, [String; 2]) {
        let mut args = json!({
            "relay": self.base(), "identifier": account.did, "password": account.password,
            "domain": "unused.test", "shots": screenshots(shots), "expect": "enrolled",
        });
        if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        let b = Wizard::start(&args);
        let mut steps = Vec::new();
        loop {
            let step = b.step(Duration::from_secs(90));
            let done = step["step"] == "signed-in";
            steps.push(step);
            if done {
                break;
            }
        }
        let cookie = format!(
            "Cookie: {}",
            steps
                .last()
                .and_then(|s| s["cookie"].as_str())
                .expect("cookie")
        );
        let (_, session) = self.call("GET", "/api/session", std::slice::from_ref(&cookie), None);
        assert_eq!(session["signedIn"], true, "{session}");
        let csrf = format!("X-CSRF-Token: {}", session["csrf"].as_str().expect("csrf"));
        (steps, [cookie, csrf])
    }

    /// The `s=` of the member-domain signatures on the copy delivered to `rcpt`.
    fn selectors_on(&self, rcpt: &str, domain: &str) -> Vec<String> {
        let copy = poll_until(Duration::from_secs(30), "the delivered copy", || {
            self.sink.messages().into_iter().find(|m| {
                m.lines()
                    .any(|l| l.starts_with("X-Rcpt-Args:") && l.contains(rcpt))
            })
        });
        let unfolded = copy
            .replace("\r\n\t", " ")
            .replace("\r\n ", " ")
            .replace("\n\t", " ")
            .replace("\n ", " ");
        unfolded
            .lines()
            .filter(|l| l.starts_with("DKIM-Signature:") && l.contains(&format!("d={domain};")))
            .filter_map(|l| {
                l.split(';')
                    .find_map(|t| t.trim().strip_prefix("s=").map(str::to_string))
            })
            .collect()
    }

    fn publish_keys(&self, domain: &str, pending: bool) -> Vec<String> {
        let db = self.relay.db();
        let mut stmt = db
            .prepare(
                "SELECT selector, algorithm, public_key FROM dkim_keys
                 WHERE domain = ?1 AND retired_at IS NULL AND pending = ?2",
            )
            .expect("prepare");
        let keys: Vec<(String, String, String)> = stmt
            .query_map(rusqlite::params![domain, pending], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("query")
            .flatten()
            .collect();
        for (selector, algorithm, p) in &keys {
            self.knot.add_txt(
                &format!("{selector}._domainkey.{domain}"),
                &format!("v=DKIM1; k={algorithm}; p={p}"),
            );
        }
        keys.into_iter().map(|k| k.0).collect()
    }
}

fn send(w: &World, member: &TestMember, from: &str, to: &str) -> (u16, Value) {
    w.call(
        "POST",
        "/v1/send",
        &member_headers(member),
        Some(json!({"from": from, "to": to, "text": "hi", "category": "transactional"})),
    )
}

/// `com.atproto.identity.updateHandle` on the PDS.
fn update_handle(pds: &Pds, account: &Account, handle: &str) {
    let (status, v, _) = curl(
        "POST",
        &format!("{}/xrpc/com.atproto.identity.updateHandle", pds.url()),
        &[format!("Authorization: Bearer {}", account.access_jwt)],
        Some(json!({ "handle": handle }).to_string().as_bytes()),
    );
    assert_eq!(status, 200, "updateHandle {handle}: {v}");
}

/// Times another member's sends during a flood of rotations: runs with the machine to itself (tests/e2e/main.rs: `alone`).
mod alone {
    use super::*;

    #[test]
    fn a_signed_in_stranger_cannot_forward_flood_or_take_names() {
        let w = world("", &[("ATMOS_SERVER_KEY_ROLLOVER_INTERVAL", "1s")]);
        let relay = &w.relay;
        let admin = vec![format!("Authorization: Bearer {TOKEN}")];

        // Every answer carries the browser hardening (over plain http: no HSTS).
        for path in ["/", "/account", "/api/session", "/healthz"] {
            let (_, _, head) = curl(
                "GET",
                &format!("{}{path}", w.base()),
                &["Accept: text/html".into()],
                None,
            );
            let head = head.to_ascii_lowercase();
            for h in [
                "content-security-policy: default-src 'self'",
                "frame-ancestors 'none'",
                "x-content-type-options: nosniff",
                "referrer-policy: no-referrer",
            ] {
                assert!(head.contains(h), "{path}: {h}: {head}");
            }
            assert!(
                !head.contains("strict-transport-security"),
                "{path}: {head}"
            );
        }

        // Alice, whose handle alice.test is published in DNS when she signs in. A stranger who
        // learnt her callback's state opens it first: refused, and her sign-in still completes.
        let alice = w.pds.create_account("alice.test");
        w.knot
            .add_txt("_atproto.alice.test", &format!("did={}", alice.did));
        let (steps, me) = w.sign_in(
            &alice,
            json!({"tamper": {"strangerFirst": true}}),
            "web-alice",
        );
        let stranger = steps
            .iter()
            .find(|s| s["step"] == "stranger")
            .expect("stranger step");
        assert!(
            stranger["location"]
                .as_str()
                .unwrap_or_default()
                .contains("signin_error=expired"),
            "{stranger}"
        );

        // Pending (anyone can be): a forward-to is refused.
        w.knot
            .add_txt("_atmos.alice-mail.test", &format!("did={}", alice.did));
        let (status, enrolled) = w.call(
            "POST",
            "/api/domains",
            &me,
            Some(json!({"domain": "alice-mail.test"})),
        );
        assert_eq!(status, 200, "{enrolled}");
        let handle_of = |did: &str| {
            relay
                .db()
                .query_row("SELECT handle FROM members WHERE did = ?1", [did], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .expect("row")
        };
        assert_eq!(handle_of(&alice.did).as_deref(), Some("alice.test"));
        let alice_member = TestMember {
            did: alice.did.clone(),
            api_key: enrolled["apiKey"].as_str().expect("key").to_string(),
            domain: "alice-mail.test".into(),
        };
        let (status, v) = w.call(
            "PUT",
            "/member/forward-to",
            &me,
            Some(json!({"domain": "alice-mail.test", "address": "victim@rcpt.test"})),
        );
        assert_eq!(
            (status, v["code"].as_str()),
            (403, Some("MEMBER_NOT_ACTIVE")),
            "{v}"
        );

        // The operator domain and the relay's host name are reserved, proof or not.
        w.knot
            .add_txt("_atmos.operator.test", &format!("did={}", alice.did));
        let operator_keys = || {
            relay.count(
                "SELECT count(*) FROM dkim_keys WHERE domain = 'operator.test' AND retired_at IS NULL",
            )
        };
        let before = operator_keys();
        for domain in ["operator.test", "mail.operator.test", "relay.test"] {
            let (status, v) = w.call(
                "POST",
                "/api/domains",
                &me,
                Some(json!({ "domain": domain })),
            );
            assert_eq!(
                (status, v["code"].as_str()),
                (400, Some("INVALID_REQUEST")),
                "{domain}: {v}"
            );
            assert!(
                v["error"].as_str().unwrap_or_default().contains("reserved"),
                "{v}"
            );
        }
        assert_eq!(operator_keys(), before);

        // The handle alice.test moves to Bob: he can enroll (the store holds one member per
        // handle), and Alice's stale claim is cleared.
        update_handle(&w.pds, &alice, "alice-old.test");
        let bob = w.pds.create_account("bob.test");
        update_handle(&w.pds, &bob, "alice.test");
        w.knot.remove_txt("_atproto.alice.test");
        w.knot
            .add_txt("_atproto.alice.test", &format!("did={}", bob.did));
        w.knot
            .add_txt("_atmos.bob-mail.test", &format!("did={}", bob.did));
        let (_, bob_me) = w.sign_in(&bob, json!({}), "web-bob");
        let (status, v) = w.call(
            "POST",
            "/api/domains",
            &bob_me,
            Some(json!({"domain": "bob-mail.test"})),
        );
        assert_eq!(status, 200, "the new holder of alice.test enrolls: {v}");
        assert_eq!(handle_of(&bob.did).as_deref(), Some("alice.test"));
        assert_eq!(
            handle_of(&alice.did),
            None,
            "the former holder's handle is cleared"
        );

        // A stale handle proves nothing: alice.test now names Bob, and Alice's session (which
        // still says alice.test) cannot enroll it as a mail domain.
        let (status, v) = w.call(
            "POST",
            "/api/domains",
            &me,
            Some(json!({"domain": "alice.test"})),
        );
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("DOMAIN_NOT_PROVEN")),
            "{v}"
        );

        // Approved and trusted (no warming caps), with her records published.
        for args in [
            vec!["member", "approve", alice.did.as_str()],
            vec![
                "member",
                "label",
                alice.did.as_str(),
                "--add",
                "highly_trusted",
            ],
        ] {
            let out = relay.cli(&args);
            assert!(out.status.success(), "{out:?}");
        }
        let old = w.publish_keys("alice-mail.test", false);
        let (status, v) = send(&w, &alice_member, "app@alice-mail.test", "r1@rcpt.test");
        assert_eq!(status, 200, "{v}");
        let first = w.selectors_on("r1@rcpt.test", "alice-mail.test");
        assert!(
            !first.is_empty() && first.iter().all(|s| old.contains(s)),
            "{first:?} {old:?}"
        );

        // Re-enrolling publishes first: the old keys sign until DNS serves the new ones.
        let (status, rotated) = w.call("POST", "/api/domains/alice-mail.test/rotate", &me, None);
        assert_eq!(status, 200, "{rotated}");
        let (status, v) = send(&w, &alice_member, "app@alice-mail.test", "r2@rcpt.test");
        assert_eq!(status, 200, "{v}");
        let during = w.selectors_on("r2@rcpt.test", "alice-mail.test");
        assert_eq!(during, first, "the new keys signed before DNS served them");
        let new = w.publish_keys("alice-mail.test", true);
        assert_eq!(new.len(), 2, "{rotated}");
        let mut n = 3;
        poll_until(Duration::from_secs(30), "the new selectors to sign", || {
            n += 1;
            let rcpt = format!("r{n}@rcpt.test");
            let (status, _) = send(&w, &alice_member, "app@alice-mail.test", &rcpt);
            assert_eq!(status, 200);
            let s = w.selectors_on(&rcpt, "alice-mail.test");
            s.iter().all(|s| new.contains(s)).then_some(())
        });

        // A flood of re-enrollments from her session: a few run, the rest wait their turn (429
        // with Retry-After), and another member's send answers in under a second meanwhile.
        let bob_cli = relay.add_member(BOB_CLI, "bob-cli.test", true);
        relay.trust(BOB_CLI);
        let flood: Vec<_> = (0..30)
            .map(|_| {
                let (url, me) = (
                    format!("{}/api/domains/alice-mail.test/rotate", w.base()),
                    me.clone(),
                );
                std::thread::spawn(move || {
                    let (status, _, head) = curl("POST", &url, &me, None);
                    (status, head.to_ascii_lowercase().contains("retry-after:"))
                })
            })
            .collect();
        let mut slowest = Duration::ZERO;
        for i in 0..8 {
            let started = Instant::now();
            let (status, v) = send(&w, &bob_cli, "app@bob-cli.test", &format!("b{i}@rcpt.test"));
            assert_eq!(status, 200, "{v}");
            slowest = slowest.max(started.elapsed());
        }
        let codes: Vec<(u16, bool)> = flood
            .into_iter()
            .map(|t| t.join().expect("rotate"))
            .collect();
        assert!(
            codes.iter().filter(|c| c.0 == 200).count() <= 2,
            "{codes:?}"
        );
        assert!(
            codes.iter().filter(|c| c.0 == 429).all(|c| c.1),
            "429 without Retry-After: {codes:?}"
        );
        assert!(
            slowest < Duration::from_secs(1),
            "another member's send took {slowest:?}"
        );

        // A second domain of an approved member waits for the operator.
        w.knot
            .add_txt("_atmos.alice2.test", &format!("did={}", alice.did));
        let (status, v) = w.call(
            "POST",
            "/api/domains",
            &me,
            Some(json!({"domain": "alice2.test"})),
        );
        assert_eq!(status, 200, "{v}");
        let (status, v) = send(&w, &alice_member, "app@alice2.test", "d1@rcpt.test");
        assert_eq!(
            (status, v["code"].as_str()),
            (403, Some("DOMAIN_PENDING")),
            "{v}"
        );
        let (_, list) = w.call("GET", "/admin/members", &admin, None);
        let after_pending = list
            .as_array()
            .and_then(|l| l.iter().find(|m| m["state"] != "pending"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            after_pending["did"], alice.did,
            "awaiting review comes next: {list}"
        );
        assert_eq!(
            after_pending["domainsAwaitingReview"],
            json!(["alice2.test"]),
            "{list}"
        );
        let (status, v) = w.call("POST", "/admin/domains/alice2.test/approve", &admin, None);
        assert_eq!(status, 200, "{v}");
        let (status, v) = send(&w, &alice_member, "app@alice2.test", "d2@rcpt.test");
        assert_eq!(status, 200, "{v}");
    }
}

#[test]
fn sign_ins_fill_only_their_networks_share_and_idle_sessions_are_swept() {
    let w = world(
        "max_pending_signins = 40\nsession_idle = \"3s\"",
        &[("ATMOS_HTTP_TRUSTED_PROXIES", "[\"127.0.0.1/32\"]")],
    );
    let relay = &w.relay;
    // An idle session goes without anyone asking for it.
    let dave = w.pds.create_account("dave.test");
    let _ = w.sign_in(&dave, json!({}), "web-dave");
    assert_eq!(relay.count("SELECT count(*) FROM web_sessions"), 1);
    poll_until(
        Duration::from_secs(30),
        "the idle session to be swept",
        || (relay.count("SELECT count(*) FROM web_sessions") == 0).then_some(()),
    );

    // Sign-ins from one IPv6 /48 (40 different /64s) hold its share of the table (2 of 40)...
    let carol = w.pds.create_account("carol.test");
    let start = |client: &str| {
        w.call(
            "POST",
            "/api/signin",
            &[format!("X-Forwarded-For: {client}")],
            Some(json!({ "identifier": carol.did })),
        )
    };
    let codes: Vec<u16> = (0..40)
        .map(|n| start(&format!("2001:db8:1:{n:x}::1")).0)
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 2, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 429), "{codes:?}");
    // ...and another network still starts.
    assert_eq!(start("2001:db8:2::1").0, 200);
    // Many networks fill the table up to its reserve, which only new networks may take.
    for i in 0..33 {
        assert_eq!(
            start(&format!("2001:db8:{:x}::1", 0x100 + i)).0,
            200,
            "network {i}"
        );
    }
    assert_eq!(relay.count("SELECT count(*) FROM signin_states"), 36);
    let (status, v) = start("2001:db8:100::2");
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{v}"
    );
    for i in 0..4 {
        assert_eq!(
            start(&format!("2001:db8:{:x}::1", 0x200 + i)).0,
            200,
            "fresh network {i}"
        );
    }
    let (status, v) = start("2001:db8:300::1");
    assert_eq!((status, v["code"].as_str()), (503, Some("BUSY")), "{v}");
    assert_eq!(relay.count("SELECT count(*) FROM signin_states"), 40);
}
