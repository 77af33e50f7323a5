//! The `atmos` binary under test: config in a temp dir, started as a real process.

use crate::poll_until;
use rustix::process::{Pid, Signal, kill_process};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A member created with `atmos member add`.
#[derive(Debug, Clone)]
pub struct TestMember {
    pub did: String,
    pub api_key: String,
    pub domain: String,
}

/// Path of the `atmos` binary built by this workspace (`TEST_ATMOS_BIN` names another, e.g. an
/// older build, to show that a test fails without a fix).
pub fn atmos_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TEST_ATMOS_BIN") {
        return PathBuf::from(bin);
    }
    // Set by cargo for tests of the package that owns the binary (tests/e2e): the build that
    // cargo just made, so a test never drives a stale `atmos`.
    if let Some(bin) = std::env::var_os("CARGO_BIN_EXE_atmos") {
        return PathBuf::from(bin);
    }
    // The load tools (tests/src/bin), run outside cargo test: the workspace's last build.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join("atmos");
    assert!(
        path.exists(),
        "{} missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// A relay instance: its config file and data dir, and its process when running.
pub struct Relay {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Option<Child>,
    pub submission: Option<SocketAddr>,
    /// The HTTP listener of the running relay.
    pub http: Option<SocketAddr>,
    /// The inbound MX listener of the running relay.
    pub inbound: Option<SocketAddr>,
    /// Extra environment for `serve` (e.g. `ATMOS_SMTP_IDLE_TIMEOUT`).
    pub env: Vec<(String, String)>,
    starts: u32,
    /// API keys handed out by `member add`: no log may ever contain one.
    keys: std::sync::Mutex<Vec<String>>,
}

impl Relay {
    /// Writes a config with test defaults plus `extra` TOML (sections appended verbatim).
    pub fn new(nameserver: Option<&str>, mx_port: u16, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = nameserver.map(|n| format!("\"{n}\"")).unwrap_or_default();
        let config = format!(
            r#"[server]
hostname = "relay.test"
operator_domain = "operator.test"
data_dir = "{data}"
shutdown_deadline = "10s"
[smtp]
submission_listen = "127.0.0.1:0"
inbound_listen = "127.0.0.1:0"
max_message_size = 65536
max_recipients = 5
[http]
listen = "127.0.0.1:0"
[limits]
hourly = 1000000
daily = 1000000
global_per_minute = 0
[dns]
nameservers = [{ns}]
[delivery]
mx_port = {mx_port}
retry_base = "1s"
retry_max = "2s"
connect_timeout = "5s"
allow_private_destinations = true
{extra}
"#,
            data = dir.path().join("data").display(),
        );
        let config_path = dir.path().join("atmos.toml");
        std::fs::write(&config_path, config).expect("write config");
        Self {
            dir,
            config_path,
            child: None,
            submission: None,
            http: None,
            inbound: None,
            env: Vec::new(),
            starts: 0,
            keys: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Secrets this relay was given or handed out: API keys, their bcrypt hashes, the admin
    /// token and the key-encryption key.
    fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.keys.lock().map(|k| k.clone()).unwrap_or_default();
        out.extend(
            self.env
                .iter()
                .filter(|(k, _)| k == "ADMIN_TOKEN" || k == "ATMOS_KEY_ENCRYPTION_KEY")
                .map(|(_, v)| v.clone()),
        );
        let db = self.dir.path().join("data").join("atmos.sqlite");
        if let Ok(c) =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            && let Ok(mut stmt) = c.prepare("SELECT api_key_hash FROM members")
            && let Ok(rows) = stmt.query_map([], |r| r.get::<_, String>(0))
        {
            out.extend(rows.flatten());
        }
        if let Ok(kek) = std::fs::read(self.dir.path().join("data").join("kek")) {
            use base64::Engine;
            out.push(base64::engine::general_purpose::STANDARD.encode(&kek));
            out.push(kek.iter().map(|b| format!("{b:02x}")).collect());
        }
        out.retain(|s| s.len() >= 16);
        out
    }

    /// Every log of this relay, checked for secrets: none may appear, nor private key material.
    pub fn assert_logs_hold_no_secrets(&self) {
        let secrets = self.secrets();
        for n in 1..=self.starts {
            let log = self.log(n);
            for s in &secrets {
                assert!(
                    !log.contains(s.as_str()),
                    "a secret appears in relay log {n}"
                );
            }
            assert!(
                !log.contains("PRIVATE KEY"),
                "private key material in relay log {n}"
            );
        }
    }

    /// Runs `atmos <args> --config <file>` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(atmos_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("ATMOS_LOG")
            .output()
            .expect("run atmos")
    }

    /// Runs a command that prints JSON with `dns_records`; returns them.
    pub fn dns_records(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        v["dns_records"].as_array().cloned().unwrap_or_default()
    }

    /// Gives a member the `highly_trusted` label (no warming caps).
    pub fn trust(&self, did: &str) {
        let out = self.cli(&["member", "label", did, "--add", "highly_trusted"]);
        assert!(
            out.status.success(),
            "label: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds a member with `domain` (approved when `approve`).
    pub fn add_member(&self, did: &str, domain: &str, approve: bool) -> TestMember {
        self.add_member_with_records(did, domain, approve).0
    }

    /// Adds a member and also returns the DNS records `member add` printed.
    pub fn add_member_with_records(
        &self,
        did: &str,
        domain: &str,
        approve: bool,
    ) -> (TestMember, Vec<serde_json::Value>) {
        let mut args = vec!["member", "add", "--did", did, "--domain", domain];
        if approve {
            args.push("--approve");
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "member add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("member add prints JSON");
        let member = TestMember {
            did: did.into(),
            api_key: v["api_key"].as_str().expect("api_key").into(),
            domain: domain.into(),
        };
        if let Ok(mut keys) = self.keys.lock() {
            keys.push(member.api_key.clone());
        }
        (
            member,
            v["dns_records"].as_array().cloned().unwrap_or_default(),
        )
    }

    /// Starts `atmos serve` and waits for its listening line.
    pub fn start(&mut self) -> SocketAddr {
        assert!(self.child.is_none(), "relay already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("log file");
        let mut child = Command::new(atmos_bin())
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("ATMOS_LOG", "info,atmos_relay=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start atmos serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("relay did not start; log:\n{}", self.log(self.starts)));
        let v: serde_json::Value = serde_json::from_str(&line).expect("listening JSON");
        let addr: SocketAddr = v["listening"]["submission"]
            .as_str()
            .expect("submission")
            .parse()
            .expect("address");
        self.submission = Some(addr);
        self.http = v["listening"]["http"].as_str().and_then(|a| a.parse().ok());
        self.inbound = v["listening"]["inbound"]
            .as_str()
            .and_then(|a| a.parse().ok());
        addr
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.dir.path().join(format!("relay-{n}.log"))
    }

    /// The log of the n-th start.
    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    /// The value of one series on `/metrics` (`name{labels}` exactly as rendered); `None`: absent.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let http = self.http?;
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://{http}/metrics")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The log of the n-th start without its ANSI colour sequences (`ESC [ ... m`), for parsing.
    pub fn plain_log(&self, n: u32) -> String {
        let text = self.log(n);
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running relay's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// How the relay ended, if it has (`None`: still running).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait for the exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = kill_process(Pid::from_child(&c), Signal::TERM);
        let status = poll_until(
            Duration::from_secs(60),
            "relay to exit after SIGTERM",
            || c.try_wait().ok().flatten(),
        );
        status.code()
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        self.signal(Signal::TERM);
    }

    /// Sends `signal` (SIGHUP: reload) to the running relay.
    pub fn signal(&self, signal: Signal) {
        if let Some(c) = &self.child {
            let _ = kill_process(Pid::from_child(c), signal);
        }
    }

    /// Waits for the process to exit after a signal.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let status = poll_until(Duration::from_secs(60), "relay to exit", || {
            c.try_wait().ok().flatten()
        });
        status.code()
    }

    /// The SQLite database, opened read-only.
    pub fn db(&self) -> rusqlite::Connection {
        let path = self.dir.path().join("data").join("atmos.sqlite");
        let c = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open db");
        c.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        c
    }

    /// Statuses of all recipients of a message id.
    pub fn statuses(&self, message_id: &str) -> Vec<String> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT status FROM recipients WHERE message_id = ?1 ORDER BY id")
            .expect("prepare");
        stmt.query_map([message_id], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    }

    /// Count of rows matching a SQL count query.
    pub fn count(&self, sql: &str) -> i64 {
        self.db()
            .query_row(sql, [], |r| r.get(0))
            .expect("count query")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file path.
    pub fn config(&self) -> &Path {
        &self.config_path
    }

    /// Rewrites the config file (before [`Relay::start`]), e.g. to move a listener.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).expect("read config");
        std::fs::write(&self.config_path, edit(text)).expect("write config");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if std::thread::panicking() && self.starts > 0 {
            eprintln!("--- relay log (last start) ---\n{}", self.log(self.starts));
        }
        self.kill();
        // Every end-to-end test is also a check that nothing secret reached a log.
        if !std::thread::panicking() {
            self.assert_logs_hold_no_secrets();
        }
    }
}
