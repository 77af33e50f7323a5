//! The end-to-end suite: every scenario drives the `atmos` binary that cargo built for this test
//! target (`CARGO_BIN_EXE_atmos`, never a stale copy) against real peers. One test binary, as
//! Stalwart and KumoMTA do: one link instead of forty, and one process whose test threads share
//! the machine.
//!
//! Scenarios under a module named `alone` time the relay or load the whole machine: `tests/run`
//! runs everything else on several threads, then these one at a time. By hand:
//! `cargo test -p atmos-relay --test e2e -- --skip alone::` and
//! `cargo test -p atmos-relay --test e2e -- --test-threads=1 alone::`.
//! One area: `cargo test -p atmos-relay --test e2e -- enroll::`.

mod admin_api;
mod broken_peers;
mod cli;
mod crash_safety;
mod disk_full;
mod dkim;
mod dsn;
mod enroll;
mod enroll_failures;
mod headers;
mod http_api;
mod inbound;
mod install;
mod jetstream;
mod kafka;
mod labeler;
mod lexicons;
mod member_api;
mod metrics;
mod mx_resolution;
mod open_relay;
mod openapi;
mod queue_full;
mod reload;
mod report;
mod retry_bounce;
mod rules;
mod security_addresses;
mod security_headers;
mod security_members;
mod security_misc;
mod security_reports;
mod security_web;
mod session;
mod starttls_delivery;
mod submission;
mod suppression;
mod warming;
mod web_pages;

/// Scenarios that need the machine to themselves (see above).
mod alone {
    mod kill_under_load;
    mod security_exhaustion;
    mod soak;
}
