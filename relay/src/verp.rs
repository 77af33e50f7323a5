//! VERP return paths and unsubscribe tokens, both authenticated with HMAC so bounces and
//! unsubscribe requests cannot be forged.
//!
//! Return path, one per recipient: `bounces+<message-id>=<recipient-id>-<tag>@<operator domain>`,
//! tag = first 10 bytes of HMAC-SHA256(`<message-id hex>.<recipient-id>`). The 16-byte message id
//! and the tag are base32 (lowercase, case-insensitive on the way back), so the local part stays
//! within RFC 5321's 64 characters up to 10^12 recipients (the hex form passed 64 at recipient
//! 100, and every later message bounced as an invalid sender). Still parsed: the older
//! `bounces+<hex id>.<recipient-id>-<hex tag>` and the message-level `bounces+<hex id>-<hex tag>`.
//! Token: base64url(`<did> <message-id> <recipient>`) `.` base64url(tag).

use crate::secrets::Secrets;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

const TAG_BYTES: usize = 10;

/// Why an address or token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerpError {
    #[error("not a VERP address of this relay")]
    NotVerp,
    #[error("VERP tag does not match: forged or damaged bounce")]
    Forged,
}

/// What a genuine bounce address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerpTarget {
    pub message_id: String,
    /// The recipient row the bounce is about (`None` for message-level addresses).
    pub recipient: Option<i64>,
}

/// The return path of `message_id` for one recipient (`None`: the message as a whole).
pub fn return_path(
    secrets: &Secrets,
    message_id: &str,
    recipient: Option<i64>,
    operator_domain: &str,
) -> String {
    // The compact form carries the id's bytes, which parse back as lowercase hex: tag that
    // canonical text, or an id written in capitals would not verify (found by the fuzzer).
    if let (Some(r), Some(bytes)) = (recipient, id_bytes(message_id)) {
        let canonical = format!("{}.{r}", base16ct::lower::encode_string(&bytes));
        let tag = secrets.verp_tag(canonical.as_bytes());
        return format!(
            "bounces+{}={r}-{}@{operator_domain}",
            base32(&bytes),
            base32(&tag[..TAG_BYTES])
        );
    }
    // Ids the relay did not make (not 32 hex digits) keep the long form.
    let tagged = match recipient {
        Some(r) => format!("{message_id}.{r}"),
        None => message_id.to_string(),
    };
    let tag = secrets.verp_tag(tagged.as_bytes());
    format!(
        "bounces+{tagged}-{}@{operator_domain}",
        base16ct::lower::encode_string(&tag[..TAG_BYTES])
    )
}

fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD
        .encode(bytes)
        .to_ascii_lowercase()
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD
        .decode(text.to_ascii_uppercase().as_bytes())
        .ok()
}

/// A relay message id (32 hex digits) as 26 base32 characters.
/// The 16 bytes of an id the relay made (32 hex digits).
fn id_bytes(message_id: &str) -> Option<Vec<u8>> {
    base16ct::mixed::decode_vec(message_id)
        .ok()
        .filter(|b| b.len() == 16)
}

/// The message (and recipient) a bounce address belongs to, if its tag is genuine.
pub fn parse_return_path(
    secrets: &Secrets,
    address: &str,
    operator_domain: &str,
) -> Result<VerpTarget, VerpError> {
    let local = local_part_at(address, operator_domain).ok_or(VerpError::NotVerp)?;
    let rest = local
        .get(..8)
        .filter(|p| p.eq_ignore_ascii_case("bounces+"))
        .map(|_| &local[8..])
        .ok_or(VerpError::NotVerp)?;
    let (tagged, tag) = rest.rsplit_once('-').ok_or(VerpError::NotVerp)?;
    if let Some((id, r)) = tagged.split_once('=') {
        let id = unbase32(id)
            .filter(|b| b.len() == 16)
            .ok_or(VerpError::Forged)?;
        let message_id = base16ct::lower::encode_string(&id);
        let recipient = r.parse::<i64>().map_err(|_| VerpError::Forged)?;
        let tag = unbase32(tag).ok_or(VerpError::Forged)?;
        let canonical = format!("{message_id}.{recipient}");
        if tag.len() != TAG_BYTES || !secrets.verify_verp_tag(canonical.as_bytes(), &tag) {
            return Err(VerpError::Forged);
        }
        return Ok(VerpTarget {
            message_id,
            recipient: Some(recipient),
        });
    }
    let tag = base16ct::mixed::decode_vec(tag).map_err(|_| VerpError::Forged)?;
    if tag.len() != TAG_BYTES || !secrets.verify_verp_tag(tagged.as_bytes(), &tag) {
        return Err(VerpError::Forged);
    }
    let (message_id, recipient) = match tagged.split_once('.') {
        Some((id, r)) => (id, Some(r.parse::<i64>().map_err(|_| VerpError::Forged)?)),
        None => (tagged, None),
    };
    Ok(VerpTarget {
        message_id: message_id.to_string(),
        recipient,
    })
}

/// The local part of `address` (angle brackets allowed) when its domain is `domain`.
pub(crate) fn local_part_at<'a>(address: &'a str, domain: &str) -> Option<&'a str> {
    let (local, at) = address.trim_matches(['<', '>']).rsplit_once('@')?;
    at.eq_ignore_ascii_case(domain).then_some(local)
}

/// What an unsubscribe token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub did: String,
    pub message_id: String,
    pub recipient: String,
}

/// A signed token for the List-Unsubscribe URL.
pub fn unsubscribe_token(secrets: &Secrets, u: &Unsubscribe) -> String {
    let payload = format!("{} {} {}", u.did, u.message_id, u.recipient);
    let tag = secrets.unsubscribe_tag(payload.as_bytes());
    format!("{}.{}", B64URL.encode(payload), B64URL.encode(&tag[..16]))
}

/// Checks and reads a token.
pub fn parse_unsubscribe_token(secrets: &Secrets, token: &str) -> Result<Unsubscribe, VerpError> {
    let (payload, tag) = token.split_once('.').ok_or(VerpError::NotVerp)?;
    let payload = B64URL.decode(payload).map_err(|_| VerpError::NotVerp)?;
    let tag = B64URL.decode(tag).map_err(|_| VerpError::Forged)?;
    let expected = secrets.unsubscribe_tag(&payload);
    if tag.len() != 16
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            &expected[..16],
            tag.as_slice(),
        ))
    {
        return Err(VerpError::Forged);
    }
    let text = String::from_utf8(payload).map_err(|_| VerpError::NotVerp)?;
    let mut parts = text.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(m), Some(r)) => Ok(Unsubscribe {
            did: d.into(),
            message_id: m.into(),
            recipient: r.into(),
        }),
        _ => Err(VerpError::NotVerp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_id_in_capitals_round_trips() {
        let s = Secrets::from_key(&[2; 32]);
        let id = "B".repeat(32);
        let rp = return_path(&s, &id, Some(0), "pool.test");
        let t = parse_return_path(&s, &rp, "pool.test").expect("its own address verifies");
        assert_eq!((t.message_id, t.recipient), (id.to_lowercase(), Some(0)));
    }

    #[test]
    fn verp_round_trip_and_forgery() {
        let s = Secrets::from_key(&[2; 32]);
        let a = return_path(&s, "01abc", None, "pool.test");
        assert!(a.starts_with("bounces+01abc-") && a.ends_with("@pool.test"));
        let whole = VerpTarget {
            message_id: "01abc".into(),
            recipient: None,
        };
        assert_eq!(parse_return_path(&s, &a, "POOL.test").unwrap(), whole);
        assert_eq!(
            parse_return_path(&s, &format!("<{a}>"), "pool.test").unwrap(),
            whole
        );
        // Per recipient: the tag covers the recipient, so another recipient's id is a forgery.
        let r7 = return_path(&s, "01abc", Some(7), "pool.test");
        assert!(r7.starts_with("bounces+01abc.7-"), "{r7}");
        assert_eq!(
            parse_return_path(&s, &r7, "pool.test").unwrap().recipient,
            Some(7)
        );
        let r8 = r7.replacen("01abc.7-", "01abc.8-", 1);
        assert_eq!(
            parse_return_path(&s, &r8, "pool.test"),
            Err(VerpError::Forged)
        );
        // Another message id with a copied tag is a forgery.
        let tag = a.split('-').nth(1).unwrap().split('@').next().unwrap();
        assert_eq!(
            parse_return_path(&s, &format!("bounces+01abd-{tag}@pool.test"), "pool.test"),
            Err(VerpError::Forged)
        );
        // A tag made with another key is a forgery.
        let other = return_path(&Secrets::from_key(&[3; 32]), "01abc", None, "pool.test");
        assert_eq!(
            parse_return_path(&s, &other, "pool.test"),
            Err(VerpError::Forged)
        );
        assert_eq!(
            parse_return_path(&s, "postmaster@pool.test", "pool.test"),
            Err(VerpError::NotVerp)
        );
        assert_eq!(
            parse_return_path(&s, &a, "other.test"),
            Err(VerpError::NotVerp)
        );
    }

    #[test]
    fn per_recipient_addresses_stay_mailboxes_for_a_trillion_recipients() {
        let s = Secrets::from_key(&[5; 32]);
        let id = "01a2319d4388722d8f55c5163284ebbc";
        for r in [1, 99, 100, 123_456_789, 999_999_999_999] {
            let a = return_path(&s, id, Some(r), "pool.test");
            let local = a.split('@').next().unwrap_or_default();
            assert!(local.len() <= 64, "{a}: {} characters", local.len());
            assert!(crate::address::Mailbox::parse(&a).is_ok(), "{a}");
            let t = parse_return_path(&s, &a.to_ascii_uppercase(), "pool.test").unwrap();
            assert_eq!((t.message_id.as_str(), t.recipient), (id, Some(r)));
            // Another recipient under the same tag is a forgery.
            let other = a.replacen(&format!("={r}-"), &format!("={}-", r + 1), 1);
            assert_eq!(
                parse_return_path(&s, &other, "pool.test"),
                Err(VerpError::Forged)
            );
        }
        // Addresses handed out in the long form still parse.
        let tag =
            base16ct::lower::encode_string(&s.verp_tag(format!("{id}.7").as_bytes())[..TAG_BYTES]);
        let old = format!("bounces+{id}.7-{tag}@pool.test");
        assert_eq!(
            parse_return_path(&s, &old, "pool.test").unwrap(),
            VerpTarget {
                message_id: id.into(),
                recipient: Some(7)
            }
        );
    }

    #[test]
    fn unsubscribe_tokens() {
        let s = Secrets::from_key(&[4; 32]);
        let u = Unsubscribe {
            did: "did:plc:x".into(),
            message_id: "m1".into(),
            recipient: "r@x.test".into(),
        };
        let t = unsubscribe_token(&s, &u);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        );
        assert_eq!(parse_unsubscribe_token(&s, &t).unwrap(), u);
        let (p, _) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{}",
            B64URL.encode("did:plc:x m1 victim@x.test"),
            t.split_once('.').unwrap().1
        );
        assert_eq!(parse_unsubscribe_token(&s, &forged), Err(VerpError::Forged));
        assert!(parse_unsubscribe_token(&s, p).is_err());
    }
}
