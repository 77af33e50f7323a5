//! Delivery status notifications (RFC 3464): what a bounce tells the sender, built with
//! mail-builder as `multipart/report; report-type=delivery-status`.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::MimePart;

/// One bounced recipient of one message, as delivery saw it.
#[derive(Debug, Clone)]
pub struct BounceReport {
    pub message_id: String,
    pub did: String,
    /// The member's sending domain (whose forward-to gets the DSN).
    pub domain: String,
    pub recipient: String,
    /// The remote reply (or our own reason, e.g. null MX or queue lifetime).
    pub reply: String,
    pub mx: Option<String>,
    /// Header block of the original message (for `text/rfc822-headers`).
    pub original_headers: Vec<u8>,
    /// Source of the bounced message; a bounced DSN never makes another DSN.
    pub source: String,
    pub arrival_ms: i64,
}

/// Receives bounces (the acceptance layer queues or records the DSN).
pub trait BounceReporter: Send + Sync {
    /// Called after the bounce is committed.
    fn report(&self, report: BounceReport);
}

/// `x.y.z` from a reply like `550 5.1.1 …`, else `5.0.0`.
pub fn status_code(reply: &str) -> String {
    reply
        .split_whitespace()
        .nth(1)
        .filter(|c| {
            let p: Vec<&str> = c.split('.').collect();
            p.len() == 3
                && p.iter()
                    .all(|x| !x.is_empty() && x.chars().all(|ch| ch.is_ascii_digit()))
        })
        .map(str::to_string)
        .unwrap_or_else(|| "5.0.0".into())
}

/// The DSN message (headers and body) for `r`, from `mailer-daemon@<operator_domain>` to `to`.
pub fn build(
    r: &BounceReport,
    reporting_mta: &str,
    operator_domain: &str,
    to: &str,
    now_secs: i64,
) -> Vec<u8> {
    let date = |ms: i64| mail_parser::DateTime::from_timestamp(ms / 1000).to_rfc822();
    let status = status_code(&r.reply);
    let human = format!(
        "This is the mail system at {reporting_mta}.\r\n\r\n\
         Your message could not be delivered to {rcpt}.\r\n\r\n\
         The remote server said: {reply}\r\n\r\n\
         Message id: {id}\r\n",
        rcpt = r.recipient,
        reply = r.reply,
        id = r.message_id,
    );
    let mut status_text = format!(
        "Reporting-MTA: dns; {reporting_mta}\r\nX-Atmos-Message-Id: {id}\r\nArrival-Date: {arrival}\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n",
        id = r.message_id,
        arrival = date(r.arrival_ms),
        rcpt = r.recipient,
    );
    if let Some(mx) = &r.mx {
        status_text.push_str(&format!("Remote-MTA: dns; {mx}\r\n"));
    }
    status_text.push_str(&format!(
        "Diagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {}\r\n",
        r.reply.replace(['\r', '\n'], " "),
        date(now_secs * 1000)
    ));
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new(ContentType::new("message/delivery-status"), status_text),
            MimePart::new(
                ContentType::new("text/rfc822-headers"),
                String::from_utf8_lossy(&r.original_headers).into_owned(),
            ),
        ],
    );
    let from = format!("mailer-daemon@{operator_domain}");
    MessageBuilder::new()
        .from(("Mail Delivery System", from.as_str()))
        .to(to.to_string())
        .subject(format!(
            "Undelivered Mail Returned to Sender: {}",
            r.recipient
        ))
        .message_id(format!("dsn.{}.{}@{reporting_mta}", r.message_id, now_secs))
        .date(now_secs)
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-replied"),
        )
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    #[test]
    fn dsn_parses_with_the_right_fields() {
        let r = BounceReport {
            message_id: "m1".into(),
            did: "did:plc:x".into(),
            domain: "member.test".into(),
            recipient: "gone@rcpt.test".into(),
            reply: "550 5.1.1 no such user here".into(),
            mx: Some("mx.rcpt.test".into()),
            original_headers: b"From: a@member.test\r\nSubject: hello\r\n".to_vec(),
            source: "smtp".into(),
            arrival_ms: 1_795_397_691_000,
        };
        let raw = build(
            &r,
            "relay.test",
            "pool.test",
            "owner@member.test",
            1_795_397_700,
        );
        let msg = MessageParser::default().parse(&raw).expect("parses");
        let ct = msg.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(
            msg.from().and_then(|f| f.first()).and_then(|a| a.address()),
            Some("mailer-daemon@pool.test")
        );
        let parts: Vec<_> = msg
            .parts
            .iter()
            .filter_map(|p| p.content_type())
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .collect();
        assert!(
            parts.contains(&"message/delivery-status".to_string()),
            "{parts:?}"
        );
        assert!(parts.contains(&"text/rfc822-headers".to_string()));
        let status = msg
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("delivery-status"))
            })
            .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
            .expect("status part");
        assert!(status.contains("Final-Recipient: rfc822; gone@rcpt.test"));
        assert!(status.contains("Action: failed"));
        assert!(status.contains("Status: 5.1.1"));
        assert!(status.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"));
        assert!(status.contains("Remote-MTA: dns; mx.rcpt.test"));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Subject: hello"), "original headers included");
        assert_eq!(status_code("451 4.4.1 later"), "4.4.1");
        assert_eq!(status_code("550 no code"), "5.0.0");
    }
}
