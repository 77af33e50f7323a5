//! Header stamping and the one-From check: any message either fails the RFC 5322 §3.6 check or
//! is stamped, and the stamped message still passes the check with the same author.
#![no_main]
use atmos_relay::headers::{StampInput, Trace, check, stamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(facts) = check(data) else { return };
    let trace = Trace {
        protocol: "ESMTPSA",
        helo: Some("client.example".into()),
        client: None,
    };
    let stamped = stamp(
        data,
        &StampInput {
            did: "did:plc:fuzz",
            member_domain: "member.example",
            message_id: "0123456789abcdef",
            hostname: "relay.example",
            unsubscribe_url: Some("https://relay.example/u/x"),
            date: "Tue, 1 Dec 2026 12:00:00 +0000",
            trace: &trace,
        },
    )
    .expect("a checked message cannot be stamped");
    let again = check(&stamped.raw).expect("a stamped message fails the header check");
    assert!(again.author().same_as(facts.author()), "stamping changed the author");
    assert!(!stamped.message_id.contains(['\r', '\n', '<', '>']));
});
