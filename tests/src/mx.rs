//! A remote mail server talking to the relay's inbound MX: Python's smtplib (tests/py/mx_send.py).

use crate::peers::venv_python;
use crate::{run_json, workspace_root};
use serde_json::Value;
use std::net::SocketAddr;

/// Sends `message` from `from` (empty: a bounce) to `rcpts`; returns the replies as JSON
/// (`mail`, `rcpt` list, `data`, each `[code, text]`).
pub fn send(mx: SocketAddr, from: &str, rcpts: &[&str], message: &str, starttls: bool) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("message.eml");
    std::fs::write(&path, message.replace("\r\n", "\n").replace('\n', "\r\n")).expect("write");
    let mut cmd = std::process::Command::new(venv_python());
    cmd.arg(workspace_root().join("tests/py/mx_send.py"))
        .arg(mx.ip().to_string())
        .arg(mx.port().to_string())
        .arg(from)
        .arg(&path);
    if starttls {
        cmd.arg("--starttls");
    }
    cmd.args(rcpts);
    run_json(&mut cmd)
}

/// The reply code of one step (`["data"]`, `["rcpt"][0]`...).
pub fn code(v: &Value) -> u64 {
    v[0].as_u64().unwrap_or(0)
}

/// A DSN (RFC 3464) about `recipient` with `status`, enclosing the original's headers.
pub fn dsn(
    to: &str,
    recipient: &str,
    action: &str,
    status: &str,
    original_headers: &str,
) -> String {
    dsn_blocks(to, &[(recipient, action, status)], original_headers)
}

/// A DSN with one per-recipient block for each `(recipient, action, status)`.
pub fn dsn_blocks(to: &str, blocks: &[(&str, &str, &str)], original_headers: &str) -> String {
    let fields: String = blocks
        .iter()
        .map(|(recipient, action, status)| {
            format!(
                "Final-Recipient: rfc822; {recipient}\nAction: {action}\nStatus: {status}\n\
                 Diagnostic-Code: smtp; 550 {status} mailbox unavailable\n\n"
            )
        })
        .collect();
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.rcpt.test>\n\
         To: <{to}>\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"dsn-b\"\n\n\
         --dsn-b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n\
         --dsn-b\nContent-Type: message/delivery-status\n\n\
         Reporting-MTA: dns; mx.rcpt.test\n\n{fields}\
         --dsn-b\nContent-Type: text/rfc822-headers\n\n{original_headers}\n\
         --dsn-b--\n"
    )
}

/// An ARF report (RFC 5965) by `complainant`, enclosing the original message.
pub fn arf(to: &str, complainant: &str, original: &str) -> String {
    arf_many(to, &[complainant], original)
}

/// An ARF report naming several `Original-Rcpt-To` addresses.
pub fn arf_many(to: &str, complainants: &[&str], original: &str) -> String {
    let named: String = complainants
        .iter()
        .map(|c| format!("Original-Rcpt-To: <{c}>\n"))
        .collect();
    format!(
        "From: <fbl@provider.test>\nTo: <{to}>\nSubject: FW: complaint\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf-b\"\n\n\
         --arf-b\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n\
         --arf-b\nContent-Type: message/feedback-report\n\n\
         Feedback-Type: abuse\nUser-Agent: ProviderFBL/1.0\nVersion: 1\n{named}\n\
         --arf-b\nContent-Type: message/rfc822\n\n{original}\n\
         --arf-b--\n"
    )
}

/// The envelope sender a message was delivered with, from smtp-sink's `X-Mail-Args` line.
pub fn envelope_sender(delivered: &str) -> String {
    delivered
        .lines()
        .find_map(|l| l.strip_prefix("X-Mail-Args: "))
        .and_then(|l| l.split_once('<'))
        .and_then(|(_, l)| l.split('>').next())
        .unwrap_or_default()
        .to_string()
}

/// The header block of a message.
pub fn headers_of(message: &str) -> String {
    let m = message.replace("\r\n", "\n");
    m.split("\n\n").next().unwrap_or_default().to_string()
}
