//! The submission listener (SPEC §4.1): drives SMTP sessions over TCP and TLS, asking policy
//! (auth, acceptance) at each step. Sequencing and replies come from [`super::protocol`].

use super::protocol::{
    Command, Credentials, Limits, Reply, SessionState, auth_prompt, decode_login_line,
    decode_plain, ehlo_reply, interpret, parse_error_reply,
};
use crate::accept::{Acceptor, Source, Submission, SubmitError};
use crate::auth::{AuthThrottle, Authenticator};
use crate::store::Store;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest AUTH continuation line accepted.
const MAX_AUTH_LINE: usize = 4096;
/// Error replies one session may earn before it is disconnected (Postfix's hard error limit).
const MAX_ERRORS: u32 = 20;

/// Everything a submission session needs; shared by all sessions.
pub struct SubmissionService {
    pub hostname: String,
    pub limits: Limits,
    pub idle_timeout: Duration,
    pub tls: TlsAcceptor,
    pub auth: Arc<Authenticator>,
    pub throttle: AuthThrottle,
    pub acceptor: Arc<Acceptor>,
    pub store: Arc<Store>,
}

/// Accepts connections until `shutdown`; sessions run on `tracker` so shutdown can wait for them.
pub async fn serve(
    listener: TcpListener,
    service: Arc<SubmissionService>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (svc, stop) = (service.clone(), shutdown.clone());
                    tracker.spawn(async move { session(stream, peer, svc, stop).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "submission: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
    tracing::info!("submission listener closed");
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

struct Session {
    svc: Arc<SubmissionService>,
    peer: SocketAddr,
    state: SessionState,
    shutdown: CancellationToken,
    out: Vec<u8>,
    errors: u32,
}

async fn session(
    mut stream: TcpStream,
    peer: SocketAddr,
    svc: Arc<SubmissionService>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    if svc.throttle.is_blocked(peer.ip()) {
        let reply = Reply::new(421, "4.7.0", "Too many authentication failures, try later");
        let _ = stream.write_all(reply.to_wire().as_bytes()).await;
        return;
    }
    let mut s = Session {
        errors: 0,
        svc: svc.clone(),
        peer,
        state: SessionState::default(),
        shutdown,
        out: Vec::new(),
    };
    s.reply(Reply::plain(
        220,
        format!("{} ESMTP Atmosphere Mail submission", svc.hostname),
    ));
    match s.run(&mut stream).await {
        End::StartTls => {}
        End::Quit | End::Closed => return,
    }
    let mut tls = match tokio::time::timeout(svc.idle_timeout, svc.tls.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "submission: TLS handshake failed");
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

impl Session {
    fn reply(&mut self, reply: Reply) {
        if reply.is_error() {
            self.errors += 1;
        }
        self.out.extend_from_slice(reply.to_wire().as_bytes());
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = io.write_all(&self.out).await.is_ok() && io.flush().await.is_ok();
        self.out.clear();
        ok
    }

    /// Reads and answers commands until QUIT, STARTTLS, a closed connection or shutdown.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut S) -> End {
        let mut receiver = RequestReceiver::default();
        let mut mode = Mode::Command;
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
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
                        if *too_big || body.len() > self.svc.limits.max_message_size {
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
                consumed += rest.len() - iter.len();
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
            let waiting_for_command = matches!(mode, Mode::Command) && pending.is_empty();
            let read = tokio::select! {
                r = tokio::time::timeout(self.svc.idle_timeout, io.read(&mut chunk)) => r,
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
                    self.reply(Reply::new(421, "4.4.2", "Idle timeout, closing connection"));
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
                    self.reject(SubmitError::TooBig)
                } else {
                    self.submit(body).await
                };
                self.state.reset_transaction();
                self.reply(reply);
            }
        }
        None
    }

    async fn command(&mut self, req: smtp_proto::Request<String>, mode: &mut Mode) -> Option<End> {
        match interpret(&self.state, self.svc.limits, req) {
            Command::Ehlo(host) => {
                self.state.helo = Some(host);
                self.state.reset_transaction();
                let r = ehlo_reply(
                    &self.svc.hostname,
                    &self.peer.ip().to_string(),
                    &self.state,
                    self.svc.limits,
                );
                self.reply(r);
            }
            Command::Helo(host) => {
                self.state.helo = Some(host);
                self.state.reset_transaction();
                self.reply(Reply::plain(250, self.svc.hostname.clone()));
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
                let did = self.state.authenticated.clone().unwrap_or_default();
                let reply = match self.svc.acceptor.check_sender(&did, &address) {
                    Ok(()) => {
                        self.state.mail_from = Some(address);
                        Reply::new(250, "2.1.0", "Sender OK")
                    }
                    Err(e) => self.reject(e),
                };
                self.reply(reply);
            }
            Command::Rcpt(address) => {
                let did = self.state.authenticated.clone().unwrap_or_default();
                let adding = self.state.recipients.len() as u32 + 1;
                let suppressed = self
                    .svc
                    .store
                    .with(|c| crate::store::suppressions::reason(c, &did, &address));
                let reply = match (suppressed, self.svc.acceptor.check_limits(&did, adding)) {
                    (Ok(Some(reason)), _) if crate::suppression::refuse_at_rcpt(&reason) => {
                        Reply::new(550, "5.7.1", crate::suppression::SUPPRESSED_TEXT)
                    }
                    (_, Ok(())) => {
                        self.state.recipients.push(address);
                        Reply::new(250, "2.1.5", "Recipient OK")
                    }
                    (_, Err(e)) => self.reject(e),
                };
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

    /// Checks credentials; failures are slowed per client address, then refused.
    async fn finish_auth(&mut self, creds: Result<Credentials, Reply>) -> Option<End> {
        let ip = self.peer.ip();
        if self.svc.throttle.is_blocked(ip) {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many authentication failures, try later",
            ));
            return Some(End::Closed);
        }
        let creds = match creds {
            Ok(c) => c,
            Err(r) => {
                self.reply(r);
                return None;
            }
        };
        let svc = self.svc.clone();
        match svc
            .auth
            .authenticate(&svc.store, &creds.username, &creds.password)
            .await
        {
            Ok(member) => {
                svc.throttle.succeeded(ip);
                tracing::debug!(peer = %self.peer, did = %member.did, "submission: authenticated");
                self.state.authenticated = Some(member.did);
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Err(e) => {
                let error = SubmitError::from(e);
                if error == SubmitError::AuthFailed {
                    // Deliberate tarpit for repeated failures from one address.
                    tokio::time::sleep(svc.throttle.failed(ip)).await;
                }
                let reply = self.reject(error);
                self.reply(reply);
            }
        }
        None
    }

    async fn submit(&mut self, body: Vec<u8>) -> Reply {
        let (Some(did), Some(mail_from)) = (
            self.state.authenticated.clone(),
            self.state.mail_from.clone(),
        ) else {
            return Reply::new(503, "5.5.1", "No transaction");
        };
        let sub = Submission {
            did,
            mail_from,
            recipients: std::mem::take(&mut self.state.recipients),
            raw: body,
            source: Source::Smtp,
        };
        match self.svc.acceptor.accept(sub).await {
            Ok(a) => match (a.id, a.suppressed.len()) {
                (Some(id), 0) => Reply::new(250, "2.0.0", format!("queued as {id}")),
                (Some(id), n) => Reply::new(
                    250,
                    "2.0.0",
                    format!("queued as {id}; {n} unsubscribed recipients dropped"),
                ),
                (None, _) => Reply::new(550, "5.7.1", crate::suppression::SUPPRESSED_TEXT),
            },
            Err(e) => self.reject(e),
        }
    }

    /// Renders a refusal and records it as a `relay_rejected` event.
    fn reject(&self, e: SubmitError) -> Reply {
        self.svc
            .acceptor
            .record_rejection(self.state.authenticated.as_deref(), &e);
        let (code, enhanced, text) = e.smtp();
        Reply::new(code, enhanced, text)
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}
