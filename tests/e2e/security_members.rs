//! Issue 27: what a member (anyone can become one now), a rival recipient and a stranger on
//! port 25 can still do, each mounted against a running relay with real peers (smtplib and a
//! raw socket as the remote MTA, smtp-sink or a raw-recording MX as the recipient's, the CLI as
//! the operator). The web-side attacks, which need a real PDS, are in `security_web.rs`.

use atmos_tests::client;
use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::mx::{self, code};
use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::poll_until;
use atmos_tests::rawmx::RawMx;
use atmos_tests::relay::Relay;
use atmos_tests::setup::{DID, RCPT_DOMAIN, World};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const RIVAL: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
const NEWCOMER: &str = "did:plc:cccccccccccccccccccccccc";

fn count(relay: &Relay, sql: &str) -> i64 {
    relay.count(sql)
}

/// The usual world, where one remote MTA may send many transactions (every report and
/// forward of these tests comes from one address).
fn many_inbound_transactions() -> World {
    World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ATMOS_SMTP_INBOUND_RATE_PER_MINUTE", "1000"),
            ("ATMOS_SMTP_INBOUND_RATE_BURST", "100"),
        ],
    )
}

/// `atmos <args>`, which must succeed.
fn cli_ok(relay: &Relay, args: &[&str]) {
    let out = relay.cli(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// `MAIL FROM:<app@sender.test>` on an open session; its reply.
async fn mail_from(s: &mut client::Session) -> smtp_proto::Response<String> {
    s.cmd(b"MAIL FROM:<app@sender.test>\r\n")
        .await
        .expect("a reply to MAIL")
}

/// One plain SMTP transaction whose DATA bytes are written exactly as given (no dot-stuffing,
/// no repair of line ends), as a hostile client would; returns every reply line.
fn raw_transaction(to: SocketAddr, from: &str, rcpts: &[&str], data: &[u8]) -> Vec<String> {
    let stream = TcpStream::connect(to).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    let mut replies = Vec::new();
    let read_reply = |r: &mut BufReader<TcpStream>| loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return String::new();
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_string();
        }
    };
    replies.push(read_reply(&mut r));
    let say = |w: &mut TcpStream, r: &mut BufReader<TcpStream>, line: String| {
        w.write_all(line.as_bytes()).expect("write");
        read_reply(r)
    };
    replies.push(say(&mut w, &mut r, "EHLO raw.client.test\r\n".into()));
    replies.push(say(&mut w, &mut r, format!("MAIL FROM:<{from}>\r\n")));
    for rcpt in rcpts {
        replies.push(say(&mut w, &mut r, format!("RCPT TO:<{rcpt}>\r\n")));
    }
    replies.push(say(&mut w, &mut r, "DATA\r\n".into()));
    w.write_all(data).expect("data");
    replies.push(say(&mut w, &mut r, "\r\n.\r\n".into()));
    let _ = w.write_all(b"QUIT\r\n");
    replies
}

/// The bytes a recipient MX must never see from the relay: a bare CR or LF, or a dot line
/// framed by anything but CRLF.
fn assert_clean_on_the_wire(raw: &[u8], what: &str) {
    for (i, &b) in raw.iter().enumerate() {
        let bare = match b {
            b'\r' => raw.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || raw[i - 1] != b'\r',
            _ => false,
        };
        assert!(
            !bare,
            "{what}: bare {} at byte {i}: {:?}",
            if b == b'\r' { "CR" } else { "LF" },
            String::from_utf8_lossy(&raw[i.saturating_sub(20)..(i + 20).min(raw.len())])
        );
    }
    assert!(
        !raw.windows(3).any(|w| w == b"\r.\r"),
        "{what}: <CR>.<CR> on the wire"
    );
    assert_eq!(
        raw.windows(5).filter(|w| w == b"\r\n.\r\n").count(),
        1,
        "{what}: exactly one end of data"
    );
}

#[test]
fn forwarding_is_only_for_active_members_and_counts_against_their_caps() {
    let world = many_inbound_transactions();
    let relay = &world.relay;
    let inbound = relay.inbound.expect("inbound listener");
    // An approved member still warming (5 recipients an hour) with a forward-to address.
    let rival = relay.add_member(RIVAL, "rival.test", true);
    cli_ok(
        relay,
        &[
            "member",
            "forward-to",
            "--domain",
            "rival.test",
            "--address",
            &format!("inbox@{RCPT_DOMAIN}"),
        ],
    );
    let mail = |to: &str, n: usize| {
        let message =
            format!("From: <stranger@elsewhere.test>\nTo: <{to}>\nSubject: spam {n}\n\nbuy now\n");
        mx::send(inbound, "stranger@elsewhere.test", &[to], &message, false)
    };
    // Forwarded copies are sent from the shared IP on the member's behalf: they count against
    // its cap, so the sixth of the hour waits (451 4.7.1), and nothing more is queued.
    for n in 0..5 {
        let v = mail("anyone@rival.test", n);
        assert_eq!(code(&v["data"]), 250, "forward {n}: {v}");
    }
    let v = mail("anyone@rival.test", 5);
    assert_eq!(code(&v["data"]), 451, "over the member's cap: {v}");
    assert!(
        v["data"][1].as_str().unwrap_or_default().contains("4.7.1"),
        "{v}"
    );
    // Forwards have a budget of their own: strangers mailing the domain did not spend the
    // member's own sending.
    let http = relay.http.expect("http");
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/v1/send"),
        &member_headers(&rival),
        Some(
            json!({"from": "app@rival.test", "to": format!("own@{RCPT_DOMAIN}"), "text": "mine",
                   "category": "transactional"})
            .to_string()
            .as_bytes(),
        ),
    );
    assert_eq!(status, 200, "the member's own send: {v}");
    let forwards = || {
        count(
            relay,
            "SELECT count(*) FROM messages WHERE source = 'forward' AND did != ''",
        )
    };
    assert_eq!(forwards(), 5);

    // Suspended: its domain takes no mail to forward at all.
    cli_ok(relay, &["member", "suspend", RIVAL, "--reason", "abuse"]);
    let v = mail("anyone@rival.test", 6);
    assert_eq!(code(&v["rcpt"][0]), 550, "{v}");
    assert!(
        v["rcpt"][0][1]
            .as_str()
            .unwrap_or_default()
            .contains("5.7.1"),
        "{v}"
    );
    assert_eq!(forwards(), 5, "nothing queued for a suspended member");

    // Pending (enrolled by anyone, never approved): the CLI refuses a forward-to, and an
    // address stored by the old web API (written here as it was) forwards nothing.
    relay.add_member(NEWCOMER, "newcomer.test", false);
    let out = relay.cli(&[
        "member",
        "forward-to",
        "--domain",
        "newcomer.test",
        "--address",
        "victim@gmail.test",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MEMBER_NOT_ACTIVE"),
        "{out:?}"
    );
    let db = rusqlite::Connection::open(relay.data_dir().join("atmos.sqlite")).expect("db");
    db.busy_timeout(Duration::from_secs(5)).expect("busy");
    db.execute(
        "UPDATE sending_domains SET forward_to = ?1 WHERE domain = 'newcomer.test'",
        [format!("victim@{RCPT_DOMAIN}")],
    )
    .expect("store a forward-to");
    let v = mail("anyone@newcomer.test", 7);
    assert_eq!(code(&v["rcpt"][0]), 550, "{v}");
    assert!(
        v["rcpt"][0][1]
            .as_str()
            .unwrap_or_default()
            .contains("5.7.1"),
        "{v}"
    );
    assert_eq!(forwards(), 5, "nothing queued for a pending member");
    assert!(
        world.sink.messages_with("victim@").is_empty(),
        "nothing forwarded to the victim"
    );
}

/// The delivered copy for `rcpt`, as the sink kept it.
fn copy_for(world: &World, rcpt: &str) -> String {
    poll_until(Duration::from_secs(30), "the delivered copy", || {
        world.sink.messages().into_iter().find(|m| {
            m.lines()
                .any(|l| l.starts_with("X-Rcpt-Args:") && l.contains(rcpt))
        })
    })
}

/// `message` without the header fields named (case-insensitive), folded lines included.
fn without(message: &str, names: &[&str]) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut in_headers = true;
    for line in message.replace("\r\n", "\n").split_inclusive('\n') {
        if in_headers && (line == "\n") {
            in_headers = false;
        }
        if in_headers {
            if line.starts_with([' ', '\t']) {
                if skipping {
                    continue;
                }
            } else {
                skipping = names.iter().any(|n| {
                    line.len() > n.len()
                        && line[..n.len()].eq_ignore_ascii_case(n)
                        && line.as_bytes()[n.len()] == b':'
                });
                if skipping {
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    out
}

#[test]
fn a_recipient_complains_and_bounces_only_for_its_own_copy() {
    let world = many_inbound_transactions();
    let relay = &world.relay;
    let inbound = relay.inbound.expect("inbound listener");
    let http = relay.http.expect("http");
    let member = member_headers(&world.member);
    let suppressed = |a: &str| {
        count(
            relay,
            &format!("SELECT count(*) FROM suppressions WHERE address = '{a}'"),
        )
    };
    let events = |kind: &str| {
        count(
            relay,
            &format!("SELECT count(*) FROM relay_events WHERE type = '{kind}'"),
        )
    };
    let arf = |named: &[&str], original: &str| {
        let v = mx::send(
            inbound,
            "fbl@provider.test",
            &["fbl@operator.test"],
            &mx::arf_many("fbl@operator.test", named, original),
            false,
        );
        assert_eq!(code(&v["data"]), 250, "{v}");
    };

    // One message to three people who can all see each other (one stored copy for all).
    let (a, b, c) = (
        format!("a@{RCPT_DOMAIN}"),
        format!("b@{RCPT_DOMAIN}"),
        format!("c@{RCPT_DOMAIN}"),
    );
    send_ok(
        http,
        &member,
        &json!({"from": "app@sender.test", "to": [a, b, c], "subject": "team",
                "text": "hello", "category": "transactional"}),
    );
    let a_copy = copy_for(&world, &a);
    assert!(
        a_copy.contains("X-Atmos-Copy: <bounces+"),
        "each copy names its own return path: {a_copy}"
    );
    // The rival (a) drops both fields that name its copy and names everyone: the relay's
    // signature proves the message, not whose copy it is, so nobody is touched.
    let stripped = without(
        &a_copy,
        &["Return-Path", "X-Atmos-Copy", "X-Mail-Args", "X-Rcpt-Args"],
    );
    arf(&[&a, &b, &c], &stripped);
    for who in [&a, &b, &c] {
        assert_eq!(
            suppressed(who),
            0,
            "{who} suppressed by a copy that is not theirs"
        );
    }
    assert_eq!(events("complaint_received"), 0);
    // With its copy's own field (Return-Path dropped, as some receivers do): a alone.
    let keeps_copy = without(&a_copy, &["Return-Path", "X-Mail-Args", "X-Rcpt-Args"]);
    arf(&[&a, &b, &c], &keeps_copy);
    assert_eq!((suppressed(&a), suppressed(&b), suppressed(&c)), (1, 0, 0));
    assert_eq!(events("complaint_received"), 1);
    // A DSN built from a's copy naming b and c as failed bounces neither.
    let dsn = mx::dsn_blocks(
        "postmaster@operator.test",
        &[
            (b.as_str(), "failed", "5.1.1"),
            (c.as_str(), "failed", "5.1.1"),
        ],
        &mx::headers_of(&keeps_copy),
    );
    let v = mx::send(inbound, "", &["postmaster@operator.test"], &dsn, false);
    assert_eq!(code(&v["data"]), 250, "{v}");
    assert_eq!(events("bounce_received"), 0);
    assert_eq!(
        count(
            relay,
            "SELECT count(*) FROM recipients WHERE status = 'bounced'"
        ),
        0
    );

    // Bulk mail from an SMTP client that sets its own Message-ID: one copy per recipient, all
    // with that id. d returns its copy stripped and names e and f: nothing happens to them.
    let (d, e, f) = (
        format!("d@{RCPT_DOMAIN}"),
        format!("e@{RCPT_DOMAIN}"),
        format!("f@{RCPT_DOMAIN}"),
    );
    let key = world.member.api_key.clone();
    let submission = world.submission;
    let to = [d.clone(), e.clone(), f.clone()];
    tokio::runtime::Runtime::new().expect("rt").block_on(async {
        let mut s = client::connect(submission, DID, &key).await.expect("login");
        let body = format!(
            "From: <app@sender.test>\r\nTo: <{d}>, <{e}>, <{f}>\r\nSubject: news\r\n\
             Message-ID: <newsletter-1@sender.test>\r\n\r\nthis week\r\n"
        );
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        client::send(&mut s, "app@sender.test", &to, body.as_bytes())
            .await
            .expect("bulk accepted");
    });
    let d_copy = copy_for(&world, &d);
    let stripped = without(
        &d_copy,
        &["Return-Path", "X-Atmos-Copy", "X-Mail-Args", "X-Rcpt-Args"],
    );
    arf(&[&e, &f], &stripped);
    assert_eq!((suppressed(&d), suppressed(&e), suppressed(&f)), (0, 0, 0));
    let keeps_copy = without(&d_copy, &["Return-Path", "X-Mail-Args", "X-Rcpt-Args"]);
    arf(&[&d, &e, &f], &keeps_copy);
    assert_eq!((suppressed(&d), suppressed(&e), suppressed(&f)), (1, 0, 0));
    assert_eq!(events("complaint_received"), 2);
}

#[test]
fn a_suspension_or_a_new_key_reaches_an_open_session() {
    let world = World::start(Some(&[]), "");
    let relay = &world.relay;
    let (submission, key) = (world.submission, world.member.api_key.clone());
    let rcpt = format!("s@{RCPT_DOMAIN}");
    let message = client::message("app@sender.test", &rcpt, "m1", 200);
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let mut s = client::connect(submission, DID, &key).await.expect("login");
        client::send(&mut s, "app@sender.test", &[&rcpt], &message)
            .await
            .expect("first message");
        // Suspended while the session is open: its next MAIL is refused.
        cli_ok(relay, &["member", "suspend", DID, "--reason", "test"]);
        let r = mail_from(&mut s).await;
        assert_eq!(r.code, 550, "{r:?}");
        assert!(r.message.contains("suspended"), "{r:?}");
        cli_ok(relay, &["member", "reactivate", DID]);
        // Suspended between RCPT and DATA: the commit refuses, nothing is queued.
        let before = relay.count("SELECT count(*) FROM messages");
        mail_from(&mut s).await;
        s.cmd(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
            .await
            .expect("rcpt");
        cli_ok(relay, &["member", "suspend", DID]);
        let go = s.cmd(b"DATA\r\n").await.expect("data");
        assert_eq!(go.code, 354);
        use tokio::io::AsyncWriteExt;
        s.stream
            .write_all(&atmos_relay::line_ends::dot_stuff(&message))
            .await
            .expect("write");
        let r = s.read().await.expect("reply");
        assert_eq!(r.code, 550, "{r:?}");
        assert_eq!(relay.count("SELECT count(*) FROM messages"), before);
        cli_ok(relay, &["member", "reactivate", DID]);
        // A new key (the old one leaked): the session that logged in with the old one stops.
        cli_ok(relay, &["member", "new-key", DID]);
        let r = mail_from(&mut s).await;
        assert_eq!(r.code, 530, "{r:?}");
        assert!(r.message.contains("key was changed"), "{r:?}");
    });
}

#[test]
fn a_session_ends_after_its_transactions_and_its_lifetime() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ATMOS_SMTP_MAX_TRANSACTIONS_PER_SESSION", "3"),
            ("ATMOS_SMTP_MAX_SESSION_LIFETIME", "3s"),
        ],
    );
    let (submission, key) = (world.submission, world.member.api_key.clone());
    let rcpt = format!("t@{RCPT_DOMAIN}");
    let message = client::message("app@sender.test", &rcpt, "t", 200);
    tokio::runtime::Runtime::new().expect("rt").block_on(async {
        let mut s = client::connect(submission, DID, &key).await.expect("login");
        for _ in 0..3 {
            client::send(&mut s, "app@sender.test", &[&rcpt], &message)
                .await
                .expect("within the cap");
        }
        let r = mail_from(&mut s).await;
        assert_eq!((r.code, r.esc[0]), (421, 4), "{r:?}");
        assert!(s.read().await.is_err(), "the session is closed");
        // A new session, kept busy with NOOPs past its lifetime: its next MAIL is refused.
        let mut s = client::connect(submission, DID, &key).await.expect("login");
        let started = Instant::now();
        let r = mail_from(&mut s).await;
        assert_eq!(r.code, 250, "young enough: {r:?}");
        s.cmd(b"RSET\r\n").await.expect("rset");
        while started.elapsed() < Duration::from_millis(3500) {
            let r = s.cmd(b"NOOP\r\n").await.expect("noop");
            assert_eq!(r.code, 250, "{r:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let end = mail_from(&mut s).await;
        assert_eq!(end.code, 421, "{end:?}");
        assert!(end.message.contains("too long"), "{end:?}");
    });
}

#[test]
fn bare_line_ends_never_reach_a_recipient_mx() {
    let dns = Dns::with_mx(&[RCPT_DOMAIN]);
    let raw_mx = RawMx::start();
    let mut relay = Relay::new(Some(&dns.address()), raw_mx.port, "");
    let member = relay.add_member(DID, "sender.test", true);
    relay.trust(DID);
    let submission = relay.start();
    let inbound = relay.inbound.expect("inbound listener");
    // SMTP smuggling shapes in a member's body: <CR>.<CR><LF>, <CR><LF>.<CR>, bare LFs.
    let smuggled: &[u8] = b"From: <app@sender.test>\r\nTo: <s@rcpt.test>\r\nSubject: x\r\n\r\n\
        hello\r.\r\nMAIL FROM:<ceo@rival.test>\r\nRCPT TO:<victim@rcpt.test>\r\nDATA\r\n\
        From: ceo@rival.test\r\n\r\nsmuggled\r\n.\rafter\nbare lf\n.\nend\r\n";
    let key = member.api_key.clone();
    let reply = tokio::runtime::Runtime::new().expect("rt").block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut s = client::connect(submission, DID, &key).await.expect("login");
        mail_from(&mut s).await;
        s.cmd(b"RCPT TO:<s@rcpt.test>\r\n").await.expect("rcpt");
        assert_eq!(s.cmd(b"DATA\r\n").await.expect("data").code, 354);
        s.stream.write_all(smuggled).await.expect("write");
        s.stream.write_all(b"\r\n.\r\n").await.expect("end");
        s.read().await.expect("reply")
    });
    assert_eq!(reply.code, 250, "normalised and accepted: {reply:?}");
    // A stranger's bytes forwarded to a member's address.
    cli_ok(
        &relay,
        &[
            "member",
            "forward-to",
            "--domain",
            "sender.test",
            "--address",
            &format!("inbox@{RCPT_DOMAIN}"),
        ],
    );
    let replies = raw_transaction(
        inbound,
        "stranger@elsewhere.test",
        &["reply@sender.test"],
        b"From: <stranger@elsewhere.test>\r\nSubject: y\r\n\r\nhi\r.\r\nMAIL FROM:<x@y.test>\r\n.\rz\nw\r\n",
    );
    assert!(
        replies.last().is_some_and(|r| r.starts_with("250")),
        "{replies:?}"
    );
    let transfers = poll_until(Duration::from_secs(30), "both deliveries", || {
        let t = raw_mx.transfers();
        (t.len() >= 2).then_some(t)
    });
    assert_eq!(transfers.len(), 2, "no second, smuggled transaction");
    for (i, t) in transfers.iter().enumerate() {
        assert_clean_on_the_wire(t, &format!("transfer {i}"));
        let text = String::from_utf8_lossy(t);
        assert!(
            text.contains("\r\n..\r\n"),
            "the lone dot is stuffed: {text}"
        );
    }
    assert!(
        transfers
            .iter()
            .any(|t| String::from_utf8_lossy(t).contains("\r\nMAIL FROM:<ceo@rival.test>\r\n")),
        "the smuggled command is only text in the body"
    );
}

#[test]
fn reserved_names_cannot_be_enrolled_and_the_operator_keys_stay() {
    let world = World::start(Some(&[]), "");
    let relay = &world.relay;
    let operator_keys = || {
        let db = relay.db();
        let mut stmt = db
            .prepare(
                "SELECT selector || ':' || coalesce(retired_at, 0) FROM dkim_keys
                 WHERE domain = 'operator.test' ORDER BY id",
            )
            .expect("prepare");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect::<Vec<_>>()
    };
    let before = operator_keys();
    assert!(!before.is_empty());
    for domain in [
        "operator.test",
        "Mail.Operator.test",
        "relay.test",
        "a.relay.test",
    ] {
        let did = "did:plc:dddddddddddddddddddddddd";
        let out = relay.cli(&["member", "add", "--did", did, "--domain", domain]);
        assert_eq!(out.status.code(), Some(2), "{domain}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("reserved"),
            "{domain}: {out:?}"
        );
    }
    assert_eq!(
        operator_keys(),
        before,
        "the operator's keys did not change"
    );
    assert_eq!(
        relay.count("SELECT count(*) FROM sending_domains WHERE domain LIKE '%operator.test' OR domain LIKE '%relay.test'"),
        0
    );
}

/// Times a member's send during a flood: runs with the machine to itself (tests/e2e/main.rs: `alone`).
mod alone {
    use super::*;

    #[test]
    fn a_flood_of_heavy_reports_does_not_slow_a_members_send() {
        let world = World::start_with_env(
            Some(&[]),
            "",
            &[
                ("ATMOS_SMTP_MAX_MESSAGE_SIZE", "8000000"),
                ("ATMOS_SMTP_INBOUND_RATE_PER_MINUTE", "1000"),
                ("ATMOS_SMTP_INBOUND_RATE_BURST", "100"),
            ],
        );
        let relay = &world.relay;
        let inbound = relay.inbound.expect("inbound listener");
        let http = relay.http.expect("http");
        let member = member_headers(&world.member);
        let selector: String = relay
            .db()
            .query_row(
                "SELECT selector FROM dkim_keys WHERE domain = 'operator.test' AND algorithm = 'rsa'",
                [],
                |r| r.get(0),
            )
            .expect("operator selector");
        // A 5 MB report whose enclosed original has 2,000 filler fields and 1,000 signatures of
        // the operator domain with the real selector, each naming in h= 1,000 distinct fields that
        // do not exist: mail-auth looks each name up through every field, so one signature costs
        // ~3 million comparisons (measured: 2.5 ms in a release build; 1,000 of them per report).
        let names = (0..1000)
            .map(|i| format!("y{i}"))
            .collect::<Vec<_>>()
            .join(":");
        let mut original = String::from("X-Atmos-Member-Did: ");
        original.push_str(DID);
        original.push_str("\r\nMessage-ID: <flood@sender.test>\r\nFrom: <app@sender.test>\r\n");
        for i in 0..2000 {
            original.push_str(&format!("X: filler {i}\r\n"));
        }
        for _ in 0..1000 {
            original.push_str(&format!(
                "DKIM-Signature: v=1; a=rsa-sha256; d=operator.test; s={selector}; c=relaxed/relaxed;\r\n \
                 h=from:message-id:x-atmos-member-did:{names};\r\n bh=AAAA; b=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
            ));
        }
        original.push_str("\r\nbody\r\n");
        let report = mx::arf("fbl@operator.test", &format!("x@{RCPT_DOMAIN}"), &original);
        assert!(report.len() > 4_000_000, "{}", report.len());
        let path = relay.dir.path().join("flood.eml");
        std::fs::write(
            &path,
            report.replace('\n', "\r\n").replace("\r\r\n", "\r\n"),
        )
        .expect("write");
        // Three strangers at once, while the member sends.
        let floods: Vec<_> = (0..3)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let data = std::fs::read(&path).expect("report");
                    let started = Instant::now();
                    let replies = raw_transaction(
                        inbound,
                        "fbl@provider.test",
                        &["fbl@operator.test"],
                        &data,
                    );
                    (replies, started.elapsed())
                })
            })
            .collect();
        // Sends during the flood answer within a second.
        let mut slowest = Duration::ZERO;
        for n in 0..10 {
            let started = Instant::now();
            send_ok(
                http,
                &member,
                &json!({"from": "app@sender.test", "to": format!("m{n}@{RCPT_DOMAIN}"),
                        "text": "hi", "category": "transactional"}),
            );
            slowest = slowest.max(started.elapsed());
        }
        assert!(
            slowest < Duration::from_secs(1),
            "a member's send took {slowest:?} during the flood"
        );
        for f in floods {
            let (replies, took) = f.join().expect("flood thread");
            assert!(
                replies.last().is_some_and(|r| r.starts_with("250")),
                "{replies:?}"
            );
            assert!(took < Duration::from_secs(60), "a report took {took:?}");
        }
        assert_eq!(
            count(relay, "SELECT count(*) FROM suppressions"),
            0,
            "no signature in the flood verified"
        );
    }
}

#[test]
fn a_huge_report_subject_is_refused() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let body = json!({
        "reasonType": "com.atproto.moderation.defs#reasonSpam",
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": format!("did:plc:{}", "a".repeat(1_000_000))},
    });
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/xrpc/com.atproto.moderation.createReport"),
        &["Authorization: Bearer x.y.z".into()],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(status, 400, "{v}");
    let long_type = json!({
        "reasonType": "r".repeat(5000),
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"},
    });
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/xrpc/com.atproto.moderation.createReport"),
        &["Authorization: Bearer x.y.z".into()],
        Some(long_type.to_string().as_bytes()),
    );
    assert_eq!(status, 400, "{v}");
}

#[test]
fn identity_lookups_ignore_proxy_variables() {
    // A handle whose web server is on the operator's private network, and an HTTPS proxy in the
    // relay's environment: a client that honoured the proxy would skip the private-address
    // guard (the proxy resolves the name). The proxy here only counts who connects.
    let dns = Dns::start(
        &["victim.test"],
        &["host-record=victim.test,10.0.0.1".to_string()],
    );
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy");
    proxy.set_nonblocking(true).expect("non-blocking");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("address"));
    let sink = SmtpSink::start(&[]);
    let mut relay = Relay::new(Some(&dns.address()), sink.port, "");
    relay.env = vec![
        ("HTTPS_PROXY".into(), proxy_url.clone()),
        ("HTTP_PROXY".into(), proxy_url.clone()),
        ("ALL_PROXY".into(), proxy_url),
    ];
    relay.start();
    let http = relay.http.expect("http");
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/api/signin"),
        &[],
        Some(json!({"identifier": "victim.test"}).to_string().as_bytes()),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], "IDENTITY", "{v}");
    assert!(
        proxy.accept().is_err(),
        "the relay went through the proxy from its environment"
    );
}

/// `curl` from a chosen loopback source address: another client, as a proxy sees it.
fn curl_from(
    source: &str,
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> (u16, serde_json::Value, String) {
    atmos_tests::http::curl_with(&["--interface", source], method, url, headers, body)
}

#[test]
fn behind_a_reverse_proxy_the_client_is_the_client() {
    let world = World::start_with_env(
        Some(&[]),
        "",
        &[("ATMOS_HTTP_TRUSTED_PROXIES", "[\"127.0.0.1/32\"]")],
    );
    let relay = &world.relay;
    let http = relay.http.expect("http");
    let nginx = atmos_tests::peers::Nginx::proxy_to(http);
    let proxied = format!("http://127.0.0.1:{}", nginx.port);
    let other = relay.add_member(RIVAL, "rival.test", true);
    relay.trust(RIVAL);
    let send = |source: &str, member: &atmos_tests::relay::TestMember, n: usize| {
        let body = json!({"from": format!("app@{}", member.domain), "to": format!("p{n}@{RCPT_DOMAIN}"),
                          "text": "hi", "category": "transactional"});
        curl_from(
            source,
            "POST",
            &format!("{proxied}/v1/send"),
            &member_headers(member),
            Some(body.to_string().as_bytes()),
        )
        .0
    };
    // The member sends from 127.0.0.2 (its key is verified once).
    assert_eq!(send("127.0.0.2", &world.member, 0), 200);
    // A stranger on the same network tries 25 bad keys through the proxy: throttled.
    let bad = vec![
        format!("X-Atmos-DID: {DID}"),
        "Authorization: Bearer atmos_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".to_string(),
    ];
    // At once, as an attacker would (failures are slowed down one by one, not refused).
    let flood = |source: &'static str, url: String, vary: bool| -> Vec<u16> {
        let threads: Vec<_> = (0..25)
            .map(|n| {
                let (url, mut h) = (url.clone(), bad.clone());
                if vary {
                    h.push(format!("X-Forwarded-For: 198.51.100.{n}"));
                }
                std::thread::spawn(move || curl_from(source, "GET", &url, &h, None).0)
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("curl"))
            .collect()
    };
    let codes = flood("127.0.0.2", format!("{proxied}/member/status"), false);
    assert!(
        codes.contains(&429),
        "the stranger's network is throttled: {codes:?}"
    );
    // Another client through the same proxy is not: before, every client was the proxy.
    assert_eq!(send("127.0.0.3", &other, 1), 200);
    // A key already verified is not refused because its own network is throttled.
    assert_eq!(send("127.0.0.2", &world.member, 2), 200);
    // Varying X-Forwarded-For does not dodge the throttle: through the proxy its own entry is
    // right-most, and from a peer that is not a trusted proxy the header is ignored.
    let through_proxy = flood("127.0.0.4", format!("{proxied}/member/status"), true);
    assert!(through_proxy.contains(&429), "{through_proxy:?}");
    let direct = flood("127.0.0.5", format!("http://{http}/member/status"), true);
    assert!(direct.contains(&429), "{direct:?}");
    assert!(
        through_proxy
            .iter()
            .chain(&direct)
            .filter(|c| **c == 401)
            .count()
            <= 40,
        "at most 20 attempts each were paid for"
    );
    // Sign-ins are counted per client too: 30 a minute from one, and another still starts.
    let signin = |source: &str| {
        curl_from(
            source,
            "POST",
            &format!("{proxied}/api/signin"),
            &[],
            Some(
                json!({"identifier": "nobody.invalid"})
                    .to_string()
                    .as_bytes(),
            ),
        )
        .0
    };
    let codes: Vec<u16> = (0..31).map(|_| signin("127.0.0.6")).collect();
    assert_eq!(codes.last(), Some(&429), "{codes:?}");
    assert_eq!(
        signin("127.0.0.7"),
        400,
        "another client's sign-in is judged on its own"
    );
    drop(nginx);

    // A TLS proxy in front (public_url https, listen on loopback) with no trusted proxies is
    // probably a mistake: start-up says so.
    let mut careless = Relay::new(
        None,
        world.sink.port,
        "[web]\npublic_url = \"https://mail.example.test\"\n",
    );
    careless.start();
    let log = careless.plain_log(1);
    assert!(
        log.contains("trusted_proxies is empty"),
        "no warning at start-up: {log}"
    );
}

#[test]
fn an_srs_address_takes_only_bounces() {
    let world = many_inbound_transactions();
    let relay = &world.relay;
    let inbound = relay.inbound.expect("inbound listener");
    cli_ok(
        relay,
        &[
            "member",
            "forward-to",
            "--domain",
            "sender.test",
            "--address",
            &format!("inbox@{RCPT_DOMAIN}"),
        ],
    );
    // Mail forwarded from a sender the relay then names in an SRS address (a member can forge
    // that sender by mailing its own domain).
    let v = mx::send(
        inbound,
        &format!("victim@{RCPT_DOMAIN}"),
        &["reply@sender.test"],
        "From: <victim@rcpt.test>\nSubject: hi\n\nhello\n",
        false,
    );
    assert_eq!(code(&v["data"]), 250, "{v}");
    let srs: String = relay
        .db()
        .query_row(
            "SELECT return_path FROM messages WHERE source = 'forward' AND return_path LIKE 'SRS0=%'",
            [],
            |r| r.get(0),
        )
        .expect("the SRS sender of the forward");
    let spam = "From: <ceo@anywhere.test>\nSubject: buy\n\nnow\n";
    // A message of a stranger's choosing to that address would leave signed by the operator.
    let v = mx::send(inbound, "stranger@elsewhere.test", &[&srs], spam, false);
    assert_eq!(code(&v["rcpt"][0]), 550, "{v}");
    assert!(
        v["rcpt"][0][1]
            .as_str()
            .unwrap_or_default()
            .contains("5.7.1"),
        "{v}"
    );
    // A bounce (the null sender) is what it exists for: returned, counted as a return.
    let v = mx::send(inbound, "", &[&srs], spam, false);
    assert_eq!(code(&v["data"]), 250, "{v}");
    assert_eq!(
        count(
            relay,
            "SELECT count(*) FROM messages WHERE category = 'srs_return'"
        ),
        1
    );
}
