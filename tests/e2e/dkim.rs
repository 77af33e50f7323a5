//! DKIM, verified independently: dkimpy checks all four signatures of a message as delivered to
//! smtp-sink, fetching keys from dnsmasq serving exactly the records `atmos member add` and
//! `atmos operator dns` printed. A tampered body fails every signature. After `rotate-dkim`, new
//! mail uses the new operator selectors and mail signed before still verifies.

use atmos_tests::peers::{Dns, SmtpSink, venv_python};
use atmos_tests::relay::{Relay, TestMember};
use atmos_tests::{client, free_udp_tcp_port, poll_until};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const DID: &str = "did:plc:kkkkkkkkkkkkkkkkkkkkkkkk";

fn send(addr: SocketAddr, m: &TestMember, id: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(addr, &m.did, &m.api_key)
            .await
            .expect("session");
        let body = client::message("news@signed.test", "reader@rcpt.test", id, 1500);
        client::send(&mut s, "news@signed.test", &["reader@rcpt.test"], &body)
            .await
            .expect("accepted");
    });
}

fn delivered(sink: &SmtpSink, id: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let msg = poll_until(Duration::from_secs(30), &format!("{id} delivered"), || {
        sink.messages_with(&format!("X-Test-Id: {id}"))
            .into_iter()
            .next()
    });
    let path = dir.join(format!("{id}.eml"));
    std::fs::write(&path, msg).expect("write message");
    path
}

fn verify(dns_port: u16, path: &std::path::Path) -> Vec<Value> {
    let script = atmos_tests::workspace_root().join("tests/py/dkim_verify.py");
    let out = std::process::Command::new(venv_python())
        .arg(script)
        .arg(dns_port.to_string())
        .arg(path)
        .output()
        .expect("run dkim_verify.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("json")
        .as_array()
        .cloned()
        .expect("list")
}

/// The message with only its `keep`-th DKIM-Signature (opendkim-testmsg passes if any one
/// signature verifies, so each is tested alone).
fn only_signature(message: &str, keep: usize) -> String {
    let (head, body) = message.split_once("\n\n").expect("header/body split");
    let mut fields: Vec<String> = Vec::new();
    for line in head.split('\n') {
        if (line.starts_with(' ') || line.starts_with('\t')) && !fields.is_empty() {
            let last = fields.last_mut().expect("field");
            last.push('\n');
            last.push_str(line);
        } else {
            fields.push(line.to_string());
        }
    }
    let mut n = 0;
    let kept: Vec<String> = fields
        .into_iter()
        .filter(|f| {
            if f.to_ascii_lowercase().starts_with("dkim-signature:") {
                n += 1;
                n - 1 == keep
            } else {
                true
            }
        })
        .collect();
    format!("{}\n\n{body}", kept.join("\n"))
}

/// Runs opendkim-testmsg on `message` in private network and mount namespaces, where dnsmasq
/// answers on 127.0.0.1:53 with `zone` and /etc/resolv.conf points at it (opendkim-testmsg only
/// uses the system resolver on port 53). Returns (verified, output).
fn opendkim_verify(zone: &[String], domains: &[&str], message: &str) -> (bool, String) {
    atmos_tests::require_program("opendkim-testmsg", "apt-get install opendkim-tools");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conf = String::from(
        "port=53\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nuser=root\n",
    );
    for d in domains {
        conf.push_str(&format!("local=/{d}/\n"));
    }
    for l in zone {
        conf.push_str(l);
        conf.push('\n');
    }
    std::fs::write(dir.path().join("dns.conf"), conf).expect("conf");
    std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").expect("resolv");
    std::fs::write(dir.path().join("msg.eml"), message).expect("msg");
    let script = format!(
        "set -e; ip link set lo up; mount --bind {d}/resolv.conf /etc/resolv.conf; \
         /usr/sbin/dnsmasq --conf-file={d}/dns.conf --pid-file={d}/dns.pid; \
         for i in $(seq 100); do dig +short +time=1 @127.0.0.1 -p 53 TXT {probe} >/dev/null 2>&1 && break; sleep 0.05; done; \
         rc=0; opendkim-testmsg < {d}/msg.eml || rc=$?; kill $(cat {d}/dns.pid); exit $rc",
        d = dir.path().display(),
        probe = domains[0],
    );
    let out = std::process::Command::new("unshare")
        .args(["-mn", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn summary(results: &[Value]) -> Vec<(String, String, bool)> {
    results
        .iter()
        .map(|r| {
            (
                r["d"].as_str().unwrap_or("").to_string(),
                r["a"].as_str().unwrap_or("").to_string(),
                r["ok"] == true,
            )
        })
        .collect()
}

#[test]
fn dkimpy_verifies_all_four_signatures_and_rotation_keeps_old_mail_valid() {
    let dns_port = free_udp_tcp_port();
    let sink = SmtpSink::start(&[]);
    let mut relay = Relay::new(Some(&format!("127.0.0.1:{dns_port}")), sink.port, "");
    let (member, member_records) = relay.add_member_with_records(DID, "signed.test", true);
    let operator_records = relay.dns_records(&["operator", "dns"]);
    let zone = |extra: &[Value]| {
        let mut all: Vec<Value> = member_records.clone();
        all.extend(operator_records.iter().cloned());
        all.extend(extra.iter().cloned());
        let mut lines = Dns::record_lines(&all);
        lines.push("mx-host=rcpt.test,mx.rcpt.test,10".into());
        lines.push("host-record=mx.rcpt.test,127.0.0.1".into());
        lines
    };
    let mut dns = Dns::start_on(
        dns_port,
        &["signed.test", "operator.test", "rcpt.test"],
        &zone(&[]),
    );
    let addr = relay.start();
    let work = tempfile::tempdir().expect("tempdir");

    send(addr, &member, "dkim-1");
    let first = delivered(&sink, "dkim-1", work.path());
    let results = summary(&verify(dns_port, &first));
    let mut expected = vec![
        ("signed.test".to_string(), "rsa-sha256".to_string(), true),
        (
            "signed.test".to_string(),
            "ed25519-sha256".to_string(),
            true,
        ),
        ("operator.test".to_string(), "rsa-sha256".to_string(), true),
        (
            "operator.test".to_string(),
            "ed25519-sha256".to_string(),
            true,
        ),
    ];
    let mut got = results.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "all four signatures verify");

    // Negative: a changed body fails every signature.
    let text = std::fs::read_to_string(&first).expect("read");
    let tampered = work.path().join("tampered.eml");
    let tampered_text = text.replacen("quick brown fox", "quick brown cat", 1);
    std::fs::write(&tampered, &tampered_text).expect("write");
    assert!(
        summary(&verify(dns_port, &tampered)).iter().all(|r| !r.2),
        "tampered body must fail"
    );
    // Oversigned (issue 9 §3): a From or Subject added to a signed message breaks all four.
    for (what, forged) in [
        (
            "From",
            text.replacen("\nFrom: ", "\nFrom: <ceo@rival.test>\nFrom: ", 1),
        ),
        (
            "Subject",
            text.replacen("\nSubject: ", "\nSubject: Act now\nSubject: ", 1),
        ),
    ] {
        assert_ne!(forged, text);
        let path = work.path().join(format!("added-{what}.eml"));
        std::fs::write(&path, &forged).expect("write");
        let r = summary(&verify(dns_port, &path));
        assert!(
            r.len() == 4 && r.iter().all(|r| !r.2),
            "an added {what} must fail every signature: {r:?}"
        );
    }

    // opendkim-testmsg, a second verifier in C, checks each signature alone; tampered fails.
    let domains = ["signed.test", "operator.test"];
    for i in 0..4 {
        let (ok, out) = opendkim_verify(&zone(&[]), &domains, &only_signature(&text, i));
        assert!(ok, "opendkim-testmsg rejected signature {i}: {out}");
        let (ok, _) = opendkim_verify(&zone(&[]), &domains, &only_signature(&tampered_text, i));
        assert!(!ok, "opendkim-testmsg accepted tampered signature {i}");
    }
    // Without the published keys nothing verifies: the passes above came from DNS.
    let keyless: Vec<String> = zone(&[])
        .into_iter()
        .filter(|l| !l.contains("_domainkey"))
        .collect();
    let (ok, _) = opendkim_verify(&keyless, &domains, &only_signature(&text, 0));
    assert!(!ok, "opendkim-testmsg must fail without the key in DNS");

    // Rotation: new operator selectors; the old records stay listed and old mail still verifies.
    let out = relay.cli(&["operator", "rotate-dkim"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Vec<Value> =
        serde_json::from_slice::<Value>(&out.stdout).expect("json")["dns_records"]
            .as_array()
            .cloned()
            .expect("records");
    let dkim_names = |rs: &[Value]| -> Vec<String> {
        rs.iter()
            .filter_map(|r| r["name"].as_str())
            .filter(|n| n.contains("._domainkey.operator.test"))
            .map(str::to_string)
            .collect()
    };
    let old_names = dkim_names(&operator_records);
    let all_names = dkim_names(&rotated);
    assert_eq!(
        all_names.len(),
        4,
        "new and old operator keys both listed: {all_names:?}"
    );
    assert!(old_names.iter().all(|n| all_names.contains(n)));
    drop(dns);
    dns = Dns::start_on(
        dns_port,
        &["signed.test", "operator.test", "rcpt.test"],
        &zone(&rotated),
    );
    send(addr, &member, "dkim-2");
    let second = delivered(&sink, "dkim-2", work.path());
    let second_text = std::fs::read_to_string(&second).expect("read");
    let new_selectors: Vec<&String> = all_names
        .iter()
        .filter(|n| !old_names.contains(n))
        .collect();
    for n in &new_selectors {
        let selector = n.split("._domainkey").next().expect("selector");
        assert!(
            second_text.contains(&format!("s={selector}")),
            "new mail uses {selector}"
        );
    }
    assert!(
        summary(&verify(dns_port, &second)).iter().all(|r| r.2),
        "new mail verifies"
    );
    assert!(
        summary(&verify(dns_port, &first)).iter().all(|r| r.2),
        "mail signed before the rotation still verifies"
    );
    drop(dns);
}
