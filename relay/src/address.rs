//! Mailbox syntax (RFC 5321 §4.1.2): the one type every address that enters the relay is parsed
//! into — SMTP MAIL and RCPT, the HTTP send fields, forward-to addresses, the operator's
//! forwarding address and addresses read out of reports. Delivery writes only this type into its
//! SMTP commands, so nothing a member or a stranger types can reach the wire unchecked.
//!
//! Stricter than the RFC in two places, on purpose: a quoted local part may not hold `<` or `>`
//! (many peers mis-parse them), and local parts are ASCII (the relay does not offer SMTPUTF8).
//! Domains may be Unicode; they become A-labels.

pub use atmos_lexicons::{Domain, DomainError};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL: usize = 64;
/// Longest domain part (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_PART: usize = 255;
/// Longest mailbox: a 256-octet path less its angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_MAILBOX: usize = 254;
/// Longest display name accepted with a mailbox.
pub const MAX_DISPLAY_NAME: usize = 200;

/// Why a string is not a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("is empty")]
    Empty,
    #[error("has no @domain")]
    NoDomain,
    #[error("is longer than 254 characters")]
    TooLong,
    #[error("has a local part longer than 64 characters")]
    LocalTooLong,
    #[error("has an empty local part")]
    EmptyLocal,
    #[error("holds a control character (CR, LF, NUL…)")]
    Control,
    #[error("has a local part with a character that needs quoting, or misplaced dots")]
    LocalSyntax,
    #[error("has a non-ASCII local part (SMTPUTF8 is not offered)")]
    NonAscii,
    #[error("has a quoted local part that is not closed, or holds < or >")]
    Quoted,
    #[error("has a domain that {0}")]
    Domain(#[from] DomainError),
    #[error("has an address literal that is not [IPv4] or [IPv6:…]")]
    Literal,
    #[error("has a display name that is too long or holds control characters")]
    DisplayName,
}

/// The part after `@`: a domain name or an address literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailDomain {
    Name(Domain),
    Literal(IpAddr),
}

impl fmt::Display for MailDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(d) => f.write_str(d.as_str()),
            Self::Literal(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            Self::Literal(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

/// A valid RFC 5321 mailbox `local@domain`, with the domain in lowercase ASCII. It cannot be
/// built invalid; `as_str` is what goes on the wire.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    text: String,
    at: usize,
    domain: MailDomain,
}

/// An envelope sender: a mailbox, or the null reverse path `<>` (`None`) of bounces.
pub type ReversePath = Option<Mailbox>;

impl Mailbox {
    /// Parses `local@domain` (no angle brackets, no surrounding spaces).
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.chars().any(|c| c.is_control()) {
            return Err(AddressError::Control);
        }
        if input.len() > MAX_MAILBOX * 4 {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = split_local(input)?;
        let local = check_local(local)?;
        let domain = parse_domain(domain)?;
        let text = format!("{local}@{domain}");
        if text.len() > MAX_MAILBOX {
            return Err(AddressError::TooLong);
        }
        Ok(Self {
            at: local.len(),
            text,
            domain,
        })
    }

    /// The mailbox as written on the wire (`local@domain`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The local part, as written (quotes kept).
    pub fn local(&self) -> &str {
        &self.text[..self.at]
    }

    /// The domain part.
    pub fn domain(&self) -> &MailDomain {
        &self.domain
    }

    /// The domain name, unless the domain is an address literal.
    pub fn domain_name(&self) -> Option<&Domain> {
        match &self.domain {
            MailDomain::Name(d) => Some(d),
            MailDomain::Literal(_) => None,
        }
    }

    /// The domain part as text (`example.com`, `[192.0.2.1]`): the key delivery groups by.
    pub fn domain_text(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// True when both name the same mailbox (the domain is already folded; local parts are
    /// compared without case, as every real mailbox provider does).
    pub fn same_as(&self, other: &Mailbox) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}

/// Splits at the `@` that ends the local part (a quoted local part may itself hold `@`).
fn split_local(input: &str) -> Result<(&str, &str), AddressError> {
    if let Some(rest) = input.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    let end = i + 2;
                    return match input[end..].strip_prefix('@') {
                        Some(domain) => Ok((&input[..end], domain)),
                        None => Err(AddressError::Quoted),
                    };
                }
                _ => {}
            }
        }
        return Err(AddressError::Quoted);
    }
    input.rsplit_once('@').ok_or(AddressError::NoDomain)
}

/// atext (RFC 5322 §3.2.3).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn check_local(local: &str) -> Result<&str, AddressError> {
    if local.is_empty() {
        return Err(AddressError::EmptyLocal);
    }
    if !local.is_ascii() {
        return Err(AddressError::NonAscii);
    }
    if local.len() > MAX_LOCAL {
        return Err(AddressError::LocalTooLong);
    }
    if let Some(inner) = local.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or(AddressError::Quoted)?;
        let mut bytes = inner.bytes();
        while let Some(b) = bytes.next() {
            match b {
                // A quoted pair may not smuggle a bracket in either.
                b'\\' => match bytes.next() {
                    Some(b'<' | b'>') => return Err(AddressError::Quoted),
                    Some(32..=126) => {}
                    _ => return Err(AddressError::Quoted),
                },
                b'"' | b'<' | b'>' => return Err(AddressError::Quoted),
                32..=126 => {}
                _ => return Err(AddressError::Quoted),
            }
        }
        return Ok(local);
    }
    let dot_string = local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    if dot_string {
        Ok(local)
    } else {
        Err(AddressError::LocalSyntax)
    }
}

fn parse_domain(domain: &str) -> Result<MailDomain, AddressError> {
    if domain.len() > MAX_DOMAIN_PART {
        return Err(AddressError::TooLong);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or(AddressError::Literal)?;
        let ip = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..]
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| AddressError::Literal)?,
            _ => inner
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| AddressError::Literal)?,
        };
        return Ok(MailDomain::Literal(ip));
    }
    Ok(MailDomain::Name(Domain::parse(domain)?))
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mailbox({})", self.text)
    }
}

impl std::str::FromStr for Mailbox {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Mailbox {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A mailbox with an optional display name, as the HTTP `from` and `replyTo` take it:
/// `app@example.com`, `App <app@example.com>` or `"App, Inc." <app@example.com>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedMailbox {
    pub name: Option<String>,
    pub mailbox: Mailbox,
}

impl NamedMailbox {
    /// Parses a bare mailbox or `Name <mailbox>`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let input = input.trim();
        if input.chars().any(|c| c.is_control()) {
            return Err(AddressError::Control);
        }
        let Some(open) = input.rfind('<') else {
            return Ok(Self {
                name: None,
                mailbox: Mailbox::parse(input)?,
            });
        };
        let address = input[open + 1..]
            .strip_suffix('>')
            .ok_or(AddressError::LocalSyntax)?;
        let raw_name = input[..open].trim();
        let name = raw_name
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .unwrap_or(raw_name)
            .trim();
        if name.chars().count() > MAX_DISPLAY_NAME || name.contains(['<', '>']) {
            return Err(AddressError::DisplayName);
        }
        Ok(Self {
            name: (!name.is_empty()).then(|| name.to_string()),
            mailbox: Mailbox::parse(address)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc_5321_mailboxes() {
        for (input, wire) in [
            ("user@example.com", "user@example.com"),
            (
                "First.Last+tag@Sub.Example.COM",
                "First.Last+tag@sub.example.com",
            ),
            ("!#$%&'*+-/=?^_`{|}~@x.test", "!#$%&'*+-/=?^_`{|}~@x.test"),
            ("\"john doe\"@x.test", "\"john doe\"@x.test"),
            ("\"a@b\"@x.test", "\"a@b\"@x.test"),
            ("\"q\\\"uote\"@x.test", "\"q\\\"uote\"@x.test"),
            ("u@[192.0.2.1]", "u@[192.0.2.1]"),
            ("u@[IPv6:2001:db8::1]", "u@[IPv6:2001:db8::1]"),
            ("u@bücher.example", "u@xn--bcher-kva.example"),
        ] {
            let m = Mailbox::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(m.as_str(), wire);
        }
        let m = Mailbox::parse("\"a@b\"@Mail.Test").unwrap();
        assert_eq!((m.local(), m.domain_text()), ("\"a@b\"", "mail.test"));
        assert!(
            Mailbox::parse("A@x.test")
                .unwrap()
                .same_as(&Mailbox::parse("a@X.test").unwrap())
        );
    }

    #[test]
    fn refuses_injection_and_bad_syntax() {
        let long_local = format!("{}@x.test", "a".repeat(65));
        let long_total = format!("{}@{}test", "a".repeat(64), "b.".repeat(95));
        for (input, why) in [
            ("", AddressError::Empty),
            ("nodomain", AddressError::NoDomain),
            ("a@x.test\r\nRSET", AddressError::Control),
            (
                "a@x.test\nMAIL FROM:<ceo@other.test>",
                AddressError::Control,
            ),
            ("a\0@x.test", AddressError::Control),
            ("a@x.test>", AddressError::Domain(DomainError::Characters)),
            ("a>b@x.test", AddressError::LocalSyntax),
            ("<a@x.test>", AddressError::LocalSyntax),
            ("a b@x.test", AddressError::LocalSyntax),
            (".a@x.test", AddressError::LocalSyntax),
            ("a..b@x.test", AddressError::LocalSyntax),
            ("@x.test", AddressError::EmptyLocal),
            ("\"a>b\"@x.test", AddressError::Quoted),
            // Found by the address fuzzer: a quoted pair smuggled the bracket past the check.
            ("\"a\\>b\"@x.test", AddressError::Quoted),
            ("\"a\\<b\"@x.test", AddressError::Quoted),
            ("\"open@x.test", AddressError::Quoted),
            ("ü@x.test", AddressError::NonAscii),
            ("a@[300.1.1.1]", AddressError::Literal),
            (
                "a@localhost",
                AddressError::Domain(DomainError::SingleLabel),
            ),
            (long_local.as_str(), AddressError::LocalTooLong),
            (long_total.as_str(), AddressError::TooLong),
        ] {
            assert_eq!(Mailbox::parse(input), Err(why), "{input:?}");
        }
    }

    #[test]
    fn display_names() {
        let n = NamedMailbox::parse("App <app@example.com>").unwrap();
        assert_eq!(
            (n.name.as_deref(), n.mailbox.as_str()),
            (Some("App"), "app@example.com")
        );
        let n = NamedMailbox::parse("\"App, Inc.\" <app@example.com>").unwrap();
        assert_eq!(n.name.as_deref(), Some("App, Inc."));
        assert_eq!(NamedMailbox::parse("app@example.com").unwrap().name, None);
        assert_eq!(NamedMailbox::parse("<app@example.com>").unwrap().name, None);
        assert!(NamedMailbox::parse("App <app@example.com").is_err());
        assert!(NamedMailbox::parse("A\r\nBcc: x <app@example.com>").is_err());
        assert!(NamedMailbox::parse(&format!("{} <a@x.test>", "n".repeat(201))).is_err());
    }
}
