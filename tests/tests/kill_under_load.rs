//! Issue 12 §2: SIGKILL at random moments while 16 SMTP sessions and 4 HTTP clients submit
//! without pause, the relay restarted each time; afterwards every acknowledged message has
//! reached the MX (smtp-sink), none is left in the queue, and duplicates (at-least-once is
//! allowed) are counted and printed. Once with the MX up, once with it down during the kills.
//! `tests/run` does 5 kills each; `TEST_KILL_CYCLES=20` is the long run (docs/reliability.md).

use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::relay::Relay;
use atmos_tests::setup::{DID, RCPT_DOMAIN, SENDER_DOMAIN};
use atmos_tests::{client, free_port, poll_until};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Back-off before a client tries again after the relay went away (pacing, not waiting for
/// anything in particular: the client simply retries until the relay answers).
const RETRY: Duration = Duration::from_millis(50);

fn cycles() -> usize {
    std::env::var("TEST_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

#[derive(Clone)]
struct Shared {
    smtp: SocketAddr,
    http: SocketAddr,
    key: String,
    next: Arc<AtomicUsize>,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Shared {
    fn id(&self, kind: &str) -> String {
        format!("{kind}-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    fn ack(&self, id: String) {
        self.acked.lock().expect("lock").push(id);
    }
}

async fn smtp_client(s: Shared) {
    let from = format!("app@{SENDER_DOMAIN}");
    let to = format!("kill@{RCPT_DOMAIN}");
    while !s.stop.load(Ordering::Relaxed) {
        let Ok(mut session) = client::connect(s.smtp, DID, &s.key).await else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        while !s.stop.load(Ordering::Relaxed) {
            let id = s.id("smtp");
            let body = client::message(&from, &to, &id, 2048);
            match client::send(&mut session, &from, &[&to], &body).await {
                Ok(_) => s.ack(id),
                Err(_) => break,
            }
        }
    }
}

async fn http_client(s: Shared) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    while !s.stop.load(Ordering::Relaxed) {
        let id = s.id("http");
        let body = serde_json::json!({
            "from": format!("app@{SENDER_DOMAIN}"), "to": format!("kill@{RCPT_DOMAIN}"),
            "subject": "kill", "text": "kill", "headers": {"X-Test-Id": id},
        });
        let res = http
            .post(format!("http://{}/v1/send", s.http))
            .header("X-Atmos-DID", DID)
            .bearer_auth(&s.key)
            .json(&body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => s.ack(id),
            _ => tokio::time::sleep(RETRY).await,
        }
    }
}

fn kills(mx_down: bool) {
    let dns = Dns::with_mx(&[RCPT_DOMAIN]);
    let mut sink = if mx_down {
        SmtpSink::stopped()
    } else {
        SmtpSink::start(&[])
    };
    let mut relay = Relay::new(Some(&dns.address()), sink.port, "");
    // Fixed ports, so clients find the relay again after each restart.
    let (smtp, http) = (free_port(), free_port());
    relay.edit_config(|c| {
        c.replace(
            "submission_listen = \"127.0.0.1:0\"",
            &format!("submission_listen = \"127.0.0.1:{smtp}\""),
        )
        .replace(
            "[http]\nlisten = \"127.0.0.1:0\"",
            &format!("[http]\nlisten = \"127.0.0.1:{http}\""),
        )
    });
    let member = relay.add_member(DID, SENDER_DOMAIN, true);
    relay.trust(DID);
    relay.start();
    let shared = Shared {
        smtp: format!("127.0.0.1:{smtp}").parse().expect("addr"),
        http: format!("127.0.0.1:{http}").parse().expect("addr"),
        key: member.api_key.clone(),
        next: Arc::new(AtomicUsize::new(0)),
        acked: Arc::new(Mutex::new(Vec::new())),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let load = {
        let s = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for _ in 0..16 {
                    tasks.push(tokio::spawn(smtp_client(s.clone())));
                }
                for _ in 0..4 {
                    tasks.push(tokio::spawn(http_client(s.clone())));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
    };
    let acked = || shared.acked.lock().expect("lock").len();
    let n = cycles();
    for cycle in 0..n {
        // A random moment: after 5 to 60 more acknowledgements.
        let target = acked() + 5 + (rand::random::<u32>() % 56) as usize;
        poll_until(
            Duration::from_secs(60),
            &format!("load before kill {cycle}"),
            || (acked() >= target).then_some(()),
        );
        relay.kill();
        relay.start();
    }
    let after = acked() + 20;
    poll_until(
        Duration::from_secs(60),
        "load after the last restart",
        || (acked() >= after).then_some(()),
    );
    shared.stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    if mx_down {
        sink.restart(&[]);
    }
    let acked = shared.acked.lock().expect("lock").clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let delivered = loop {
        let ids = sink.test_ids();
        let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains_key(*id)).collect();
        if missing.is_empty() {
            break ids;
        }
        if std::time::Instant::now() > deadline {
            let db = relay.db();
            let states: Vec<(String, i64, Option<String>)> = db
                .prepare("SELECT status, COUNT(*), max(last_reply) FROM recipients GROUP BY status")
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "{} of {} acknowledged messages never reached the MX (e.g. {:?}); recipients by state: {states:?}",
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(5)]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    poll_until(Duration::from_secs(60), "an empty queue", || {
        (relay.count("SELECT COUNT(*) FROM recipients WHERE status IN ('accepted', 'deferred')")
            == 0)
            .then_some(())
    });
    let duplicates: usize = delivered.values().map(|c| c - 1).sum();
    let unacknowledged = delivered.keys().filter(|id| !acked.contains(id)).count();
    eprintln!(
        "kills={n} mx_down={mx_down}: {} acknowledged, all delivered; {duplicates} duplicate \
         deliveries; {unacknowledged} delivered without an acknowledgement (cut off after commit)",
        acked.len()
    );
    assert!(acked.len() >= n * 5, "{} acknowledged", acked.len());
}

#[test]
fn repeated_sigkill_under_load_loses_nothing_with_the_mx_up() {
    kills(false);
}

#[test]
fn repeated_sigkill_under_load_loses_nothing_with_the_mx_down() {
    kills(true);
}
