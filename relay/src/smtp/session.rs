//! The SMTP session driver the submission and inbound listeners share: reads commands and message
//! data over TCP and then TLS, answers in order (pipelining), and asks a [`Policy`] at each step.
//! Sequencing and replies come from [`super::protocol`]; what is allowed comes from the policy.

use super::protocol::{
    Command, Credentials, Limits, Reply, SessionState, auth_prompt, decode_login_line,
    decode_plain, ehlo_reply, interpret, parse_error_reply,
};
use crate::address::{Mailbox, ReversePath};
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest AUTH continuation line accepted.
const MAX_AUTH_LINE: usize = 4096;
/// Error replies one session may earn before it is disconnected (Postfix's hard error limit).
const MAX_ERRORS: u32 = 20;

/// What every session of one listener shares.
pub struct SessionSettings {
    /// Listener name in logs and the greeting (`submission`, `inbound`).
    pub name: &'static str,
    pub hostname: String,
    pub limits: Limits,
    /// Longest wait for the next bytes from the client.
    pub idle_timeout: Duration,
    /// Longest time one command line may take in all, however slowly it trickles.
    pub command_timeout: Duration,
    /// Longest time one DATA transfer may take in all.
    pub data_timeout: Duration,
    /// Longest time a reply may wait for the client to read it.
    pub write_timeout: Duration,
    /// Concurrent sessions on this listener, and from one client network.
    pub max_sessions: usize,
    pub max_sessions_per_client: usize,
    /// Transactions one session may start, and its longest life (checked at each MAIL).
    pub max_transactions: u32,
    pub max_lifetime: Duration,
    pub tls: TlsAcceptor,
}

/// How an AUTH exchange ended.
pub enum AuthOutcome {
    /// Authenticated as this identity (a member DID), with what the policy needs to notice a
    /// new key later (a fingerprint of the stored key hash).
    Authenticated(String, Option<[u8; 32]>),
    /// Refused; the session goes on.
    Refused(Reply),
    /// Refused; the connection closes after this reply.
    Close(Reply),
}

/// What a listener decides; the driver does the talking.
pub trait Policy: Send + Sync + 'static {
    /// The listener's shared settings.
    fn settings(&self) -> &SessionSettings;

    /// A reply that refuses the connection before the greeting (rate limits, blocked clients).
    fn admit(&self, peer: SocketAddr) -> Option<Reply>;

    /// The answer to `MAIL FROM` (`None`: the null reverse path); a 2xx records the sender.
    fn mail(&self, state: &SessionState, peer: SocketAddr, address: &ReversePath) -> Reply;

    /// The answer to `RCPT TO`; a 2xx adds the recipient.
    fn rcpt(&self, state: &SessionState, address: &Mailbox) -> Reply;

    /// Takes a complete message; the reply goes to the client after it returns, so a 250 here
    /// must mean the message is durable.
    fn data(
        &self,
        state: &SessionState,
        peer: SocketAddr,
        body: Vec<u8>,
    ) -> impl Future<Output = Reply> + Send;

    /// The answer when the message passed the size limit (its data was discarded).
    fn too_big(&self, state: &SessionState) -> Reply;

    /// Checks AUTH credentials (or the reply that decoding them produced).
    fn authenticate(
        &self,
        peer: SocketAddr,
        credentials: Result<Credentials, Reply>,
    ) -> impl Future<Output = AuthOutcome> + Send;
}

/// Accepts connections until `shutdown`; sessions run on `tracker` so shutdown can wait for them.
pub async fn serve<P: Policy>(
    listener: TcpListener,
    policy: Arc<P>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let name = policy.settings().name;
    let limiter = crate::connections::ConnectionLimiter::new(
        policy.settings().max_sessions,
        policy.settings().max_sessions_per_client,
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut stream, peer)) => {
                    // The cap is checked before any work: no TLS, no policy, one short write.
                    let admitted = match limiter.admit(peer.ip()) {
                        Ok(a) => a,
                        Err(refused) => {
                            tracing::debug!(listener = name, %peer, %refused, "smtp: connection refused");
                            let reply = Reply::new(421, "4.7.0", refused.to_string()).to_wire();
                            tokio::spawn(async move {
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(1),
                                    stream.write_all(reply.as_bytes()),
                                )
                                .await;
                            });
                            continue;
                        }
                    };
                    let (policy, stop) = (policy.clone(), shutdown.clone());
                    tracker.spawn(async move {
                        session(stream, peer, policy, stop).await;
                        drop(admitted);
                    });
                }
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "smtp: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
    tracing::info!(listener = name, "smtp listener closed");
}

/// Runs one plaintext session over any stream, from the greeting until QUIT, STARTTLS or the end
/// of the input (the fuzz target drives the state machine through this; listeners use `serve`).
pub async fn converse<P: Policy, S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    peer: SocketAddr,
    policy: Arc<P>,
) {
    let greeting = format!("{} ESMTP Atmosphere Mail", policy.settings().hostname);
    let mut s = Session {
        errors: 0,
        started: Instant::now(),
        transactions: 0,
        policy,
        peer,
        state: SessionState::default(),
        shutdown: CancellationToken::new(),
        out: Vec::new(),
    };
    s.reply(Reply::plain(220, greeting));
    let _ = s.run(io).await;
}

/// How a phase of a session ended.
enum End {
    Quit,
    StartTls,
    Closed,
}

enum Mode {
    Command,
    Data {
        receiver: DataReceiver,
        body: Vec<u8>,
        too_big: bool,
    },
    AuthPlain,
    AuthLogin {
        username: Option<String>,
    },
}

enum Input {
    Request(smtp_proto::Request<String>),
    Bad(smtp_proto::Error),
    Line(String),
    LineTooLong,
    DataDone,
}

struct Session<P> {
    policy: Arc<P>,
    peer: SocketAddr,
    state: SessionState,
    shutdown: CancellationToken,
    out: Vec<u8>,
    errors: u32,
    started: Instant,
    transactions: u32,
}

async fn session<P: Policy>(
    mut stream: TcpStream,
    peer: SocketAddr,
    policy: Arc<P>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    if let Some(reply) = policy.admit(peer) {
        let _ = stream.write_all(reply.to_wire().as_bytes()).await;
        return;
    }
    let settings = policy.settings();
    let (idle_timeout, tls) = (settings.idle_timeout, settings.tls.clone());
    let greeting = format!(
        "{} ESMTP Atmosphere Mail {}",
        settings.hostname, settings.name
    );
    let mut s = Session {
        errors: 0,
        started: Instant::now(),
        transactions: 0,
        policy: policy.clone(),
        peer,
        state: SessionState::default(),
        shutdown,
        out: Vec::new(),
    };
    s.reply(Reply::plain(220, greeting));
    match s.run(&mut stream).await {
        End::StartTls => {}
        End::Quit | End::Closed => return,
    }
    let mut tls = match tokio::time::timeout(idle_timeout, tls.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "smtp: TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    // RFC 3207: after the handshake the session starts over, knowing nothing from before.
    s.state = SessionState {
        tls: true,
        ..Default::default()
    };
    let _ = s.run(&mut tls).await;
    let _ = tls.shutdown().await;
}

impl<P: Policy> Session<P> {
    fn reply(&mut self, reply: Reply) {
        if reply.is_error() {
            self.errors += 1;
        }
        self.out.extend_from_slice(reply.to_wire().as_bytes());
    }

    fn limits(&self) -> Limits {
        self.policy.settings().limits
    }

    /// Writes pending replies; false when the client is gone or does not read them in time.
    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let write_timeout = self.policy.settings().write_timeout;
        let written = tokio::time::timeout(write_timeout, async {
            io.write_all(&self.out).await?;
            io.flush().await
        })
        .await;
        self.out.clear();
        match written {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::info!(peer = %self.peer, "smtp: client does not read its replies, closing");
                false
            }
        }
    }

    /// Reads and answers commands until QUIT, STARTTLS, a closed connection or shutdown.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut S) -> End {
        let mut receiver = RequestReceiver::default();
        let mut mode = Mode::Command;
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let settings = self.policy.settings();
        let (idle_timeout, command_timeout, data_timeout) = (
            settings.idle_timeout,
            settings.command_timeout,
            settings.data_timeout,
        );
        let max_size = self.limits().max_message_size;
        // When the command line (or DATA transfer) in progress must be complete.
        let mut deadline: Option<(Instant, &'static str)> = None;
        let mut held = 0usize;
        loop {
            let mut consumed = 0;
            loop {
                let rest = &pending[consumed..];
                let mut iter = rest.iter();
                let input = match &mut mode {
                    Mode::Command => match receiver.ingest(&mut iter) {
                        Ok(req) => Some(Input::Request(req.into_owned())),
                        Err(smtp_proto::Error::NeedsMoreData { .. }) => None,
                        Err(e) => Some(Input::Bad(e)),
                    },
                    Mode::Data {
                        receiver,
                        body,
                        too_big,
                    } => {
                        let done = receiver.ingest(&mut iter, body);
                        if *too_big || body.len() > max_size {
                            // Keep reading to the final dot, but hold nothing more.
                            *too_big = true;
                            body.clear();
                        }
                        done.then_some(Input::DataDone)
                    }
                    Mode::AuthPlain | Mode::AuthLogin { .. } => match memchr_newline(rest) {
                        Some(pos) => {
                            iter = rest[pos + 1..].iter();
                            let line = String::from_utf8_lossy(&rest[..pos]);
                            Some(Input::Line(line.trim_end_matches('\r').to_string()))
                        }
                        None if rest.len() > MAX_AUTH_LINE => {
                            iter = [].iter();
                            Some(Input::LineTooLong)
                        }
                        None => {
                            // Keep the partial line in `pending` until its end arrives.
                            iter = rest.iter();
                            None
                        }
                    },
                };
                let taken = rest.len() - iter.len();
                consumed += taken;
                // Bytes the command parser holds of a command not yet complete.
                held = if input.is_some() { 0 } else { held + taken };
                let Some(input) = input else { break };
                if let Some(end) = self.handle(input, &mut mode).await {
                    self.flush(io).await;
                    return end;
                }
                if self.errors >= MAX_ERRORS {
                    self.reply(Reply::new(
                        421,
                        "4.7.0",
                        "Too many errors, closing connection",
                    ));
                    self.flush(io).await;
                    return End::Closed;
                }
            }
            pending.drain(..consumed);
            if !self.flush(io).await {
                return End::Closed;
            }
            let now = Instant::now();
            let partial = held > 0 || !pending.is_empty();
            deadline = match (&mode, deadline) {
                (Mode::Data { .. }, Some(d)) if d.1 == "DATA" => Some(d),
                (Mode::Data { .. }, _) => Some((now + data_timeout, "DATA")),
                (_, Some(d)) if partial && d.1 == "command" => Some(d),
                (_, _) if partial => Some((now + command_timeout, "command")),
                _ => None,
            };
            let wait = match deadline {
                Some((at, what)) => {
                    let left = at.saturating_duration_since(now);
                    if left.is_zero() {
                        self.reply(Reply::new(
                            421,
                            "4.4.2",
                            format!("{what} took too long, closing connection"),
                        ));
                        self.flush(io).await;
                        return End::Closed;
                    }
                    left.min(idle_timeout)
                }
                None => idle_timeout,
            };
            let waiting_for_command = matches!(mode, Mode::Command) && pending.is_empty();
            let read = tokio::select! {
                r = tokio::time::timeout(wait, io.read(&mut chunk)) => r,
                _ = self.shutdown.cancelled(), if waiting_for_command => {
                    self.reply(Reply::new(421, "4.3.2", "Service shutting down, try again later"));
                    self.flush(io).await;
                    return End::Closed;
                }
            };
            match read {
                Ok(Ok(0)) | Ok(Err(_)) => return End::Closed,
                Ok(Ok(n)) => pending.extend_from_slice(&chunk[..n]),
                Err(_) => {
                    let text = match deadline {
                        Some((at, what)) if Instant::now() >= at => {
                            format!("{what} took too long, closing connection")
                        }
                        _ => "Idle timeout, closing connection".to_string(),
                    };
                    self.reply(Reply::new(421, "4.4.2", text));
                    self.flush(io).await;
                    return End::Closed;
                }
            }
        }
    }

    /// Acts on one input; `Some` ends the phase.
    async fn handle(&mut self, input: Input, mode: &mut Mode) -> Option<End> {
        match input {
            Input::Bad(e) => self.reply(parse_error_reply(&e)),
            Input::LineTooLong => {
                *mode = Mode::Command;
                self.reply(Reply::new(500, "5.5.6", "Line too long"));
            }
            Input::Request(req) => {
                if self.shutdown.is_cancelled() {
                    self.reply(Reply::new(
                        421,
                        "4.3.2",
                        "Service shutting down, try again later",
                    ));
                    return Some(End::Closed);
                }
                return self.command(req, mode).await;
            }
            Input::Line(line) => {
                let current = std::mem::replace(mode, Mode::Command);
                match current {
                    Mode::AuthPlain => return self.finish_auth(decode_plain(&line)).await,
                    Mode::AuthLogin { username: None } => match decode_login_line(&line) {
                        Ok(user) => {
                            self.reply(auth_prompt("Password:"));
                            *mode = Mode::AuthLogin {
                                username: Some(user),
                            };
                        }
                        Err(r) => self.reply(r),
                    },
                    Mode::AuthLogin {
                        username: Some(username),
                    } => {
                        let creds = decode_login_line(&line)
                            .map(|password| Credentials { username, password });
                        return self.finish_auth(creds).await;
                    }
                    other => *mode = other,
                }
            }
            Input::DataDone => {
                let Mode::Data { body, too_big, .. } = std::mem::replace(mode, Mode::Command)
                else {
                    return None;
                };
                let reply = if too_big {
                    self.policy.too_big(&self.state)
                } else {
                    self.policy.data(&self.state, self.peer, body).await
                };
                self.state.reset_transaction();
                self.reply(reply);
            }
        }
        None
    }

    async fn command(&mut self, req: smtp_proto::Request<String>, mode: &mut Mode) -> Option<End> {
        let limits = self.limits();
        match interpret(&self.state, limits, req) {
            Command::Ehlo(host) => {
                self.state.helo = Some(host);
                self.state.reset_transaction();
                let settings = self.policy.settings();
                let r = ehlo_reply(
                    &settings.hostname,
                    &self.peer.ip().to_string(),
                    &self.state,
                    limits,
                );
                self.reply(r);
            }
            Command::Helo(host) => {
                self.state.helo = Some(host);
                self.state.reset_transaction();
                let name = self.policy.settings().hostname.clone();
                self.reply(Reply::plain(250, name));
            }
            Command::StartTls => {
                self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                return Some(End::StartTls);
            }
            Command::AuthPlain(Some(initial)) => {
                return self.finish_auth(decode_plain(&initial)).await;
            }
            Command::AuthPlain(None) => {
                self.reply(Reply::plain(334, ""));
                *mode = Mode::AuthPlain;
            }
            Command::AuthLogin(None) => {
                self.reply(auth_prompt("Username:"));
                *mode = Mode::AuthLogin { username: None };
            }
            Command::AuthLogin(Some(initial)) => match decode_login_line(&initial) {
                Ok(user) => {
                    self.reply(auth_prompt("Password:"));
                    *mode = Mode::AuthLogin {
                        username: Some(user),
                    };
                }
                Err(r) => self.reply(r),
            },
            Command::Mail { address, .. } => {
                // A session does not outlive its caps: whatever it authenticated as is looked
                // at again on a new connection.
                let settings = self.policy.settings();
                if self.transactions >= settings.max_transactions {
                    self.reply(Reply::new(
                        421,
                        "4.7.0",
                        "Too many transactions in one session, reconnect",
                    ));
                    return Some(End::Closed);
                }
                if self.started.elapsed() >= settings.max_lifetime {
                    self.reply(Reply::new(
                        421,
                        "4.4.2",
                        "Session lasted too long, reconnect",
                    ));
                    return Some(End::Closed);
                }
                self.transactions += 1;
                let reply = self.policy.mail(&self.state, self.peer, &address);
                if !reply.is_error() {
                    self.state.mail_from = Some(address);
                }
                self.reply(reply);
            }
            Command::Rcpt(address) => {
                let reply = self.policy.rcpt(&self.state, &address);
                if !reply.is_error() {
                    self.state.recipients.push(address);
                }
                self.reply(reply);
            }
            Command::Data => {
                self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
                *mode = Mode::Data {
                    receiver: DataReceiver::new(),
                    body: Vec::new(),
                    too_big: false,
                };
            }
            Command::Rset => {
                self.state.reset_transaction();
                self.reply(Reply::new(250, "2.0.0", "OK"));
            }
            Command::Noop => self.reply(Reply::new(250, "2.0.0", "OK")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                return Some(End::Quit);
            }
            Command::Answer(r) => self.reply(r),
        }
        None
    }

    async fn finish_auth(&mut self, creds: Result<Credentials, Reply>) -> Option<End> {
        match self.policy.authenticate(self.peer, creds).await {
            AuthOutcome::Authenticated(identity, credential) => {
                tracing::debug!(peer = %self.peer, did = %identity, "smtp: authenticated");
                self.state.authenticated = Some(identity);
                self.state.credential = credential.map(super::protocol::Credential);
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                None
            }
            AuthOutcome::Refused(reply) => {
                self.reply(reply);
                None
            }
            AuthOutcome::Close(reply) => {
                self.reply(reply);
                Some(End::Closed)
            }
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}
