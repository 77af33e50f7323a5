//! Submission with real clients (swaks, Python smtplib) delivered to a real MX (smtp-sink) found
//! through MX records served by a real DNS server (dnsmasq) on loopback.

use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use std::process::Command;
use std::time::Duration;

fn swaks(world: &World, mech: &str, test_id: &str) -> std::process::Output {
    atmos_tests::require_program(
        "swaks",
        "apt-get install swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl",
    );
    Command::new("swaks")
        .args(["--server", &world.submission.to_string(), "--tls"])
        .args([
            "--auth",
            mech,
            "--auth-user",
            &world.member.did,
            "--auth-password",
            &world.member.api_key,
        ])
        .args([
            "--from",
            &world.from(),
            "--to",
            &format!("someone@{RCPT_DOMAIN}"),
        ])
        .args([
            "--h-From",
            &format!("<{}>", world.from()),
            "--h-X-Test-Id",
            test_id,
        ])
        .output()
        .expect("run swaks")
}

fn smtplib(world: &World, mech: &str, test_id: &str) -> std::process::Output {
    let script = atmos_tests::workspace_root().join("tests/py/submit.py");
    Command::new("python3")
        .arg(script)
        .args([
            &world.submission.ip().to_string(),
            &world.submission.port().to_string(),
        ])
        .args([
            &world.member.did,
            &world.member.api_key,
            mech,
            &world.from(),
        ])
        .arg(format!("other@{RCPT_DOMAIN}"))
        .arg(test_id)
        .output()
        .expect("run python3")
}

#[test]
fn swaks_and_smtplib_submit_with_plain_and_login_and_mail_reaches_the_mx() {
    let world = World::start(Some(&[]), "");
    let mut ids = Vec::new();
    for mech in ["PLAIN", "LOGIN"] {
        let id = format!("swaks-{mech}");
        let out = swaks(&world, mech, &id);
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "swaks {mech} failed:\n{text}\n{err}");
        assert!(
            text.contains("250 2.0.0 queued as"),
            "no queue id in:\n{text}"
        );
        ids.push(id);

        let id = format!("smtplib-{mech}");
        let out = smtplib(&world, mech, &id);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "smtplib {mech} failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("queued as"), "{text}");
        ids.push(id);
    }
    for id in &ids {
        let header = format!("X-Test-Id: {id}");
        let found = poll_until(Duration::from_secs(30), &format!("{id} at the MX"), || {
            let m = world.sink.messages_with(&header);
            (!m.is_empty()).then_some(m)
        });
        assert_eq!(found.len(), 1, "{id} delivered exactly once");
        // The sink records the envelope it was given: our EHLO name and the member's sender.
        assert!(
            found[0].contains("relay.test"),
            "EHLO name missing in:\n{}",
            found[0]
        );
    }
    let sent = poll_until(
        Duration::from_secs(10),
        "all recipients marked sent",
        || {
            let n = world
                .relay
                .count("SELECT count(*) FROM recipients WHERE status = 'sent'");
            (n == 4).then_some(n)
        },
    );
    assert_eq!(sent, 4);
    // Every attempt's remote reply is stored.
    let attempts = world
        .relay
        .count("SELECT count(*) FROM delivery_attempts WHERE reply LIKE '250%'");
    assert_eq!(attempts, 4);
}
