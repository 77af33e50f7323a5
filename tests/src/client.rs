//! An STARTTLS + AUTH submission client built on mail-send, used by the crash tests and by the
//! load generator (so atmos and Postfix are driven by the same code).

use mail_send::smtp::message::Parameters;
use mail_send::{SmtpClient, SmtpClientBuilder};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An authenticated session.
pub type Session = SmtpClient<tokio_rustls::client::TlsStream<TcpStream>>;

/// Opens a session: connect, EHLO, STARTTLS (any certificate), EHLO, AUTH.
pub async fn connect(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<Session, mail_send::Error> {
    let session = SmtpClientBuilder::new(addr.ip().to_string(), addr.port())
        .map_err(|e| mail_send::Error::Io(std::io::Error::other(e)))?
        .implicit_tls(false)
        .allow_invalid_certs()
        .helo_host("loadgen.test")
        .timeout(Duration::from_secs(60))
        .credentials((user.to_string(), password.to_string()))
        .connect()
        .await?;
    // Without TCP_NODELAY small writes wait for delayed ACKs (~40 ms) and the client, not the
    // server, would set the pace.
    session.stream.get_ref().0.set_nodelay(true)?;
    Ok(session)
}

/// Sends one message in an open session; returns the server's final reply text.
pub async fn send(
    session: &mut Session,
    from: &str,
    to: &[&str],
    body: &[u8],
) -> Result<String, mail_send::Error> {
    session.mail_from(from, &Parameters::default()).await?;
    for rcpt in to {
        session.rcpt_to(rcpt, &Parameters::default()).await?;
    }
    let go = session.cmd(b"DATA\r\n").await?;
    if go.code != 354 {
        return Err(mail_send::Error::UnexpectedReply(go));
    }
    // One write for the whole message, dot-stuffed after every LF and otherwise as given: tests
    // send malformed line ends on purpose (the relay's own client would repair them).
    let data = stuff_only(body);
    session.stream.write_all(&data).await?;
    session.stream.flush().await?;
    let reply = session.read().await?;
    if reply.code / 100 != 2 {
        return Err(mail_send::Error::UnexpectedReply(reply));
    }
    Ok(format!("{} {}", reply.code, reply.message))
}

/// A dot doubled at the start of each line (after a LF), the final `.` line, nothing else
/// changed.
pub fn stuff_only(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A small RFC 5322 message of about `size` bytes, tagged with `X-Test-Id: <id>`.
pub fn message(from: &str, to: &str, id: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: test {id}\r\nX-Test-Id: {id}\r\nMessage-ID: <{id}@test>\r\n\r\n"
    );
    while m.len() + 2 < size {
        m.push_str("The quick brown fox jumps over the lazy dog, again and again and again.\r\n");
    }
    m.into_bytes()
}

/// A raw connection for protocol probes: connected, greeted, EHLO said (no TLS, no AUTH).
pub async fn probe_plain(addr: SocketAddr) -> SmtpClient<TcpStream> {
    let mut c = SmtpClient::connect(addr, Duration::from_secs(30))
        .await
        .expect("connect");
    c.read().await.expect("greeting");
    c.ehlo("probe.test").await.expect("ehlo");
    c
}

/// A raw probe after STARTTLS (any certificate) and a second EHLO, with that EHLO's reply.
pub async fn probe_tls(addr: SocketAddr) -> (Session, smtp_proto::EhloResponse<String>) {
    let connector = mail_send::smtp::tls::build_tls_connector(true).expect("tls connector");
    let mut c = probe_plain(addr)
        .await
        .start_tls(&connector, "relay.test")
        .await
        .expect("starttls");
    let ehlo = c.ehlo("probe.test").await.expect("ehlo after tls");
    (c, ehlo)
}

/// `AUTH PLAIN <base64>` for a DID and key.
pub fn auth_plain_line(did: &str, key: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("\0{did}\0{key}"));
    format!("AUTH PLAIN {b}")
}

/// One message submitted with swaks (STARTTLS, AUTH PLAIN) from `from` to `to` (comma-separated
/// recipients), the header `From: <from>` plus `headers`; returns (exit code, transcript).
pub fn swaks(
    submission: SocketAddr,
    user: &str,
    key: &str,
    from: &str,
    to: &str,
    headers: &[(&str, &str)],
) -> (i32, String) {
    let mut cmd = std::process::Command::new("swaks");
    cmd.args(["--server", &submission.to_string(), "--tls"])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            key,
        ])
        .args(["--from", from, "--to", to, "--h-From", &format!("<{from}>")]);
    for (name, value) in headers {
        cmd.arg(format!("--h-{name}")).arg(value);
    }
    let out = cmd.output().expect("run swaks");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
