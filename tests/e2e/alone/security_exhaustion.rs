//! Issue 9 §4: what a stranger can hold or burn is capped, each cap mounted as an attack against
//! the running relay with real clients: 2,000 idle SMTP connections from one address, a flood of
//! random HTTP credentials, a client trickling a command or DATA, a client that never reads its
//! replies, HTTP connections and slow headers, WebSocket subscribers, and forwarded mail.

use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::mx::{self, code};
use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Lets this test process hold thousands of sockets.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
}

/// A TCP connection from a chosen loopback source address.
async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().expect("source"), 0))?;
    socket.connect(to).await
}

/// The first reply line the server sends.
async fn first_line(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 512];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).to_string(),
        _ => String::new(),
    }
}

/// Reads until the server closes; returns what it said.
async fn until_closed(s: &mut TcpStream, deadline: Duration) -> String {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&all).to_string(),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after {deadline:?}: {}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
}

#[test]
fn two_thousand_idle_connections_do_not_lock_out_others() {
    raise_fd_limit();
    let world = World::start(Some(&[]), "");
    let addr = world.submission;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (greeted, refused, held) = rt.block_on(async {
        let mut held = Vec::new();
        let (mut greeted, mut refused) = (0, 0);
        for _ in 0..2000 {
            let mut s = connect_from("127.0.0.1", addr).await.expect("connect");
            let line = first_line(&mut s).await;
            if line.starts_with("220 ") {
                greeted += 1;
                held.push(s);
            } else if line.starts_with("421 4.7.0") {
                refused += 1;
            } else {
                panic!("unexpected answer {line:?}");
            }
        }
        (greeted, refused, held)
    });
    assert_eq!(
        (greeted, refused),
        (50, 1950),
        "50 sessions per client address, as Postfix"
    );
    // Another client is served at once, with the 50 still open.
    let started = Instant::now();
    let out = Command::new("swaks")
        .args([
            "--server",
            &addr.to_string(),
            "--local-interface",
            "127.0.0.2",
            "--tls",
        ])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            &world.member.did,
            "--auth-password",
            &world.member.api_key,
        ])
        .args([
            "--from",
            "app@sender.test",
            "--to",
            &format!("other@{RCPT_DOMAIN}"),
        ])
        .args([
            "--h-From",
            "<app@sender.test>",
            "--h-X-Test-Id",
            "other-client",
        ])
        .output()
        .expect("run swaks");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        took < Duration::from_secs(2),
        "a legitimate submission took {took:?}"
    );
    drop(held);
    assert!(
        world
            .relay
            .log(1)
            .contains("queue cap: half the free space of data_dir")
    );
}

#[test]
fn a_credential_flood_is_refused_and_does_not_slow_others() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let url = format!("http://{http}/v1/send");
    let body = json!({"from": "app@sender.test", "to": format!("f@{RCPT_DOMAIN}"), "text": "t", "category": "transactional"});
    // The member's application is already sending (its key is verified and cached).
    send_ok(http, &member, &body);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (statuses, legit) = rt.block_on(async {
        let flooder = reqwest::Client::builder()
            .local_address("127.0.0.1".parse::<IpAddr>().ok())
            .build()
            .expect("client");
        let app = reqwest::Client::builder()
            .local_address("127.0.0.2".parse::<IpAddr>().ok())
            .build()
            .expect("client");
        let flood: Vec<_> = (0..50)
            .map(|i| {
                let (c, url, body) = (flooder.clone(), url.clone(), body.clone());
                tokio::spawn(async move {
                    c.post(&url)
                        .header(
                            "X-Atmos-DID",
                            format!("did:plc:{}", "z".repeat(23) + &((i % 6) + 2).to_string()),
                        )
                        .bearer_auth(format!("atmos_{:032}", i))
                        .json(&body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect();
        // While the flood runs, the member's own request from another address.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let r = app
            .post(&url)
            .header("X-Atmos-DID", &world.member.did)
            .bearer_auth(&world.member.api_key)
            .json(&body)
            .send()
            .await
            .expect("legitimate request");
        let legit = (r.status().as_u16(), started.elapsed());
        let mut statuses = Vec::new();
        for f in flood {
            statuses.push(f.await.expect("task"));
        }
        (statuses, legit)
    });
    assert_eq!(legit.0, 200);
    assert!(
        legit.1 < Duration::from_secs(1),
        "the member waited {:?} behind the flood",
        legit.1
    );
    let failed = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(failed + throttled, 50, "{statuses:?}");
    assert!(
        failed <= 20 && throttled >= 30,
        "at most 20 failures are paid for: {statuses:?}"
    );
    // Once throttled, the address stays refused (with Retry-After) for any key not yet
    // verified, even a valid one; a key verified before costs no bcrypt and is not refused
    // because others on its network failed (issue 27, H2: a proxy or a NAT shares a network).
    let other = world
        .relay
        .add_member("did:plc:oooooooooooooooooooooooo", "other.test", true);
    let (status, v, head) = curl(
        "POST",
        &url,
        &member_headers(&other),
        Some(
            json!({"from": "app@other.test", "to": format!("f@{RCPT_DOMAIN}"), "text": "t"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{v}"
    );
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    let (status, v, _) = curl("POST", &url, &member, Some(body.to_string().as_bytes()));
    assert_eq!(status, 200, "the verified key: {v}");
}

/// The other side of the credential cap: a member's pool of 40 SMTP connections logging in at
/// once on a fresh relay (nothing cached yet) all get in, one bcrypt for all. Before, logins in
/// flight counted as failures and the pool's own network was blocked for ten minutes.
#[test]
fn a_member_pool_logging_in_at_once_is_not_a_flood() {
    let world = World::start(Some(&[]), "");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (addr, did, key) = (
                    world.submission,
                    world.member.did.clone(),
                    world.member.api_key.clone(),
                );
                tokio::spawn(async move {
                    atmos_tests::client::connect(addr, &did, &key)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        refused.is_empty(),
        "{} of 40 refused: {refused:?}",
        refused.len()
    );
}

#[test]
fn trickling_and_non_reading_clients_are_cut_off() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ATMOS_SMTP_COMMAND_TIMEOUT", "2s"),
            ("ATMOS_SMTP_DATA_TIMEOUT", "2s"),
            ("ATMOS_SMTP_WRITE_TIMEOUT", "2s"),
        ],
    );
    let (submission, inbound) = (world.submission, world.relay.inbound.expect("inbound"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // One byte of a command every half second (each read well within the idle timeout).
        let mut s = TcpStream::connect(submission).await.expect("connect");
        first_line(&mut s).await;
        let trickle = async {
            for b in b"EHLO slowly.example.test".iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(8), trickle).await;
        let said = until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(said.contains("421 4.4.2 command took too long"), "{said:?}");

        // DATA that trickles a line every half second.
        let mut s = TcpStream::connect(inbound).await.expect("connect");
        first_line(&mut s).await;
        s.write_all(b"EHLO mx.example.test\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster@operator.test>\r\nDATA\r\n")
            .await
            .expect("write");
        let started = Instant::now();
        let mut said = String::new();
        while started.elapsed() < Duration::from_secs(8) && !said.contains("421") {
            if s.write_all(b"a line of a very slow message\r\n").await.is_err() {
                break;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                said.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        said.push_str(&until_closed(&mut s, Duration::from_secs(5)).await);
        assert!(said.contains("421 4.4.2 DATA took too long"), "{said:?}");

        // A client that pipelines commands and never reads the replies: the relay stops
        // writing after the write timeout and closes, so the client's writes start failing.
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small receive buffer");
        let mut s = socket.connect(submission).await.expect("connect");
        let chunk = b"NOOP\r\n".repeat(10_000);
        let started = Instant::now();
        let mut cut_off = false;
        while started.elapsed() < Duration::from_secs(30) {
            if s.write_all(&chunk).await.is_err() {
                cut_off = true;
                break;
            }
        }
        assert!(cut_off, "a client that never reads was not disconnected");
    });
    assert!(
        world
            .relay
            .log(1)
            .contains("client does not read its replies")
    );
}

#[test]
fn http_connections_headers_and_label_subscribers_are_capped() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ATMOS_HTTP_MAX_CONNECTIONS_PER_CLIENT", "5"),
            ("ATMOS_HTTP_HEADER_TIMEOUT", "1s"),
            ("ATMOS_LABELER_MAX_SUBSCRIBERS", "2"),
        ],
    );
    let http = world.relay.http.expect("http");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // A request whose headers never finish is closed after the header timeout.
        let mut slow = TcpStream::connect(http).await.expect("connect");
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let said = until_closed(&mut slow, Duration::from_secs(5)).await;
        assert!(!said.contains("200 OK"), "{said}");

        // Five connections per client address; a sixth is closed unanswered.
        let mut open = Vec::new();
        for _ in 0..5 {
            open.push(TcpStream::connect(http).await.expect("connect"));
        }
        let mut sixth = TcpStream::connect(http).await.expect("connect");
        let _ = sixth
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let said = until_closed(&mut sixth, Duration::from_secs(5)).await;
        assert!(said.is_empty(), "the sixth connection was served: {said}");
        // Another address is still served.
        let c = reqwest::Client::builder()
            .local_address("127.0.0.2".parse::<IpAddr>().ok())
            .build()
            .expect("client");
        let r = c
            .get(format!("http://{http}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(r.status(), 200);
        drop(open);

        // Two label subscribers; the third is refused with 503, and a subscriber that sends a
        // frame over 1 KiB is disconnected.
        let url = format!("ws://{http}/xrpc/com.atproto.label.subscribeLabels");
        // The five connections above are released as the server notices they closed.
        let mut first = None;
        for _ in 0..100 {
            if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
                first = Some(ws);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut a = first.expect("first subscriber");
        let (_b, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("second subscriber");
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
            other => panic!("third subscriber admitted: {:?}", other.map(|_| ())),
        }
        use futures_util::{SinkExt, StreamExt};
        let big = tokio_tungstenite::tungstenite::Message::Binary(vec![0u8; 64 * 1024].into());
        let _ = a.send(big).await;
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match a.next().await {
                    None
                    | Some(Err(_))
                    | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "an oversized frame must end the subscription"
        );
        // Its place is free again.
        poll_until(
            Duration::from_secs(10),
            "a subscriber place to free up",
            || rt_connect(&url),
        );
    });
}

fn rt_connect(url: &str) -> Option<()> {
    let url = url.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .ok()?
            .block_on(tokio_tungstenite::connect_async(&url))
            .ok()
            .map(|_| ())
    })
    .join()
    .ok()
    .flatten()
}

#[test]
fn forwarding_to_member_domains_is_bounded() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ATMOS_SMTP_FORWARD_RATE_PER_DOMAIN", "3"),
            ("ATMOS_SMTP_INBOUND_RATE_BURST", "100"),
            ("ATMOS_SMTP_INBOUND_RATE_PER_MINUTE", "1000"),
            ("ATMOS_SMTP_MAX_MESSAGE_SIZE", "2000000"),
            ("ATMOS_SERVER_MAX_QUEUE_BYTES", "50000000"),
            ("ATMOS_SERVER_FORWARD_QUEUE_SHARE", "1"),
        ],
    );
    let inbound = world.relay.inbound.expect("inbound");
    let http = world.relay.http.expect("http");
    let member = member_headers(&world.member);
    let (status, v, _) = curl(
        "PUT",
        &format!("http://{http}/member/forward-to"),
        &member,
        Some(
            json!({"domain": "sender.test", "address": "owner@rcpt.test"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(status, 200, "{v}");
    // Three replies a minute to one member domain (the fourth waits, below).
    for i in 0..2 {
        let v = mx::send(
            inbound,
            "a@stranger.test",
            &["hello@sender.test"],
            &format!("From: a@stranger.test\nSubject: r{i}\n\nhi\n"),
            false,
        );
        assert_eq!(code(&v["data"]), 250, "{v}");
    }
    // A message bigger than forwards' share of the queue (1% of 50 MB) is refused for now.
    let big = format!(
        "From: a@stranger.test\nSubject: big\n\n{}\n",
        "x".repeat(600_000)
    );
    let v = mx::send(
        inbound,
        "a@stranger.test",
        &["hello@sender.test"],
        &big,
        false,
    );
    assert_eq!(
        (code(&v["data"]), v["data"][1].as_str().map(|s| &s[..5])),
        (451, Some("4.3.1")),
        "{v}"
    );
    let v = mx::send(
        inbound,
        "a@stranger.test",
        &["hello@sender.test"],
        "From: a@stranger.test\nSubject: r4\n\nhi\n",
        false,
    );
    assert_eq!(code(&v["rcpt"][0]), 450, "{v}");
    // The member's own mail is not held up by either.
    let body = json!({"from": "app@sender.test", "to": format!("x@{RCPT_DOMAIN}"), "text": "t", "category": "transactional"});
    send_ok(http, &member, &body);
}
