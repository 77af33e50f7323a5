//! The submission listener (SPEC §4.1): the [`Policy`] of port 587. Members authenticate (after
//! STARTTLS) and every message goes through the one acceptance path HTTP uses too.

use super::protocol::{Credentials, Reply, SessionState};
use super::session::{AuthOutcome, Policy, SessionSettings};
use crate::accept::{Acceptor, Source, Submission, SubmitError};
use crate::auth::{AuthThrottle, Authenticator};
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a submission session needs; shared by all sessions.
pub struct SubmissionService {
    pub settings: SessionSettings,
    pub auth: Arc<Authenticator>,
    pub throttle: AuthThrottle,
    pub acceptor: Arc<Acceptor>,
    pub store: Arc<Store>,
}

impl SubmissionService {
    /// Renders a refusal and records it as a `relay_rejected` event.
    fn reject(&self, did: Option<&str>, e: SubmitError) -> Reply {
        self.acceptor.record_rejection(did, &e);
        let (code, enhanced, text) = e.smtp();
        Reply::new(code, enhanced, text)
    }
}

impl Policy for SubmissionService {
    fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    fn admit(&self, peer: SocketAddr) -> Option<Reply> {
        self.throttle
            .is_blocked(peer.ip())
            .then(|| Reply::new(421, "4.7.0", "Too many authentication failures, try later"))
    }

    fn mail(&self, state: &SessionState, _peer: SocketAddr, address: &str) -> Reply {
        let did = state.authenticated.as_deref().unwrap_or_default();
        match self.acceptor.check_sender(did, address) {
            Ok(()) => Reply::new(250, "2.1.0", "Sender OK"),
            Err(e) => self.reject(state.authenticated.as_deref(), e),
        }
    }

    fn rcpt(&self, state: &SessionState, address: &str) -> Reply {
        let did = state.authenticated.as_deref().unwrap_or_default();
        let adding = state.recipients.len() as u32 + 1;
        let suppressed = self
            .store
            .with(|c| crate::store::suppressions::reason(c, did, address));
        match (suppressed, self.acceptor.check_limits(did, adding)) {
            (Ok(Some(reason)), _) if crate::suppression::refuse_at_rcpt(&reason) => {
                Reply::new(550, "5.7.1", crate::suppression::SUPPRESSED_TEXT)
            }
            (_, Ok(())) => Reply::new(250, "2.1.5", "Recipient OK"),
            (_, Err(e)) => self.reject(state.authenticated.as_deref(), e),
        }
    }

    fn too_big(&self, state: &SessionState) -> Reply {
        self.reject(state.authenticated.as_deref(), SubmitError::TooBig)
    }

    /// Checks credentials; failures are slowed per client address, then refused.
    async fn authenticate(
        &self,
        peer: SocketAddr,
        creds: Result<Credentials, Reply>,
    ) -> AuthOutcome {
        let ip = peer.ip();
        if self.throttle.is_blocked(ip) {
            return AuthOutcome::Close(Reply::new(
                421,
                "4.7.0",
                "Too many authentication failures, try later",
            ));
        }
        let creds = match creds {
            Ok(c) => c,
            Err(r) => return AuthOutcome::Refused(r),
        };
        match self
            .auth
            .authenticate(&self.store, &creds.username, &creds.password)
            .await
        {
            Ok(member) => {
                self.throttle.succeeded(ip);
                AuthOutcome::Authenticated(member.did)
            }
            Err(e) => {
                let error = SubmitError::from(e);
                if error == SubmitError::AuthFailed {
                    // Deliberate tarpit for repeated failures from one address.
                    tokio::time::sleep(self.throttle.failed(ip)).await;
                }
                AuthOutcome::Refused(self.reject(None, error))
            }
        }
    }

    async fn data(&self, state: &SessionState, _peer: SocketAddr, body: Vec<u8>) -> Reply {
        let (Some(did), Some(mail_from)) = (state.authenticated.clone(), state.mail_from.clone())
        else {
            return Reply::new(503, "5.5.1", "No transaction");
        };
        let sub = Submission {
            did: did.clone(),
            mail_from,
            recipients: state.recipients.clone(),
            raw: body,
            source: Source::Smtp,
        };
        match self.acceptor.accept(sub).await {
            Ok(a) => match (a.id, a.suppressed.len()) {
                (Some(id), 0) => Reply::new(250, "2.0.0", format!("queued as {id}")),
                (Some(id), n) => Reply::new(
                    250,
                    "2.0.0",
                    format!("queued as {id}; {n} unsubscribed recipients dropped"),
                ),
                (None, _) => Reply::new(550, "5.7.1", crate::suppression::SUPPRESSED_TEXT),
            },
            Err(e) => self.reject(Some(&did), e),
        }
    }
}
