//! Forwarded copies of inbound mail: replies to member domains, operator aliases, and bounces of
//! mail the relay forwarded. The original From and Subject stay; the relay adds a `Received` trace
//! field (which also counts hops against loops) and signs with the operator keys.

use crate::accept::{QueueItem, ReturnPath, Source};
use crate::address::{Mailbox, ReversePath};
use crate::dkim::signer::Signer;

/// What to forward, and where.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Member the forward belongs to (`""` for operator mail).
    pub did: String,
    /// Original envelope sender (kept for the record).
    pub mail_from: String,
    /// Envelope sender of the copy: an SRS address, or the null sender for a returned bounce.
    pub return_path: ReversePath,
    /// Where it goes: an address the relay derived itself (forward-to, operator_forward_to, the
    /// original sender of an SRS address).
    pub to: Mailbox,
    /// `forward`, or `srs_return` for a bounce on its way back to the original sender.
    pub category: &'static str,
}

/// The `Received` trace field the relay adds (RFC 5321 §4.4).
pub fn received_field(hostname: &str, peer: &str, helo: &str, id: &str, date: &str) -> String {
    let helo: String = helo
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    format!("Received: from {helo} ({peer})\r\n\tby {hostname} with ESMTP id {id};\r\n\t{date}\r\n")
}

/// Builds the signed, queue-ready copy of `raw` for `f`.
pub(crate) fn build(
    signer: &Signer,
    operator_domain: &str,
    received: &str,
    raw: &[u8],
    f: &Forward,
    now_ms: i64,
) -> Result<QueueItem, crate::dkim::keys::KeyError> {
    // A stranger's bytes leave signed by the operator: no bare CR or LF reaches the wire.
    let raw = crate::line_ends::normalize(raw);
    let mut body = Vec::with_capacity(received.len() + raw.len());
    body.extend_from_slice(received.as_bytes());
    body.extend_from_slice(&raw);
    let signatures = signer.sign_operator(&body)?;
    let mut signed = signatures.into_bytes();
    signed.extend_from_slice(&body);
    Ok(QueueItem {
        id: crate::accept::new_id(),
        did: f.did.clone(),
        mail_from: f.mail_from.clone(),
        return_path: ReturnPath::Fixed(f.return_path.clone()),
        category: f.category.into(),
        from_domain: operator_domain.to_string(),
        source: Source::Forward,
        received_at: now_ms,
        raw: signed,
        recipients: vec![f.to.clone()],
        header_message_id: None,
        credential: None,
    })
}

/// `Received` fields in the header block of `raw`: the hop count.
pub fn hops(raw: &[u8]) -> usize {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    raw[..end]
        .split(|b| *b == b'\n')
        .filter(|line| line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_count_received_fields_of_the_header_only() {
        let raw =
            b"Received: a\r\nreceived: b\r\n\tcontinued\r\nSubject: x\r\n\r\nReceived: in body\r\n";
        assert_eq!(hops(raw), 2);
        assert_eq!(hops(b""), 0);
        let f = received_field(
            "relay.test",
            "127.0.0.1",
            "bad\r\nhelo",
            "id1",
            "Mon, 1 Jan 2026",
        );
        assert!(f.starts_with("Received: from badhelo (127.0.0.1)\r\n\tby relay.test"));
        assert_eq!(hops(format!("{f}\r\n").as_bytes()), 1);
    }
}
