//! Checking that the relay itself signed a message it gets back inside a report: an
//! operator-domain DKIM signature (one of the relay's own keys, current or retired) must verify
//! over the header fields it covers, with mail-auth doing the canonicalization and the
//! cryptography.
//!
//! Only the header hash is checked. Reports often enclose the original's headers alone
//! (`text/rfc822-headers`) or a truncated body, so the body hash (`bh=`) is not compared; the
//! header signature still covers `bh=` itself and every field that names the member and the
//! message (From, Message-ID, X-Atmos-Member-Did, each oversigned), which is what the relay
//! acts on.

use mail_auth::AuthenticatedMessage;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;

/// Header fields a signature must cover before the relay believes what they say.
const MUST_COVER: [&str; 3] = ["from", "message-id", "x-atmos-member-did"];

/// What one report may cost: anyone can mail one, so the work is bounded whatever it holds.
/// The relay's own copies carry two operator signatures over ~15 names in ~20 fields; these
/// caps leave room for what receivers add, and refuse the rest unexamined.
pub const MAX_CANDIDATES: usize = 4;
/// Names in one signature's `h=` (each name is looked up in the header block).
pub const MAX_SIGNED_NAMES: usize = 64;
/// Fields in the enclosed header block.
pub const MAX_FIELDS: usize = 500;
/// Bytes of the enclosed header block (the body is not needed: its hash is not checked).
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// One public key the relay signs (or signed) with: selector and its `v=DKIM1; k=…; p=…` value.
pub struct PublicKey {
    pub selector: String,
    pub txt: String,
}

/// The signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub selector: String,
}

/// Whether `raw` (a message or its header block) carries a `d=<domain>` signature made with one
/// of `keys` that verifies over its signed header fields (body hash not checked, see the module
/// documentation) and covers [`MUST_COVER`].
pub fn verify_headers(raw: &[u8], domain: &str, keys: &[PublicKey]) -> Option<Verified> {
    let block = header_block(raw)?;
    let message = AuthenticatedMessage::parse(block)?;
    if message.headers.len() > MAX_FIELDS {
        return None;
    }
    let mut candidates = 0;
    for header in &message.dkim_headers {
        let sig = &header.header;
        if !sig.d.eq_ignore_ascii_case(domain) {
            continue;
        }
        let Some(key) = keys.iter().find(|k| k.selector == sig.s) else {
            continue;
        };
        candidates += 1;
        if candidates > MAX_CANDIDATES {
            return None;
        }
        if sig.h.len() > MAX_SIGNED_NAMES {
            continue;
        }
        let covered = |name: &str| sig.h.iter().any(|h| h.eq_ignore_ascii_case(name));
        if !MUST_COVER.iter().all(|n| covered(n)) {
            continue;
        }
        let Ok(record) = DomainKey::parse(key.txt.as_bytes()) else {
            continue;
        };
        let unsigned = strip_b_tag(header.value);
        let mut headers = message.signed_headers(&sig.h, header.name, &unsigned);
        if record.p.verify(&mut headers, &sig.b, sig.ch, sig.a).is_ok() {
            return Some(Verified {
                selector: sig.s.clone(),
            });
        }
    }
    None
}

/// The header block of `raw` with its blank line (an empty body follows), or `None` when it is
/// longer than [`MAX_HEADER_BYTES`].
fn header_block(raw: &[u8]) -> Option<&[u8]> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(raw.len());
    (end <= MAX_HEADER_BYTES).then(|| &raw[..end])
}

/// The DKIM-Signature value with the `b=` tag's value emptied (RFC 6376 §3.7), as it was when
/// it was signed: `bh=` is a different tag and stays, and the field's final line ending goes (the
/// signature field is hashed without it).
fn strip_b_tag(value: &[u8]) -> Vec<u8> {
    let value = value
        .strip_suffix(b"\r\n")
        .or_else(|| value.strip_suffix(b"\n"))
        .unwrap_or(value);
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    // At the start of a tag (after `;` or at the beginning), skipping folding white space.
    let mut at_tag_start = true;
    while i < value.len() {
        let b = value[i];
        if at_tag_start && b.is_ascii_whitespace() {
            out.push(b);
            i += 1;
            continue;
        }
        if at_tag_start {
            at_tag_start = false;
            // Is this tag `b` (possibly with white space before `=`)?
            let mut j = i + 1;
            while j < value.len() && (value[j] == b' ' || value[j] == b'\t') {
                j += 1;
            }
            if b == b'b' && value.get(j) == Some(&b'=') {
                out.extend_from_slice(&value[i..=j]);
                // Drop the value up to the next `;`, keeping the final line ending if any.
                let end = value[j + 1..]
                    .iter()
                    .position(|c| *c == b';')
                    .map(|p| j + 1 + p)
                    .unwrap_or(value.len());
                i = end;
                continue;
            }
        }
        out.push(b);
        if b == b';' {
            at_tag_start = true;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::keys::{KeySet, Owner, rotate, txt_value};
    use crate::dkim::signer::Signer;
    use crate::secrets::Secrets;
    use crate::store::test_store;
    use std::sync::Arc;

    #[test]
    fn strips_only_the_signature_value() {
        assert_eq!(
            strip_b_tag(b" v=1; bh=abc; b=xyz;\r\n"),
            b" v=1; bh=abc; b=;".to_vec()
        );
        assert_eq!(strip_b_tag(b" v=1; b=xyz\r\n"), b" v=1; b=".to_vec());
        assert_eq!(
            strip_b_tag(b"v=1; b=xy\r\n\t z; d=x.test"),
            b"v=1; b=; d=x.test".to_vec()
        );
    }

    #[test]
    fn relay_signatures_verify_over_headers_and_forgeries_do_not() {
        let (_d, store) = test_store();
        let store = Arc::new(store);
        let secrets = Arc::new(Secrets::from_key(&[6; 32]));
        for (domain, owner) in [
            ("member.test", Owner::Member),
            ("pool.test", Owner::Operator),
        ] {
            store
                .write(|tx| {
                    Ok(rotate(
                        tx,
                        &secrets,
                        domain,
                        owner,
                        1_795_397_691_000,
                        KeySet::generate()?,
                        crate::dkim::keys::Switch::Now,
                    )?)
                })
                .unwrap();
        }
        let keys: Vec<PublicKey> = store
            .with(|c| crate::store::dkim_keys::published(c, "pool.test", 0))
            .unwrap()
            .iter()
            .map(|k| PublicKey {
                selector: k.selector.clone(),
                txt: txt_value(k),
            })
            .collect();
        let signer = Signer::new(store.clone(), secrets.clone(), "pool.test");
        let msg = b"From: a@member.test\r\nTo: b@x.test\r\nSubject: hi\r\nMessage-ID: <1@relay.test>\r\nX-Atmos-Member-Did: did:plc:x\r\n\r\nbody\r\n";
        let mut signed = signer.sign("member.test", msg).unwrap().into_bytes();
        signed.extend_from_slice(msg);
        assert!(verify_headers(&signed, "pool.test", &keys).is_some());
        // Headers only, or a truncated body: still the relay's (body hash not checked).
        let head_end = signed.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(verify_headers(&signed[..head_end], "pool.test", &keys).is_some());
        // A changed member DID, an extra From on top, or another domain's keys: not ours.
        let text = String::from_utf8(signed.clone()).unwrap();
        let forged = text.replace("did:plc:x", "did:plc:y");
        assert!(verify_headers(forged.as_bytes(), "pool.test", &keys).is_none());
        let prepended = format!("From: ceo@rival.test\r\n{text}");
        assert!(verify_headers(prepended.as_bytes(), "pool.test", &keys).is_none());
        assert!(verify_headers(&signed, "member.test", &keys).is_none());
        assert!(verify_headers(msg, "pool.test", &keys).is_none());
    }
}
