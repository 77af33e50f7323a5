//! Crash safety: what the relay acknowledged (250) is delivered, across SIGKILL and SIGTERM,
//! and from an online backup.
//! Each message carries `X-Test-Id`, and the MX (smtp-sink) is checked for every acknowledged one.

use atmos_tests::relay::Relay;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use atmos_tests::{client, poll_until};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who sends, and how much.
struct Load {
    addr: SocketAddr,
    did: String,
    key: String,
    sessions: usize,
    total: usize,
    prefix: &'static str,
}

/// Sends from `sessions` concurrent sessions until `total` are sent or `stop` is set; pushes each
/// acknowledged test id to `acked` and returns the errors seen.
async fn load(l: Load, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> Vec<String> {
    let Load {
        addr,
        did,
        key,
        sessions,
        total,
        prefix,
    } = l;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let (did, key, next, acked, stop) = (
            did.clone(),
            key.clone(),
            next.clone(),
            acked.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut s = match client::connect(addr, &did, &key).await {
                Ok(s) => s,
                Err(e) => return Some(e.to_string()),
            };
            let from = "app@sender.test".to_string();
            let to = format!("crash@{RCPT_DOMAIN}");
            loop {
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return None;
                }
                let id = format!("{prefix}-{n}");
                let body = client::message(&from, &to, &id, 1024);
                match client::send(&mut s, &from, &[&to], &body).await {
                    Ok(_) => acked.lock().expect("lock").push(id),
                    Err(e) => return Some(e.to_string()),
                }
            }
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Ok(Some(e)) = t.await {
            errors.push(e);
        }
    }
    errors
}

/// Load that goes on in the background until `stop` is set, once `min` messages are
/// acknowledged: (acknowledged ids so far, the stop switch, the thread with its errors).
type Background = (
    Arc<Mutex<Vec<String>>>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<Vec<String>>,
);

fn background_load(world: &World, sessions: usize, prefix: &'static str, min: usize) -> Background {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let l = Load {
        addr: world.submission,
        did: world.member.did.clone(),
        key: world.member.api_key.clone(),
        sessions,
        total: 100_000,
        prefix,
    };
    let (a, s) = (acked.clone(), stop.clone());
    let loader = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(load(l, a, s))
    });
    poll_until(
        Duration::from_secs(60),
        "some messages acknowledged under load",
        || (acked.lock().expect("lock").len() >= min).then_some(()),
    );
    (acked, stop, loader)
}

fn assert_all_delivered(world: &World, acked: &[String]) {
    poll_until(
        Duration::from_secs(90),
        "every acknowledged message at the MX",
        || {
            let delivered: std::collections::HashSet<String> = world
                .sink
                .messages()
                .iter()
                .filter_map(|m| {
                    m.lines()
                        .find_map(|l| l.strip_prefix("X-Test-Id: ").map(|s| s.trim().to_string()))
                })
                .collect();
            acked.iter().all(|id| delivered.contains(id)).then_some(())
        },
    );
}

#[test]
fn sigkill_after_acknowledgement_loses_nothing() {
    // The MX is down: everything acknowledged sits in the queue when the relay is killed.
    let mut world = World::start(None, "");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let l = Load {
        addr: world.submission,
        did: world.member.did.clone(),
        key: world.member.api_key.clone(),
        sessions: 6,
        total: 60,
        prefix: "kill",
    };
    let errors = rt.block_on(load(l, acked.clone(), Arc::new(AtomicBool::new(false))));
    assert!(errors.is_empty(), "submission errors: {errors:?}");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 50, "only {} acknowledged", acked.len());

    world.relay.kill();
    world.relay.start();
    world.sink.restart(&[]);
    assert_all_delivered(&world, &acked);
}

#[test]
fn graceful_restart_under_load_loses_nothing() {
    let mut world = World::start(Some(&[]), "");
    let (acked, stop, loader) = background_load(&world, 8, "term", 40);
    world.relay.signal_term();
    let code = world.relay.wait_exit();
    stop.store(true, Ordering::Relaxed);
    let errors = loader.join().expect("loader thread");
    assert_eq!(code, Some(0), "clean exit after SIGTERM");
    // Sessions were closed by the shutdown, with 421 where a command was waiting.
    assert!(
        !errors.is_empty(),
        "the load must have been cut off by the shutdown"
    );
    let acked = acked.lock().expect("lock").clone();
    world.relay.start();
    assert_all_delivered(&world, &acked);
}

#[test]
fn an_online_backup_restores_everything_acknowledged_before_it() {
    // The MX is down: what is acknowledged stays queued, in the store the backup copies.
    let mut world = World::start(None, "");
    let (acked, stop, loader) = background_load(&world, 4, "backup", 30);
    // Taken while submissions go on.
    let before = acked.lock().expect("lock").clone();
    let dest = world.relay.dir.path().join("backup");
    let out = world
        .relay
        .cli(&["backup", dest.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup JSON");
    let files: Vec<&str> = report["files"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["file"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(files, ["atmos.sqlite", "labeler.sqlite", "kek"], "{report}");
    // A used destination is refused.
    let again = world
        .relay
        .cli(&["backup", dest.to_str().expect("utf-8 path")]);
    assert!(!again.status.success());
    stop.store(true, Ordering::Relaxed);
    let errors = loader.join().expect("loader thread");
    assert!(errors.is_empty(), "submission errors: {errors:?}");
    world.relay.kill();

    // A fresh relay on the restored files delivers what was acknowledged before the copy.
    let mut restored = Relay::new(Some(&world.dns.address()), world.sink.port, "");
    let data = restored.data_dir();
    std::fs::create_dir_all(&data).expect("data dir");
    for f in &files {
        std::fs::copy(dest.join(f), data.join(f)).expect("restore");
    }
    restored.start();
    world.sink.restart(&[]);
    assert_all_delivered(&world, &before);
}
