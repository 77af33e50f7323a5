//! No open relay: every probe is refused with the documented reply (docs/BEHAVIOUR.md §4.1, §7), and nothing is queued or delivered.
//! Protocol probes use mail-send's raw client; credential probes use swaks.

use atmos_tests::client;
use atmos_tests::relay::TestMember;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use mail_send::SmtpClient;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

fn render(r: &smtp_proto::Response<String>) -> String {
    let esc = if r.esc[0] > 0 {
        format!("{}.{}.{} ", r.esc[0], r.esc[1], r.esc[2])
    } else {
        String::new()
    };
    format!("{} {esc}{}", r.code, r.message)
}

async fn cmd<S: AsyncRead + AsyncWrite + Unpin>(c: &mut SmtpClient<S>, line: &str) -> String {
    let r = c.cmd(format!("{line}\r\n")).await.expect("reply");
    render(&r)
}

async fn plain(addr: SocketAddr) -> SmtpClient<tokio::net::TcpStream> {
    client::probe_plain(addr).await
}

async fn tls(addr: SocketAddr) -> client::Session {
    client::probe_tls(addr).await.0
}

fn auth_plain(m: &TestMember) -> String {
    client::auth_plain_line(&m.did, &m.api_key)
}

async fn authed(addr: SocketAddr, m: &TestMember) -> client::Session {
    let mut c = tls(addr).await;
    let r = cmd(&mut c, &auth_plain(m)).await;
    assert!(r.starts_with("235"), "auth failed: {r}");
    c
}

fn swaks_auth(addr: SocketAddr, user: &str, key: &str) -> String {
    let out = Command::new("swaks")
        .args(["--server", &addr.to_string(), "--tls", "--auth", "PLAIN"])
        .args(["--auth-user", user, "--auth-password", key])
        .args([
            "--from",
            "app@sender.test",
            "--to",
            &format!("x@{RCPT_DOMAIN}"),
        ])
        .output()
        .expect("run swaks");
    assert!(!out.status.success(), "swaks must fail");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn probes_are_refused_with_spec_codes_and_nothing_is_delivered() {
    let world = World::start(Some(&[]), "");
    let addr = world.submission;
    let m = world.member.clone();
    let pending = world
        .relay
        .add_member("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "pending.test", false);
    let suspended =
        world
            .relay
            .add_member("did:plc:cccccccccccccccccccccccc", "suspended.test", true);
    let out = world
        .relay
        .cli(&["member", "suspend", &suspended.did, "--reason", "probe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut results: Vec<(&str, String, &str)> = Vec::new();
    rt.block_on(async {
        // 1. No TLS: MAIL in clear.
        let mut c = plain(addr).await;
        results.push((
            "no TLS",
            cmd(&mut c, "MAIL FROM:<app@sender.test>").await,
            "530 5.7.0 Must issue a STARTTLS command first",
        ));
        // 2. AUTH before TLS.
        results.push((
            "AUTH before TLS",
            cmd(&mut c, &auth_plain(&m)).await,
            "530 5.7.0 Must issue a STARTTLS command first",
        ));
        // 3. Unauthenticated relay attempt under TLS.
        let mut c = tls(addr).await;
        results.push((
            "no AUTH",
            cmd(&mut c, "MAIL FROM:<app@sender.test>").await,
            "530 5.7.0 Authentication required",
        ));
        results.push((
            "RCPT without MAIL",
            cmd(&mut c, &format!("RCPT TO:<x@{RCPT_DOMAIN}>")).await,
            "503 5.5.1",
        ));
        // 4. Malformed commands.
        results.push((
            "unknown command",
            cmd(&mut c, "FROB the relay").await,
            "500 5.5.1",
        ));
        results.push((
            "bad address syntax",
            cmd(&mut c, "MAIL FROM:<<<@>").await,
            "501",
        ));
        // 5. Foreign MAIL FROM.
        let mut c = authed(addr, &m).await;
        results.push((
            "foreign MAIL FROM",
            cmd(&mut c, "MAIL FROM:<ceo@bank.test>").await,
            "550 5.7.1 DOMAIN_MISMATCH",
        ));
        // 6. Too many recipients (limit 5 in the test config).
        results.push((
            "MAIL ok",
            cmd(&mut c, "MAIL FROM:<app@sender.test>").await,
            "250 2.1.0",
        ));
        for i in 0..5 {
            let r = cmd(&mut c, &format!("RCPT TO:<r{i}@{RCPT_DOMAIN}>")).await;
            assert!(r.starts_with("250"), "{r}");
        }
        results.push((
            "too many recipients",
            cmd(&mut c, &format!("RCPT TO:<r6@{RCPT_DOMAIN}>")).await,
            "452 4.5.3",
        ));
        results.push(("RSET", cmd(&mut c, "RSET").await, "250"));
        // 7. Oversize announced with SIZE, then oversize data.
        results.push((
            "SIZE too big",
            cmd(&mut c, "MAIL FROM:<app@sender.test> SIZE=10000000").await,
            "552 5.3.4 message too big",
        ));
        cmd(&mut c, "MAIL FROM:<app@sender.test>").await;
        cmd(&mut c, &format!("RCPT TO:<big@{RCPT_DOMAIN}>")).await;
        assert!(cmd(&mut c, "DATA").await.starts_with("354"));
        let mut body = b"From: <app@sender.test>\r\nSubject: big\r\n\r\n".to_vec();
        body.extend(
            std::iter::repeat_n(
                b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
                    .to_vec(),
                1500,
            )
            .flatten(),
        );
        body.extend_from_slice(b".\r\n");
        c.stream.write_all(&body).await.expect("write body");
        let r = render(&c.read().await.expect("reply after data"));
        results.push(("oversize DATA", r, "552 5.3.4 message too big"));
        // 8. Foreign header From after DATA.
        cmd(&mut c, "MAIL FROM:<app@sender.test>").await;
        cmd(&mut c, &format!("RCPT TO:<spoof@{RCPT_DOMAIN}>")).await;
        assert!(cmd(&mut c, "DATA").await.starts_with("354"));
        c.stream
            .write_all(b"From: <ceo@bank.test>\r\nSubject: pay now\r\n\r\nwire money\r\n.\r\n")
            .await
            .expect("write");
        let r = render(&c.read().await.expect("reply after data"));
        results.push(("foreign header From", r, "550 5.7.1 DOMAIN_MISMATCH"));
    });
    // 9–11. Credentials, with swaks.
    results.push((
        "wrong key",
        swaks_auth(addr, &m.did, "atmos_wrongwrongwrongwrongwrongwrongwr"),
        "535 5.7.8 Authentication credentials invalid",
    ));
    results.push((
        "pending member",
        swaks_auth(addr, &pending.did, &pending.api_key),
        "535 5.7.8 pending operator approval",
    ));
    results.push((
        "suspended member",
        swaks_auth(addr, &suspended.did, &suspended.api_key),
        "535 5.7.8 account suspended",
    ));

    let mut failures = Vec::new();
    for (name, got, want) in &results {
        if !got.contains(want) {
            failures.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "refusals wrong:\n{}",
        failures.join("\n")
    );
    assert!(results.len() >= 10);

    assert_eq!(
        world.relay.count("SELECT count(*) FROM messages"),
        0,
        "nothing may be queued"
    );
    assert!(world.sink.messages().is_empty(), "nothing may be delivered");
    let rejected =
        atmos_tests::poll_until(Duration::from_secs(10), "relay_rejected events", || {
            let n = world
                .relay
                .count("SELECT count(*) FROM relay_events WHERE type = 'relay_rejected'");
            (n >= 5).then_some(n)
        });
    assert!(rejected >= 5);
}
