//! SASL PLAIN and LOGIN decoding (RFC 4616, the LOGIN draft): whatever the client sends decodes
//! to credentials or to a 5xx reply, never a panic; a decoded name holds no NUL.
#![no_main]
use atmos_relay::smtp::protocol::{decode_login_line, decode_plain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    match decode_plain(line) {
        Ok(c) => assert!(!c.username.contains('\0') && !c.password.contains('\0')),
        Err(r) => assert!(r.is_error()),
    }
    if let Err(r) = decode_login_line(line) {
        assert!(r.is_error());
    }
});
