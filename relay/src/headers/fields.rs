//! The header block of a submitted message, read once: fields in order (folded lines kept whole)
//! and the RFC 5322 §3.6 rules a message must meet before the relay signs it — exactly one
//! `From`, at most one of each originator and identification field, and a `Sender` whenever
//! `From` names several mailboxes. A message with two `From` fields would otherwise be checked
//! on one and shown by the reader's client on the other.

use super::Category;
use crate::address::Mailbox;

/// Fields a message may hold at most once (RFC 5322 §3.6, the table's "max number" column).
const AT_MOST_ONCE: [&str; 10] = [
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Subject",
    "Date",
];

/// Why a message's header block is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the message headers cannot be read")]
    Unreadable,
    #[error("the message has no From field")]
    NoFrom,
    #[error("the message has {0} From fields; exactly one is allowed")]
    SeveralFrom(usize),
    #[error("the message has several {0} fields; at most one is allowed")]
    Repeated(&'static str),
    #[error("From names several mailboxes, so a Sender field is required")]
    FromNeedsSender,
    #[error("{field}: {address:?} is not a valid address ({reason})")]
    BadAddress {
        field: &'static str,
        address: String,
        reason: String,
    },
}

/// One header field as received.
pub(crate) struct Field<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
    /// The whole field with continuation lines and line ending, as received.
    pub raw: &'a [u8],
}

/// What the header block says, once it passed [`check`].
#[derive(Debug, Clone)]
pub struct HeaderFacts {
    /// The mailboxes of the one `From` field (at least one).
    pub from: Vec<Mailbox>,
    pub sender: Option<Mailbox>,
    /// `X-Atmos-Category`, or bulk.
    pub category: Category,
}

impl HeaderFacts {
    /// The author whose domain the message is signed for: the first `From` mailbox.
    pub fn author(&self) -> &Mailbox {
        &self.from[0]
    }
}

/// Splits at the first empty line: (header block with its final line ending, body).
pub(crate) fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < raw.len() {
        let end = raw[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(raw.len());
        let line = &raw[i..end];
        if line == b"\r\n" || line == b"\n" {
            return (&raw[..i], &raw[end..]);
        }
        i = end;
    }
    (raw, &[])
}

/// Header fields in order, folded lines kept with their field.
pub(crate) fn fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let end = head[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(head.len());
        let next_is_continuation = head.get(end).is_some_and(|b| *b == b' ' || *b == b'\t');
        if !next_is_continuation {
            let raw = &head[start..end];
            if let Some(colon) = raw.iter().position(|b| *b == b':') {
                let name = std::str::from_utf8(&raw[..colon]).unwrap_or("").trim();
                out.push(Field {
                    name,
                    value: &raw[colon + 1..],
                    raw,
                });
            }
            start = end;
        }
        i = end;
    }
    out
}

/// Applies the RFC 5322 §3.6 rules to a message's header block and reads its originators.
pub fn check(raw: &[u8]) -> Result<HeaderFacts, HeaderError> {
    let (head, _) = split_head(raw);
    let fields = fields(head);
    let count = |name: &str| {
        fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .count()
    };
    match count("From") {
        0 => return Err(HeaderError::NoFrom),
        1 => {}
        n => return Err(HeaderError::SeveralFrom(n)),
    }
    for name in AT_MOST_ONCE {
        if count(name) > 1 {
            return Err(HeaderError::Repeated(name));
        }
    }
    // Parse the block as it goes out: stamping ends every field with a line break, and an
    // unterminated last field can read differently without one (found by the fuzzer).
    let terminated;
    let head = if head.ends_with(b"\n") {
        head
    } else {
        terminated = [head, b"\r\n"].concat();
        &terminated[..]
    };
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(head)
        .ok_or(HeaderError::Unreadable)?;
    let mailboxes = |field: &'static str, addr: Option<&mail_parser::Address<'_>>| {
        let mut out = Vec::new();
        for a in addr.into_iter().flat_map(|a| a.iter()) {
            let text = a.address().unwrap_or_default();
            let mailbox = Mailbox::parse(text).map_err(|e| HeaderError::BadAddress {
                field,
                address: text.to_string(),
                reason: e.to_string(),
            })?;
            out.push(mailbox);
        }
        Ok(out)
    };
    let from = mailboxes("From", parsed.from())?;
    if from.is_empty() {
        return Err(HeaderError::NoFrom);
    }
    let mut sender = mailboxes("Sender", parsed.sender())?;
    if sender.len() > 1 {
        return Err(HeaderError::Repeated("Sender"));
    }
    if from.len() > 1 && sender.is_empty() {
        return Err(HeaderError::FromNeedsSender);
    }
    let category = Category::parse(
        fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case("X-Atmos-Category"))
            .map(|f| String::from_utf8_lossy(f.value).trim().to_string())
            .as_deref(),
    );
    Ok(HeaderFacts {
        from,
        sender: sender.pop(),
        category,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `headers` fuzz target: an unterminated From read as one address when
    /// checked and as another once stamping ended the line.
    #[test]
    fn an_unterminated_from_is_read_as_it_will_be_sent() {
        let raw = b"From: App <app@sjnder.tes>tMessagApp?= <Fromapp@s:e =?n";
        let with_end = [&raw[..], b"\r\n\r\n"].concat();
        assert_eq!(check(raw).is_ok(), check(&with_end).is_ok());
    }

    fn err(raw: &str) -> HeaderError {
        check(raw.as_bytes()).expect_err(raw)
    }

    #[test]
    fn one_from_and_at_most_one_of_the_others() {
        let ok = check(b"From: \"A\" <a@Member.test>\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody")
            .unwrap();
        assert_eq!(ok.author().as_str(), "a@member.test");
        assert_eq!(ok.category, Category::Bulk);
        assert_eq!(err("To: b@x.test\r\n\r\nb"), HeaderError::NoFrom);
        assert_eq!(
            err("From: a@member.test\r\nFrom: ceo@rival.test\r\n\r\nb"),
            HeaderError::SeveralFrom(2)
        );
        assert_eq!(
            err("from: a@member.test\r\nTo: b@x.test\r\nFROM: ceo@rival.test\r\n\r\nb"),
            HeaderError::SeveralFrom(2)
        );
        for name in [
            "Sender",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "Reply-To",
            "Cc",
        ] {
            let raw = format!("From: a@m.test\r\n{name}: x@y.test\r\n{name}: z@y.test\r\n\r\nb");
            assert!(
                matches!(err(&raw), HeaderError::Repeated(n) if n.eq_ignore_ascii_case(name)),
                "{name}"
            );
        }
    }

    #[test]
    fn several_authors_need_a_sender_and_addresses_must_parse() {
        assert_eq!(
            err("From: a@m.test, b@m.test\r\n\r\nb"),
            HeaderError::FromNeedsSender
        );
        let ok = check(b"From: a@m.test, b@m.test\r\nSender: a@m.test\r\n\r\nb").unwrap();
        assert_eq!(
            (ok.from.len(), ok.sender.map(|s| s.to_string())),
            (2, Some("a@m.test".into()))
        );
        assert!(matches!(
            err("From: nodomain\r\n\r\nb"),
            HeaderError::BadAddress { field: "From", .. }
        ));
        let ok = check(b"From: a@m.test\r\nX-Atmos-Category: password-reset\r\n\r\nb").unwrap();
        assert_eq!(ok.category.name(), "password-reset");
    }
}
