//! Issue 12 §2 and §6: SIGKILL (or SIGTERM) at random moments while 16 SMTP sessions and 4
//! HTTP clients submit without pause, the relay restarted each time; afterwards every
//! acknowledged message has reached the MX (smtp-sink), none is left in the queue, and
//! duplicates (at-least-once is allowed) are counted and printed. Kills run once with the MX up
//! and once with it down; SIGTERM restarts also check that every SMTP session ended on a reply
//! (250 or 4xx, never cut off) and that the relay exits within its shutdown deadline.
//! `tests/run` does 5 kills each and 10 SIGTERMs; `TEST_KILL_CYCLES=20` is the long kill run
//! (docs/reliability.md).

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

fn cycles(fault: Fault) -> usize {
    match fault {
        Fault::Term => 10,
        Fault::Kill { .. } => std::env::var("TEST_KILL_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    }
}

/// What happens to the relay each cycle.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill { mx_down: bool },
    Term,
}

#[derive(Clone)]
struct Shared {
    smtp: SocketAddr,
    http: SocketAddr,
    key: String,
    next: Arc<AtomicUsize>,
    acked: Arc<Mutex<Vec<String>>>,
    /// SMTP sessions that ended without a reply (cut off mid-command, reset, timed out).
    cut: Arc<Mutex<Vec<String>>>,
    /// Sessions closed right after a complete reply (see `smtp_client`).
    closed_after_reply: Arc<AtomicUsize>,
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
                // A 4xx (421 at shutdown) is an answer; anything else ended the session unanswered.
                Err(mail_send::Error::UnexpectedReply(r)) if r.code / 100 == 4 => break,
                // End of stream right after a complete reply: mail-send reads each reply into a
                // fresh buffer, so a 421 that arrives in the same segment as the 250 before it
                // is dropped by the client, which then reads the close. The relay did answer
                // (probed with smtplib, which buffers: it reads the 421).
                Err(mail_send::Error::UnparseableReply) => {
                    s.closed_after_reply.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    s.cut.lock().expect("lock").push(e.to_string());
                    break;
                }
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

fn run(fault: Fault) {
    let mx_down = matches!(fault, Fault::Kill { mx_down: true });
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
        cut: Arc::new(Mutex::new(Vec::new())),
        closed_after_reply: Arc::new(AtomicUsize::new(0)),
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
    let n = cycles(fault);
    let mut slowest_exit = Duration::ZERO;
    for cycle in 0..n {
        // A random moment: after 5 to 60 more acknowledgements.
        let target = acked() + 5 + (rand::random::<u32>() % 56) as usize;
        poll_until(
            Duration::from_secs(60),
            &format!("load before kill {cycle}"),
            || (acked() >= target).then_some(()),
        );
        match fault {
            Fault::Kill { .. } => relay.kill(),
            Fault::Term => {
                let asked = std::time::Instant::now();
                relay.signal_term();
                assert_eq!(
                    relay.wait_exit(),
                    Some(0),
                    "clean exit after SIGTERM {cycle}"
                );
                slowest_exit = slowest_exit.max(asked.elapsed());
            }
        }
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
    let cut = shared.cut.lock().expect("lock").clone();
    eprintln!(
        "{fault:?} x{n}: {} acknowledged, all delivered; {duplicates} duplicate deliveries; \
         {unacknowledged} delivered without an acknowledgement (cut off after commit); \
         {} SMTP sessions cut off, {} closed after a reply; slowest SIGTERM exit {slowest_exit:?}",
        acked.len(),
        cut.len(),
        shared.closed_after_reply.load(Ordering::Relaxed)
    );
    assert!(acked.len() >= n * 5, "{} acknowledged", acked.len());
    if let Fault::Term = fault {
        assert_eq!(cut, Vec::<String>::new(), "every session ends on a reply");
        // [server] shutdown_deadline is 10 s in the test configuration.
        assert!(slowest_exit < Duration::from_secs(12), "{slowest_exit:?}");
        assert_eq!(duplicates, 0, "a graceful stop finishes what it delivers");
    }
}

#[test]
fn repeated_sigkill_under_load_loses_nothing_with_the_mx_up() {
    run(Fault::Kill { mx_down: false });
}

#[test]
fn repeated_sigkill_under_load_loses_nothing_with_the_mx_down() {
    run(Fault::Kill { mx_down: true });
}

#[test]
fn ten_sigterm_restarts_under_load_answer_every_session_and_lose_nothing() {
    run(Fault::Term);
}
