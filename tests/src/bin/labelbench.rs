//! subscribeLabels fan-out benchmark: SUBSCRIBERS WebSocket clients on a running relay, LABELS
//! labels published through the admin API, events/s delivered live; then the same number of
//! clients replaying everything from cursor 0 at once. Prints JSON. See docs/benchmarks.md.

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// The relay's HTTP listener (`host:port`).
    #[arg(long)]
    http: String,
    /// `ADMIN_TOKEN` of the relay.
    #[arg(long, env = "ADMIN_TOKEN")]
    token: String,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    #[arg(long, default_value_t = 2000)]
    labels: usize,
    /// Admin requests in flight while publishing.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Only the replay from cursor 0, against any labeler already holding `labels` labels (the
    /// peer labeler of tests/bench/labeler_peer.sh, which has no admin API to publish through).
    #[arg(long)]
    replay_only: bool,
}

/// Connects `n` subscribers; each counts frames until it has `want`. Returns when all connected.
async fn subscribers(
    url: &str,
    n: usize,
    want: usize,
) -> Result<(
    Vec<tokio::task::JoinHandle<Result<Instant>>>,
    Arc<AtomicUsize>,
)> {
    let received = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connect {url}"))?;
        let received = received.clone();
        handles.push(tokio::spawn(async move {
            let mut got = 0;
            while got < want {
                match ws.next().await {
                    Some(Ok(Message::Binary(_))) => {
                        got += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("subscriber: {e}"),
                    None => bail!("subscriber closed after {got} frames"),
                }
            }
            Ok(Instant::now())
        }));
    }
    Ok((handles, received))
}

async fn finish(handles: Vec<tokio::task::JoinHandle<Result<Instant>>>) -> Result<Instant> {
    let mut last = None;
    for h in handles {
        let t = h.await??;
        last = Some(last.map_or(t, |l: Instant| l.max(t)));
    }
    last.context("no subscribers")
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let ws_base = format!("ws://{}/xrpc/com.atproto.label.subscribeLabels", a.http);
    if a.replay_only {
        let (replay_events_per_s, replay_seconds) = replay(&ws_base, &a).await?;
        println!(
            "{}",
            serde_json::json!({
                "subscribers": a.subscribers,
                "labels": a.labels,
                "replay_events_per_s": replay_events_per_s,
                "replay_seconds": replay_seconds,
            })
        );
        return Ok(());
    }
    let client = reqwest::Client::new();
    let before: serde_json::Value = client
        .get(format!(
            "http://{}/xrpc/com.atproto.label.queryLabels?uriPatterns=*&limit=1",
            a.http
        ))
        .send()
        .await?
        .json()
        .await?;
    if before["labels"].as_array().is_some_and(|l| !l.is_empty()) {
        bail!("the relay must start with no labels");
    }

    // Live fan-out.
    let (handles, _) = subscribers(&ws_base, a.subscribers, a.labels).await?;
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut emitters = Vec::new();
    for _ in 0..a.concurrency {
        let (client, next, http, token, total) = (
            client.clone(),
            next.clone(),
            a.http.clone(),
            a.token.clone(),
            a.labels,
        );
        emitters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let res = client
                    .post(format!("http://{http}/admin/labeler/labels"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({
                        "uri": format!("did:plc:bench{i:019}"),
                        "val": "clean-sender",
                        "reason": "benchmark",
                    }))
                    .send()
                    .await?;
                if !res.status().is_success() {
                    bail!("emit: HTTP {}", res.status());
                }
            }
        }));
    }
    for e in emitters {
        e.await??;
    }
    let published = start.elapsed();
    let live_done = finish(handles).await?.duration_since(start);

    let (replay_events_per_s, replay_seconds) = replay(&ws_base, &a).await?;
    let events = (a.subscribers * a.labels) as f64;
    println!(
        "{}",
        serde_json::json!({
            "subscribers": a.subscribers,
            "labels": a.labels,
            "publish_labels_per_s": (a.labels as f64 / published.as_secs_f64()).round(),
            "live_events_per_s": (events / live_done.as_secs_f64()).round(),
            "live_seconds": live_done.as_secs_f64(),
            "replay_events_per_s": replay_events_per_s,
            "replay_seconds": replay_seconds,
        })
    );
    Ok(())
}

/// Replay fan-out: every subscriber from cursor 0 at once; (events/s, seconds).
async fn replay(ws_base: &str, a: &Args) -> Result<(f64, f64)> {
    let start = Instant::now();
    let (handles, _) = subscribers(&format!("{ws_base}?cursor=0"), a.subscribers, a.labels).await?;
    let done = finish(handles).await?.duration_since(start).as_secs_f64();
    let events = (a.subscribers * a.labels) as f64;
    Ok(((events / done).round(), done))
}
