//! The SMTP protocol state machine: command sequencing, replies, EHLO capabilities and SASL
//! decoding. It knows no policy (who may send what); the session driver asks policy.
//!
//! Command lines are parsed by `smtp-proto`; this module decides what each command means in the
//! session's current state.

use crate::address::{Mailbox, ReversePath};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_proto::Request;
use std::fmt::Write as _;

/// One SMTP reply (possibly multi-line), with an enhanced status code where one applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced code (greeting, 334, 354).
    pub fn plain(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// The reply as sent on the wire.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            // Control characters from our own text must not split the reply.
            let line: String = line
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            match self.enhanced {
                Some(e) if i == last || self.code >= 400 => {
                    let _ = write!(out, "{}{sep}{e} {line}\r\n", self.code);
                }
                _ => {
                    let _ = write!(out, "{}{sep}{line}\r\n", self.code);
                }
            }
        }
        out
    }

    /// True for 4xx and 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }
}

/// What a session knows so far; the driver updates it as policy accepts commands.
#[derive(Debug, Default, Clone)]
pub struct SessionState {
    pub tls: bool,
    pub helo: Option<String>,
    pub authenticated: Option<String>,
    /// Which key the session authenticated with (a fingerprint of its stored hash): a key
    /// regenerated since then stops the session's next transaction.
    pub credential: Option<Credential>,
    /// The accepted `MAIL FROM` (`Some(None)` is the null reverse path).
    pub mail_from: Option<ReversePath>,
    pub recipients: Vec<Mailbox>,
}

impl SessionState {
    /// Forgets the current transaction (RSET, EHLO, after DATA).
    pub fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
    }
}

/// A fingerprint of the key hash a session authenticated against (never printed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credential(pub [u8; 32]);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Which SMTP service a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// RFC 6409 message submission: STARTTLS, then AUTH, before any mail.
    Submission,
    /// RFC 5321 mail exchange (port 25): anyone may send, STARTTLS is offered, AUTH is not.
    Mx,
}

/// Limits the protocol enforces on its own.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub profile: Profile,
}

/// What the driver must do with a command that is in sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    StartTls,
    AuthPlain(Option<String>),
    AuthLogin(Option<String>),
    Mail {
        address: ReversePath,
        size: usize,
    },
    Rcpt(Mailbox),
    Data,
    Rset,
    Noop,
    Quit,
    /// Answer with this reply and change nothing.
    Answer(Reply),
}

fn bad_sequence(text: &str) -> Command {
    Command::Answer(Reply::new(503, "5.5.1", text))
}

/// Decides what `req` means in `state`: a command to carry out, or a reply refusing it.
pub fn interpret(state: &SessionState, limits: Limits, req: Request<String>) -> Command {
    let need_tls = || {
        Command::Answer(Reply::new(
            530,
            "5.7.0",
            "Must issue a STARTTLS command first",
        ))
    };
    let submission = limits.profile == Profile::Submission;
    match req {
        Request::Ehlo { host } => Command::Ehlo(host),
        Request::Helo { host } => Command::Helo(host),
        Request::Lhlo { .. } => Command::Answer(Reply::new(502, "5.5.1", "LHLO not supported")),
        Request::StartTls if state.tls => bad_sequence("TLS already active"),
        Request::StartTls if state.helo.is_none() => bad_sequence("Send EHLO first"),
        Request::StartTls => Command::StartTls,
        Request::Auth { .. } if !submission => {
            Command::Answer(Reply::new(502, "5.5.1", "AUTH not offered on this port"))
        }
        Request::Auth { .. } if state.helo.is_none() => bad_sequence("Send EHLO first"),
        Request::Auth { .. } if !state.tls => need_tls(),
        Request::Auth { .. } if state.authenticated.is_some() => {
            bad_sequence("Already authenticated")
        }
        Request::Auth { .. } if state.mail_from.is_some() => {
            bad_sequence("AUTH not allowed during a transaction")
        }
        Request::Auth {
            mechanism,
            initial_response,
        } => {
            let initial = (!initial_response.is_empty()).then_some(initial_response);
            if mechanism == smtp_proto::AUTH_PLAIN {
                Command::AuthPlain(initial)
            } else if mechanism == smtp_proto::AUTH_LOGIN {
                Command::AuthLogin(initial)
            } else {
                Command::Answer(Reply::new(504, "5.5.4", "Unrecognized authentication type"))
            }
        }
        Request::Mail { .. } if state.helo.is_none() => bad_sequence("Send EHLO first"),
        Request::Mail { .. } if submission && !state.tls => need_tls(),
        Request::Mail { .. } if submission && state.authenticated.is_none() => {
            Command::Answer(Reply::new(530, "5.7.0", "Authentication required"))
        }
        Request::Mail { .. } if state.mail_from.is_some() => bad_sequence("Nested MAIL command"),
        Request::Mail { from } if from.size > limits.max_message_size => {
            Command::Answer(Reply::new(552, "5.3.4", "message too big"))
        }
        Request::Mail { from } if from.address.is_empty() => Command::Mail {
            address: None,
            size: from.size,
        },
        Request::Mail { from } => match Mailbox::parse(&from.address) {
            Ok(address) => Command::Mail {
                address: Some(address),
                size: from.size,
            },
            Err(e) => Command::Answer(Reply::new(
                501,
                "5.1.7",
                format!("Bad sender address syntax: the address {e}"),
            )),
        },
        Request::Rcpt { .. } if state.mail_from.is_none() => bad_sequence("Need MAIL before RCPT"),
        Request::Rcpt { .. } if state.recipients.len() >= limits.max_recipients => {
            Command::Answer(Reply::new(452, "4.5.3", "Too many recipients"))
        }
        Request::Rcpt { to } => match Mailbox::parse(&to.address) {
            Ok(address) => Command::Rcpt(address),
            Err(e) => Command::Answer(Reply::new(
                501,
                "5.1.3",
                format!("Bad recipient address syntax: the address {e}"),
            )),
        },
        Request::Data if state.mail_from.is_none() => bad_sequence("Need MAIL before DATA"),
        Request::Data if state.recipients.is_empty() => {
            Command::Answer(Reply::new(554, "5.5.1", "No valid recipients"))
        }
        Request::Data => Command::Data,
        Request::Bdat { .. } => Command::Answer(Reply::new(502, "5.5.1", "BDAT not supported")),
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Quit => Command::Quit,
        Request::Vrfy { .. } => Command::Answer(Reply::new(252, "2.5.0", "Cannot VRFY user")),
        Request::Help { .. } => Command::Answer(Reply::new(
            214,
            "2.0.0",
            "See https://www.rfc-editor.org/rfc/rfc5321",
        )),
        Request::Expn { .. }
        | Request::Etrn { .. }
        | Request::Atrn { .. }
        | Request::Burl { .. } => {
            Command::Answer(Reply::new(502, "5.5.1", "Command not implemented"))
        }
    }
}

/// The reply for a line smtp-proto could not parse.
pub fn parse_error_reply(e: &smtp_proto::Error) -> Reply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => Reply::new(500, "5.5.1", "Command unrecognized"),
        E::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        E::InvalidRecipientAddress => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
        E::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
        E::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
        }
        E::UnsupportedParameter { param } => {
            Reply::new(555, "5.5.4", format!("Unsupported parameter {param}"))
        }
        E::ResponseTooLong => Reply::new(500, "5.5.6", "Line too long"),
        E::NeedsMoreData { .. } | E::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2", "Syntax error")
        }
    }
}

/// The EHLO reply: STARTTLS before TLS; AUTH only after it (never in clear), and only on
/// submission.
pub fn ehlo_reply(hostname: &str, peer_name: &str, state: &SessionState, limits: Limits) -> Reply {
    let mut lines = vec![format!("{hostname} greets {peer_name}")];
    lines.push("PIPELINING".into());
    lines.push(format!("SIZE {}", limits.max_message_size));
    lines.push("8BITMIME".into());
    lines.push("ENHANCEDSTATUSCODES".into());
    if !state.tls {
        lines.push("STARTTLS".into());
    } else if limits.profile == Profile::Submission {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    Reply {
        code: 250,
        enhanced: None,
        lines,
    }
}

/// Credentials decoded from a SASL exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Decodes an AUTH PLAIN response: base64 of `authzid NUL authcid NUL passwd`.
pub fn decode_plain(response: &str) -> Result<Credentials, Reply> {
    let bytes = decode_b64(response)?;
    let mut parts = bytes.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reply::new(501, "5.5.2", "Malformed AUTH PLAIN response"));
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| not_utf8());
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    // Acting as another identity is not offered.
    if !authzid.is_empty() && authzid != authcid {
        return Err(Reply::new(
            535,
            "5.7.8",
            "Authentication credentials invalid",
        ));
    }
    Ok(Credentials {
        username: authcid,
        password,
    })
}

/// Decodes one base64 line of AUTH LOGIN.
pub fn decode_login_line(line: &str) -> Result<String, Reply> {
    String::from_utf8(decode_b64(line)?).map_err(|_| not_utf8())
}

fn not_utf8() -> Reply {
    Reply::new(501, "5.5.2", "Credentials must be UTF-8")
}

fn decode_b64(text: &str) -> Result<Vec<u8>, Reply> {
    let text = text.trim();
    if text == "*" {
        return Err(Reply::new(501, "5.0.0", "Authentication cancelled"));
    }
    B64.decode(text)
        .map_err(|_| Reply::new(501, "5.5.2", "Invalid base64 in AUTH response"))
}

/// The `334` prompts of AUTH LOGIN and an empty PLAIN challenge.
pub fn auth_prompt(text: &str) -> Reply {
    Reply::plain(334, B64.encode(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_size: 1000,
        max_recipients: 2,
        profile: Profile::Submission,
    };
    const MX: Limits = Limits {
        profile: Profile::Mx,
        ..LIMITS
    };

    fn parse(line: &str) -> Request<String> {
        Request::parse(&mut line.as_bytes().iter())
            .expect("parses")
            .into_owned()
    }

    fn state(tls: bool, auth: bool) -> SessionState {
        SessionState {
            tls,
            helo: Some("client".into()),
            authenticated: auth.then(|| "did:plc:x".into()),
            ..Default::default()
        }
    }

    fn mb(s: &str) -> Mailbox {
        Mailbox::parse(s).expect("test mailbox")
    }

    fn code(cmd: Command) -> u16 {
        match cmd {
            Command::Answer(r) => r.code,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn tls_is_required_before_auth_and_mail() {
        let s = state(false, false);
        assert_eq!(
            code(interpret(&s, LIMITS, parse("AUTH PLAIN AGEAYg==\r\n"))),
            530
        );
        assert_eq!(
            code(interpret(&s, LIMITS, parse("MAIL FROM:<a@b.c>\r\n"))),
            530
        );
        assert_eq!(
            interpret(&s, LIMITS, parse("STARTTLS\r\n")),
            Command::StartTls
        );
        let s = state(true, false);
        assert_eq!(code(interpret(&s, LIMITS, parse("STARTTLS\r\n"))), 503);
        assert_eq!(
            code(interpret(&s, LIMITS, parse("MAIL FROM:<a@b.c>\r\n"))),
            530
        );
        assert!(matches!(
            interpret(&s, LIMITS, parse("AUTH LOGIN\r\n")),
            Command::AuthLogin(None)
        ));
        assert_eq!(code(interpret(&s, LIMITS, parse("AUTH CRAM-MD5\r\n"))), 504);
    }

    #[test]
    fn transaction_sequencing_and_limits() {
        let mut s = state(true, true);
        assert_eq!(
            code(interpret(&s, LIMITS, parse("RCPT TO:<a@b.c>\r\n"))),
            503
        );
        assert_eq!(code(interpret(&s, LIMITS, parse("DATA\r\n"))), 503);
        assert_eq!(
            code(interpret(
                &s,
                LIMITS,
                parse("MAIL FROM:<a@b.c> SIZE=5000\r\n")
            )),
            552
        );
        assert_eq!(
            interpret(&s, LIMITS, parse("MAIL FROM:<a@b.cc> SIZE=10\r\n")),
            Command::Mail {
                address: Some(mb("a@b.cc")),
                size: 10
            }
        );
        s.mail_from = Some(Some(mb("a@b.cc")));
        assert_eq!(
            code(interpret(&s, LIMITS, parse("MAIL FROM:<a@b.c>\r\n"))),
            503
        );
        assert_eq!(code(interpret(&s, LIMITS, parse("DATA\r\n"))), 554);
        s.recipients = vec![mb("x@y.zz"), mb("y@y.zz")];
        assert_eq!(
            code(interpret(&s, LIMITS, parse("RCPT TO:<z@y.z>\r\n"))),
            452
        );
        assert_eq!(interpret(&s, LIMITS, parse("DATA\r\n")), Command::Data);
        assert_eq!(code(interpret(&s, LIMITS, parse("AUTH PLAIN\r\n"))), 503);
    }

    #[test]
    fn mx_takes_mail_without_auth_and_never_offers_it() {
        let s = state(false, false);
        assert_eq!(
            interpret(&s, MX, parse("MAIL FROM:<>\r\n")),
            Command::Mail {
                address: None,
                size: 0
            }
        );
        assert_eq!(
            code(interpret(&s, MX, parse("AUTH PLAIN AGEAYg==\r\n"))),
            502
        );
        assert_eq!(interpret(&s, MX, parse("STARTTLS\r\n")), Command::StartTls);
        let clear = ehlo_reply("mx", "c", &s, MX).to_wire();
        assert!(clear.contains("STARTTLS") && !clear.contains("AUTH"));
        let tls = ehlo_reply("mx", "c", &state(true, false), MX).to_wire();
        assert!(!tls.contains("AUTH") && !tls.contains("STARTTLS"));
        let mut s = state(false, false);
        s.mail_from = Some(None);
        assert_eq!(code(interpret(&s, MX, parse("MAIL FROM:<a@b.c>\r\n"))), 503);
    }

    #[test]
    fn ehlo_offers_auth_only_under_tls() {
        let clear = ehlo_reply("relay", "c", &state(false, false), LIMITS).to_wire();
        assert!(clear.contains("250 STARTTLS\r\n") && !clear.contains("AUTH"));
        let tls = ehlo_reply("relay", "c", &state(true, false), LIMITS).to_wire();
        assert!(tls.contains("AUTH PLAIN LOGIN") && !tls.contains("STARTTLS"));
        assert!(tls.starts_with("250-relay greets c\r\n") && tls.contains("250-SIZE 1000\r\n"));
    }

    #[test]
    fn sasl_decoding() {
        let ok = B64.encode("\0did:plc:x\0atmos_key");
        assert_eq!(
            decode_plain(&ok).unwrap(),
            Credentials {
                username: "did:plc:x".into(),
                password: "atmos_key".into()
            }
        );
        assert_eq!(decode_plain("!!!").unwrap_err().code, 501);
        assert_eq!(
            decode_plain(&B64.encode("only-one-part")).unwrap_err().code,
            501
        );
        assert_eq!(
            decode_plain(&B64.encode("other\0did:plc:x\0k"))
                .unwrap_err()
                .code,
            535
        );
        assert_eq!(decode_login_line("*").unwrap_err().code, 501);
        assert_eq!(decode_login_line(&B64.encode("user")).unwrap(), "user");
    }

    #[test]
    fn reply_wire_format() {
        assert_eq!(
            Reply::new(250, "2.0.0", "queued as x").to_wire(),
            "250 2.0.0 queued as x\r\n"
        );
        assert_eq!(Reply::plain(354, "go").to_wire(), "354 go\r\n");
        assert_eq!(
            Reply::new(550, "5.7.1", "a\r\nb").to_wire(),
            "550 5.7.1 a  b\r\n"
        );
    }

    #[test]
    fn addresses_are_parsed_at_the_edge() {
        let mut s = state(true, true);
        for line in [
            "MAIL FROM:<a\0b@x.test>\r\n",
            "MAIL FROM:<a@localhost>\r\n",
            &format!("MAIL FROM:<{}@x.test>\r\n", "l".repeat(65)),
        ] {
            if let Ok(req) = Request::parse(&mut line.as_bytes().iter()) {
                let r = interpret(&s, LIMITS, req.into_owned());
                assert!(
                    matches!(&r, Command::Answer(r) if r.code == 501),
                    "{line:?}: {r:?}"
                );
            }
        }
        s.mail_from = Some(Some(mb("a@b.cc")));
        for line in [
            "RCPT TO:<a\0b@x.test>\r\n",
            "RCPT TO:<\"a>b\"@x.test>\r\n",
            "RCPT TO:<nodomain>\r\n",
            &format!("RCPT TO:<a@{}.test>\r\n", "d".repeat(64)),
        ] {
            if let Ok(req) = Request::parse(&mut line.as_bytes().iter()) {
                let r = interpret(&s, LIMITS, req.into_owned());
                assert!(
                    matches!(&r, Command::Answer(r) if r.code == 501),
                    "{line:?}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn parse_errors_have_codes() {
        let err = Request::parse(&mut b"FOO bar\r\n".iter()).unwrap_err();
        assert_eq!(parse_error_reply(&err).code, 500);
        let err = Request::parse(&mut b"MAIL FROM:<<<\r\n".iter()).unwrap_err();
        assert!(parse_error_reply(&err).code >= 500);
    }
}
