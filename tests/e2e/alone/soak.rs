//! Issue 12 §5: a soak. First the maximum rate is measured (8 sessions, closed loop, 10 s), then
//! mail is offered at half that rate, open loop, for `TEST_SOAK_SECONDS` (60 in `tests/run`; the
//! long run is 1800, docs/reliability.md), mixed: good mail, mail that bounces (its MX refuses the
//! recipient), complaints (ARF to the inbound MX about delivered mail) and bad input (garbage
//! SMTP on port 25, broken and unauthenticated `/v1/send`). Every 10 s the relay's RSS, open file
//! descriptors, queue depth and the window's p99 accept latency are sampled; afterwards the queue
//! must drain, descriptors and memory must stay flat after the warm-up (the first 5 minutes, or
//! the first third of a short run), and p99 must not drift. Samples go to
//! `target/soak/samples.csv` and `target/soak/soak.png` (matplotlib).
//! Peers are real: smtp-sink (accepting and refusing), dnsmasq, smtplib for the ARF reports.

use atmos_tests::mx;
use atmos_tests::peers::{Dns, SmtpSink, venv_python};
use atmos_tests::relay::Relay;
use atmos_tests::setup::{DID, RCPT_DOMAIN, SENDER_DOMAIN};
use atmos_tests::{client, workspace_root};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEFAULT_RULES: &str = include_str!("../../../relay/rules/default.toml");
const BOUNCE_DOMAIN: &str = "bounce.test";
const FBL_DOMAIN: &str = "fbl.test";
const SAMPLE: Duration = Duration::from_secs(10);

fn soak_seconds() -> u64 {
    std::env::var("TEST_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

/// What the load saw.
#[derive(Default)]
struct Load {
    acked: AtomicUsize,
    refused: AtomicUsize,
    /// Accept latencies (ms) of the current sample window.
    window: Mutex<Vec<f64>>,
    bad_input_answers: AtomicUsize,
    complaints: AtomicUsize,
    stop: AtomicBool,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The recipients still queued: status, attempts, the due time against now, the last reply.
fn undelivered(relay: &Relay) -> String {
    let db = relay.db();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut stmt = db
        .prepare(
            "SELECT r.id, r.address, r.status, r.attempts, r.next_attempt_at - ?1, r.last_reply, m.source
             FROM recipients r JOIN messages m ON m.id = r.message_id
             WHERE r.status IN ('accepted', 'deferred') ORDER BY r.id LIMIT 20",
        )
        .expect("query");
    let rows = stmt
        .query_map([now], |r| {
            Ok(format!(
                "#{} {} {} attempts={} due_in_ms={} source={} last={:?}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .expect("rows");
    rows.filter_map(Result::ok).collect::<Vec<_>>().join("; ")
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.99) as usize).min(v.len() - 1)]
}

/// One submission session sending `body`s to `to` until told to stop; reconnects after errors.
async fn sender(
    addr: SocketAddr,
    key: String,
    jobs: async_channel::Receiver<(Instant, usize)>,
    load: Arc<Load>,
) {
    let from = format!("app@{SENDER_DOMAIN}");
    let mut session = None;
    while let Ok((offered, n)) = jobs.recv().await {
        let to = match n % 20 {
            0 | 1 => format!("gone-{n}@{BOUNCE_DOMAIN}"),
            2 => format!("bait-{n}@{FBL_DOMAIN}"),
            _ => format!("user-{n}@{RCPT_DOMAIN}"),
        };
        if session.is_none() {
            session = client::connect(addr, DID, &key).await.ok();
        }
        let Some(s) = session.as_mut() else {
            load.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let body = client::message(&from, &to, &format!("soak-{n}"), 1500);
        match client::send(s, &from, &[&to], &body).await {
            Ok(_) => {
                load.acked.fetch_add(1, Ordering::Relaxed);
                let ms = offered.elapsed().as_secs_f64() * 1000.0;
                load.window.lock().expect("lock").push(ms);
            }
            Err(_) => {
                load.refused.fetch_add(1, Ordering::Relaxed);
                session = None;
            }
        }
    }
}

/// Garbage on port 25 and broken `/v1/send` requests, from 127.0.0.2 (so the member's own
/// address is never throttled for them); each must get a coded answer.
async fn bad_input(inbound: SocketAddr, http: SocketAddr, load: Arc<Load>) {
    let client = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().expect("ip")))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    while !load.stop.load(Ordering::Relaxed) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("addr"))
            .expect("bind");
        if let Ok(mut s) = socket.connect(inbound).await {
            let _ = s
                .write_all(b"EHLO x\r\nMAIL FROM:<bad\r\nRCPT TO:<>\r\nDATA\r\nBDAT x\r\n\x00\xff\r\nQUIT\r\n")
                .await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.contains("\r\n5"),
                "garbage on port 25 got no 5xx: {text}"
            );
            load.bad_input_answers.fetch_add(1, Ordering::Relaxed);
        }
        for (auth, body) in [(true, "{\"from\": 1"), (false, "{}")] {
            let mut req = client.post(format!("http://{http}/v1/send")).body(body);
            if auth {
                req = req.header("X-Atmos-DID", DID).bearer_auth("not-a-key");
            }
            if let Ok(r) = req.send().await {
                let status = r.status().as_u16();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                assert!(
                    (400..500).contains(&status) && v["code"].is_string(),
                    "{status} {v}"
                );
                load.bad_input_answers.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One 10 s sample: (t s, RSS KiB, open fds, queued recipients, p99 accept ms, acked).
type Sample = (f64, u64, usize, i64, f64, usize);

#[test]
fn soak_keeps_memory_descriptors_and_latency_flat() {
    let seconds = soak_seconds();
    let sink = SmtpSink::start(&[]);
    let refusing = SmtpSink::start_at(
        "127.0.0.6",
        sink.port,
        &["-f", "rcpt", "-B", "550 5.1.1 no such user"],
    );
    let fbl = SmtpSink::start_at("127.0.0.7", sink.port, &[]);
    let mut lines = Vec::new();
    for (domain, ip) in [
        (RCPT_DOMAIN, "127.0.0.1"),
        (BOUNCE_DOMAIN, "127.0.0.6"),
        (FBL_DOMAIN, "127.0.0.7"),
    ] {
        lines.push(format!("mx-host={domain},mx.{domain},10"));
        lines.push(format!("host-record=mx.{domain},{ip}"));
    }
    let dns = Dns::start(&[RCPT_DOMAIN, BOUNCE_DOMAIN, FBL_DOMAIN], &lines);
    // Bounces (10 %) and complaints are part of the mix, not a reason to suspend the member.
    let rules_dir = tempfile::tempdir().expect("tempdir");
    let rules = rules_dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        DEFAULT_RULES
            .replace(
                "counters.bounced_24h * 100 > counters.recipients_24h * 5",
                "counters.bounced_24h * 100 > counters.recipients_24h * 90",
            )
            .replace(
                "counters.complaints_24h * 1000 > counters.recipients_24h",
                "counters.complaints_24h * 100 > counters.recipients_24h * 90",
            ),
    )
    .expect("rules");
    let mut relay = Relay::new(
        Some(&dns.address()),
        sink.port,
        &format!("[rules]\nfiles = [\"{}\"]\n", rules.display()),
    );
    let member = relay.add_member(DID, SENDER_DOMAIN, true);
    relay.trust(DID);
    let submission = relay.start();
    let (http, inbound) = (relay.http.expect("http"), relay.inbound.expect("inbound"));
    let pid = relay.pid().expect("pid");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let load = Arc::new(Load::default());

    // The maximum rate: eight sessions as fast as they go, 10 s.
    let (tx, rx) = async_channel::bounded::<(Instant, usize)>(64);
    let senders: Vec<_> = (0..8)
        .map(|_| {
            rt.spawn(sender(
                submission,
                member.api_key.clone(),
                rx.clone(),
                load.clone(),
            ))
        })
        .collect();
    let start = Instant::now();
    rt.block_on(async {
        let mut n = 0;
        while start.elapsed() < Duration::from_secs(10) {
            tx.send((Instant::now(), n)).await.expect("send");
            n += 1;
        }
    });
    let max_rate = load.acked.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    let rate = (max_rate / 2.0).max(1.0);
    let warm_acked = load.acked.load(Ordering::Relaxed);
    load.window.lock().expect("lock").clear();

    // Half that rate, open loop: each message is offered on schedule whether or not the last
    // one was answered, and its latency counts from when it was offered.
    let more: Vec<_> = (0..8)
        .map(|_| {
            rt.spawn(sender(
                submission,
                member.api_key.clone(),
                rx.clone(),
                load.clone(),
            ))
        })
        .collect();
    let bad = rt.spawn(bad_input(inbound, http, load.clone()));
    let soak_start = Instant::now();
    let offer = {
        let tx = tx.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut offered = 0usize;
            let base = 1_000_000;
            while soak_start.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                let due = (soak_start.elapsed().as_secs_f64() * rate) as usize;
                while offered < due {
                    // A full channel means the relay is behind: the message still counts as
                    // offered now, and waits.
                    let _ = tx.send((Instant::now(), base + offered)).await;
                    offered += 1;
                }
            }
            offered
        })
    };
    // Complaints about delivered bait, one every 2 s, and the samples every 10 s.
    let mut seen = HashSet::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = soak_start + SAMPLE;
    let mut next_complaint = soak_start + Duration::from_secs(2);
    let mut bait: Vec<(String, String, String)> = Vec::new();
    while soak_start.elapsed() < Duration::from_secs(seconds) {
        let now = Instant::now();
        if now >= next_complaint {
            next_complaint += Duration::from_secs(2);
            // A file smtp-sink is still writing may lack its envelope or headers: skip those.
            bait.extend(fbl.new_messages(&mut seen).into_iter().filter_map(|m| {
                let verp = mx::envelope_sender(&m);
                let rcpt = m
                    .lines()
                    .find_map(|l| l.strip_prefix("To: <"))
                    .and_then(|l| l.strip_suffix('>'))
                    .unwrap_or_default()
                    .to_string();
                (!verp.is_empty() && !rcpt.is_empty()).then_some((verp, rcpt, m))
            }));
            if let Some((verp, rcpt, original)) = bait.pop() {
                let report = mx::arf(&verp, &rcpt, &original);
                let v = mx::send(inbound, "fbl@provider.test", &[&verp], &report, false);
                assert_eq!(mx::code(&v["data"]), 250, "complaint refused: {v}");
                load.complaints.fetch_add(1, Ordering::Relaxed);
            }
        }
        if now >= next_sample {
            next_sample += SAMPLE;
            let window = std::mem::take(&mut *load.window.lock().expect("lock"));
            let queue = relay
                .count("SELECT COUNT(*) FROM recipients WHERE status IN ('accepted', 'deferred')");
            eprintln!(
                "sample t={:.0}s rss={} KiB fds={} queue={queue} accepted={}",
                soak_start.elapsed().as_secs_f64(),
                rss_kib(pid),
                fds(pid),
                load.acked.load(Ordering::Relaxed)
            );
            samples.push((
                soak_start.elapsed().as_secs_f64(),
                rss_kib(pid),
                fds(pid),
                queue,
                p99(window),
                load.acked.load(Ordering::Relaxed) - warm_acked,
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let offered = rt.block_on(offer).expect("offer");
    drop(tx);
    rx.close();
    load.stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for s in senders.into_iter().chain(more) {
            s.await.expect("sender");
        }
        bad.await.expect("bad input");
    });
    let dir = workspace_root().join("target/soak");
    std::fs::create_dir_all(&dir).expect("target/soak");
    let mut csv = String::from("t,rss_kib,fds,queue,p99_ms,sent\n");
    for (t, rss, fd, q, p, sent) in &samples {
        csv.push_str(&format!("{t:.0},{rss},{fd},{q},{p:.1},{sent}\n"));
    }
    std::fs::write(dir.join("samples.csv"), &csv).expect("csv");
    let plotted = std::process::Command::new(venv_python())
        .arg(workspace_root().join("tests/py/plot_soak.py"))
        .arg(dir.join("samples.csv"))
        .arg(dir.join("soak.png"))
        .status()
        .expect("plot");
    assert!(plotted.success(), "plotting failed");

    // What was queued at the end drains at the delivery rate: allow for it.
    let left =
        relay.count("SELECT COUNT(*) FROM recipients WHERE status IN ('accepted', 'deferred')");
    let drain_start = Instant::now();
    let deadline = Duration::from_secs(180 + left as u64 / 50);
    while relay.count("SELECT COUNT(*) FROM recipients WHERE status IN ('accepted', 'deferred')")
        > 0
    {
        // On a timeout, say what is stuck: a flake here must be diagnosable from CI's log.
        assert!(
            drain_start.elapsed() < deadline,
            "the queue did not drain in {deadline:?}; left: {}",
            undelivered(&relay)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained_in = drain_start.elapsed();
    let (rss_end, fds_end) = (rss_kib(pid), fds(pid));
    eprintln!("{left} recipients queued when the load stopped, drained in {drained_in:?}");

    let acked = load.acked.load(Ordering::Relaxed) - warm_acked;
    eprintln!(
        "soak {seconds}s: max {max_rate:.0} msgs/s, offered {rate:.0}/s ({offered} messages), {acked} accepted, {} refused, {} complaints, {} bad inputs answered; end RSS {rss_end} KiB, fds {fds_end}\n{csv}",
        load.refused.load(Ordering::Relaxed),
        load.complaints.load(Ordering::Relaxed),
        load.bad_input_answers.load(Ordering::Relaxed),
    );
    // The first 5 minutes (or the first third of a short run) are the warm-up.
    let warm = samples
        .iter()
        .position(|s| s.0 >= (seconds as f64 / 3.0).min(300.0))
        .expect("a sample after the warm-up");
    let after = &samples[warm..];
    let (rss0, fds0) = (after[0].1, after[0].2);
    // Drift is a trend, not one slow window: the median p99 of the later half of the windows
    // against that of the earlier half. (A single 250 ms window at the very end, on a box with a
    // fuzzer on the other core, failed the last-window-only check.)
    let median = |w: &[Sample]| {
        let mut v: Vec<f64> = w.iter().map(|s| s.4).collect();
        v.sort_by(f64::total_cmp);
        // The lower median: with two windows, one slow window is not a trend.
        v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
    };
    let (early, late) = after.split_at(after.len() / 2);
    let (p990, p99_last) = (median(early), median(late));
    let rss_max = after.iter().map(|s| s.1).max().unwrap_or(0);
    let fds_max = after.iter().map(|s| s.2).max().unwrap_or(0);
    // Delivery keeps up: the queue after the warm-up stays within 30 s of offered mail.
    let queue_max = after.iter().map(|s| s.3).max().unwrap_or(0);
    assert!(
        (queue_max as f64) <= rate * 30.0 + 100.0,
        "the queue grew to {queue_max} recipients (offered {rate:.0}/s)"
    );
    // Sessions come and go (16 senders, bad input, reports): a leak grows past them.
    assert!(
        fds_max <= fds0 + 32,
        "descriptors grew from {fds0} to {fds_max}"
    );
    let allowed = if seconds >= 1800 { 1.10 } else { 1.25 };
    assert!(
        rss_max as f64 <= rss0 as f64 * allowed,
        "RSS grew from {rss0} KiB to {rss_max} KiB after the warm-up"
    );
    assert!(
        p99_last <= p990 * 3.0 + 50.0,
        "p99 drifted from a median {p990:.1} ms to {p99_last:.1} ms"
    );
    assert!(
        acked as f64 >= offered as f64 * 0.95,
        "{acked} of {offered} offered messages accepted"
    );
    assert!(
        load.complaints.load(Ordering::Relaxed) > 0
            && load.bad_input_answers.load(Ordering::Relaxed) > 0
    );
    drop(refusing);
}
