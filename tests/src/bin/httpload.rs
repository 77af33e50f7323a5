//! Open-loop load on `POST /v1/send` (issue 13 §3): requests are sent at a constant `--rate`,
//! whatever the answers do, and each latency counts from when its request was due, so a stall
//! shows in the percentiles instead of slowing the load (no coordinated omission, unlike a
//! closed loop such as wrk's). At most `--connections` requests are in flight; one that is due
//! while all are busy waits, and its wait counts. Prints one JSON object.

use anyhow::Result;
use clap::Parser;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// `http://host:port/v1/send`
    #[arg(long)]
    url: String,
    #[arg(long)]
    did: String,
    #[arg(long)]
    key: String,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

/// The message of tests/bench/send.lua (~2 KiB of JSON), so wrk's and this load compare.
fn body() -> String {
    serde_json::json!({
        "from": "app@sender.bench",
        "to": "user@rcpt.test",
        "subject": "bench",
        "text": "The quick brown fox jumps over the lazy dog. ".repeat(40),
    })
    .to_string()
}

// One thread: the client shares the two cores with the relay, and a second runtime thread only
// added wake-ups between threads (client CPU per request 0.09-0.14 ms on two threads).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.connections)
        .tcp_nodelay(true)
        .build()?;
    // One copy for every request (a &'static str body is not copied per request).
    let body: &'static str = Box::leak(body().into_boxed_str());
    let url = reqwest::Url::parse(&a.url)?;
    let auth = format!("Bearer {}", a.key);
    let slots = Arc::new(tokio::sync::Semaphore::new(a.connections));
    let total = (a.rate * a.seconds as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, slots, body, url, did, auth) = (
            client.clone(),
            slots.clone(),
            body,
            url.clone(),
            a.did.clone(),
            auth.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let sent = client
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Atmos-DID", did)
                .header("Authorization", auth)
                .body(body)
                .send()
                .await;
            // Read to its end so the connection always returns to the pool (measured: the old
            // status-only client pooled too, so this changes no figure).
            let ok = match sent {
                Ok(r) => r.status().as_u16() == 200 && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (due.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (latency, ok) = t.await?;
        if ok {
            latencies.push(latency);
        } else {
            errors += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(0.0, |d| (d.as_secs_f64() * 1e5).round() / 100.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "offered_per_s": a.rate,
            "requests": total,
            "ok": latencies.len(),
            "errors": errors,
            "achieved_per_s": ((latencies.len() as f64 / elapsed) * 10.0).round() / 10.0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": pct(1.0),
        })
    );
    Ok(())
}
