//! VERP return paths, SRS addresses and unsubscribe tokens: what a stranger sends back is
//! either refused or was made by the relay (a forged tag never verifies), and what the relay
//! makes always parses back to what it encoded.
#![no_main]
use atmos_fuzz::{OPERATOR_DOMAIN, secrets, split2};
use atmos_relay::address::Mailbox;
use atmos_relay::{srs, verp};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_796_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let s = secrets();
    // Parsing what came from outside: nothing forged verifies.
    let _ = verp::parse_return_path(s, text, OPERATOR_DOMAIN);
    let _ = verp::parse_unsubscribe_token(s, text);
    let _ = srs::reverse(s, text, "srs.pool.example", NOW);
    // Round trips over what the fuzzer makes of the parts.
    let (a, b) = split2(data);
    let (Ok(id), Ok(local)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else { return };
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_alphanumeric()) {
        let rid = (local.len() as i64) * 7919;
        let rp = verp::return_path(s, id, Some(rid), OPERATOR_DOMAIN);
        let t = verp::parse_return_path(s, &rp, OPERATOR_DOMAIN).expect("own VERP address");
        // A 32-hex-digit id travels as bytes and comes back in lowercase.
        assert!(t.message_id.eq_ignore_ascii_case(id), "{} vs {id}", t.message_id);
        assert_eq!(t.recipient, Some(rid));
    }
    if let Ok(sender) = Mailbox::parse(&format!("{local}@example.org"))
        && let Some(fwd) = srs::forward(s, &sender, "srs.pool.example", NOW)
    {
        let back = srs::reverse(s, fwd.as_str(), "srs.pool.example", NOW).expect("own SRS");
        assert!(back.same_as(&sender));
    }
});
