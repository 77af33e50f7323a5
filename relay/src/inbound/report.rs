//! Reading the reports the MX receives, with mail-parser: RFC 3464 delivery status notifications
//! (`multipart/report; report-type=delivery-status`) and RFC 5965 abuse reports
//! (`multipart/report; report-type=feedback-report`, ARF), with what the enclosed original says
//! about who sent it.

use crate::address::Mailbox;
use mail_parser::{Message, MessageParser, MimeHeaders};

/// A report found in an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Dsn(Dsn),
    Arf(Feedback),
}

/// A delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub recipients: Vec<DsnRecipient>,
    pub original: Original,
}

/// One per-recipient block of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// `Final-Recipient` (or `Original-Recipient`) address.
    pub address: Mailbox,
    /// `Original-Recipient`, when given: the address as the relay sent it.
    pub original: Option<Mailbox>,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    /// Enhanced status code, e.g. `5.1.1`.
    pub status: String,
    pub diagnostic: Option<String>,
}

impl DsnRecipient {
    /// A permanent failure: the address must not be tried again.
    pub fn is_permanent(&self) -> bool {
        self.action.eq_ignore_ascii_case("failed") && self.status.starts_with('5')
    }

    /// The reply text stored with the recipient.
    pub fn reply(&self) -> String {
        match &self.diagnostic {
            Some(d) => format!("DSN {} {}: {d}", self.action, self.status),
            None => format!("DSN {} {}", self.action, self.status),
        }
    }
}

/// An abuse report (ARF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// `abuse`, `fraud`, `not-spam`...
    pub feedback_type: String,
    /// `Original-Rcpt-To` addresses: who complained (empty when the report names nobody).
    pub complainants: Vec<Mailbox>,
    pub original: Original,
}

/// What the enclosed original message (or its headers) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    /// `X-Atmos-Member-Did`.
    pub member_did: Option<String>,
    /// `Feedback-ID` (`category:did:domain:atmosphere-mail`).
    pub feedback_id: Option<String>,
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// `Return-Path` (the receiving MTA writes the envelope sender there): a VERP address
    /// proves the relay sent the message.
    pub return_path: Option<String>,
    /// `X-Atmos-Copy`: the VERP return path of the one recipient this copy went to, which the
    /// relay writes into each copy at delivery (it survives a report that drops `Return-Path`).
    pub copy: Option<String>,
    /// How many `X-Atmos-Member-Did` and `Message-ID` fields it has (a signed original has one
    /// of each).
    pub identity_fields: usize,
    /// The enclosed original as received (headers, and the body if included), for DKIM.
    pub raw: Vec<u8>,
}

impl Dsn {
    /// The enclosed original.
    pub fn original(&self) -> &Original {
        &self.original
    }
}

impl Report {
    /// The enclosed original of either kind.
    pub fn original(&self) -> &Original {
        match self {
            Self::Dsn(d) => &d.original,
            Self::Arf(f) => &f.original,
        }
    }
}

impl Original {
    /// The member DID the original names: `X-Atmos-Member-Did`, else the DID in `Feedback-ID`.
    pub fn did(&self) -> Option<String> {
        self.member_did
            .clone()
            .or_else(|| self.feedback_id.as_deref().and_then(did_of_feedback_id))
    }
}

/// The DID inside a `Feedback-ID` value (`category:<did>:<domain>:<mailer>`; the DID may itself
/// hold colons, so it is what lies between the category and the last two fields).
fn did_of_feedback_id(value: &str) -> Option<String> {
    let start = value.find("did:")?;
    let mut parts = value[start..].rsplitn(3, ':');
    let (Some(_mailer), Some(_domain), Some(did)) = (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (did.split(':').count() >= 3 && did.split(':').all(|p| !p.is_empty())).then(|| did.to_string())
}

/// The report in `raw`, if it is a DSN or an ARF report.
pub fn parse(raw: &[u8]) -> Option<Report> {
    let message = MessageParser::default().parse(raw)?;
    let report_type = message
        .content_type()
        .filter(|ct| ct.ctype().eq_ignore_ascii_case("multipart"))
        .filter(|ct| {
            ct.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .and_then(|ct| ct.attribute("report-type"))?
        .to_ascii_lowercase();
    let part_of = |subtype: &str| {
        message.parts.iter().find(|p| {
            p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
            })
        })
    };
    let original = original(&message);
    match report_type.as_str() {
        "delivery-status" => {
            let status =
                part_of("delivery-status").or_else(|| part_of("global-delivery-status"))?;
            let recipients = field_blocks(status.contents())
                .iter()
                .filter_map(|fields| dsn_recipient(fields))
                .collect();
            Some(Report::Dsn(Dsn {
                recipients,
                original,
            }))
        }
        "feedback-report" => {
            let block = part_of("feedback-report")?;
            let fields: Vec<_> = field_blocks(block.contents())
                .into_iter()
                .flatten()
                .collect();
            let feedback_type = field(&fields, "Feedback-Type")
                .unwrap_or("abuse")
                .to_ascii_lowercase();
            let complainants: Vec<Mailbox> = fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("Original-Rcpt-To"))
                .filter_map(|(_, v)| report_address(v))
                .collect();
            Some(Report::Arf(Feedback {
                feedback_type,
                complainants,
                original,
            }))
        }
        _ => None,
    }
}

/// The header fields of the enclosed original (`message/rfc822`, `message/global`,
/// `text/rfc822-headers` or `message/rfc822-headers`).
fn original(message: &Message<'_>) -> Original {
    let part = message.parts.iter().skip(1).find(|p| {
        p.content_type().is_some_and(|ct| {
            let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
            matches!(
                (ct.ctype().to_ascii_lowercase().as_str(), sub.as_str()),
                ("message", "rfc822" | "global" | "rfc822-headers") | ("text", "rfc822-headers")
            )
        })
    });
    let Some(part) = part else {
        return Original::default();
    };
    let contents = part.contents();
    let Some(headers) = MessageParser::default().parse_headers(contents) else {
        return Original::default();
    };
    let raw = |name: &str| {
        headers
            .headers_raw()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| unfold(v))
            .filter(|v| !v.is_empty())
    };
    let identity_fields = headers
        .headers_raw()
        .filter(|(n, _)| {
            n.eq_ignore_ascii_case("X-Atmos-Member-Did") || n.eq_ignore_ascii_case("Message-ID")
        })
        .count();
    Original {
        member_did: raw("X-Atmos-Member-Did"),
        feedback_id: raw("Feedback-ID"),
        message_id: headers.message_id().map(str::to_string),
        return_path: raw("Return-Path").map(|v| v.trim().trim_matches(['<', '>']).to_string()),
        // Exactly one, the relay's: with two, which copy this is would be the sender's choice.
        copy: (headers
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(crate::delivery::COPY_HEADER))
            .count()
            == 1)
            .then(|| raw(crate::delivery::COPY_HEADER))
            .flatten()
            .map(|v| v.trim().trim_matches(['<', '>']).to_string()),
        identity_fields,
        raw: contents.to_vec(),
    }
}

/// Field blocks of a `message/delivery-status` or `message/feedback-report` body: groups of
/// `Name: value` fields separated by blank lines, read with mail-parser's header parser.
fn field_blocks(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|block| {
            let block = format!("{}\n\n", block.trim_start_matches('\n'));
            let parsed = MessageParser::default().parse_headers(block.as_bytes())?;
            let fields: Vec<_> = parsed
                .headers_raw()
                .map(|(n, v)| (n.to_string(), unfold(v)))
                .collect();
            (!fields.is_empty()).then_some(fields)
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn dsn_recipient(fields: &[(String, String)]) -> Option<DsnRecipient> {
    let original = field(fields, "Original-Recipient").and_then(report_address);
    let address = match field(fields, "Final-Recipient").and_then(report_address) {
        Some(a) => a,
        None => original.clone()?,
    };
    let action = field(fields, "Action")?.to_ascii_lowercase();
    let status = field(fields, "Status")
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
        .unwrap_or_default();
    Some(DsnRecipient {
        address,
        original,
        action,
        status,
        diagnostic: field(fields, "Diagnostic-Code").map(|d| {
            // "smtp; 550 5.1.1 ..." → the reply itself.
            d.split_once(';').map_or(d, |(_, r)| r).trim().to_string()
        }),
    })
}

/// `rfc822; <a@b>` → the mailbox `a@b`; anything that does not parse is dropped (and logged), so
/// an address from a report is as strict as one from a member.
fn report_address(value: &str) -> Option<Mailbox> {
    let address = value.split_once(';').map_or(value, |(_, a)| a);
    let address = address.trim().trim_matches(['<', '>']).trim();
    match Mailbox::parse(address) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::info!(address = %address.escape_debug(), error = %e, "report: address ignored");
            None
        }
    }
}

/// A raw header value on one line, trimmed.
fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "From: app@member.test\r\nTo: Reader <reader@rcpt.test>\r\n\
        Subject: hi\r\nMessage-ID: <01abc@relay.test>\r\nX-Atmos-Member-Did: did:plc:member\r\n\
        Feedback-ID: transactional:did:plc:member:member.test:atmosphere-mail\r\n";

    fn report(kind: &str, part_type: &str, fields: &str, original_type: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.rcpt.test\r\nTo: bounces+x@pool.test\r\nSubject: report\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type={kind}; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nHuman text.\r\n\
             --b1\r\nContent-Type: {part_type}\r\n\r\n{fields}\r\n\
             --b1\r\nContent-Type: {original_type}\r\n\r\n{ORIGINAL}\r\nbody\r\n\
             --b1--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn reads_a_dsn_with_several_recipients() {
        let fields = "Reporting-MTA: dns; mx.rcpt.test\r\n\r\n\
            Final-Recipient: rfc822; <Gone@rcpt.test>\r\nAction: failed\r\nStatus: 5.1.1 (bad mailbox)\r\n\
            Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n\
            Original-Recipient: rfc822;later@rcpt.test\r\nFinal-Recipient: rfc822;later@rcpt.test\r\n\
            Action: delayed\r\nStatus: 4.2.2\r\n";
        let raw = report(
            "delivery-status",
            "message/delivery-status",
            fields,
            "text/rfc822-headers",
        );
        let Some(Report::Dsn(dsn)) = parse(&raw) else {
            panic!("not a DSN")
        };
        assert_eq!(dsn.recipients.len(), 2);
        let gone = &dsn.recipients[0];
        assert_eq!(
            (gone.address.as_str(), gone.status.as_str()),
            ("Gone@rcpt.test", "5.1.1")
        );
        assert_eq!(
            dsn.recipients[1].original.as_ref().map(|m| m.as_str()),
            Some("later@rcpt.test")
        );
        assert!(gone.is_permanent());
        assert_eq!(gone.diagnostic.as_deref(), Some("550 5.1.1 no such user"));
        assert!(!dsn.recipients[1].is_permanent());
        assert_eq!(dsn.original.did().as_deref(), Some("did:plc:member"));
        assert_eq!(dsn.original.message_id.as_deref(), Some("01abc@relay.test"));
    }

    #[test]
    fn reads_an_arf_report_and_its_attribution() {
        let fields = "Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n\
            Original-Mail-From: <bounces+x@pool.test>\r\nOriginal-Rcpt-To: <reader@rcpt.test>\r\n";
        let raw = report(
            "feedback-report",
            "message/feedback-report",
            fields,
            "message/rfc822",
        );
        let Some(Report::Arf(f)) = parse(&raw) else {
            panic!("not ARF")
        };
        assert_eq!(f.feedback_type, "abuse");
        assert_eq!(
            f.complainants,
            vec![Mailbox::parse("reader@rcpt.test").unwrap()]
        );
        assert_eq!(f.original.did().as_deref(), Some("did:plc:member"));
        assert_eq!(f.original.identity_fields, 2);
        assert!(f.original.raw.starts_with(b"From: app@member.test"));
        // Without Original-Rcpt-To nobody is named; without X-Atmos-Member-Did, the Feedback-ID
        // names the member.
        let raw = String::from_utf8(raw)
            .unwrap()
            .replace("Original-Rcpt-To: <reader@rcpt.test>\r\n", "")
            .replace("X-Atmos-Member-Did: did:plc:member\r\n", "");
        let Some(Report::Arf(f)) = parse(raw.as_bytes()) else {
            panic!("not ARF")
        };
        assert!(f.complainants.is_empty());
        assert_eq!(f.original.did().as_deref(), Some("did:plc:member"));
        // Addresses that do not parse are dropped, not trusted.
        let raw = String::from_utf8(report(
            "feedback-report",
            "message/feedback-report",
            "Feedback-Type: abuse\r\nOriginal-Rcpt-To: <a@x.test>\r\nOriginal-Rcpt-To: <b\"@x.test>\r\n",
            "message/rfc822",
        ))
        .unwrap();
        let Some(Report::Arf(f)) = parse(raw.as_bytes()) else {
            panic!("not ARF")
        };
        assert_eq!(f.complainants, vec![Mailbox::parse("a@x.test").unwrap()]);
    }

    #[test]
    fn plain_mail_and_broken_reports_are_not_reports() {
        assert_eq!(parse(b"From: a@b.c\r\nSubject: hi\r\n\r\nhello\r\n"), None);
        assert_eq!(parse(b""), None);
        let raw = report("delivery-status", "text/plain", "nothing", "text/plain");
        assert_eq!(parse(&raw), None, "a DSN without its status part");
        assert_eq!(
            did_of_feedback_id("bulk:did:web:x.test:users:d.test:atmosphere-mail").as_deref(),
            Some("did:web:x.test:users")
        );
        assert_eq!(did_of_feedback_id("campaign:123:mailer"), None);
    }
}
