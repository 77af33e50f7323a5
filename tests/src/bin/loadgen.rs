//! SMTP load generator: N concurrent STARTTLS + AUTH sessions sending M messages in all.
//! Drives atmos and the Postfix baseline with the same code so their figures compare.
//!
//! Prints one JSON object: messages, errors, seconds, msgs_per_sec, p50_ms, p99_ms.

use atmos_tests::client;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    server: SocketAddr,
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    #[arg(long, default_value_t = 2048)]
    size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..args.sessions {
        let (args, next, errors) = (args.clone(), next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut session = match client::connect(args.server, &args.user, &args.password).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("session {s}: connect failed: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                    return latencies;
                }
            };
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= args.messages {
                    break;
                }
                let body = client::message(&args.from, &args.to, &format!("load-{n}"), args.size);
                let t = Instant::now();
                match client::send(&mut session, &args.from, &[&args.to], &body).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("session {s}: send failed: {e}");
                        break;
                    }
                }
            }
            let _ = session.quit().await;
            latencies
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        serde_json::json!({
            "messages": all.len(),
            "errors": errors.load(Ordering::Relaxed),
            "seconds": (secs * 1000.0).round() / 1000.0,
            "msgs_per_sec": ((all.len() as f64 / secs) * 10.0).round() / 10.0,
            "p50_ms": (pct(0.50) * 100.0).round() / 100.0,
            "p99_ms": (pct(0.99) * 100.0).round() / 100.0,
        })
    );
    Ok(())
}
