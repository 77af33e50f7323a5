//! A person in a browser: Debian's chromium driven by npm `playwright-core` (tests/node), never
//! a downloaded browser. [`Wizard`] runs a script of `tests/node/` (`enroll.mjs` unless told)
//! and talks to it line by line.

use crate::workspace_root;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where a test's screenshots go (under `target/screenshots/`, not committed).
pub fn screenshots(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/screenshots").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Panics with install instructions when chromium or playwright-core is missing.
pub fn require_browser() {
    crate::require_program("/usr/bin/chromium", "apt-get install chromium");
    assert!(
        workspace_root()
            .join("tests/node/node_modules/playwright-core")
            .exists(),
        "playwright-core missing: run tests/install-peers"
    );
}

/// A walk through pages in a browser, driven by a script of `tests/node/`.
pub struct Wizard {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Wizard {
    /// Starts the enrollment wizard on `args` (see tests/node/enroll.mjs).
    pub fn start(args: &Value) -> Self {
        Self::script("enroll.mjs", args)
    }

    /// Starts `tests/node/<script>` on `args`.
    pub fn script(script: &str, args: &Value) -> Self {
        require_browser();
        let mut child = Command::new("node")
            .arg(workspace_root().join("tests/node").join(script))
            .arg(args.to_string())
            .current_dir(workspace_root().join("tests/node"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node enroll.mjs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next step the browser reports (panics on its error report or after `timeout`).
    pub fn step(&self, timeout: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("the browser said nothing for {timeout:?}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_ne!(v["step"], "error", "the browser failed: {v}");
        v
    }

    /// Lets the browser go on.
    pub fn go(&mut self) {
        self.go_with(&serde_json::json!({ "go": true }));
    }

    /// Lets the browser go on, telling it `what`.
    pub fn go_with(&mut self, what: &Value) {
        writeln!(self.stdin, "{what}").expect("write to the browser");
        let _ = self.stdin.flush();
    }
}

impl Drop for Wizard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
