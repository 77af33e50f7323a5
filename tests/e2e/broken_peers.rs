//! Issue 12 §4: broken peers. An MX that drops the connection mid-DATA, one that takes the whole
//! message and then resets before its reply, one that tarpits (1 byte/s), one that answers 421
//! at the greeting, and DNS that times out or SERVFAILs: each recipient is deferred and retried,
//! never bounced; when the peer is healthy again (smtp-sink on the same port, dnsmasq behind the
//! same address) the mail arrives exactly once, and the delivery slot was given back (one slot
//! per destination: a leaked one would stop all later mail).
//! The broken MXs and the broken DNS server are scripted here: no real server misbehaves on
//! demand. Everything healthy is a real peer (smtp-sink, dnsmasq).

use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::relay::Relay;
use atmos_tests::setup::{DID, RCPT_DOMAIN, SENDER_DOMAIN};
use atmos_tests::{client, free_port, poll_until};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[derive(Clone, Copy, Debug)]
enum Broken {
    DropMidData,
    ResetBeforeReply,
    Tarpit,
    Greeting421,
}

/// Reads one line (CRLF-terminated) or `None` at EOF.
async fn line(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if s.read(&mut b).await.ok()? == 0 {
            return None;
        }
        out.push(b[0]);
        if out.ends_with(b"\r\n") {
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
    }
}

/// Plays a normal MX up to DATA, then misbehaves as `mode` says.
async fn broken_session(mut s: TcpStream, mode: Broken) {
    match mode {
        Broken::Greeting421 => {
            let _ = s
                .write_all(b"421 4.3.2 mx.rcpt.test busy, try later\r\n")
                .await;
            return;
        }
        Broken::Tarpit => {
            for b in b"220 mx.rcpt.test ESMTP tarpit\r\n" {
                if s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        _ => {
            let _ = s.write_all(b"220 mx.rcpt.test ESMTP\r\n").await;
        }
    }
    while let Some(cmd) = line(&mut s).await {
        let verb = cmd.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 mx.rcpt.test\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => return,
            "DATA" => {
                let _ = s.write_all(b"354 go ahead\r\n").await;
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    if matches!(mode, Broken::DropMidData) && data.len() > 10 {
                        return; // closed with the message half sent
                    }
                    if data.ends_with(b"\r\n.\r\n") {
                        break;
                    }
                }
                // The whole message arrived; reset instead of answering.
                // SO_LINGER 0: the close sends a reset (socket2 keeps tokio's warning away).
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                return;
            }
            _ => b"502 5.5.2 what\r\n",
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// A broken MX on `port` until the returned handle is aborted; counts its connections.
fn broken_mx(
    rt: &tokio::runtime::Runtime,
    port: u16,
    mode: Broken,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let listener = rt
        .block_on(TcpListener::bind(("127.0.0.1", port)))
        .expect("bind the broken MX");
    let task = rt.spawn(async move {
        let mut sessions = tokio::task::JoinSet::new();
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            sessions.spawn(broken_session(s, mode));
        }
    });
    (task, seen)
}

struct Setup {
    relay: Relay,
    key: String,
    submission: SocketAddr,
}

/// A relay delivering to port `mx_port`, one connection per destination, attempts capped at 3 s;
/// `nameserver` overrides the DNS the relay asks.
fn relay(dns: &Dns, nameserver: Option<String>, mx_port: u16) -> Setup {
    let ns = nameserver.unwrap_or_else(|| dns.address());
    let mut relay = Relay::new(
        Some(&ns),
        mx_port,
        "per_destination_concurrency = 1\nattempt_timeout = \"3s\"\n",
    );
    let member = relay.add_member(DID, SENDER_DOMAIN, true);
    relay.trust(DID);
    let submission = relay.start();
    Setup {
        relay,
        key: member.api_key,
        submission,
    }
}

fn submit(rt: &tokio::runtime::Runtime, s: &Setup, id: &str) {
    let (from, to) = (
        format!("app@{SENDER_DOMAIN}"),
        format!("{id}@{RCPT_DOMAIN}"),
    );
    rt.block_on(async {
        let mut c = client::connect(s.submission, DID, &s.key)
            .await
            .expect("session");
        client::send(
            &mut c,
            &from,
            &[&to],
            &client::message(&from, &to, id, 2000),
        )
        .await
        .expect("accepted");
    });
}

/// (status, attempts) of the one recipient of `id`.
fn state(relay: &Relay, id: &str) -> (String, i64) {
    relay
        .db()
        .query_row(
            "SELECT status, attempts FROM recipients WHERE address = ?1",
            [format!("{id}@{RCPT_DOMAIN}")],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the recipient row")
}

/// Waits until `id` was tried `attempts` times, never bounced; returns the last reply.
fn deferred_after(relay: &Relay, id: &str, attempts: i64) -> String {
    poll_until(Duration::from_secs(60), &format!("{id} retried"), || {
        let (status, n) = state(relay, id);
        assert_ne!(status, "bounced", "{id} bounced for a temporary fault");
        (status == "deferred" && n >= attempts).then_some(())
    });
    relay
        .db()
        .query_row(
            "SELECT last_reply FROM recipients WHERE address = ?1",
            [format!("{id}@{RCPT_DOMAIN}")],
            |r| r.get::<_, String>(0),
        )
        .expect("a last reply")
}

/// The peer is healthy again: the first message and five more arrive, each once.
fn recovers(rt: &tokio::runtime::Runtime, s: &Setup, sink: &SmtpSink, id: &str) {
    for n in 0..5 {
        submit(rt, s, &format!("{id}-after-{n}"));
    }
    let ids = poll_until(Duration::from_secs(60), "delivery after recovery", || {
        let ids = sink.test_ids();
        (ids.contains_key(id) && (0..5).all(|n| ids.contains_key(&format!("{id}-after-{n}"))))
            .then_some(ids)
    });
    assert!(ids.values().all(|&c| c == 1), "duplicates: {ids:?}");
    // The MX has it; the relay records the 250 a moment later.
    poll_until(
        Duration::from_secs(30),
        &format!("{id} recorded as sent"),
        || (state(&s.relay, id).0 == "sent").then_some(()),
    );
}

fn broken_mx_then_healthy(mode: Broken, expect_in_reply: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dns = Dns::with_mx(&[RCPT_DOMAIN]);
    let port = free_port();
    let (mx, seen) = broken_mx(&rt, port, mode);
    let s = relay(&dns, None, port);
    let id = format!("{mode:?}").to_lowercase();
    submit(&rt, &s, &id);
    let reply = deferred_after(&s.relay, &id, 2);
    assert!(seen.load(Ordering::Relaxed) >= 2, "the MX was not retried");
    assert!(
        reply.starts_with('4') && reply.contains(expect_in_reply),
        "{mode:?}: {reply}"
    );
    mx.abort();
    let _ = rt.block_on(mx);
    let sink = SmtpSink::start_at("127.0.0.1", port, &[]);
    recovers(&rt, &s, &sink, &id);
}

#[test]
fn an_mx_that_drops_mid_data_defers_and_retries() {
    broken_mx_then_healthy(Broken::DropMidData, "4.4.2");
}

#[test]
fn an_mx_that_resets_before_its_final_reply_defers_and_retries() {
    broken_mx_then_healthy(Broken::ResetBeforeReply, "4.4.2");
}

#[test]
fn a_tarpit_mx_is_cut_off_at_the_attempt_deadline_and_retried() {
    broken_mx_then_healthy(Broken::Tarpit, "took longer than 3s");
}

#[test]
fn a_421_greeting_defers_and_retries() {
    broken_mx_then_healthy(Broken::Greeting421, "421");
}

/// A DNS server that drops every query (mode 0), answers SERVFAIL (1), or forwards to `upstream`
/// (2): healthy again without the relay restarting.
fn broken_dns(
    rt: &tokio::runtime::Runtime,
    upstream: SocketAddr,
    mode: Arc<AtomicU8>,
) -> SocketAddr {
    let socket = rt
        .block_on(UdpSocket::bind("127.0.0.1:0"))
        .expect("bind the broken DNS");
    let addr = socket.local_addr().expect("addr");
    rt.spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let query = buf[..n].to_vec();
            match mode.load(Ordering::Relaxed) {
                0 => {}
                1 if query.len() >= 12 => {
                    let mut answer = query.clone();
                    answer[2] |= 0x80; // QR: a response
                    answer[3] = (answer[3] & 0xf0) | 2; // RCODE 2: SERVFAIL
                    let _ = socket.send_to(&answer, from).await;
                }
                _ => {
                    let up = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                    let _ = up.send_to(&query, upstream).await;
                    let mut reply = vec![0u8; 4096];
                    if let Ok(Ok(m)) =
                        tokio::time::timeout(Duration::from_secs(2), up.recv(&mut reply)).await
                    {
                        let _ = socket.send_to(&reply[..m], from).await;
                    }
                }
            }
        }
    });
    addr
}

fn broken_dns_then_healthy(mode: u8) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dns = Dns::with_mx(&[RCPT_DOMAIN]);
    let sink = SmtpSink::start(&[]);
    let state_of_dns = Arc::new(AtomicU8::new(mode));
    let upstream: SocketAddr = dns.address().parse().expect("dns address");
    let fake = broken_dns(&rt, upstream, state_of_dns.clone());
    let s = relay(&dns, Some(fake.to_string()), sink.port);
    let id = if mode == 0 {
        "dns-timeout"
    } else {
        "dns-servfail"
    };
    submit(&rt, &s, id);
    let reply = deferred_after(&s.relay, id, 1);
    assert!(reply.starts_with('4'), "{id}: {reply}");
    assert!(sink.test_ids().is_empty(), "delivered without DNS");
    state_of_dns.store(2, Ordering::Relaxed);
    recovers(&rt, &s, &sink, id);
}

#[test]
fn dns_that_times_out_defers_and_retries() {
    broken_dns_then_healthy(0);
}

#[test]
fn dns_that_servfails_defers_and_retries() {
    broken_dns_then_healthy(1);
}
