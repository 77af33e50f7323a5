//! Session behaviour on the wire: PIPELINING, the idle timeout, and 421 on shutdown.

use atmos_tests::client;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use mail_send::SmtpClient;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

type Tls = SmtpClient<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn authed(addr: SocketAddr, did: &str, key: &str) -> Tls {
    let (mut c, ehlo) = client::probe_tls(addr).await;
    assert!(
        ehlo.has_capability(smtp_proto::EXT_PIPELINING),
        "PIPELINING advertised"
    );
    let r = c
        .cmd(format!("{}\r\n", client::auth_plain_line(did, key)))
        .await
        .expect("auth");
    assert_eq!(r.code, 235);
    c
}

#[test]
fn pipelined_commands_get_replies_in_order() {
    let world = World::start(Some(&[]), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = authed(world.submission, &world.member.did, &world.member.api_key).await;
        let batch = format!(
            "MAIL FROM:<app@sender.test>\r\nRCPT TO:<a@{RCPT_DOMAIN}>\r\nRCPT TO:<b@{RCPT_DOMAIN}>\r\nDATA\r\n"
        );
        c.stream.write_all(batch.as_bytes()).await.expect("write");
        let codes: Vec<u16> = c.read_many(4).await.expect("replies").iter().map(|r| r.code).collect();
        assert_eq!(codes, vec![250, 250, 250, 354]);
        c.stream
            .write_all(b"From: <app@sender.test>\r\nX-Test-Id: piped\r\n\r\nhi\r\n.\r\nQUIT\r\n")
            .await
            .expect("write");
        let replies = c.read_many(2).await.expect("replies");
        assert_eq!((replies[0].code, replies[1].code), (250, 221));
    });
    // Bulk mail to two recipients leaves as two copies, each with its own unsubscribe link.
    atmos_tests::poll_until(
        Duration::from_secs(20),
        "pipelined message delivered, one copy per recipient",
        || (world.sink.messages_with("X-Test-Id: piped").len() == 2).then_some(()),
    );
}

#[test]
fn idle_sessions_are_closed_with_421() {
    let world = World::start_with_env(Some(&[]), "", &[("ATMOS_SMTP_IDLE_TIMEOUT", "1s")]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = SmtpClient::connect(world.submission, Duration::from_secs(30))
            .await
            .expect("connect");
        c.read().await.expect("greeting");
        let r = c.read().await.expect("421 after idling");
        assert_eq!(r.code, 421);
        assert!(r.message.contains("Idle timeout"), "{}", r.message);
    });
}

#[test]
fn shutdown_sends_421_to_open_sessions_and_exits_cleanly() {
    let mut world = World::start(Some(&[]), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut c = rt.block_on(authed(
        world.submission,
        &world.member.did,
        &world.member.api_key,
    ));
    world.relay.signal_term();
    let r = rt.block_on(c.read()).expect("421 on shutdown");
    assert_eq!(r.code, 421);
    assert_eq!(r.esc, [4, 3, 2]);
    assert_eq!(world.relay.wait_exit(), Some(0));
    // The listener is closed.
    assert!(std::net::TcpStream::connect(world.submission).is_err());
}

#[test]
fn suspension_applies_at_once_even_with_a_cached_key() {
    let world = World::start(Some(&[]), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // A first login fills the credential cache.
    rt.block_on(authed(
        world.submission,
        &world.member.did,
        &world.member.api_key,
    ));
    let out = world.relay.cli(&[
        "member",
        "suspend",
        &world.member.did,
        "--reason",
        "abuse report",
    ]);
    assert!(out.status.success());
    let reply = rt.block_on(async {
        let (mut c, _) = client::probe_tls(world.submission).await;
        let line = client::auth_plain_line(&world.member.did, &world.member.api_key);
        c.cmd(format!("{line}\r\n")).await.expect("reply")
    });
    assert_eq!((reply.code, reply.esc), (535, [5, 7, 8]));
    assert_eq!(reply.message, "account suspended");
    // Reactivation applies at once too.
    assert!(
        world
            .relay
            .cli(&["member", "reactivate", &world.member.did])
            .status
            .success()
    );
    rt.block_on(authed(
        world.submission,
        &world.member.did,
        &world.member.api_key,
    ));
}

#[test]
fn too_many_errors_close_the_session() {
    let world = World::start(Some(&[]), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = client::probe_plain(world.submission).await;
        for _ in 0..19 {
            assert_eq!(c.cmd(b"FROB\r\n").await.expect("reply").code, 500);
        }
        // The 20th error is answered, then the session ends with 421.
        c.stream.write_all(b"FROB\r\n").await.expect("write");
        let replies = c.read_many(2).await.expect("two replies");
        assert_eq!((replies[0].code, replies[1].code), (500, 421));
    });
}
