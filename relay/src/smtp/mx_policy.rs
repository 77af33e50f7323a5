//! The inbound listener (BEHAVIOUR §7, port 25): the [`Policy`] of the MX. Anyone may connect; only
//! the recipients [`crate::inbound`] routes are taken, and each client address may start a
//! limited number of transactions per minute.

use super::protocol::{Credentials, Reply, SessionState};
use super::session::{AuthOutcome, Policy, SessionSettings};
use crate::address::{Mailbox, ReversePath};
use crate::inbound::{Envelope, Inbound};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Everything an inbound session needs; shared by all sessions.
pub struct InboundService {
    pub settings: SessionSettings,
    pub inbound: Arc<Inbound>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Replies forwarded per member domain, whoever sends them.
    forwards: DefaultKeyedRateLimiter<String>,
    checks: AtomicU32,
}

impl InboundService {
    /// A service allowing each client address `per_minute` transactions, `burst` at once, and
    /// each member domain `forwards_per_minute` forwarded replies.
    pub fn new(
        settings: SessionSettings,
        inbound: Arc<Inbound>,
        per_minute: NonZeroU32,
        burst: NonZeroU32,
        forwards_per_minute: NonZeroU32,
    ) -> Self {
        Self {
            settings,
            inbound,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            forwards: RateLimiter::keyed(Quota::per_minute(forwards_per_minute)),
            checks: AtomicU32::new(0),
        }
    }

    fn over_rate(&self, ip: IpAddr) -> bool {
        // Forget idle addresses now and then so the tables stay small.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.limiter.retain_recent();
            self.forwards.retain_recent();
        }
        self.limiter.check_key(&ip).is_err()
    }
}

impl Policy for InboundService {
    fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    fn admit(&self, _peer: SocketAddr) -> Option<Reply> {
        None
    }

    fn mail(&self, _state: &SessionState, peer: SocketAddr, _address: &ReversePath) -> Reply {
        if self.over_rate(peer.ip()) {
            tracing::info!(%peer, "inbound: rate limited");
            return Reply::new(
                450,
                "4.7.1",
                "Too much mail from your address, try again later",
            );
        }
        Reply::new(250, "2.1.0", "Sender OK")
    }

    fn rcpt(&self, state: &SessionState, address: &Mailbox) -> Reply {
        use crate::inbound::route::Route;
        match self.inbound.route(address) {
            Ok(Route::Reply { domain, .. }) if self.forwards.check_key(&domain).is_err() => {
                tracing::info!(%domain, "inbound: forward rate limited");
                Reply::new(
                    450,
                    "4.7.1",
                    "Too much mail for this domain, try again later",
                )
            }
            // An SRS address only takes what it exists for: the bounce of a forwarded message,
            // with the null sender. Anything else would be a message of the sender's choosing,
            // relayed to the original sender under the operator's signature.
            Ok(Route::SrsBounce { .. }) if !matches!(state.mail_from, Some(None)) => Reply::new(
                550,
                "5.7.1",
                "this address takes bounces only (MAIL FROM:<>)",
            ),
            Ok(Route::SrsBounce { sender })
                if self
                    .forwards
                    .check_key(&format!("srs:{}", sender.domain_text()))
                    .is_err() =>
            {
                tracing::info!(
                    domain = sender.domain_text(),
                    "inbound: returned bounces rate limited"
                );
                Reply::new(
                    450,
                    "4.7.1",
                    "Too many bounces for this sender, try again later",
                )
            }
            Ok(_) => Reply::new(250, "2.1.5", "Recipient OK"),
            Err(refusal) => {
                let (code, enhanced) = refusal.smtp();
                Reply::new(code, enhanced, refusal.to_string())
            }
        }
    }

    fn too_big(&self, _state: &SessionState) -> Reply {
        Reply::new(552, "5.3.4", "message too big")
    }

    async fn authenticate(
        &self,
        _peer: SocketAddr,
        _credentials: Result<Credentials, Reply>,
    ) -> AuthOutcome {
        // The protocol never offers AUTH on this port; answer the same way if asked anyway.
        AuthOutcome::Refused(Reply::new(502, "5.5.1", "AUTH not offered on this port"))
    }

    async fn data(&self, state: &SessionState, peer: SocketAddr, body: Vec<u8>) -> Reply {
        let envelope = Envelope {
            peer: peer.ip().to_string(),
            helo: state.helo.clone().unwrap_or_default(),
            mail_from: state.mail_from.clone().flatten(),
            recipients: state.recipients.clone(),
        };
        match self.inbound.receive(envelope, body).await {
            Ok(received) => Reply::new(250, "2.0.0", format!("accepted as {}", received.id)),
            Err(e) => {
                let (code, enhanced) = e.smtp();
                Reply::new(code, enhanced, e.to_string())
            }
        }
    }
}
