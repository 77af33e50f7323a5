//! The address types every edge parses into: a value that parsed has no control characters or
//! angle brackets, fits RFC 5321's lengths, and parses again to itself.
#![no_main]
use atmos_relay::address::{Domain, MAX_MAILBOX, Mailbox, NamedMailbox};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = Mailbox::parse(text) {
        let s = m.as_str();
        assert!(s.len() <= MAX_MAILBOX);
        assert!(!s.chars().any(|c| c.is_control() || c == '<' || c == '>'));
        let again = Mailbox::parse(s).expect("a parsed mailbox does not parse again");
        assert!(again.same_as(&m));
    }
    if let Ok(n) = NamedMailbox::parse(text) {
        assert!(Mailbox::parse(n.mailbox.as_str()).is_ok());
        if let Some(name) = &n.name {
            assert!(!name.chars().any(|c| c.is_control()));
        }
    }
    if let Ok(d) = text.parse::<Domain>() {
        assert!(d.as_str().parse::<Domain>().is_ok());
    }
});
