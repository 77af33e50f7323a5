//! SRS (Sender Rewriting Scheme) for mail the relay forwards (replies to member domains, operator
//! aliases). The forwarded copy leaves with `SRS0=<tag>=<day>=<domain>=<local>@<host>` as its
//! envelope sender, so SPF at the next hop checks the relay, and a bounce comes back here, where the
//! address is authenticated (HMAC) and reversed to the original sender.
//!
//! `<tag>` is 10 hex digits of HMAC-SHA256 over `<day>=<domain>=<local>` (lowercased); `<day>` is
//! the day number modulo 4096 in hex. Addresses older than [`MAX_AGE_DAYS`] are refused.

use crate::address::Mailbox;
use crate::secrets::Secrets;

/// Bytes of HMAC kept in the address.
const TAG_BYTES: usize = 5;
/// Days an SRS address stays valid (bounces normally come within the 3-day queue lifetime).
pub const MAX_AGE_DAYS: u64 = 21;
const DAY_MODULUS: u64 = 4096;

/// Why an address could not be reversed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    #[error("not an SRS address of this relay")]
    NotSrs,
    #[error("SRS tag does not match: forged or damaged address")]
    Forged,
    #[error("SRS address has expired")]
    Expired,
}

fn day(now_secs: u64) -> u64 {
    (now_secs / 86_400) % DAY_MODULUS
}

fn signed_part(day: &str, domain: &str, local: &str) -> Vec<u8> {
    format!("{day}={domain}={local}")
        .to_ascii_lowercase()
        .into_bytes()
}

/// The SRS address standing for `sender` at `srs_host`. `None` when the rewritten address would
/// not be a valid mailbox (a quoted local part, or one too long to carry): the copy then leaves
/// with the null sender, as a returned bounce does.
pub fn forward(
    secrets: &Secrets,
    sender: &Mailbox,
    srs_host: &str,
    now_secs: u64,
) -> Option<Mailbox> {
    let (local, domain) = (sender.local(), sender.domain_text());
    let day = format!("{:03x}", day(now_secs));
    let tag = secrets.srs_tag(&signed_part(&day, domain, local));
    let tag = base16ct::lower::encode_string(&tag[..TAG_BYTES]);
    Mailbox::parse(&format!("SRS0={tag}={day}={domain}={local}@{srs_host}")).ok()
}

/// The original sender an SRS address at `srs_host` stands for, if the address is genuine and
/// not expired.
pub fn reverse(
    secrets: &Secrets,
    address: &str,
    srs_host: &str,
    now_secs: u64,
) -> Result<Mailbox, SrsError> {
    let local = crate::verp::local_part_at(address, srs_host).ok_or(SrsError::NotSrs)?;
    let rest = local
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("SRS0="))
        .map(|_| &local[5..])
        .ok_or(SrsError::NotSrs)?;
    // The original local part may itself contain '='; it is everything after the third one.
    let mut fields = rest.splitn(4, '=');
    let (Some(tag), Some(stamp), Some(domain), Some(orig_local)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SrsError::NotSrs);
    };
    if domain.is_empty() || orig_local.is_empty() {
        return Err(SrsError::NotSrs);
    }
    let tag = base16ct::mixed::decode_vec(tag).map_err(|_| SrsError::Forged)?;
    if tag.len() != TAG_BYTES
        || !secrets.verify_srs_tag(&signed_part(stamp, domain, orig_local), &tag)
    {
        return Err(SrsError::Forged);
    }
    let then = u64::from_str_radix(stamp, 16).map_err(|_| SrsError::Forged)?;
    let age = (day(now_secs) + DAY_MODULUS - then % DAY_MODULUS) % DAY_MODULUS;
    if age > MAX_AGE_DAYS {
        return Err(SrsError::Expired);
    }
    Mailbox::parse(&format!("{orig_local}@{domain}")).map_err(|_| SrsError::Forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_400_000;

    #[test]
    fn round_trip_forgery_and_expiry() {
        let s = Secrets::from_key(&[3; 32]);
        let sender = Mailbox::parse("Alice=x@Example.org").unwrap();
        let a = forward(&s, &sender, "relay.test", NOW).unwrap().to_string();
        assert!(a.starts_with("SRS0=") && a.ends_with("@relay.test"), "{a}");
        assert_eq!(
            reverse(&s, &a, "RELAY.test", NOW).unwrap().as_str(),
            "Alice=x@example.org"
        );
        // Case folding on the way back (some MTAs lowercase local parts) still verifies.
        assert_eq!(
            reverse(&s, &a.to_ascii_lowercase(), "relay.test", NOW + 86_400)
                .unwrap()
                .as_str(),
            "alice=x@example.org"
        );
        let forged = a.replacen("example.org", "evil.test", 1);
        assert_eq!(
            reverse(&s, &forged, "relay.test", NOW),
            Err(SrsError::Forged)
        );
        let other = Secrets::from_key(&[4; 32]);
        assert_eq!(
            reverse(&other, &a, "relay.test", NOW),
            Err(SrsError::Forged)
        );
        assert_eq!(
            reverse(&s, &a, "relay.test", NOW + 22 * 86_400),
            Err(SrsError::Expired)
        );
        assert_eq!(reverse(&s, &a, "other.test", NOW), Err(SrsError::NotSrs));
        assert_eq!(
            reverse(&s, "bounces+x-y@relay.test", "relay.test", NOW),
            Err(SrsError::NotSrs)
        );
        assert_eq!(
            reverse(&s, "SRS0=ab@relay.test", "relay.test", NOW),
            Err(SrsError::NotSrs)
        );
        let quoted = Mailbox::parse("\"a b\"@x.test").unwrap();
        assert_eq!(forward(&s, &quoted, "relay.test", NOW), None);
    }
}
