//! `/v1/send` JSON: a body either gets a coded refusal or becomes a message whose header block
//! passes the one-From check and whose envelope holds only parsed mailboxes.
#![no_main]
use atmos_relay::headers::check;
use atmos_relay::http::send::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(built) = parse_request(data, 50, "0123@relay.example") else { return };
    assert!(!built.recipients.is_empty() && built.recipients.len() <= 50);
    let facts = check(&built.raw).expect("a built message fails the header check");
    assert!(facts.author().same_as(&built.from), "From differs from the envelope sender");
    assert!(mail_parser_ok(&built.raw));
});

fn mail_parser_ok(raw: &[u8]) -> bool {
    // Every header line is CRLF-terminated and no bare CR or LF reaches the wire.
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = &raw[..head_end];
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\n' => i > 0 && head[i - 1] == b'\r',
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        _ => true,
    })
}
