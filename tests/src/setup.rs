//! The usual arrangement: DNS with an MX for `rcpt.test`, smtp-sink as that MX, a relay using
//! both, and an approved member sending from `sender.test`.

use crate::peers::{Dns, SmtpSink};
use crate::relay::{Relay, TestMember};
use std::net::SocketAddr;

/// Recipient domain served by the test DNS.
pub const RCPT_DOMAIN: &str = "rcpt.test";
/// The member's sending domain.
pub const SENDER_DOMAIN: &str = "sender.test";
/// The member's DID.
pub const DID: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";

/// A relay wired to real DNS and a real MX, with one approved member.
pub struct World {
    pub dns: Dns,
    pub sink: SmtpSink,
    pub relay: Relay,
    pub member: TestMember,
    pub submission: SocketAddr,
}

impl World {
    /// Everything running; the sink started with `sink_flags` (`None`: sink port closed).
    /// `extra_config` lines go into `[delivery]`.
    pub fn start(sink_flags: Option<&[&str]>, extra_config: &str) -> Self {
        Self::start_with_env(sink_flags, extra_config, &[])
    }

    /// As [`World::start`], with `ATMOS_*` overrides for the relay process.
    pub fn start_with_env(
        sink_flags: Option<&[&str]>,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dns = Dns::with_mx(&[RCPT_DOMAIN]);
        let sink = match sink_flags {
            Some(flags) => SmtpSink::start(flags),
            None => SmtpSink::stopped(),
        };
        let mut relay = Relay::new(Some(&dns.address()), sink.port, extra_config);
        relay.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let member = relay.add_member(DID, SENDER_DOMAIN, true);
        // Most tests send more than a warming member may; the warming test makes its own member.
        relay.trust(DID);
        let submission = relay.start();
        Self {
            dns,
            sink,
            relay,
            member,
            submission,
        }
    }

    /// An address at the member's domain.
    pub fn from(&self) -> String {
        format!("app@{SENDER_DOMAIN}")
    }
}
