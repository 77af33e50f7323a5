//! Many sessions against one relay (issue 13 §4), sampling the relay's memory (`--pid`) every
//! 100 ms. Prints one JSON object. See docs/benchmarks.md.
//!
//! - `slow`: `--sessions` STARTTLS + AUTH sessions held open at once, each sending one message
//!   every `--interval-ms` for `--seconds`: peak RSS and memory per session.
//! - `idle`: `--sessions` plain TCP connections spread over `--sources` loopback addresses
//!   (127.1.x.y, so the per-client cap is met per address), each greeting read and the
//!   connection held for `--seconds`: how many got `220` and how many `421`, and RSS.

use anyhow::{Context, Result};
use atmos_tests::client;
use clap::{Parser, ValueEnum};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpSocket;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Slow,
    Idle,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long)]
    server: SocketAddr,
    /// The relay's process id, for its memory.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 500)]
    sessions: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    #[arg(long, default_value_t = 100)]
    sources: usize,
    #[arg(long, default_value = "")]
    user: String,
    #[arg(long, default_value = "")]
    password: String,
    #[arg(long, default_value = "app@sender.bench")]
    from: String,
    #[arg(long, default_value = "user@rcpt.test")]
    to: String,
}

/// A field of `/proc/<pid>/status` in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the relay's RSS every 100 ms into `peak` until the returned handle is aborted.
fn sample_rss(pid: u32, peak: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            peak.fetch_max(status_kb(pid, "VmRSS:"), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Arc::new(Args::parse());
    let baseline = status_kb(a.pid, "VmRSS:");
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = sample_rss(a.pid, peak.clone());
    let out = match a.mode {
        Mode::Slow => slow(a.clone()).await?,
        Mode::Idle => idle(a.clone()).await?,
    };
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    let mut out = out;
    out["rss_baseline_kb"] = baseline.into();
    out["rss_peak_kb"] = peak.into();
    // Per session the relay held: all of them when slow, the greeted ones when idle.
    let held = out["greeted_220"]
        .as_u64()
        .unwrap_or(a.sessions as u64)
        .max(1);
    out["rss_per_session_kb"] =
        (((peak.saturating_sub(baseline)) as f64 / held as f64 * 10.0).round() / 10.0).into();
    println!("{out}");
    Ok(())
}

async fn slow(a: Arc<Args>) -> Result<serde_json::Value> {
    // Connect everyone first (50 handshakes at a time), then all send slowly at once.
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    let connected = Arc::new(tokio::sync::Barrier::new(a.sessions + 1));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for s in 0..a.sessions {
        let (a, gate, connected, sent, failed) = (
            a.clone(),
            gate.clone(),
            connected.clone(),
            sent.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let session = {
                let _permit = gate.acquire().await;
                client::connect(a.server, &a.user, &a.password).await
            };
            connected.wait().await;
            let mut session = match session {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("session {s}: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            // Spread the sends over the interval so they do not all land at once.
            let interval = Duration::from_millis(a.interval_ms);
            tokio::time::sleep(interval * s as u32 / a.sessions as u32).await;
            let end = Instant::now() + Duration::from_secs(a.seconds);
            let mut n = 0;
            while Instant::now() < end {
                let body = client::message(&a.from, &a.to, &format!("slow-{s}-{n}"), 2048);
                match client::send(&mut session, &a.from, &[&a.to], &body).await {
                    Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("session {s}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                n += 1;
                tokio::time::sleep(interval).await;
            }
            let _ = session.quit().await;
        }));
    }
    let start = Instant::now();
    connected.wait().await;
    let connect_s = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await?;
    }
    Ok(serde_json::json!({
        "mode": "slow",
        "sessions": a.sessions,
        "connect_all_s": (connect_s * 100.0).round() / 100.0,
        "messages": sent.load(Ordering::Relaxed),
        "failed_sessions": failed.load(Ordering::Relaxed),
    }))
}

/// What one idle connection was greeted with.
enum Greeting {
    Ready(tokio::net::TcpStream),
    Busy,
    Other(String),
}

async fn open(source: IpAddr, server: SocketAddr) -> Result<Greeting> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await.context("connect")?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line))
        .await
        .context("no greeting in 30 s")??;
    Ok(if line.starts_with("220") {
        Greeting::Ready(reader.into_inner())
    } else if line.starts_with("421") {
        Greeting::Busy
    } else {
        Greeting::Other(line.trim_end().to_string())
    })
}

async fn idle(a: Arc<Args>) -> Result<serde_json::Value> {
    let source = |i: usize| {
        let n = i % a.sources;
        IpAddr::V4(Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8))
    };
    let start = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for i in 0..a.sessions {
        let (gate, server, src) = (gate.clone(), a.server, source(i));
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            open(src, server).await
        }));
    }
    let (mut held, mut busy, mut other, mut errors) = (Vec::new(), 0, Vec::new(), 0);
    for t in tasks {
        match t.await? {
            Ok(Greeting::Ready(s)) => held.push(s),
            Ok(Greeting::Busy) => busy += 1,
            Ok(Greeting::Other(l)) => other.push(l),
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("idle: {e:#}");
                }
            }
        }
    }
    let open_s = start.elapsed().as_secs_f64();
    // While full, a newcomer from a fresh address is refused too; once some leave, it is not.
    let fresh = IpAddr::V4(Ipv4Addr::new(127, 2, 0, 1));
    let while_full = matches!(open(fresh, a.server).await?, Greeting::Busy);
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let ready = held.len();
    held.truncate(ready.saturating_sub(10));
    let fresh2 = IpAddr::V4(Ipv4Addr::new(127, 2, 0, 2));
    let mut after = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Greeting::Ready(s) = open(fresh2, a.server).await? {
            after = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(serde_json::json!({
        "mode": "idle",
        "sessions": a.sessions,
        "sources": a.sources,
        "open_all_s": (open_s * 100.0).round() / 100.0,
        "greeted_220": ready,
        "refused_421": busy,
        "other": other.len(),
        "other_first": other.first(),
        "errors": errors,
        "newcomer_refused_while_full": while_full,
        "newcomer_served_after_10_left": after.is_some(),
    }))
}
