//! Acceptance: the one path SMTP and HTTP submissions share, and the one error type both render.
//!
//! A message is accepted when [`Acceptor::accept`] returns its ids, which happens only after the
//! spool's commit (and fsync) for that message. Before that the header block must pass RFC
//! 5322's field rules, every author must be one of the member's sending domains, the relay stamps
//! its headers and signs four times.

pub mod error;
mod queue;

pub use error::SubmitError;
pub(crate) use queue::{QueueCaps, QueueItem, RETURN_CATEGORY, ReturnPath, insert_queued};

use crate::address::Mailbox;
use crate::delivery::QueuedSender;
use crate::dkim::signer::Signer;
use crate::headers::{self, Category, HeaderFacts, StampInput, Trace};
use crate::secrets::Secrets;
use crate::spool::Spool;
use crate::store::events::{self, NewEvent};
use crate::store::members;
use crate::store::messages;
use crate::store::{Store, StoreError, now_ms};
use crate::verp::{self, Unsubscribe};
use std::sync::Arc;

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

/// Extra rows written in the accept transaction itself, with what was accepted (the HTTP
/// idempotency answer), so a crash can never keep one without the other.
pub type AlsoWrite =
    Box<dyn FnOnce(&rusqlite::Connection, &Accepted) -> Result<(), StoreError> + Send + Sync>;

/// A complete submission from an authenticated member.
pub struct Submission {
    pub did: String,
    pub mail_from: Mailbox,
    pub recipients: Vec<Mailbox>,
    pub raw: Vec<u8>,
    pub source: Source,
    /// How it arrived, for the `Received` field.
    pub trace: Trace,
    /// The id of the (first) copy when the caller already wrote `<id@hostname>` into the message.
    pub id: Option<String>,
    pub also: Option<AlsoWrite>,
    /// The fingerprint of the key the member authenticated with (see [`QueueItem`]).
    pub credential: Option<[u8; 32]>,
}

/// Names and limits acceptance uses.
#[derive(Debug, Clone)]
pub struct AcceptSettings {
    /// Refuse new mail (451) when the database would grow past this; 0 = no limit.
    pub max_queue_bytes: u64,
    /// Share of the queue forwarded inbound mail may fill, in percent.
    pub forward_share_percent: u8,
    /// `server.hostname`: Message-ID right-hand side.
    pub hostname: String,
    /// `server.operator_domain`: VERP domain.
    pub operator_domain: String,
    /// Base of the one-click unsubscribe URL (`https://<host>/unsubscribe/`).
    pub unsubscribe_base: String,
    /// Sending caps (BEHAVIOUR §6).
    pub limits: crate::config::LimitsConfig,
    /// Name the client's address in `Received` (`server.trace_client_address`).
    pub trace_client_address: bool,
}

/// What acceptance did with a submission.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// Each queued recipient with the id of the copy it gets: one id for all, unless bulk mail
    /// to several recipients was split so each gets its own unsubscribe link.
    pub queued: Vec<(Mailbox, String)>,
    /// Recipients dropped because they are on the member's suppression list: (address, reason).
    pub suppressed: Vec<(Mailbox, String)>,
}

impl Accepted {
    /// The first copy's id, if anything was queued.
    pub fn first_id(&self) -> Option<&str> {
        self.queued.first().map(|(_, id)| id.as_str())
    }

    /// How many copies were queued.
    pub fn copies(&self) -> usize {
        let mut ids: Vec<&str> = self.queued.iter().map(|(_, id)| id.as_str()).collect();
        ids.dedup();
        ids.len()
    }
}

/// Auth categories (BEHAVIOUR §4.4) are one message, one recipient: a login link for two people is
/// bulk mail wearing a costume.
pub const AUTH_SINGLE_RECIPIENT: &str = "auth_single_recipient";

/// The acceptance service: checks, stamps and signs, then durably queues, then wakes delivery.
pub struct Acceptor {
    store: Arc<Store>,
    spool: Spool,
    queued: QueuedSender,
    signer: Arc<Signer>,
    secrets: Arc<Secrets>,
    settings: AcceptSettings,
}

/// One copy of a message to stamp and sign.
struct Copy {
    id: String,
    recipients: Vec<Mailbox>,
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

    /// Checks that `address`'s domain is a sending domain of `did` (MAIL FROM, From, Sender).
    pub fn check_sender(&self, did: &str, address: &Mailbox) -> Result<(), SubmitError> {
        let Some(domain) = address.domain_name() else {
            return Err(SubmitError::DomainMismatch(format!(
                "{address} has an address literal, not a sending domain"
            )));
        };
        match self
            .store
            .with(|c| members::domain_standing(c, domain.as_str()))?
        {
            Some((owner, true)) if owner == did => Ok(()),
            Some((owner, false)) if owner == did => Err(SubmitError::DomainPending(format!(
                "{domain} is waiting for an operator's approval"
            ))),
            _ => Err(SubmitError::DomainMismatch(format!(
                "{domain} is not a sending domain of {did}"
            ))),
        }
    }

    /// Checks the header block and its authors, stamps the relay headers, signs four times,
    /// queues the message durably and returns what was queued. Signing happens once, here;
    /// retries resend these bytes.
    pub async fn accept(&self, mut sub: Submission) -> Result<Accepted, SubmitError> {
        // No bare CR or LF leaves in a body the relay signs (SMTP smuggling); the header
        // block keeps its strict check (`550 5.6.0`).
        sub.raw = crate::line_ends::normalize_body(std::mem::take(&mut sub.raw));
        let facts = headers::check(&sub.raw)?;
        for author in facts.from.iter().chain(facts.sender.iter()) {
            self.check_sender(&sub.did, author)?;
        }
        if matches!(facts.category, Category::Auth(_)) && sub.recipients.len() > 1 {
            return Err(SubmitError::Refused(format!(
                "{AUTH_SINGLE_RECIPIENT}: {} mail goes to exactly one recipient, not {}",
                facts.category.name(),
                sub.recipients.len()
            )));
        }
        // Suppressed recipients (BEHAVIOUR §4.1): auth categories bypass unsubscribes, nothing else.
        let mut accepted = Accepted::default();
        let mut kept = Vec::new();
        for r in std::mem::take(&mut sub.recipients) {
            match self
                .store
                .with(|c| crate::store::suppressions::reason(c, &sub.did, r.as_str()))?
            {
                Some(reason) if crate::suppression::blocks(&reason, &facts.category) => {
                    accepted.suppressed.push((r, reason))
                }
                _ => kept.push(r),
            }
        }
        if kept.is_empty() {
            if let Some(also) = sub.also.take() {
                let answer = accepted.clone();
                self.spool.write(move |tx| also(tx, &answer)).await?;
            }
            return Ok(accepted);
        }
        // Bulk mail carries a one-click link per recipient (RFC 8058), so each recipient of a
        // multi-recipient bulk message gets its own copy; anything else is one copy for all.
        let first_id = sub.id.take().unwrap_or_else(new_id);
        let copies: Vec<Copy> = if facts.category.unsubscribable() && kept.len() > 1 {
            kept.into_iter()
                .enumerate()
                .map(|(i, r)| Copy {
                    id: if i == 0 { first_id.clone() } else { new_id() },
                    recipients: vec![r],
                })
                .collect()
        } else {
            vec![Copy {
                id: first_id,
                recipients: kept,
            }]
        };
        let now = now_ms();
        let items = self.stamp_and_sign(&sub, &facts, copies, now).await?;
        for item in &items {
            for r in &item.recipients {
                accepted.queued.push((r.clone(), item.id.clone()));
            }
        }
        let caps = self.caps();
        let also = sub.also.take();
        let answer = accepted.clone();
        let due = self
            .spool
            .write(move |tx| {
                let mut due = Vec::new();
                for item in &items {
                    due.extend(insert_queued(tx, item, &caps)?);
                }
                if let Some(also) = also {
                    also(tx, &answer)?;
                }
                Ok(due)
            })
            .await?;
        self.wake(sub.source, due);
        Ok(accepted)
    }

    /// Stamps and signs each copy on the signing pool, off the async workers (four signatures
    /// cost ~1–2 ms of CPU).
    async fn stamp_and_sign(
        &self,
        sub: &Submission,
        facts: &HeaderFacts,
        copies: Vec<Copy>,
        now: i64,
    ) -> Result<Vec<QueueItem>, SubmitError> {
        let member_domain = facts
            .author()
            .domain_name()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let date = mail_parser::DateTime::from_timestamp(now / 1000).to_rfc822();
        let mut trace = sub.trace.clone();
        if !self.settings.trace_client_address {
            trace.client = None;
        }
        let mut stamped = Vec::with_capacity(copies.len());
        for copy in copies {
            let url = facts.category.unsubscribable().then(|| {
                let token = verp::unsubscribe_token(
                    &self.secrets,
                    &Unsubscribe {
                        did: sub.did.clone(),
                        message_id: copy.id.clone(),
                        // Bulk copies have exactly one recipient: the link unsubscribes only them.
                        recipient: copy.recipients[0].to_string(),
                    },
                );
                format!("{}{token}", self.settings.unsubscribe_base)
            });
            let out = headers::stamp(
                &sub.raw,
                &StampInput {
                    did: &sub.did,
                    member_domain: &member_domain,
                    message_id: &copy.id,
                    hostname: &self.settings.hostname,
                    unsubscribe_url: url.as_deref(),
                    date: &date,
                    trace: &trace,
                },
            )?;
            stamped.push((copy, out));
        }
        let signer = self.signer.clone();
        let domain = member_domain.clone();
        let signed = crate::dkim::pool::run(move || {
            let mut out = Vec::with_capacity(stamped.len());
            for (copy, s) in stamped {
                let started = std::time::Instant::now();
                let signatures = signer.sign(&domain, &s.raw)?;
                crate::metrics::METRICS
                    .signing_seconds
                    .observe(started.elapsed().as_secs_f64());
                let mut raw = signatures.into_bytes();
                raw.extend_from_slice(&s.raw);
                out.push((copy, raw, s.category, s.message_id));
            }
            Ok::<_, crate::dkim::keys::KeyError>(out)
        })
        .await
        .map_err(|_| SubmitError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "accept: cannot sign");
            SubmitError::Internal
        })?;
        let from_domain = sub
            .mail_from
            .domain_name()
            .map(|d| d.to_string())
            .unwrap_or_default();
        Ok(signed
            .into_iter()
            .map(|(copy, raw, category, header_message_id)| QueueItem {
                id: copy.id,
                did: sub.did.clone(),
                mail_from: sub.mail_from.to_string(),
                return_path: ReturnPath::Verp {
                    secrets: self.secrets.clone(),
                    operator_domain: self.settings.operator_domain.clone(),
                },
                category: category.name().to_string(),
                from_domain: from_domain.clone(),
                source: sub.source,
                received_at: now,
                raw,
                recipients: copy.recipients,
                header_message_id: Some(header_message_id),
                credential: sub.credential,
            })
            .collect())
    }

    /// Writes one message of the relay's own (a DSN, a forward) to the spool (one transaction
    /// with its `relay_attempt` event) and hands its recipients to delivery.
    pub(crate) async fn queue(&self, item: QueueItem) -> Result<(), SubmitError> {
        let source = item.source;
        let caps = self.caps();
        let due = self
            .spool
            .write(move |tx| insert_queued(tx, &item, &caps))
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
    pub(crate) fn caps(&self) -> QueueCaps {
        QueueCaps {
            limits: self.settings.limits.clone(),
            max_queue_bytes: self.settings.max_queue_bytes,
            forward_share_percent: self.settings.forward_share_percent,
        }
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

/// A new message id (UUIDv7, hex): the queue id and the left side of relay-made Message-IDs.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
