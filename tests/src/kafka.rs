//! A Kafka-protocol broker for the event-bus tests: tansu (crates.io) with in-memory storage, and
//! an independent client (tests/py/kafka_tool.py on PyPI confluent-kafka).

use crate::peers::venv_python;
use crate::{free_port, poll_until, run_json, workspace_root};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running tansu broker on a loopback port.
pub struct Tansu {
    child: Child,
    pub port: u16,
}

/// The tansu binary, if installed (tests/install-peers builds it: `cargo install tansu`).
pub fn tansu_bin() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home.map(|h| h.join(".cargo/bin")));
    candidates.map(|d| d.join("tansu")).find(|p| p.exists())
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &std::path::Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// Requires the bridge executable `atmos` starts (`atmos-kafka-bridge`, beside it) to be built
/// from the sources as they are: cargo builds only the binaries of the test's own package, so
/// tests/run builds the bridge first and this refuses a stale one.
pub fn require_fresh_bridge() {
    let atmos = crate::relay::atmos_bin();
    let bridge = atmos.with_file_name("atmos-kafka-bridge");
    let built = std::fs::metadata(&bridge)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo build --workspace --bins`",
                bridge.display()
            )
        });
    let root = workspace_root();
    for sources in ["relay/src", "relay/kafka-bridge/src"] {
        assert!(
            newest(&root.join(sources)) <= built,
            "{} is older than {sources}: run `cargo build --workspace --bins` (tests/run does)",
            bridge.display()
        );
    }
}

impl Tansu {
    /// Starts a broker, or `None` (with the reason printed) when tansu is not installed. Under
    /// CI (`CI` set) a missing broker is a failure: CI must build it.
    pub fn start() -> Option<Self> {
        let Some(bin) = tansu_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "tansu is not installed, and CI must test against it (tests/install-peers builds it)"
            );
            eprintln!("SKIPPED: tansu is not installed (tests/install-peers builds it)");
            return None;
        };
        require_fresh_bridge();
        let port = free_port();
        let child = Self::spawn(&bin, port);
        poll_until(Duration::from_secs(20), "tansu to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(Self { child, port })
    }

    /// Kills the broker (SIGKILL: its in-memory topics go with it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fresh broker on the same port, after [`Tansu::kill`].
    pub fn restart(&mut self) {
        let bin = tansu_bin().expect("tansu");
        self.child = Self::spawn(&bin, self.port);
        poll_until(Duration::from_secs(20), "tansu to listen again", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    fn spawn(bin: &std::path::Path, port: u16) -> Child {
        let url = format!("tcp://127.0.0.1:{port}");
        Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu")
    }

    /// `127.0.0.1:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every message of a topic's partition 0, parsed as JSON.
    pub fn read(&self, topic: &str) -> Vec<Value> {
        let v = run_json(self.tool().args(["read", topic]));
        v.as_array().cloned().unwrap_or_default()
    }

    /// Produces one JSON message.
    pub fn write(&self, topic: &str, value: &Value) {
        run_json(self.tool().args(["write", topic, &value.to_string()]));
    }

    fn tool(&self) -> Command {
        let mut c = Command::new(venv_python());
        c.arg(workspace_root().join("tests/py/kafka_tool.py"))
            .arg(self.address());
        c
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
