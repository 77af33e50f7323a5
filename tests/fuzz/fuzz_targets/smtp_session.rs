//! SMTP command parsing and the session state machine, DATA with dot-stuffing and AUTH, driven
//! through the same session code the listeners run, with a policy that accepts what it is asked.
//! Invariants: no panic or hang; every reply line the relay writes is a well-formed SMTP reply.
#![no_main]
use atmos_relay::address::{Mailbox, ReversePath};
use atmos_relay::smtp::protocol::{Credentials, Limits, Profile, Reply, SessionState};
use atmos_relay::smtp::session::{AuthOutcome, Policy, SessionSettings, converse};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Accepting(SessionSettings);

impl Policy for Accepting {
    fn settings(&self) -> &SessionSettings {
        &self.0
    }
    fn admit(&self, _: SocketAddr) -> Option<Reply> {
        None
    }
    fn mail(&self, _: &SessionState, _: SocketAddr, _: &ReversePath) -> Reply {
        Reply::new(250, "2.1.0", "OK")
    }
    fn rcpt(&self, _: &SessionState, address: &Mailbox) -> Reply {
        // Something to refuse, so the error paths run too.
        if address.local().starts_with("no") {
            Reply::new(550, "5.1.1", "No such user")
        } else {
            Reply::new(250, "2.1.5", "OK")
        }
    }
    async fn data(&self, state: &SessionState, _: SocketAddr, body: Vec<u8>) -> Reply {
        assert!(!state.recipients.is_empty(), "DATA without recipients");
        assert!(body.len() <= self.0.limits.max_message_size + 64 * 1024);
        Reply::new(250, "2.0.0", "Queued")
    }
    fn too_big(&self, _: &SessionState) -> Reply {
        Reply::new(552, "5.3.4", "Too big")
    }
    async fn authenticate(&self, _: SocketAddr, c: Result<Credentials, Reply>) -> AuthOutcome {
        match c {
            Ok(c) if c.username == "did:plc:fuzz" && c.password == "key" => {
                AuthOutcome::Authenticated(c.username, None)
            }
            Ok(_) => AuthOutcome::Refused(Reply::new(535, "5.7.8", "Bad credentials")),
            Err(r) => AuthOutcome::Refused(r),
        }
    }
}

fn policy(profile: Profile) -> Arc<Accepting> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["mx.example".into()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .expect("key");
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("tls");
    Arc::new(Accepting(SessionSettings {
        name: "fuzz",
        hostname: "mx.example".into(),
        limits: Limits {
            max_message_size: 4096,
            max_recipients: 5,
            profile,
        },
        idle_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        max_sessions: 10,
        max_sessions_per_client: 10,
        max_transactions: 1000,
        max_lifetime: Duration::from_secs(3600),
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
    }))
}

fuzz_target!(|data: &[u8]| {
    static MX: OnceLock<Arc<Accepting>> = OnceLock::new();
    static SUBMISSION: OnceLock<Arc<Accepting>> = OnceLock::new();
    // The first byte picks the profile: port 25 rules or submission rules.
    let Some((&first, input)) = data.split_first() else { return };
    let p = if first & 1 == 0 {
        MX.get_or_init(|| policy(Profile::Mx)).clone()
    } else {
        SUBMISSION.get_or_init(|| policy(Profile::Submission)).clone()
    };
    let out = atmos_fuzz::runtime().block_on(async move {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let session = tokio::spawn(async move { converse(&mut server, peer, p).await });
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        session.await.expect("the session task panicked");
        out
    });
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        assert!(line.ends_with(b"\r"), "reply line without CRLF");
        assert!(line.len() >= 4 && line[..3].iter().all(u8::is_ascii_digit), "not a reply");
        assert!(line[3] == b' ' || line[3] == b'-', "bad reply separator");
    }
});
