//! Headers the relay stamps at acceptance, before signing (BEHAVIOUR §4.3, §4.4): a `Received` trace
//! field, `Message-ID` and `Date` when missing, `X-Atmos-Member-Did`, `Feedback-ID`, and RFC 8058
//! `List-Unsubscribe` + `List-Unsubscribe-Post` for bulk mail. `X-Atmos-Category` is read and
//! removed, and a member cannot supply the relay's own headers (they are removed first).
//! [`fields`] reads the header block and enforces RFC 5322's field counts.

pub mod fields;

pub use fields::{HeaderError, HeaderFacts, check};
use fields::{fields, split_head};
use std::net::IpAddr;

/// Mail category (BEHAVIOUR §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Category {
    /// `login-link`, `password-reset`, `mfa-otp`, `verification`: no List-Unsubscribe, never
    /// blocked by unsubscribes.
    Auth(String),
    /// No List-Unsubscribe.
    Transactional,
    /// Everything else.
    Bulk,
}

impl Category {
    /// Reads a category name; unknown or missing names are bulk.
    pub fn parse(name: Option<&str>) -> Self {
        match name.map(|n| n.trim().to_ascii_lowercase()) {
            Some(n)
                if matches!(
                    n.as_str(),
                    "login-link" | "password-reset" | "mfa-otp" | "verification"
                ) =>
            {
                Self::Auth(n)
            }
            Some(n) if n == "transactional" => Self::Transactional,
            _ => Self::Bulk,
        }
    }

    /// The name used in `Feedback-ID` and events.
    pub fn name(&self) -> &str {
        match self {
            Self::Auth(n) => n,
            Self::Transactional => "transactional",
            Self::Bulk => "bulk",
        }
    }

    /// Whether List-Unsubscribe is added.
    pub fn unsubscribable(&self) -> bool {
        matches!(self, Self::Bulk)
    }
}

/// What the stamp needs to know.
pub struct StampInput<'a> {
    pub did: &'a str,
    pub member_domain: &'a str,
    /// The relay's id of this copy (the left side of a relay-made `Message-ID`).
    pub message_id: &'a str,
    pub hostname: &'a str,
    /// The one-click URL, used only for bulk mail.
    pub unsubscribe_url: Option<&'a str>,
    /// RFC 5322 date for a missing `Date:` and the `Received` field.
    pub date: &'a str,
    /// How the message reached the relay, for the `Received` field.
    pub trace: &'a Trace,
}

/// How a submission arrived, for its `Received` trace field (RFC 5321 §4.4).
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// `ESMTPSA` (submission: TLS and AUTH) or `HTTP`.
    pub protocol: &'static str,
    /// The client's EHLO name.
    pub helo: Option<String>,
    /// The client's address; named only when `server.trace_client_address` is on.
    pub client: Option<IpAddr>,
}

/// The one rule for relay-made `Message-ID`s, on both paths: `<id>@<server.hostname>`.
pub fn message_id(id: &str, hostname: &str) -> String {
    format!("{id}@{hostname}")
}

/// The value of the `Received` field this hop adds:
/// `from <helo> ([ip]) by <hostname> with <protocol> id <id>; <date>`.
pub fn received(trace: &Trace, hostname: &str, id: &str, date: &str) -> String {
    let mut out = String::new();
    if let Some(helo) = &trace.helo {
        // The EHLO name is the client's word: keep only what a host name or literal can hold.
        let helo: String = helo
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(*c))
            .take(255)
            .collect();
        let helo = if helo.is_empty() {
            "unknown".into()
        } else {
            helo
        };
        out.push_str(&format!("from {helo} "));
        if let Some(ip) = trace.client {
            out.push_str(&format!("([{ip}]) "));
        }
    } else if let Some(ip) = trace.client {
        out.push_str(&format!("from [{ip}] "));
    }
    let protocol = if trace.protocol.is_empty() {
        "ESMTPSA"
    } else {
        trace.protocol
    };
    out.push_str(&format!("by {hostname} with {protocol} id {id}; {date}"));
    out
}

/// Headers a member may not set: the relay writes them.
const RELAY_OWNED: &[&str] = &[
    "x-atmos-member-did",
    // Delivery writes each copy's own; one a member planted could point a report elsewhere.
    "x-atmos-copy",
    "feedback-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// A message after the relay's stamp.
#[derive(Debug)]
pub struct Stamped {
    pub raw: Vec<u8>,
    pub category: Category,
    /// The `Message-ID` the message leaves with (the member's, or the relay's), without `<>`.
    pub message_id: String,
}

/// The inside of a well-formed `msg-id` (RFC 5322 §3.6.4): `<left@right>`, visible ASCII, no
/// brackets, quotes or spaces inside, at most 250 characters.
fn msg_id(value: &str) -> Option<&str> {
    let inner = value.trim().strip_prefix('<')?.strip_suffix('>')?;
    let (left, right) = inner.split_once('@')?;
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'@' | b'\\'))
    };
    (inner.len() <= 250 && ok(left) && ok(right.trim_start_matches('[').trim_end_matches(']')))
        .then_some(inner)
}

/// Stamps the relay's headers on a message whose header block passed [`check`].
pub fn stamp(raw: &[u8], input: &StampInput<'_>) -> Result<Stamped, HeaderError> {
    let (head, body) = split_head(raw);
    let fields = fields(head)?;
    let value_of = |name: &str| {
        fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| String::from_utf8_lossy(f.value).trim().to_string())
    };
    let category = Category::parse(value_of("X-Atmos-Category").as_deref());
    let mut out = Vec::with_capacity(raw.len() + 512);
    let mut add = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    add(
        "Received",
        &received(input.trace, input.hostname, input.message_id, input.date),
    );
    // A member's Message-ID that is not one `<left@right>` is replaced, not kept: the id is
    // what reports are matched on, and what logs and pages show.
    let member_id = value_of("Message-ID").and_then(|v| msg_id(&v).map(str::to_string));
    let message_id = match member_id.clone() {
        Some(existing) => existing,
        None => {
            let id = message_id(input.message_id, input.hostname);
            add("Message-ID", &format!("<{id}>"));
            id
        }
    };
    if value_of("Date").is_none() {
        add("Date", input.date);
    }
    add("X-Atmos-Member-Did", input.did);
    add(
        "Feedback-ID",
        &format!(
            "{}:{}:{}:atmosphere-mail",
            category.name(),
            input.did,
            input.member_domain
        ),
    );
    if let (true, Some(url)) = (category.unsubscribable(), input.unsubscribe_url) {
        add("List-Unsubscribe", &format!("<{url}>"));
        add("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
    }
    for f in &fields {
        let lower = f.name.to_ascii_lowercase();
        if lower == "x-atmos-category"
            || RELAY_OWNED.contains(&lower.as_str())
            || (lower == "message-id" && member_id.is_none())
        {
            continue;
        }
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(Stamped {
        raw: out,
        category,
        message_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `headers` fuzz target: an unterminated Message-ID with a `<` inside was kept
    /// as the message's id.
    #[test]
    fn a_malformed_member_message_id_is_replaced() {
        let raw = b"From: App <app@sender.test>\r\nTo: user@rcpt.test\r\nSubject: hi\r\nMessage-ID: <1@From: App <app@sendersender.test.";
        let trace = Trace::default();
        let stamped = stamp(
            raw,
            &StampInput {
                did: "did:plc:x",
                member_domain: "sender.test",
                message_id: "abc",
                hostname: "relay.test",
                unsubscribe_url: None,
                date: "Tue, 1 Dec 2026 00:00:00 +0000",
                trace: &trace,
            },
        )
        .expect("stamped");
        assert_eq!(stamped.message_id, "abc@relay.test");
        let text = String::from_utf8_lossy(&stamped.raw);
        assert_eq!(text.matches("Message-ID").count(), 1, "{text}");
        assert_eq!(msg_id("<a.b@c.d>"), Some("a.b@c.d"));
        assert_eq!(msg_id("<a@[1.2.3.4]>"), Some("a@[1.2.3.4]"));
        for bad in ["a@b", "<a b@c>", "<a@b@c>", "<@b>", "<a@>", "<a<@b>"] {
            assert_eq!(msg_id(bad), None, "{bad}");
        }
    }

    static TRACE: std::sync::LazyLock<Trace> = std::sync::LazyLock::new(|| Trace {
        protocol: "ESMTPSA",
        helo: Some("client.example\r\nX: y".into()),
        client: None,
    });

    fn input(url: Option<&'static str>) -> StampInput<'static> {
        StampInput {
            trace: &TRACE,
            did: "did:plc:x",
            member_domain: "member.test",
            message_id: "abc",
            hostname: "relay.test",
            unsubscribe_url: url,
            date: "Mon, 23 Nov 2026 01:00:00 +0000",
        }
    }

    fn headers_of(msg: &[u8]) -> String {
        let s = String::from_utf8_lossy(msg);
        s.split("\r\n\r\n").next().unwrap_or("").to_string()
    }

    #[test]
    fn categories() {
        for (name, unsub) in [
            ("login-link", false),
            ("password-reset", false),
            ("mfa-otp", false),
            ("verification", false),
            ("transactional", false),
            ("newsletter", true),
        ] {
            let raw = format!(
                "From: a@member.test\r\nX-Atmos-Category: {name}\r\nSubject: s\r\n\r\nbody\r\n"
            );
            let Stamped {
                raw: out,
                category: cat,
                ..
            } = stamp(raw.as_bytes(), &input(Some("https://relay.test/u/t"))).expect("stamped");
            let h = headers_of(&out);
            assert_eq!(
                h.contains("List-Unsubscribe: <https://relay.test/u/t>"),
                unsub,
                "{name}: {h}"
            );
            assert_eq!(
                h.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
                unsub
            );
            assert!(!h.contains("X-Atmos-Category"), "category header stripped");
            let expected = if unsub { "bulk" } else { name };
            assert_eq!(cat.name(), expected);
            assert!(h.contains(&format!(
                "Feedback-ID: {expected}:did:plc:x:member.test:atmosphere-mail"
            )));
        }
        // No category at all is bulk.
        let cat = stamp(b"From: a@member.test\r\n\r\nb", &input(None))
            .expect("stamped")
            .category;
        assert_eq!(cat, Category::Bulk);
    }

    #[test]
    fn adds_missing_ids_keeps_existing_and_removes_forged_relay_headers() {
        let raw = b"From: a@member.test\r\nSubject: long\r\n folded\r\nX-Atmos-Member-Did: did:plc:forged\r\nX-Atmos-Copy: <bounces+forged@pool.test>\r\n\r\n.body\r\n";
        let stamped = stamp(raw, &input(None)).expect("stamped");
        assert_eq!(stamped.message_id, "abc@relay.test");
        let text = String::from_utf8(stamped.raw).unwrap();
        assert!(text.contains("Message-ID: <abc@relay.test>\r\n"));
        assert!(
            text.starts_with("Received: from client.exampleX:y by relay.test with ESMTPSA id abc; Mon, 23 Nov 2026"),
            "one trace field, first, with the EHLO name cleaned: {text}"
        );
        assert!(text.contains("Date: Mon, 23 Nov 2026"));
        assert!(
            text.contains("Subject: long\r\n folded\r\n"),
            "folded header kept whole"
        );
        assert!(
            !text.contains("forged"),
            "relay-owned fields a member set are removed: {text}"
        );
        assert_eq!(text.matches("X-Atmos-Member-Did: did:plc:x").count(), 1);
        assert!(text.ends_with("\r\n\r\n.body\r\n"));
        let raw = b"Message-ID: <mine@x>\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\nFrom: a@member.test\r\n\r\nb";
        let stamped = stamp(raw, &input(None)).expect("stamped");
        assert_eq!(stamped.message_id, "mine@x");
        let out = stamped.raw;
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("Message-ID").count(), 1);
        assert_eq!(text.matches("Date:").count(), 1);
    }
}
