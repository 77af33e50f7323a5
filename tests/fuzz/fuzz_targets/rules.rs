//! Rule files: any text either fails with an error naming the file, or compiles, and its
//! fixtures run to a verdict without a panic.
#![no_main]
use atmos_relay::rules::fixtures::run_all;
use atmos_relay::rules::spec::Rules;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rules) = Rules::parse(&[("fuzz.toml".into(), text.into())]) else { return };
    let _ = run_all(Arc::new(rules));
});
