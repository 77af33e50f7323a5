//! Headers the relay stamps at acceptance, before signing (SPEC §4.3, §4.4): `Message-ID` and
//! `Date` when missing, `X-Atmos-Member-Did`, `Feedback-ID`, and RFC 8058 `List-Unsubscribe` +
//! `List-Unsubscribe-Post` for bulk mail. `X-Atmos-Category` is read and removed, and a member
//! cannot supply the relay's own headers (they are removed first).

/// Mail category (SPEC §4.4).
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
    pub message_id: &'a str,
    pub hostname: &'a str,
    /// The one-click URL, used only for bulk mail.
    pub unsubscribe_url: Option<&'a str>,
    /// RFC 5322 date for a missing `Date:`.
    pub date: &'a str,
}

/// Headers a member may not set: the relay writes them.
const RELAY_OWNED: &[&str] = &[
    "x-atmos-member-did",
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

/// Stamps the relay's headers on a message.
pub fn stamp(raw: &[u8], input: &StampInput<'_>) -> Stamped {
    let (head, body) = split_head(raw);
    let fields = fields(head);
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
    let message_id = match value_of("Message-ID") {
        Some(existing) => existing.trim_matches(['<', '>', ' ']).to_string(),
        None => {
            let id = format!("{}@{}", input.message_id, input.hostname);
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
        if lower == "x-atmos-category" || RELAY_OWNED.contains(&lower.as_str()) {
            continue;
        }
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Stamped {
        raw: out,
        category,
        message_id,
    }
}

/// Splits at the first empty line: (header block with its final line ending, body).
fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
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

struct Field<'a> {
    name: &'a str,
    value: &'a [u8],
    /// The whole field with continuation lines and line ending, as received.
    raw: &'a [u8],
}

/// Header fields in order, folded lines kept with their field.
fn fields(head: &[u8]) -> Vec<Field<'_>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: Option<&'static str>) -> StampInput<'static> {
        StampInput {
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
            } = stamp(raw.as_bytes(), &input(Some("https://relay.test/u/t")));
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
        let cat = stamp(b"From: a@member.test\r\n\r\nb", &input(None)).category;
        assert_eq!(cat, Category::Bulk);
    }

    #[test]
    fn adds_missing_ids_keeps_existing_and_removes_forged_relay_headers() {
        let raw = b"From: a@member.test\r\nSubject: long\r\n folded\r\nX-Atmos-Member-Did: did:plc:forged\r\n\r\n.body\r\n";
        let stamped = stamp(raw, &input(None));
        assert_eq!(stamped.message_id, "abc@relay.test");
        let text = String::from_utf8(stamped.raw).unwrap();
        assert!(text.contains("Message-ID: <abc@relay.test>\r\n"));
        assert!(text.contains("Date: Mon, 23 Nov 2026"));
        assert!(
            text.contains("Subject: long\r\n folded\r\n"),
            "folded header kept whole"
        );
        assert!(!text.contains("forged"));
        assert_eq!(text.matches("X-Atmos-Member-Did: did:plc:x").count(), 1);
        assert!(text.ends_with("\r\n\r\n.body\r\n"));
        let raw = b"Message-ID: <mine@x>\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\nFrom: a@member.test\r\n\r\nb";
        let stamped = stamp(raw, &input(None));
        assert_eq!(stamped.message_id, "mine@x");
        let out = stamped.raw;
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("Message-ID").count(), 1);
        assert_eq!(text.matches("Date:").count(), 1);
    }
}
