//! The outbound SMTP client: connect, EHLO, opportunistic STARTTLS, and one transaction per
//! message over a reused connection. Built on mail-send's `SmtpClient`.

use crate::address::{Mailbox, ReversePath};
use mail_send::SmtpClient;
use smtp_proto::{EXT_START_TLS, Response};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The connection failed or broke; every recipient of the transaction is deferred.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

impl From<mail_send::Error> for TransportError {
    fn from(e: mail_send::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<std::io::Error> for TransportError {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// A remote reply as stored with an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReply {
    pub code: u16,
    pub text: String,
}

impl RemoteReply {
    fn from_response(r: &Response<String>) -> Self {
        let esc = if r.esc[0] > 0 {
            format!("{}.{}.{} ", r.esc[0], r.esc[1], r.esc[2])
        } else {
            String::new()
        };
        let message = r.message.replace(['\r', '\n'], " ");
        Self {
            code: r.code,
            text: format!("{} {esc}{}", r.code, message.trim()),
        }
    }
}

enum Stream {
    Plain(SmtpClient<TcpStream>),
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

/// An open, greeted connection to one mail host.
pub struct Connection {
    stream: Stream,
    /// The host name (for logs and attempt records).
    pub host: String,
    /// False once the server said 421 or the stream broke: do not reuse.
    pub reusable: bool,
}

/// Connection parameters.
#[derive(Clone)]
pub struct ClientConfig {
    pub ehlo_name: String,
    pub timeout: Duration,
    pub tls: TlsConnector,
}

impl Connection {
    /// Connects, reads the greeting, says EHLO, and upgrades with STARTTLS when offered.
    /// A failed TLS handshake falls back to a fresh plaintext connection (opportunistic TLS).
    pub async fn open(
        addr: SocketAddr,
        host: &str,
        cfg: &ClientConfig,
    ) -> Result<Self, ConnectError> {
        match Self::open_once(addr, host, cfg, true).await {
            Err(ConnectError::Tls(e)) => {
                tracing::info!(%addr, host, error = %e, "delivery: STARTTLS failed, retrying in clear");
                Self::open_once(addr, host, cfg, false).await
            }
            other => other,
        }
    }

    async fn open_once(
        addr: SocketAddr,
        host: &str,
        cfg: &ClientConfig,
        try_tls: bool,
    ) -> Result<Self, ConnectError> {
        let mut client = SmtpClient::connect(addr, cfg.timeout)
            .await
            .map_err(|e| ConnectError::Transport(e.into()))?;
        // Each command waits for its reply; Nagle would only add delayed-ACK stalls.
        let _ = client.stream.set_nodelay(true);
        let greeting = client
            .read()
            .await
            .map_err(|e| ConnectError::Transport(e.into()))?;
        if greeting.code / 100 != 2 {
            return Err(ConnectError::Refused(RemoteReply::from_response(&greeting)));
        }
        let ehlo = client
            .ehlo(&cfg.ehlo_name)
            .await
            .map_err(refused_or_transport)?;
        let stream = if try_tls && ehlo.has_capability(EXT_START_TLS) {
            let mut tls = client
                .start_tls(&cfg.tls, host)
                .await
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            tls.ehlo(&cfg.ehlo_name)
                .await
                .map_err(refused_or_transport)?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(client)
        };
        Ok(Self {
            stream,
            host: host.to_string(),
            reusable: true,
        })
    }

    /// Sends one message to `recipients`; returns each recipient's reply, in order. Only parsed
    /// mailboxes reach the SMTP commands.
    pub async fn send(
        &mut self,
        mail_from: &ReversePath,
        recipients: &[Mailbox],
        prefix: &[u8],
        body: &[u8],
    ) -> Result<Vec<RemoteReply>, TransportError> {
        let result = match &mut self.stream {
            Stream::Plain(c) => transaction(c, mail_from, recipients, prefix, body).await,
            Stream::Tls(c) => transaction(c.as_mut(), mail_from, recipients, prefix, body).await,
        };
        match &result {
            Ok(replies) => {
                if replies.iter().any(|r| r.code == 421) {
                    self.reusable = false;
                }
            }
            Err(_) => self.reusable = false,
        }
        result
    }

    /// Says QUIT (best effort).
    pub async fn quit(self) {
        let _ = match self.stream {
            Stream::Plain(c) => c.quit().await,
            Stream::Tls(c) => (*c).quit().await,
        };
    }
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Transport(TransportError),
    #[error("TLS: {0}")]
    Tls(String),
    /// The server greeted or answered EHLO with an error.
    #[error("{}", .0.text)]
    Refused(RemoteReply),
}

fn refused_or_transport(e: mail_send::Error) -> ConnectError {
    match e {
        mail_send::Error::UnexpectedReply(r) => {
            ConnectError::Refused(RemoteReply::from_response(&r))
        }
        other => ConnectError::Transport(other.into()),
    }
}

async fn transaction<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    mail_from: &ReversePath,
    recipients: &[Mailbox],
    prefix: &[u8],
    body: &[u8],
) -> Result<Vec<RemoteReply>, TransportError> {
    let sender = mail_from.as_ref().map(Mailbox::as_str).unwrap_or("");
    let mail = client.cmd(format!("MAIL FROM:<{sender}>\r\n")).await?;
    if mail.code / 100 != 2 {
        let reply = RemoteReply::from_response(&mail);
        let _ = client.cmd(b"RSET\r\n").await;
        return Ok(vec![reply; recipients.len()]);
    }
    let mut replies = Vec::with_capacity(recipients.len());
    for rcpt in recipients {
        let r = client.cmd(format!("RCPT TO:<{rcpt}>\r\n")).await?;
        replies.push(RemoteReply::from_response(&r));
    }
    if !replies.iter().any(|r| r.code / 100 == 2) {
        let _ = client.cmd(b"RSET\r\n").await;
        return Ok(replies);
    }
    let data = client.cmd(b"DATA\r\n").await?;
    let final_reply = if data.code == 354 {
        // A prefix is whole header lines: stuffing it with the body changes nothing in it.
        let data = crate::line_ends::dot_stuff_parts(&[prefix, body]);
        client.stream.write_all(&data).await?;
        client.stream.flush().await?;
        RemoteReply::from_response(&client.read().await?)
    } else {
        RemoteReply::from_response(&data)
    };
    // Recipients refused at RCPT keep that reply; the others share the DATA outcome.
    for r in &mut replies {
        if r.code / 100 == 2 {
            *r = final_reply.clone();
        }
    }
    Ok(replies)
}
