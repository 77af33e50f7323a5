//! Inbound mail (BEHAVIOUR §7): what the MX on port 25 accepts and what it does with each message.
//!
//! Recipients are classified at RCPT ([`route`]). After DATA the message is read once
//! ([`report`]); DSNs and ARF complaints change state ([`feedback`]), other mail is forwarded
//! ([`forward`]) or logged. Everything a message causes — forwarded copies, bounce and complaint
//! effects, events and the inbound log rows — commits in one spool transaction before the MX
//! answers 250, so an accepted message is never half-processed.

pub mod feedback;
pub mod forward;
pub mod report;
pub mod route;

use crate::accept::{Acceptor, QueueItem, insert_queued};
use crate::address::{Mailbox, ReversePath};
use crate::dkim::verify::{self as dkim_verify, PublicKey};
use crate::secrets::Secrets;
use crate::store::inbound_log::{self as log, NewInbound};
use crate::store::{StoreError, now_ms};
use feedback::Evidence;
use report::Report;
use route::{Refusal, Route, RouteNames};
use std::sync::Arc;

/// More `Received` fields than this means the message is looping (RFC 5321 §6.3).
pub const MAX_HOPS: usize = 30;

/// Why a message was not taken; nothing of it was kept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InboundError {
    #[error("routing loop detected")]
    Loop,
    #[error("no valid recipients")]
    NoRecipients,
    /// A recipient accepted at RCPT can no longer be routed (its forward-to went away, an SRS
    /// address expired, a lookup failed): SMTP has one reply per DATA, so nothing is taken.
    #[error("a recipient can no longer be routed, try again later")]
    Reroute,
    #[error("queue full, retry later")]
    QueueFull,
    /// A forward to a member's address is over the member's sending caps or the relay's.
    #[error("the member's sending limit is reached, retry later")]
    RateLimited,
    #[error("internal error, retry later")]
    Internal,
}

impl InboundError {
    /// SMTP reply code and enhanced status.
    pub fn smtp(&self) -> (u16, &'static str) {
        match self {
            Self::Loop => (554, "5.4.6"),
            Self::NoRecipients => (554, "5.5.1"),
            Self::Reroute => (451, "4.3.0"),
            Self::QueueFull => (451, "4.3.1"),
            Self::RateLimited => (451, "4.7.1"),
            Self::Internal => (451, "4.3.0"),
        }
    }
}

/// The envelope of one inbound message.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Client address.
    pub peer: String,
    pub helo: String,
    /// Envelope sender (`None`: the null sender of bounces).
    pub mail_from: ReversePath,
    pub recipients: Vec<Mailbox>,
}

/// What the MX did with a message (one entry per recipient).
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub actions: Vec<(Mailbox, &'static str)>,
}

/// Inbound settings.
#[derive(Debug, Clone)]
pub struct InboundSettings {
    pub names: RouteNames,
    /// Where operator-alias mail goes; `None`: accepted and logged.
    pub operator_forward_to: Option<Mailbox>,
}

/// The inbound service.
pub struct Inbound {
    acceptor: Arc<Acceptor>,
    secrets: Arc<Secrets>,
    settings: InboundSettings,
}

/// One recipient's outcome, before it is written.
struct Outcome {
    recipient: Mailbox,
    classification: &'static str,
    did: Option<String>,
    message_id: Option<String>,
    action: &'static str,
}

fn now_secs() -> u64 {
    (now_ms() / 1000).max(0) as u64
}

impl Inbound {
    /// A new service over the relay's acceptor (spool, signer, delivery hand-off).
    pub fn new(acceptor: Arc<Acceptor>, secrets: Arc<Secrets>, settings: InboundSettings) -> Self {
        Self {
            acceptor,
            secrets,
            settings,
        }
    }

    /// Classifies a recipient (asked at RCPT).
    pub fn route(&self, recipient: &Mailbox) -> Result<Route, Refusal> {
        route::route(
            self.acceptor.store(),
            &self.secrets,
            &self.settings.names,
            recipient,
            now_secs(),
        )
    }

    /// Processes a complete message; returns once everything it caused is durable.
    pub async fn receive(&self, env: Envelope, raw: Vec<u8>) -> Result<Received, InboundError> {
        if forward::hops(&raw) > MAX_HOPS {
            return Err(InboundError::Loop);
        }
        if env.recipients.is_empty() {
            return Err(InboundError::NoRecipients);
        }
        // Routed again now: what was true at RCPT may have changed. One reply covers the whole
        // transaction, so a recipient that no longer routes fails all of it (451, retried).
        let mut routes: Vec<(Mailbox, Route)> = Vec::with_capacity(env.recipients.len());
        for r in &env.recipients {
            match self.route(r) {
                Ok(route) => routes.push((r.clone(), route)),
                Err(refusal) => {
                    tracing::info!(recipient = %r, %refusal, "inbound: recipient no longer routes at DATA");
                    return Err(InboundError::Reroute);
                }
            }
        }
        // Reading the report and checking a signature in it is CPU work a stranger chooses the
        // size of: on the blocking pool, one message's worth at a time, never on the workers
        // that serve SMTP and HTTP.
        let judge = Evidence::judge(
            self.acceptor.store().clone(),
            self.secrets.clone(),
            &self.settings.names,
        );
        let _turn = readers()
            .acquire()
            .await
            .map_err(|_| InboundError::Internal)?;
        let read = tokio::task::spawn_blocking(move || {
            let report = report::parse(&raw);
            let evidence = match &report {
                Some(r) => judge.evidence(r.original()),
                None => Evidence::default(),
            };
            let subject = mail_parser::MessageParser::default()
                .parse_headers(&raw)
                .and_then(|m| m.subject().map(|s| s.chars().take(200).collect::<String>()));
            (raw, report, evidence, subject)
        })
        .await;
        let Ok((raw, report, evidence, subject)) = read else {
            return Err(InboundError::Internal);
        };
        let id = uuid::Uuid::now_v7().simple().to_string();
        let now = now_ms();
        let names = &self.settings.names;
        let date = mail_parser::DateTime::from_timestamp(now / 1000).to_rfc822();
        let received = forward::received_field(&names.hostname, &env.peer, &env.helo, &id, &date);

        // Decide, per recipient, what happens; build forwarded copies (signing is CPU work, done
        // before the transaction).
        let mut plans = Vec::new();
        let mut forwards: Vec<QueueItem> = Vec::new();
        let mut report_done = false;
        for (recipient, route) in routes {
            let plan = self.plan(&env, &recipient, &route, report.as_ref(), &mut report_done);
            if let Some(f) = &plan.forward
                && !forwards.iter().any(|q| q.recipients[0].same_as(&f.to))
            {
                let item = self.build_forward(&received, &raw, f, now).await?;
                forwards.push(item);
            }
            plans.push(plan);
        }

        let caps = self.acceptor.caps();
        let mail_from = env
            .mail_from
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let (peer, size) = (env.peer.clone(), raw.len());
        let (items, report) = (forwards, report);
        let written = self
            .acceptor
            .spool()
            .write(move |tx| {
                let mut due = Vec::new();
                for item in &items {
                    due.push((item.source, insert_queued(tx, item, &caps)?));
                }
                let mut outcomes = Vec::new();
                for plan in plans {
                    outcomes.push(plan.apply(tx, report.as_ref(), &evidence, now)?);
                }
                for o in &outcomes {
                    log::insert(
                        tx,
                        &NewInbound {
                            received_at: now,
                            peer: &peer,
                            mail_from: &mail_from,
                            recipient: o.recipient.as_str(),
                            classification: o.classification,
                            did: o.did.as_deref(),
                            message_id: o.message_id.as_deref(),
                            subject: subject.as_deref(),
                            action: o.action,
                            size,
                        },
                    )?;
                }
                Ok((due, outcomes))
            })
            .await;
        let (due, outcomes) = written.map_err(|e| {
            let e = crate::accept::SubmitError::from(e);
            match e {
                crate::accept::SubmitError::QueueFull => InboundError::QueueFull,
                crate::accept::SubmitError::RateLimited(_) => InboundError::RateLimited,
                _ => InboundError::Internal,
            }
        })?;
        for (source, due) in due {
            self.acceptor.wake(source, due);
        }
        for o in &outcomes {
            tracing::info!(
                inbound_id = %id, recipient = %o.recipient, classification = o.classification,
                did = o.did.as_deref().unwrap_or(""), action = o.action, "inbound: processed"
            );
        }
        Ok(Received {
            id,
            actions: outcomes
                .into_iter()
                .map(|o| (o.recipient, o.action))
                .collect(),
        })
    }

    /// What one recipient of a message leads to.
    fn plan(
        &self,
        env: &Envelope,
        recipient: &Mailbox,
        route: &Route,
        report: Option<&Report>,
        report_done: &mut bool,
    ) -> Plan {
        let mut plan = Plan {
            recipient: recipient.clone(),
            verp: None,
            handles_report: false,
            forward: None,
            kind: PlanKind::Log,
        };
        match route {
            // Reports count once per message, whichever of its recipients carried them.
            Route::Bounce { .. } | Route::Operator { .. } if report.is_some() => {
                if let Route::Bounce { target } = route {
                    plan.verp = Some(target.clone());
                }
                plan.handles_report = !*report_done;
                *report_done = true;
                plan.kind = PlanKind::Report;
            }
            Route::Bounce { target } => {
                // An auto-reply or similar sent to a return path: nothing to act on.
                plan.verp = Some(target.clone());
                plan.kind = PlanKind::Ignored;
            }
            Route::Operator { .. } => match &self.settings.operator_forward_to {
                Some(to) => {
                    plan.forward = Some(forward::Forward {
                        did: String::new(),
                        mail_from: mail_from_text(env),
                        return_path: self.srs(&env.mail_from),
                        to: to.clone(),
                        category: "forward",
                    });
                    plan.kind = PlanKind::Operator;
                }
                None => plan.kind = PlanKind::OperatorLogged,
            },
            Route::SrsBounce { sender } => {
                plan.forward = Some(forward::Forward {
                    did: String::new(),
                    mail_from: mail_from_text(env),
                    // A bounce of a bounce must not bounce again: null sender.
                    return_path: None,
                    to: sender.clone(),
                    // Counted against the relay's cap: an SRS address lives 21 days.
                    category: crate::accept::RETURN_CATEGORY,
                });
                plan.kind = PlanKind::SrsBounce;
            }
            Route::Reply {
                did, forward_to, ..
            } => {
                plan.forward = Some(forward::Forward {
                    did: did.clone(),
                    mail_from: mail_from_text(env),
                    return_path: self.srs(&env.mail_from),
                    to: forward_to.clone(),
                    category: "forward",
                });
                plan.kind = PlanKind::Reply(did.clone());
            }
        }
        plan
    }

    /// The SRS return path for forwarding mail from `sender` (null stays null).
    fn srs(&self, sender: &ReversePath) -> ReversePath {
        crate::srs::forward(
            &self.secrets,
            sender.as_ref()?,
            &self.settings.names.hostname,
            now_secs(),
        )
    }

    async fn build_forward(
        &self,
        received: &str,
        raw: &[u8],
        f: &forward::Forward,
        now: i64,
    ) -> Result<QueueItem, InboundError> {
        let signer = self.acceptor.signer_handle();
        let operator_domain = self.settings.names.operator_domain.clone();
        let (received, raw, f) = (received.to_string(), raw.to_vec(), f.clone());
        // RSA signing is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            forward::build(&signer, &operator_domain, &received, &raw, &f, now)
        })
        .await
        .map_err(|_| InboundError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "inbound: cannot sign a forwarded copy");
            InboundError::Internal
        })
    }
}

/// Messages read and judged at once, one per core: a flood of large reports waits its turn
/// (asynchronously) instead of taking every blocking thread.
fn readers() -> &'static tokio::sync::Semaphore {
    static READERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    READERS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// What judging a report's evidence needs, owned so it can run on the blocking pool.
struct Judge {
    store: Arc<crate::store::Store>,
    secrets: Arc<Secrets>,
    operator_domain: String,
}

impl Evidence {
    fn judge(store: Arc<crate::store::Store>, secrets: Arc<Secrets>, names: &RouteNames) -> Judge {
        Judge {
            store,
            secrets,
            operator_domain: names.operator_domain.clone(),
        }
    }
}

impl Judge {
    /// What the relay can prove about a report's enclosed original before the transaction: a
    /// VERP `Return-Path` or `X-Atmos-Copy`, and an operator DKIM signature over its headers
    /// (with the member and Message-ID those signed headers name).
    fn evidence(&self, original: &report::Original) -> Evidence {
        let verp = |address: Option<&str>| {
            address.and_then(|a| {
                crate::verp::parse_return_path(&self.secrets, a, &self.operator_domain).ok()
            })
        };
        let return_path = verp(original.return_path.as_deref());
        let copy = verp(original.copy.as_deref());
        // One X-Atmos-Member-Did and one Message-ID, or what the signature covers is ambiguous.
        let signed = match (&original.member_did, &original.message_id) {
            (Some(did), Some(mid)) if original.identity_fields == 2 => {
                let keys = self
                    .store
                    .with(|c| crate::store::dkim_keys::published(c, &self.operator_domain, 0));
                let keys: Vec<PublicKey> = keys
                    .unwrap_or_default()
                    .iter()
                    .map(|k| PublicKey {
                        selector: k.selector.clone(),
                        txt: crate::dkim::keys::txt_value(k),
                    })
                    .collect();
                dkim_verify::verify_headers(&original.raw, &self.operator_domain, &keys)
                    .map(|_| (did.clone(), mid.clone()))
            }
            _ => None,
        };
        Evidence {
            envelope: None,
            return_path,
            copy,
            signed,
        }
    }
}

/// The envelope sender as recorded (empty for the null sender).
fn mail_from_text(env: &Envelope) -> String {
    env.mail_from
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default()
}

/// The decision for one recipient, applied inside the transaction.
struct Plan {
    recipient: Mailbox,
    verp: Option<crate::verp::VerpTarget>,
    /// This recipient applies the message's report (the first one that carries it).
    handles_report: bool,
    forward: Option<forward::Forward>,
    kind: PlanKind,
}

enum PlanKind {
    Report,
    Ignored,
    Operator,
    OperatorLogged,
    SrsBounce,
    Reply(String),
    Log,
}

impl Plan {
    fn apply(
        self,
        tx: &rusqlite::Connection,
        report: Option<&Report>,
        evidence: &Evidence,
        now: i64,
    ) -> Result<Outcome, StoreError> {
        let (classification, did, message_id, action) = match (&self.kind, report) {
            (PlanKind::Report, Some(report)) => {
                let evidence = Evidence {
                    envelope: self.verp.clone(),
                    ..evidence.clone()
                };
                let who = feedback::attribute(tx, &evidence, report.original())?;
                let classification = match report {
                    Report::Dsn(_) => "dsn",
                    Report::Arf(_) => "arf",
                };
                let action = match report {
                    _ if !self.handles_report => "duplicate",
                    Report::Dsn(d) => feedback::apply_dsn(tx, d, &who, now)?.action(),
                    Report::Arf(f) => feedback::apply_arf(tx, f, &who, now)?.action(),
                };
                (classification, who.did, who.message_id, action)
            }
            (PlanKind::Report | PlanKind::Log, _) => ("other", None, None, "logged"),
            (PlanKind::Ignored, _) => ("other", None, self.verp.map(|v| v.message_id), "ignored"),
            (PlanKind::Operator, _) => ("operator", None, None, "forwarded"),
            (PlanKind::OperatorLogged, _) => ("operator", None, None, "logged"),
            (PlanKind::SrsBounce, _) => ("srs_bounce", None, None, "returned"),
            (PlanKind::Reply(did), _) => ("reply", Some(did.clone()), None, "forwarded"),
        };
        Ok(Outcome {
            recipient: self.recipient,
            classification,
            did,
            message_id,
            action,
        })
    }
}
