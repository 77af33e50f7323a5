//! DSN and ARF report parsing and attribution, as the inbound MX runs them on a stranger's
//! message: parse, read the VERP evidence, and attribute against a real (empty) store.
//! Invariant: nothing is attributed without evidence the relay issued.
#![no_main]
use atmos_fuzz::{OPERATOR_DOMAIN, secrets};
use atmos_relay::inbound::feedback::{Evidence, attribute};
use atmos_relay::inbound::report::{Report, parse};
use atmos_relay::store::Store;
use atmos_relay::verp::parse_return_path;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn store() -> &'static Store {
    static S: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    let (_, s) = S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, store)
    });
    s
}

fuzz_target!(|data: &[u8]| {
    let Some(report) = parse(data) else { return };
    match &report {
        Report::Dsn(d) => {
            for r in &d.recipients {
                let _ = (r.is_permanent(), r.reply());
                let _ = parse_return_path(secrets(), r.address.as_str(), OPERATOR_DOMAIN);
            }
        }
        Report::Arf(f) => assert!(f.complainants.len() <= 1000),
    }
    let original = report.original();
    let _ = original.did();
    let evidence = Evidence {
        envelope: None,
        return_path: original
            .return_path
            .as_deref()
            .and_then(|rp| parse_return_path(secrets(), rp, OPERATOR_DOMAIN).ok()),
        copy: original
            .copy
            .as_deref()
            .and_then(|c| parse_return_path(secrets(), c, OPERATOR_DOMAIN).ok()),
        signed: None,
    };
    assert!(evidence.return_path.is_none(), "a forged Return-Path verified");
    assert!(evidence.copy.is_none(), "a forged X-Atmos-Copy verified");
    let a = store()
        .with(|c| attribute(c, &evidence, original))
        .expect("attribution failed on a store that works");
    assert!(!a.verified(), "attributed without evidence");
});
