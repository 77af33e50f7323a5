//! Helpers for the labeler tests: XRPC and admin calls with curl, and the independent Python
//! label client (`tests/py/labels.py`: ecdsa + cbor2 + websockets).

use crate::http::curl;
use crate::peers::venv_python;
use crate::poll_until;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The admin token the labeler tests give the relay.
pub const ADMIN_TOKEN: &str = "labeler-test-admin-token-0123456789";

/// `http://addr`.
pub fn base(http: SocketAddr) -> String {
    format!("http://{http}")
}

/// `queryLabels` with a raw query string; returns (status, body).
pub fn query(http: SocketAddr, q: &str) -> (u16, Value) {
    let (status, body, _) = curl(
        "GET",
        &format!("{}/xrpc/com.atproto.label.queryLabels?{q}", base(http)),
        &[],
        None,
    );
    (status, body)
}

/// Whether (`uri`, `val`) stands now according to `queryLabels` (its newest label is not a
/// negation); `None` when no label was ever published for it.
pub fn standing(http: SocketAddr, uri: &str, val: &str) -> Option<bool> {
    let (status, body) = query(http, &format!("uriPatterns={uri}&limit=250"));
    assert_eq!(status, 200, "{body}");
    body["labels"]
        .as_array()?
        .iter()
        .rev()
        .find(|l| l["val"] == val)
        .map(|l| l["neg"] != true)
}

/// Waits until (`uri`, `val`) stands (`want` true) or is negated (`want` false).
pub fn wait_standing(http: SocketAddr, uri: &str, val: &str, want: bool, deadline: Duration) {
    let what = format!(
        "{val} on {uri} to be {}",
        if want { "published" } else { "negated" }
    );
    poll_until(deadline, &what, || {
        (standing(http, uri, val) == Some(want)).then_some(())
    });
}

/// Admin: publishes a label (or a negation) with a reason.
pub fn emit(http: SocketAddr, uri: &str, val: &str, neg: bool, reason: &str) -> (u16, Value) {
    let body = serde_json::json!({ "uri": uri, "val": val, "neg": neg, "reason": reason });
    let (status, body, _) = curl(
        "POST",
        &format!("{}/admin/labeler/labels", base(http)),
        &[format!("Authorization: Bearer {ADMIN_TOKEN}")],
        Some(body.to_string().as_bytes()),
    );
    (status, body)
}

/// Admin: re-verify `did` now.
pub fn force_verify(http: SocketAddr, did: &str) {
    let (status, body, _) = curl(
        "POST",
        &format!("{}/admin/labeler/verify/{did}", base(http)),
        &[format!("Authorization: Bearer {ADMIN_TOKEN}")],
        None,
    );
    assert_eq!(status, 200, "{body}");
}

/// Runs `labels.py verify` against the relay: the independent signature check.
pub fn verify_independently(http: SocketAddr) -> Value {
    crate::run_json(
        Command::new(venv_python())
            .arg(crate::workspace_root().join("tests/py/labels.py"))
            .args(["verify", &base(http)]),
    )
}

/// A `subscribeLabels` client in Python, writing each frame as a JSON line.
pub struct Subscriber {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Subscriber {
    /// Subscribes from `cursor` (`None`: live only) and stops after `count` frames.
    pub fn start(http: SocketAddr, cursor: Option<i64>, count: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("frames.jsonl");
        let cursor = cursor.map_or("-".to_string(), |c| c.to_string());
        let child = Command::new(venv_python())
            .arg(crate::workspace_root().join("tests/py/labels.py"))
            .args(["subscribe", &base(http), &cursor, &count.to_string()])
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("run labels.py subscribe");
        let s = Self {
            child,
            out,
            _dir: dir,
        };
        poll_until(Duration::from_secs(15), "the subscriber to connect", || {
            s.lines()
                .first()
                .filter(|l| l["connected"] == true)
                .map(|_| ())
        });
        s
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Frames received so far (without the `connected` marker).
    pub fn frames(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l.get("header").is_some())
            .collect()
    }

    /// Waits until at least `n` frames have arrived; returns them.
    pub fn wait_frames(&self, n: usize, deadline: Duration) -> Vec<Value> {
        poll_until(deadline, &format!("{n} label frames"), || {
            let f = self.frames();
            (f.len() >= n).then_some(f)
        })
    }

    /// Whether the server closed the socket.
    pub fn closed(&self) -> bool {
        self.lines().iter().any(|l| l["closed"] == true)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
