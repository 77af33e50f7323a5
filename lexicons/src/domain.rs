//! DNS domain names as a type: the one check every domain from outside goes through (sending
//! domains, attestation records, mailbox domains, did:web hosts).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Longest domain name in presentation form without the trailing dot (RFC 1035 §2.3.4).
pub const MAX_DOMAIN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL: usize = 63;

/// Why a string is not a domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 253 characters")]
    TooLong,
    #[error("needs at least two labels (like example.com)")]
    SingleLabel,
    #[error("has an empty label, or a label longer than 63 characters")]
    LabelLength,
    #[error(
        "may hold only letters, digits and hyphens, and no label may start or end with a hyphen"
    )]
    Characters,
    #[error("ends in an all-numeric label (an IP address is not a domain name)")]
    NumericTld,
}

/// A domain name: ASCII (IDNA A-labels), lowercase, without a trailing dot, at least two labels of
/// letters, digits and hyphens. It cannot be built invalid.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Parses a domain name: Unicode labels become A-labels (UTS #46), case is folded, one trailing
    /// dot is dropped.
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(DomainError::Empty);
        }
        if trimmed.len() > 4 * MAX_DOMAIN {
            // Far too long to be a domain even before IDNA shortens nothing: stop early.
            return Err(DomainError::TooLong);
        }
        let ascii = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii_strict(trimmed).map_err(|_| DomainError::Characters)?
        };
        check_ldh(&ascii)?;
        Ok(Self(ascii))
    }

    /// The domain in ASCII presentation form (no trailing dot).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fully qualified form with a trailing dot, for DNS queries.
    pub fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }

    /// Whether this domain is `other` or a name under it (`a.b.example` is within `example`).
    pub fn is_within(&self, other: &str) -> bool {
        let other = other.strip_suffix('.').unwrap_or(other);
        if other.is_empty() {
            return false;
        }
        let (me, other) = (self.0.as_str(), other.to_ascii_lowercase());
        me == other
            || me
                .strip_suffix(other.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    }

    /// `sub.<self>`: a name under this domain (`_atmos`, `_dmarc`, `<selector>._domainkey`).
    /// `prefix` must be labels the caller wrote itself.
    pub fn under(&self, prefix: &str) -> String {
        format!("{prefix}.{}", self.0)
    }
}

/// Letter-digit-hyphen rules over an ASCII, lowercase name.
fn check_ldh(name: &str) -> Result<(), DomainError> {
    if name.len() > MAX_DOMAIN {
        return Err(DomainError::TooLong);
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(DomainError::SingleLabel);
    }
    for label in &labels {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(DomainError::LabelLength);
        }
        if label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(DomainError::Characters);
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(DomainError::NumericTld);
    }
    Ok(())
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

impl std::str::FromStr for Domain {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Domain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(format!("{text:?} {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_the_name_or_a_name_under_it() {
        let d = |s: &str| Domain::parse(s).unwrap();
        assert!(d("pool.example").is_within("pool.example"));
        assert!(d("a.b.pool.example").is_within("POOL.example."));
        assert!(!d("notpool.example").is_within("pool.example"));
        assert!(!d("pool.example").is_within("a.pool.example"));
        assert!(!d("pool.example").is_within(""));
    }

    #[test]
    fn accepts_names_and_folds_them() {
        assert_eq!(
            Domain::parse("Example.COM.").unwrap().as_str(),
            "example.com"
        );
        assert_eq!(
            Domain::parse("a-b.c1.test").unwrap().as_str(),
            "a-b.c1.test"
        );
        assert_eq!(
            Domain::parse("bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(Domain::parse("x.example").unwrap().fqdn(), "x.example.");
        assert_eq!(
            Domain::parse(&format!("{}.test", "a".repeat(63)))
                .unwrap()
                .as_str()
                .len(),
            68
        );
    }

    #[test]
    fn refuses_everything_else() {
        for (input, why) in [
            ("", DomainError::Empty),
            (".", DomainError::Empty),
            ("localhost", DomainError::SingleLabel),
            ("a..b", DomainError::LabelLength),
            ("-a.test", DomainError::Characters),
            ("a-.test", DomainError::Characters),
            ("a_b.test", DomainError::Characters),
            ("a b.test", DomainError::Characters),
            ("a.test\r\nRSET", DomainError::Characters),
            ("a.te\0st", DomainError::Characters),
            ("a>b.test", DomainError::Characters),
            ("127.0.0.1", DomainError::NumericTld),
            ("[127.0.0.1]", DomainError::Characters),
            ("a%3A8080.test", DomainError::Characters),
        ] {
            assert_eq!(Domain::parse(input), Err(why), "{input:?}");
        }
        let long_label = format!("{}.test", "a".repeat(64));
        assert_eq!(Domain::parse(&long_label), Err(DomainError::LabelLength));
        let long = format!("{}test", "abcdefghi.".repeat(25));
        assert_eq!(Domain::parse(&long), Err(DomainError::TooLong));
        assert!(Domain::parse(&"ü".repeat(2000)).is_err());
    }

    #[test]
    fn serde_parses() {
        let d: Domain = serde_json::from_str("\"Mail.Example.org\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"mail.example.org\"");
        assert!(serde_json::from_str::<Domain>("\"no spaces.test\"").is_err());
    }
}
