//! The submission listener (BEHAVIOUR §4.1): the [`Policy`] of port 587. Members authenticate (after
//! STARTTLS) and every message goes through the one acceptance path HTTP uses too.

use super::protocol::{Credentials, Reply, SessionState};
use super::session::{AuthOutcome, Policy, SessionSettings};
use crate::accept::{Acceptor, Source, Submission, SubmitError};
use crate::address::{Mailbox, ReversePath};
use crate::auth::Authenticator;
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a submission session needs; shared by all sessions.
pub struct SubmissionService {
    pub settings: SessionSettings,
    pub auth: Arc<Authenticator>,
    pub acceptor: Arc<Acceptor>,
    pub store: Arc<Store>,
}

impl SubmissionService {
    /// Renders a refusal and records it as a `relay_rejected` event.
    fn reject(&self, did: Option<&str>, e: SubmitError) -> Reply {
        self.acceptor.record_rejection(did, &e);
        let (code, enhanced, text) = match e {
            // After AUTH succeeded, a standing that changed is a policy refusal, not a login's.
            SubmitError::MemberPending | SubmitError::MemberSuspended if did.is_some() => {
                (550, "5.7.1", e.to_string())
            }
            _ => e.smtp(),
        };
        Reply::new(code, enhanced, text)
    }

    /// The member is read again at each MAIL: a suspension or a regenerated key reaches a
    /// session that authenticated before it.
    fn standing(&self, state: &SessionState) -> Result<(), SubmitError> {
        let did = state.authenticated.as_deref().unwrap_or_default();
        let fingerprint = state.credential.map(|c| c.0);
        match self.store.with(|c| crate::store::members::get(c, did))? {
            Some(m) => m.may_send(fingerprint.as_ref()).map_err(SubmitError::from),
            None => Err(SubmitError::KeyChanged),
        }
    }
}

impl Policy for SubmissionService {
    fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Everyone is greeted: a throttled network is refused at AUTH (`421 4.7.0`, closed) unless
    /// the key it sends was verified before, so a member behind the same NAT as a stranger who
    /// keeps failing still logs in.
    fn admit(&self, _peer: SocketAddr) -> Option<Reply> {
        None
    }

    fn mail(&self, state: &SessionState, _peer: SocketAddr, address: &ReversePath) -> Reply {
        let did = state.authenticated.as_deref().unwrap_or_default();
        if let Err(e) = self.standing(state) {
            return self.reject(state.authenticated.as_deref(), e);
        }
        let Some(address) = address else {
            return Reply::new(
                550,
                "5.7.1",
                "DOMAIN_MISMATCH members send from one of their domains, not <>",
            );
        };
        match self.acceptor.check_sender(did, address) {
            Ok(()) => Reply::new(250, "2.1.0", "Sender OK"),
            Err(e) => self.reject(state.authenticated.as_deref(), e),
        }
    }

    fn rcpt(&self, state: &SessionState, address: &Mailbox) -> Reply {
        let did = state.authenticated.as_deref().unwrap_or_default();
        let adding = state.recipients.len() as u32 + 1;
        let suppressed = self
            .store
            .with(|c| crate::store::suppressions::reason(c, did, address.as_str()));
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

    /// Checks credentials; failures are slowed per client network, then refused (the same
    /// throttle as HTTP).
    async fn authenticate(
        &self,
        peer: SocketAddr,
        creds: Result<Credentials, Reply>,
    ) -> AuthOutcome {
        let creds = match creds {
            Ok(c) => c,
            Err(r) => return AuthOutcome::Refused(r),
        };
        match self
            .auth
            .authenticate(&self.store, &creds.username, &creds.password, peer.ip())
            .await
        {
            Ok(member) => {
                let fingerprint = member.key_fingerprint();
                AuthOutcome::Authenticated(member.did, Some(fingerprint))
            }
            Err(e) => match SubmitError::from(e) {
                e @ SubmitError::AuthThrottled(_) => AuthOutcome::Close(self.reject(None, e)),
                e => AuthOutcome::Refused(self.reject(None, e)),
            },
        }
    }

    async fn data(&self, state: &SessionState, peer: SocketAddr, body: Vec<u8>) -> Reply {
        let (Some(did), Some(Some(mail_from))) =
            (state.authenticated.clone(), state.mail_from.clone())
        else {
            return Reply::new(503, "5.5.1", "No transaction");
        };
        let sub = Submission {
            did: did.clone(),
            mail_from,
            recipients: state.recipients.clone(),
            raw: body,
            source: Source::Smtp,
            trace: crate::headers::Trace {
                protocol: "ESMTPSA",
                helo: state.helo.clone(),
                client: Some(peer.ip()),
            },
            id: None,
            also: None,
            credential: state.credential.map(|c| c.0),
        };
        match self.acceptor.accept(sub).await {
            Ok(a) => {
                let Some(id) = a.first_id() else {
                    return Reply::new(550, "5.7.1", crate::suppression::SUPPRESSED_TEXT);
                };
                let mut text = format!("queued as {id}");
                if a.copies() > 1 {
                    text.push_str(&format!(
                        " and {} more copies (one per recipient)",
                        a.copies() - 1
                    ));
                }
                if !a.suppressed.is_empty() {
                    text.push_str(&format!(
                        "; {} unsubscribed recipients dropped",
                        a.suppressed.len()
                    ));
                }
                Reply::new(250, "2.0.0", text)
            }
            Err(e) => self.reject(Some(&did), e),
        }
    }
}
