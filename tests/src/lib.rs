//! Harness for end-to-end tests: starts real peers (Postfix's smtp-sink, dnsmasq) and the `atmos`
//! binary on loopback with ephemeral ports and temp dirs, and polls with deadlines.
//!
//! Every process is killed when its handle drops, so tests run in parallel without leftovers.

pub mod atproto;
pub mod browser;
pub mod client;
pub mod http;
pub mod kafka;
pub mod labeler;
pub mod mx;
pub mod peers;
pub mod rawmx;
pub mod relay;
pub mod setup;

use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some` or `deadline` passes (then panics with `what`).
pub fn poll_until<T>(deadline: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback TCP port (for peers that must be told their port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A free loopback port usable for both UDP and TCP (DNS).
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..50 {
        let port = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP+TCP port");
}

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Panics with a clear message when a required peer program is missing.
pub fn require_program(path: &str, install_hint: &str) {
    if !std::path::Path::new(path).exists() && which(path).is_none() {
        panic!("{path} is not installed; {install_hint} (tests/install-peers does this)");
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Runs `cmd`, requires success (showing its stderr if not) and parses its stdout as JSON.
pub fn run_json(cmd: &mut std::process::Command) -> serde_json::Value {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
