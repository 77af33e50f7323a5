//! Issue 12 §7: SIGHUP, or a certificate file renewed on disk, reloads the TLS certificate and
//! the rule files with no restart; a session opened before the reload keeps going and its mail is
//! accepted; a file that does not load leaves what is in force untouched.
//! Certificates are made by openssl; sessions are real STARTTLS submissions (mail-send).

use atmos_tests::client;
use atmos_tests::http::{curl, member_headers};
use atmos_tests::peers::self_signed;
use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use std::path::Path;
use std::time::Duration;

const DEFAULT_RULES: &str = include_str!("../../relay/rules/default.toml");

/// Installs a new certificate the way certbot does: written aside, then renamed into place.
fn install(dir: &Path, name: &str) -> Vec<u8> {
    let (cert, key) = self_signed(dir, name);
    std::fs::rename(&key, dir.join("live.key")).expect("install key");
    std::fs::rename(&cert, dir.join("live.pem")).expect("install cert");
    der_of(&dir.join("live.pem"))
}

fn der_of(pem: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(pem).expect("read pem");
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("pem base64")
}

/// The certificate a fresh STARTTLS handshake presents.
async fn presented(w: &World) -> Vec<u8> {
    let s = client::connect(w.submission, &w.member.did, &w.member.api_key)
        .await
        .expect("submission session");
    let certs = s
        .stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate");
    certs[0].as_ref().to_vec()
}

/// One message over the session opened before the reloads: it must still be accepted.
async fn send_held(w: &World, held: &mut client::Session, id: &str) {
    let to = format!("{id}@{RCPT_DOMAIN}");
    let reply = client::send(
        held,
        &w.from(),
        &[&to],
        &client::message(&w.from(), &to, id, 200),
    )
    .await
    .expect("the session opened before the reload still sends");
    assert!(reply.starts_with("250"), "{reply}");
}

fn reloads(w: &World, status: &str) -> u64 {
    w.relay
        .metric(&format!("atmos_reloads_total{{status=\"{status}\"}}"))
        .unwrap_or(0.0) as u64
}

fn bounce_threshold(w: &World) -> f64 {
    let (status, v, _) = curl(
        "GET",
        &format!(
            "http://{}/member/metrics/series?range=24h",
            w.relay.http.expect("http")
        ),
        &member_headers(&w.member),
        None,
    );
    assert_eq!(status, 200, "{v}");
    v["thresholds"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["metric"] == "bounce_rate"))
        .and_then(|t| t["above"].as_f64())
        .expect("a bounce-rate threshold")
}

fn world(dir: &Path, watch: &str) -> World {
    std::fs::write(dir.join("rules.toml"), DEFAULT_RULES).expect("rules");
    let extra = format!(
        "[tls]\ncert_file = \"{d}/live.pem\"\nkey_file = \"{d}/live.key\"\nwatch_interval = \"{watch}\"\n[rules]\nfiles = [\"{d}/rules.toml\"]\n",
        d = dir.display()
    );
    World::start(Some(&[]), &extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_certificate_and_rules_and_keeps_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = install(dir.path(), "first");
    // A watch interval far longer than the test: only SIGHUP can reload here.
    let w = world(dir.path(), "1h");
    assert_eq!(presented(&w).await, first);
    assert_eq!(bounce_threshold(&w), 0.05);
    let mut held = client::connect(w.submission, &w.member.did, &w.member.api_key)
        .await
        .expect("session opened before the reload");

    let second = install(dir.path(), "second");
    std::fs::write(
        dir.path().join("rules.toml"),
        DEFAULT_RULES.replace("above = 0.05", "above = 0.02"),
    )
    .expect("new rules");
    assert_eq!(presented(&w).await, first, "reloaded before SIGHUP");
    w.relay.signal(rustix::process::Signal::HUP);
    poll_until(Duration::from_secs(20), "the reload", || {
        (reloads(&w, "ok") == 1).then_some(())
    });
    assert_eq!(
        presented(&w).await,
        second,
        "new handshakes get the new certificate"
    );
    assert_eq!(bounce_threshold(&w), 0.02, "the new rules are in force");
    send_held(&w, &mut held, "held").await;

    // Half-written files: the reload fails, and what was in force stays.
    std::fs::write(
        dir.path().join("live.pem"),
        "-----BEGIN CERTIFICATE-----\nnot\n",
    )
    .expect("bad");
    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rule]]\nname = \"broken\"\n",
    )
    .expect("bad");
    w.relay.signal(rustix::process::Signal::HUP);
    poll_until(Duration::from_secs(20), "the failed reload", || {
        (reloads(&w, "failed") == 1).then_some(())
    });
    assert_eq!(
        presented(&w).await,
        second,
        "a bad certificate replaced the good one"
    );
    assert_eq!(
        bounce_threshold(&w),
        0.02,
        "bad rules replaced the good ones"
    );
    send_held(&w, &mut held, "held-2").await;
    assert!(w.relay.log(1).contains("reload: TLS certificate kept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_certificate_file_is_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = install(dir.path(), "first");
    let w = world(dir.path(), "200ms");
    assert_eq!(presented(&w).await, first);
    let renewed = install(dir.path(), "renewed");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if presented(&w).await == renewed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewal was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reloads(&w, "ok"),
        0,
        "a file change reloads the certificate alone"
    );
}
