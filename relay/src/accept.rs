//! Acceptance: the one path SMTP and HTTP submissions share, and the one error type both render.
//!
//! A message is accepted when [`Acceptor::accept`] returns its id, which happens only after the
//! spool's commit (and fsync) for that message.

use crate::auth::AuthError;
use crate::delivery::QueuedSender;
use crate::dkim::signer::Signer;
use crate::headers::{self, StampInput};
use crate::secrets::Secrets;
use crate::spool::{Spool, SpoolError};
use crate::store::events::{self, NewEvent};
use crate::store::members;
use crate::store::messages::{self, NewMessage};
use crate::store::{Store, StoreError, now_ms};
use crate::verp::{self, Unsubscribe};
use std::sync::Arc;

/// Every reason a submission is refused. SMTP replies and HTTP codes are two renderings of these.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("Authentication required")]
    AuthRequired,
    #[error("Authentication credentials invalid")]
    AuthFailed,
    #[error("invalid DID or handle {0:?}")]
    InvalidDid(String),
    #[error("pending operator approval")]
    MemberPending,
    #[error("account suspended")]
    MemberSuspended,
    #[error("DOMAIN_MISMATCH {0}")]
    DomainMismatch(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("message too big")]
    TooBig,
    /// Over a sending cap; retry after this many seconds.
    #[error("RATE_LIMITED hourly limit reached, retry later")]
    RateLimited(u64),
    #[error("queue full, retry later")]
    QueueFull,
    #[error("internal error, retry later")]
    Internal,
}

impl SubmitError {
    /// Stable machine-readable code (HTTP `code`, event `reject_reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::AuthRequired => "AUTH_REQUIRED",
            Self::AuthFailed => "AUTH_FAILED",
            Self::InvalidDid(_) => "INVALID_DID",
            Self::MemberPending => "MEMBER_PENDING",
            Self::MemberSuspended => "MEMBER_SUSPENDED",
            Self::DomainMismatch(_) => "DOMAIN_MISMATCH",
            Self::InvalidRequest(_) => "INVALID_REQUEST",
            Self::TooBig => "PAYLOAD_TOO_LARGE",
            Self::RateLimited(_) => "RATE_LIMITED",
            Self::QueueFull => "QUEUE_FULL",
            Self::Internal => "INTERNAL",
        }
    }

    /// SMTP rendering: reply code, enhanced status code, text.
    pub fn smtp(&self) -> (u16, &'static str, String) {
        let text = self.to_string();
        match self {
            Self::AuthRequired => (530, "5.7.0", text),
            Self::AuthFailed => (535, "5.7.8", text),
            Self::InvalidDid(_) => (535, "5.7.8", "Authentication credentials invalid".into()),
            Self::MemberPending | Self::MemberSuspended => (535, "5.7.8", text),
            Self::DomainMismatch(_) => (550, "5.7.1", text),
            Self::InvalidRequest(_) => (550, "5.6.0", text),
            Self::TooBig => (552, "5.3.4", text),
            Self::RateLimited(_) => (451, "4.7.1", text),
            Self::QueueFull | Self::Internal => (451, "4.3.1", "queue full, retry later".into()),
        }
    }

    /// HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::AuthRequired | Self::InvalidDid(_) | Self::InvalidRequest(_) => 400,
            Self::AuthFailed => 401,
            Self::MemberPending | Self::MemberSuspended | Self::DomainMismatch(_) => 403,
            Self::TooBig => 413,
            Self::RateLimited(_) => 429,
            Self::QueueFull => 503,
            Self::Internal => 500,
        }
    }
}

impl From<AuthError> for SubmitError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidCredentials => Self::AuthFailed,
            AuthError::Pending => Self::MemberPending,
            AuthError::Suspended => Self::MemberSuspended,
            AuthError::Internal => Self::Internal,
        }
    }
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "accept: store error");
        Self::Internal
    }
}

impl From<SpoolError> for SubmitError {
    fn from(e: SpoolError) -> Self {
        // Whatever failed, nothing was written: the client must retry (451 / 503).
        match &e {
            SpoolError::Job(inner) => match **inner {
                StoreError::RateLimited(secs) => return Self::RateLimited(secs),
                StoreError::QueueFull => tracing::warn!("accept: queue full, refusing new mail"),
                _ => tracing::error!(error = %e, "accept: spool write failed"),
            },
            _ => tracing::error!(error = %e, "accept: spool write failed"),
        }
        Self::QueueFull
    }
}

/// Where a submission came from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Smtp,
    Http,
    /// A delivery status notification the relay itself generated.
    Dsn,
    /// Inbound mail the relay forwards (replies, operator aliases, returned SRS bounces).
    Forward,
}

impl Source {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Http => "http",
            Self::Dsn => "dsn",
            Self::Forward => "forward",
        }
    }

    /// True for mail the relay writes itself: outside member caps and the queue cap.
    pub fn is_relay_own(self) -> bool {
        crate::store::messages::is_relay_source(self.as_str())
    }
}

/// A message ready for the spool.
pub(crate) struct QueueItem {
    pub id: String,
    pub did: String,
    pub mail_from: String,
    pub return_path: String,
    pub category: String,
    pub from_domain: String,
    pub source: Source,
    pub received_at: i64,
    pub raw: Vec<u8>,
    pub recipients: Vec<String>,
    /// The `Message-ID` header value (without `<>`), so reports can find the message.
    pub header_message_id: Option<String>,
}

/// A complete submission from an authenticated member.
#[derive(Debug, Clone)]
pub struct Submission {
    pub did: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub source: Source,
}

/// Names and limits acceptance uses.
#[derive(Debug, Clone)]
pub struct AcceptSettings {
    /// Refuse new mail (451) when the database would grow past this; 0 = no limit.
    pub max_queue_bytes: u64,
    /// `server.hostname`: Message-ID right-hand side.
    pub hostname: String,
    /// `server.operator_domain`: VERP domain.
    pub operator_domain: String,
    /// Base of the one-click unsubscribe URL (`https://<host>/unsubscribe/`).
    pub unsubscribe_base: String,
    /// Sending caps (SPEC §6).
    pub limits: crate::config::LimitsConfig,
}

/// What acceptance did with a submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The queued message, unless every recipient was suppressed.
    pub id: Option<String>,
    /// Recipients dropped because they are on the member's suppression list: (address, reason).
    pub suppressed: Vec<(String, String)>,
}

/// The acceptance service: checks, stamps and signs, then durably queues, then wakes delivery.
pub struct Acceptor {
    store: Arc<Store>,
    spool: Spool,
    queued: QueuedSender,
    signer: Arc<Signer>,
    secrets: Arc<Secrets>,
    settings: AcceptSettings,
}

/// The domain part of an address, lowercased.
pub fn domain_of(address: &str) -> Option<String> {
    let (local, domain) = address.trim().rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

impl Acceptor {
    /// A new acceptor; `queued` gets each accepted message's recipients after its commit.
    pub fn new(
        store: Arc<Store>,
        spool: Spool,
        queued: QueuedSender,
        secrets: Arc<Secrets>,
        settings: AcceptSettings,
    ) -> Self {
        let signer = Arc::new(Signer::new(
            store.clone(),
            secrets.clone(),
            &settings.operator_domain,
        ));
        Self {
            store,
            spool,
            queued,
            signer,
            secrets,
            settings,
        }
    }

    /// Checks that `adding` more recipients from `did` fit its caps (SMTP asks at each RCPT; the
    /// authoritative check runs again inside the accept transaction).
    pub fn check_limits(&self, did: &str, adding: u32) -> Result<(), SubmitError> {
        let limits = &self.settings.limits;
        let verdict = self.store.with(|c| {
            let Some(m) = members::get(c, did)? else {
                return Ok(Ok(()));
            };
            crate::warming::check(c, &m, limits, adding, now_ms())
        })?;
        verdict.map_err(|over| SubmitError::RateLimited(over.retry_after_secs))
    }

    /// Checks that `address`'s domain is a sending domain of `did` (MAIL FROM and header From).
    pub fn check_sender(&self, did: &str, address: &str) -> Result<(), SubmitError> {
        let Some(domain) = domain_of(address) else {
            return Err(SubmitError::DomainMismatch(format!(
                "{address:?} has no domain"
            )));
        };
        match self.store.with(|c| members::domain_owner(c, &domain))? {
            Some(owner) if owner == did => Ok(()),
            _ => Err(SubmitError::DomainMismatch(format!(
                "{domain} is not a sending domain of {did}"
            ))),
        }
    }

    /// Checks the header From, stamps the relay headers, signs four times, queues the message
    /// durably, and returns its id. Signing happens once, here; retries resend these bytes.
    pub async fn accept(&self, mut sub: Submission) -> Result<Accepted, SubmitError> {
        let header_from = header_from_addresses(&sub.raw)?;
        for address in &header_from {
            self.check_sender(&sub.did, address)?;
        }
        let member_domain = header_from
            .first()
            .and_then(|a| domain_of(a))
            .unwrap_or_default();
        let from_domain = domain_of(&sub.mail_from).unwrap_or_default();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let now = now_ms();
        let recipient = match sub.recipients.as_slice() {
            [one] => one.clone(),
            _ => "*".to_string(),
        };
        let token = verp::unsubscribe_token(
            &self.secrets,
            &Unsubscribe {
                did: sub.did.clone(),
                message_id: id.clone(),
                recipient,
            },
        );
        let url = format!("{}{token}", self.settings.unsubscribe_base);
        let date = mail_parser::DateTime::from_timestamp(now / 1000).to_rfc822();
        let headers::Stamped {
            raw: stamped,
            category,
            message_id: header_message_id,
        } = headers::stamp(
            &sub.raw,
            &StampInput {
                did: &sub.did,
                member_domain: &member_domain,
                message_id: &id,
                hostname: &self.settings.hostname,
                unsubscribe_url: Some(&url),
                date: &date,
            },
        );
        // Two RSA-2048 signatures cost ~2 ms of CPU: keep them off the async workers.
        // Suppressed recipients (SPEC §4.1): auth categories bypass unsubscribes, nothing else.
        let mut suppressed = Vec::new();
        let mut kept = Vec::new();
        for r in std::mem::take(&mut sub.recipients) {
            match self
                .store
                .with(|c| crate::store::suppressions::reason(c, &sub.did, &r))?
            {
                Some(reason) if crate::suppression::blocks(&reason, &category) => {
                    suppressed.push((r, reason))
                }
                _ => kept.push(r),
            }
        }
        sub.recipients = kept;
        if sub.recipients.is_empty() {
            return Ok(Accepted {
                id: None,
                suppressed,
            });
        }
        let signer = self.signer.clone();
        let signed = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let signatures = signer.sign(&member_domain, &stamped);
            crate::metrics::METRICS
                .signing_seconds
                .observe(started.elapsed().as_secs_f64());
            signatures.map(|signatures| {
                let mut signed = signatures.into_bytes();
                signed.extend_from_slice(&stamped);
                signed
            })
        })
        .await
        .map_err(|_| SubmitError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "accept: cannot sign");
            SubmitError::Internal
        })?;
        sub.raw = signed;
        let return_path = verp::return_path(&self.secrets, &id, &self.settings.operator_domain);
        self.queue(QueueItem {
            id: id.clone(),
            did: sub.did,
            mail_from: sub.mail_from,
            return_path,
            category: category.name().to_string(),
            from_domain,
            source: sub.source,
            received_at: now,
            raw: sub.raw,
            recipients: sub.recipients,
            header_message_id: Some(header_message_id),
        })
        .await?;
        Ok(Accepted {
            id: Some(id),
            suppressed,
        })
    }

    /// Writes a message to the spool (one transaction with its `relay_attempt` event) and hands
    /// its recipients to delivery.
    pub(crate) async fn queue(&self, item: QueueItem) -> Result<(), SubmitError> {
        let source = item.source;
        let (limits, max_queue_bytes) =
            (self.settings.limits.clone(), self.settings.max_queue_bytes);
        let due = self
            .spool
            .write(move |tx| insert_queued(tx, &item, &limits, max_queue_bytes))
            .await?;
        self.wake(source, due);
        Ok(())
    }

    /// After the commit of [`insert_queued`]: counts the message and hands its recipients to
    /// delivery.
    pub(crate) fn wake(&self, source: Source, due: Vec<messages::DueRecipient>) {
        crate::metrics::METRICS
            .accepted
            .get_or_create(&crate::metrics::SourceLabel {
                source: source.as_str().into(),
            })
            .inc();
        // Delivery may be stopped (shutdown): the message is on disk and will be found at start.
        let _ = self.queued.send(due);
    }

    /// Caps and size limits of acceptance (for callers that queue inside their own transaction).
    pub(crate) fn queue_limits(&self) -> (crate::config::LimitsConfig, u64) {
        (self.settings.limits.clone(), self.settings.max_queue_bytes)
    }

    /// A shared handle to the signer, for signing off the async workers.
    pub(crate) fn signer_handle(&self) -> Arc<Signer> {
        self.signer.clone()
    }

    /// The signer (the relay's own mail is signed with the operator keys).
    pub(crate) fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Acceptance names and limits.
    pub(crate) fn settings(&self) -> &AcceptSettings {
        &self.settings
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The spool.
    pub(crate) fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Records a refused submission as a `relay_rejected` event (best effort, not awaited).
    pub fn record_rejection(&self, did: Option<&str>, error: &SubmitError) {
        let (did, code, text) = (did.map(str::to_string), error.code(), error.to_string());
        let spool = self.spool.clone();
        tokio::spawn(async move {
            let _ = spool
                .write(move |tx| {
                    events::append(
                        tx,
                        now_ms(),
                        &NewEvent {
                            kind: "relay_rejected",
                            did: did.as_deref(),
                            actor: Some("relay"),
                            data: serde_json::json!({ "reject_reason": code, "detail": text }),
                            ..Default::default()
                        },
                    )
                })
                .await;
        });
    }
}

/// Inserts a queued message with its `relay_attempt` event inside the spool transaction `tx`,
/// checking the queue cap and the member's caps there so concurrent sessions cannot overshoot.
/// Member mail and forwards count against the queue cap; DSNs do not, so a full queue never loses
/// a bounce notice (forwards can wait: their sender retries after a 451).
pub(crate) fn insert_queued(
    tx: &rusqlite::Connection,
    item: &QueueItem,
    limits: &crate::config::LimitsConfig,
    max_queue_bytes: u64,
) -> Result<Vec<messages::DueRecipient>, StoreError> {
    let cap = if matches!(item.source, Source::Dsn) {
        0
    } else {
        max_queue_bytes
    };
    if cap > 0 && messages::used_bytes(tx)? + item.raw.len() as u64 > cap {
        return Err(StoreError::QueueFull);
    }
    if let (false, Some(m)) = (item.source.is_relay_own(), members::get(tx, &item.did)?) {
        let adding = item.recipients.len() as u32;
        if let Err(over) = crate::warming::check(tx, &m, limits, adding, item.received_at)? {
            return Err(StoreError::RateLimited(over.retry_after_secs));
        }
    }
    let due = messages::insert(
        tx,
        &NewMessage {
            id: &item.id,
            did: &item.did,
            mail_from: &item.mail_from,
            return_path: &item.return_path,
            category: &item.category,
            from_domain: &item.from_domain,
            source: item.source.as_str(),
            received_at: item.received_at,
            body: &item.raw,
            recipients: &item.recipients,
            header_message_id: item.header_message_id.as_deref(),
        },
    )?;
    events::append(
        tx,
        item.received_at,
        &NewEvent {
            kind: "relay_attempt",
            did: (!item.did.is_empty()).then_some(item.did.as_str()),
            message_id: Some(&item.id),
            actor: Some("relay"),
            data: serde_json::json!({
                "recipients": item.recipients.len(),
                "size": item.raw.len(),
                "source": item.source.as_str(),
                "category": item.category,
            }),
        },
    )?;
    Ok(due)
}

/// The addresses of the header `From:`; a message without one is refused.
fn header_from_addresses(raw: &[u8]) -> Result<Vec<String>, SubmitError> {
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(raw)
        .ok_or_else(|| SubmitError::InvalidRequest("message headers cannot be parsed".into()))?;
    let addresses: Vec<String> = parsed
        .from()
        .map(|from| {
            from.iter()
                .filter_map(|a| a.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if addresses.is_empty() {
        return Err(SubmitError::InvalidRequest(
            "message has no From header address".into(),
        ));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_from_is_read() {
        let raw = b"From: \"A\" <a@Example.com>\r\nTo: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(
            header_from_addresses(raw).unwrap(),
            vec!["a@Example.com".to_string()]
        );
        let none = b"To: b@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        assert!(matches!(
            header_from_addresses(none),
            Err(SubmitError::InvalidRequest(_))
        ));
    }

    #[test]
    fn renderings_match_spec() {
        assert_eq!(
            SubmitError::MemberPending.smtp(),
            (535, "5.7.8", "pending operator approval".into())
        );
        assert_eq!(SubmitError::MemberSuspended.smtp().2, "account suspended");
        assert_eq!(
            SubmitError::QueueFull.smtp(),
            (451, "4.3.1", "queue full, retry later".into())
        );
        assert_eq!(SubmitError::RateLimited(60).http_status(), 429);
        assert_eq!(
            SubmitError::DomainMismatch("x".into()).code(),
            "DOMAIN_MISMATCH"
        );
        assert_eq!(
            domain_of("User@Example.COM").as_deref(),
            Some("example.com")
        );
        assert_eq!(domain_of("nodomain"), None);
    }
}
