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
    /// A header line that breaks RFC 5322 §2.2 / §3.2.2: readers would split it differently.
    #[error("header line {line} is malformed: {reason}")]
    Malformed { line: usize, reason: &'static str },
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

/// Header fields in order, folded lines kept with their field, read by RFC 5322's grammar and
/// nothing looser: every line ends in CRLF (the last may be unterminated: stamping ends it), a
/// field name is `ftext` right up to its colon, a folded line holds more than white space, and
/// no control character but HTAB appears. Anything else is refused, because each looser reading
/// (a bare LF, a colon-less line, `Fr om:`) is one that another parser — mail-parser here, the
/// reader's client later — splits into different fields.
pub(crate) fn fields(head: &[u8]) -> Result<Vec<Field<'_>>, HeaderError> {
    // (start, colon, end) of each field in `head`.
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    let mut i = 0;
    let mut line = 0;
    while i < head.len() {
        line += 1;
        let bad = |reason| HeaderError::Malformed { line, reason };
        let end = head[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| i + p + 1)
            .unwrap_or(head.len());
        let text = &head[i..end];
        let content = match text.strip_suffix(b"\r\n") {
            Some(c) => c,
            None if !text.ends_with(b"\n") && end == head.len() => text,
            None => return Err(bad("a line ends in a bare LF, not CRLF")),
        };
        if content.iter().any(|b| matches!(b, b'\r' | b'\n')) {
            return Err(bad("a bare CR inside a line"));
        }
        if content
            .iter()
            .any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(bad("a control character"));
        }
        if content.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            let Some(last) = spans.last_mut() else {
                return Err(bad("a folded line before any field"));
            };
            if content.iter().all(|b| *b == b' ' || *b == b'\t') {
                return Err(bad("a folded line of only white space"));
            }
            last.2 = end;
        } else {
            let Some(colon) = content.iter().position(|b| *b == b':') else {
                return Err(bad("a line without a colon"));
            };
            let name = &content[..colon];
            if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
                return Err(bad("a field name must be printable ASCII up to its colon"));
            }
            spans.push((i, i + colon, end));
        }
        i = end;
    }
    Ok(spans
        .into_iter()
        .map(|(start, colon, end)| Field {
            // Printable ASCII, checked above.
            name: std::str::from_utf8(&head[start..colon]).unwrap_or_default(),
            value: &head[colon + 1..end],
            raw: &head[start..end],
        })
        .collect())
}

/// Applies the RFC 5322 §3.6 rules to a message's header block and reads its originators.
pub fn check(raw: &[u8]) -> Result<HeaderFacts, HeaderError> {
    let (head, _) = split_head(raw);
    let fields = fields(head)?;
    if raw.len() > head.len() && !raw[head.len()..].starts_with(b"\r\n") {
        return Err(HeaderError::Malformed {
            line: head.iter().filter(|b| **b == b'\n').count() + 1,
            reason: "the header block ends in a bare LF, not CRLF",
        });
    }
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
    let at = |f: &Field<'_>| f.raw.as_ptr() as usize - head.as_ptr() as usize;
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
    // The originators below are read by mail-parser, the counts above by `fields`: both must
    // see the same fields at the same places, or a field could hide from one of them.
    let theirs = parsed.headers();
    let same = theirs.len() == fields.len()
        && theirs.iter().zip(&fields).all(|(h, f)| {
            h.offset_field as usize == at(f) && h.name.as_str().eq_ignore_ascii_case(f.name)
        });
    if !same {
        return Err(HeaderError::Unreadable);
    }
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

    fn malformed(raw: &[u8]) -> &'static str {
        match check(raw) {
            Err(HeaderError::Malformed { reason, .. }) => reason,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    /// Found by the `headers` fuzz target: a colon-less line folded with a bare LF hid a
    /// `Sender` holding NULs from the check, and stamping (which drops no field) revealed it.
    #[test]
    fn the_fuzzers_folded_bare_lf_is_refused() {
        let raw = include_bytes!("../../../tests/fuzz/corpus/headers/folded-bare-lf");
        assert!(matches!(check(raw), Err(HeaderError::Malformed { .. })));
    }

    /// Every looser reading of a header line is one that some parser splits differently, so each
    /// is refused, with the line it is on.
    #[test]
    fn lines_outside_rfc_5322_are_refused() {
        // mail-parser drops the space inside a name, so `Fr om` would be a second From to it
        // and to any client that reads names the same way, but not to a strict counter.
        let two = b"From: <a@m.test>\r\nFr om: <ceo@rival.test>\r\n\r\nb";
        let parsed = mail_parser::MessageParser::default()
            .parse_headers(&two[..])
            .expect("parsed");
        assert_eq!(parsed.headers()[1].name.as_str(), "From");
        assert_eq!(
            malformed(two),
            "a field name must be printable ASCII up to its colon"
        );
        assert_eq!(
            check(b"From: <a@m.test>\r\nSubject : x\r\n\r\nb").unwrap_err(),
            HeaderError::Malformed {
                line: 2,
                reason: "a field name must be printable ASCII up to its colon"
            }
        );
        let cases: [(&[u8], &str); 8] = [
            (
                b"From: <a@m.test>\nSender: <b@m.test>\r\n\r\nb",
                "a line ends in a bare LF, not CRLF",
            ),
            (
                b"From: <a@m.test>\r\nX: a\rSender: <b@m.test>\r\n\r\nb",
                "a bare CR inside a line",
            ),
            (
                b"From: <a@m.test>\r\nnot a field\r\n\r\nb",
                "a line without a colon",
            ),
            (
                b"From: <a@m.test>\r\nX: a\r\n \r\nFrom: <c@r.test>\r\n\r\nb",
                "a folded line of only white space",
            ),
            (
                b" From: <a@m.test>\r\n\r\nb",
                "a folded line before any field",
            ),
            (
                b"From: <a@m.test>\r\nSender: <s@x.exam\x00ple>\r\n\r\nb",
                "a control character",
            ),
            (
                b"From: <a@m.test>\r\n: nameless\r\n\r\nb",
                "a field name must be printable ASCII up to its colon",
            ),
            (
                b"From: <a@m.test>\r\nX: y\r\n\nFrom: <c@r.test>\r\n",
                "the header block ends in a bare LF, not CRLF",
            ),
        ];
        for (raw, reason) in cases {
            assert_eq!(malformed(raw), reason, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn folds_tabs_utf8_and_an_unterminated_last_line_still_pass() {
        for raw in [
            "From: =?utf-8?q?J=C3=B6rg?= <a@m.test>\r\nSubject: a long\r\n\tsubject\r\n folded twice\r\n\r\nb",
            "From: Jörg <a@m.test>\r\nTo:\r\n <x@y.test>\r\n\r\n",
            "From: <a@m.test>\r\nX-Empty:\r\n\r\nbody\nwith bare LF in the body",
            "From: <a@m.test>",
        ] {
            let facts = check(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(facts.author().as_str(), "a@m.test");
        }
    }
}
