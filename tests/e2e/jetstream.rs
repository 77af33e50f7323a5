//! Attestations from Jetstream. No Jetstream server can run here (it needs the public
//! firehose), so `tests/py/jetstream_server.py` speaks the v1 JSON protocol in its place and
//! feeds create and delete events; the cursor is persisted and resumed after a restart.

use atmos_tests::labeler::{ADMIN_TOKEN, standing, wait_standing};
use atmos_tests::peers::{Dns, venv_python};
use atmos_tests::relay::Relay;
use atmos_tests::setup::{DID, SENDER_DOMAIN};
use atmos_tests::{free_port, free_udp_tcp_port, poll_until};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Jetstream {
    child: Child,
    port: u16,
    events: std::path::PathBuf,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Jetstream {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (events, log) = (
            dir.path().join("events.jsonl"),
            dir.path().join("connections.log"),
        );
        let port = free_port();
        let child = Command::new(venv_python())
            .arg(atmos_tests::workspace_root().join("tests/py/jetstream_server.py"))
            .arg(port.to_string())
            .arg(&events)
            .arg(&log)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the test Jetstream server");
        poll_until(Duration::from_secs(15), "the Jetstream server", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self {
            child,
            port,
            events,
            log,
            _dir: dir,
        }
    }

    fn send(&self, event: serde_json::Value) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.events)
            .expect("events file");
        writeln!(f, "{event}").expect("append event");
    }

    fn connections(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Jetstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn commit(
    time_us: i64,
    operation: &str,
    rkey: &str,
    record: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut commit = serde_json::json!({
        "rev": "3lbvnxh2ouk2a",
        "operation": operation,
        "collection": "email.atmos.attestation",
        "rkey": rkey,
    });
    if let Some(r) = record {
        commit["record"] = r;
        commit["cid"] = "bafyreidwaivazkwu67xztlmuobx35hs2lnfh3kolmgfmucldvhd3sgzcqi".into();
    }
    serde_json::json!({ "did": DID, "time_us": time_us, "kind": "commit", "commit": commit })
}

#[test]
fn attestations_from_jetstream_grant_and_withdraw_labels_and_the_cursor_survives_restart() {
    let jetstream = Jetstream::start();
    let dns_port = free_udp_tcp_port();
    let mut relay = Relay::new(
        Some(&format!("127.0.0.1:{dns_port}")),
        25,
        &format!(
            "[labeler]\nretry_base = \"1s\"\nretry_max = \"5s\"\njetstream_url = \"ws://127.0.0.1:{}/subscribe\"\n",
            jetstream.port
        ),
    );
    relay.env = vec![("ADMIN_TOKEN".into(), ADMIN_TOKEN.into())];
    let (_, records) = relay.add_member_with_records(DID, SENDER_DOMAIN, true);
    let _dns = Dns::start_on(dns_port, &[SENDER_DOMAIN], &Dns::record_lines(&records));
    let selectors: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r["name"]
                .as_str()?
                .split_once("._domainkey.")
                .map(|(s, _)| s.to_string())
        })
        .collect();
    relay.start();
    let http = relay.http.expect("http");

    // Enrolled members are checked without an attestation.
    wait_standing(
        http,
        DID,
        "verified-mail-operator",
        true,
        Duration::from_secs(30),
    );
    assert_eq!(standing(http, DID, "relay-member"), None);
    poll_until(Duration::from_secs(15), "the consumer to connect", || {
        jetstream.connections().first().cloned()
    });
    let first = jetstream.connections()[0].clone();
    assert!(
        first.contains("wantedCollections=email.atmos.attestation"),
        "{first}"
    );
    assert!(
        !first.contains("cursor="),
        "no cursor before any event: {first}"
    );

    let record = serde_json::json!({
        "$type": "email.atmos.attestation",
        "domain": SENDER_DOMAIN,
        "dkimSelectors": selectors,
        "relayMember": true,
        "createdAt": "2026-11-23T10:00:00.000Z",
    });
    // Unrelated and invalid events are skipped without harm.
    jetstream.send(serde_json::json!({"did": DID, "time_us": 1_795_000_000_000_001i64, "kind": "identity", "identity": {"did": DID, "seq": 1}}));
    jetstream.send(commit(
        1_795_000_000_000_002,
        "create",
        "other.test",
        Some(record.clone()),
    ));
    jetstream.send(commit(
        1_795_000_000_000_003,
        "create",
        SENDER_DOMAIN,
        Some(record),
    ));
    wait_standing(http, DID, "relay-member", true, Duration::from_secs(30));

    const DELETED_AT: i64 = 1_795_000_000_000_004;
    jetstream.send(commit(DELETED_AT, "delete", SENDER_DOMAIN, None));
    poll_until(
        Duration::from_secs(30),
        "negations after the deletion",
        || {
            (standing(http, DID, "relay-member") == Some(false)
                && standing(http, DID, "verified-mail-operator") == Some(false))
            .then_some(())
        },
    );
    let labeler_db = relay.dir.path().join("data/labeler.sqlite");
    let cursor = || -> Option<i64> {
        rusqlite::Connection::open(&labeler_db)
            .ok()?
            .query_row(
                "SELECT value FROM cursors WHERE name = 'jetstream'",
                [],
                |r| r.get(0),
            )
            .ok()
    };
    poll_until(Duration::from_secs(10), "the cursor to be saved", || {
        (cursor() == Some(DELETED_AT)).then_some(())
    });

    relay.terminate();
    relay.start();
    let resumed = poll_until(Duration::from_secs(20), "a second connection", || {
        jetstream.connections().get(1).cloned()
    });
    assert!(
        resumed.contains(&format!("cursor={DELETED_AT}")),
        "{resumed}"
    );
}
