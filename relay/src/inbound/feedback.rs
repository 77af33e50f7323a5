//! What a received report does to the relay's state, inside the spool transaction that also logs
//! it. A report acts only with proof the relay sent the message it is about (BEHAVIOUR §7): a VERP
//! tag (the envelope recipient, or the enclosed original's `Return-Path`), or an operator DKIM
//! signature over the enclosed headers. It then touches only recipients of that message, each
//! once: a DSN marks a recipient bounced and suppresses a hard-bounced address
//! (`bounce_received`); an ARF complaint suppresses the complainant for good
//! (`complaint_received`). A report without proof is logged and emits `report_unverified`, which
//! no rule counts.

use super::report::{Dsn, Feedback, Original};
use crate::address::Mailbox;
use crate::store::events::{self, NewEvent};
use crate::store::{StoreError, members, messages, suppressions};
use crate::verp::VerpTarget;
use rusqlite::Connection;

/// How the relay knows it sent the reported message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The report came to a VERP return path.
    Envelope,
    /// The enclosed original's `Return-Path` is a VERP address.
    ReturnPath,
    /// The enclosed original's `X-Atmos-Copy` (its own return path, written at delivery).
    CopyToken,
    /// An operator DKIM signature verifies over the enclosed headers.
    Signature,
}

impl Proof {
    fn as_str(self) -> &'static str {
        match self {
            Self::Envelope => "verp",
            Self::ReturnPath => "return_path",
            Self::CopyToken => "copy_token",
            Self::Signature => "dkim",
        }
    }
}

/// What the relay could establish about a report before the transaction.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The VERP address the report was sent to.
    pub envelope: Option<VerpTarget>,
    /// The VERP address in the enclosed original's `Return-Path`.
    pub return_path: Option<VerpTarget>,
    /// The VERP address in the enclosed original's `X-Atmos-Copy`.
    pub copy: Option<VerpTarget>,
    /// The member DID and Message-ID of an enclosed original whose operator signature verified.
    pub signed: Option<(String, String)>,
}

/// A recipient a report may touch: one the proven message was sent to.
#[derive(Debug, Clone)]
pub struct ProvenRecipient {
    pub id: i64,
    pub message_id: String,
    pub address: Mailbox,
}

/// Who a report is about.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// The sending member (proven), or the member the headers name (unproven: logged only).
    pub did: Option<String>,
    pub proof: Option<Proof>,
    /// The relay's message the report refers to, when proven.
    pub message_id: Option<String>,
    /// Recipients the report may touch.
    pub recipients: Vec<ProvenRecipient>,
}

impl Attribution {
    /// Whether the relay proved it sent the message.
    pub fn verified(&self) -> bool {
        self.proof.is_some()
    }

    fn recipient(&self, address: &Mailbox) -> Option<&ProvenRecipient> {
        self.recipients.iter().find(|r| r.address.same_as(address))
    }
}

/// Works out who a report is about from the evidence, strongest first; without any, the member
/// the enclosed headers name is recorded but nothing is proven.
pub fn attribute(
    conn: &Connection,
    evidence: &Evidence,
    original: &Original,
) -> Result<Attribution, StoreError> {
    let tagged = [
        (Proof::Envelope, &evidence.envelope),
        (Proof::ReturnPath, &evidence.return_path),
        (Proof::CopyToken, &evidence.copy),
    ];
    for (proof, target) in tagged {
        if let Some(t) = target
            && let Some(found) = proven(conn, std::slice::from_ref(&t.message_id), t.recipient)?
        {
            return Ok(Attribution {
                proof: Some(proof),
                ..found
            });
        }
    }
    if let Some((did, header_id)) = &evidence.signed {
        let ids = messages::by_header_id(conn, did, header_id)?;
        if let Some(found) = proven(conn, &ids, None)? {
            return Ok(Attribution {
                proof: Some(Proof::Signature),
                ..found
            });
        }
    }
    let did = match original.did() {
        Some(did) if members::get(conn, &did)?.is_some() => Some(did),
        _ => None,
    };
    Ok(Attribution {
        did,
        ..Default::default()
    })
}

/// The member and recipients of the member messages `ids`: only `recipient` when given. When
/// the proof names no recipient (a signature over the headers, or a message-level return path),
/// it is about a copy, not about every recipient: then it reaches a recipient only when the
/// messages had exactly one, so one reader cannot suppress or complain for the others.
fn proven(
    conn: &Connection,
    ids: &[String],
    recipient: Option<i64>,
) -> Result<Option<Attribution>, StoreError> {
    let mut found = proven_all(conn, ids, recipient)?;
    if recipient.is_none()
        && let Some(a) = &mut found
        && a.recipients.len() > 1
    {
        tracing::info!(
            did = a.did.as_deref().unwrap_or(""),
            recipients = a.recipients.len(),
            "inbound: a report proven for a message, not one copy, acts on none of its recipients"
        );
        a.recipients.clear();
    }
    Ok(found)
}

fn proven_all(
    conn: &Connection,
    ids: &[String],
    recipient: Option<i64>,
) -> Result<Option<Attribution>, StoreError> {
    let mut out: Option<Attribution> = None;
    for id in ids {
        let Some((did, _, source)) = messages::origin(conn, id)? else {
            continue;
        };
        if messages::is_relay_source(&source) {
            continue;
        }
        let a = out.get_or_insert_with(|| Attribution {
            did: Some(did.clone()),
            message_id: Some(id.clone()),
            ..Default::default()
        });
        if a.did.as_deref() != Some(did.as_str()) {
            continue;
        }
        for (rid, address, _) in messages::recipient_rows(conn, id)? {
            if recipient.is_some_and(|r| r != rid) {
                continue;
            }
            if let Ok(address) = Mailbox::parse(&address) {
                a.recipients.push(ProvenRecipient {
                    id: rid,
                    message_id: id.clone(),
                    address,
                });
            }
        }
    }
    Ok(out)
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// No proof: logged, nothing enforced.
    Unverified,
    /// Proof, but it named nobody who received the message.
    NoKnownRecipient,
    /// Counted already (the same recipient reported before).
    Duplicate,
    /// Verified bounces were recorded.
    Bounced,
    /// Only delays (or other non-failures) were reported.
    Delayed,
    /// Verified complaints were recorded.
    Complained,
    /// A `not-spam` report: nothing to do.
    Retraction,
}

impl Effect {
    /// The action written to the inbound log.
    pub fn action(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::NoKnownRecipient => "no_known_recipient",
            Self::Duplicate => "duplicate",
            Self::Bounced => "bounce_recorded",
            Self::Delayed => "delay_recorded",
            Self::Complained => "complaint_recorded",
            Self::Retraction => "logged",
        }
    }
}

/// Records an unproven report: visible in the log and the event stream, counted by nothing.
fn unverified(
    tx: &Connection,
    kind: &str,
    who: &Attribution,
    named: serde_json::Value,
    now: i64,
) -> Result<Effect, StoreError> {
    events::append(
        tx,
        now,
        &NewEvent {
            kind: "report_unverified",
            did: None,
            actor: Some("inbound"),
            data: serde_json::json!({ "report": kind, "namedDid": who.did, "named": named }),
            ..Default::default()
        },
    )?;
    Ok(Effect::Unverified)
}

/// Applies a DSN.
pub fn apply_dsn(
    tx: &Connection,
    dsn: &Dsn,
    who: &Attribution,
    now: i64,
) -> Result<Effect, StoreError> {
    let (Some(did), Some(proof)) = (&who.did, who.proof) else {
        let named: Vec<&str> = dsn.recipients.iter().map(|r| r.address.as_str()).collect();
        return unverified(tx, "dsn", who, serde_json::json!(named), now);
    };
    let mut ignored: Vec<&str> = Vec::new();
    let mut seen: Vec<i64> = Vec::new();
    let (mut bounced, mut delayed, mut duplicate) = (0, 0, 0);
    for r in &dsn.recipients {
        let matched = who
            .recipient(&r.address)
            .or_else(|| r.original.as_ref().and_then(|o| who.recipient(o)));
        let Some(rcpt) = matched else {
            ignored.push(r.address.as_str());
            continue;
        };
        // Several blocks about one recipient are one report about it.
        if seen.contains(&rcpt.id) {
            continue;
        }
        seen.push(rcpt.id);
        let permanent = r.is_permanent();
        if permanent && !crate::store::inbound_log::first_report_fact(tx, rcpt.id, "bounce", now)? {
            duplicate += 1;
            continue;
        }
        let mut marked = false;
        if permanent {
            bounced += 1;
            marked = messages::mark_bounced(tx, rcpt.id, &r.reply(), now)?;
            if crate::suppression::is_hard_bounce(&r.status) {
                suppressions::add(
                    tx,
                    did,
                    rcpt.address.as_str(),
                    "bounce",
                    Some(&rcpt.message_id),
                    now,
                )?;
            }
        } else {
            delayed += 1;
        }
        events::append(
            tx,
            now,
            &NewEvent {
                kind: "bounce_received",
                did: Some(did),
                message_id: Some(&rcpt.message_id),
                actor: Some("inbound"),
                data: serde_json::json!({
                    "recipient": rcpt.address.as_str(), "action": r.action, "status": r.status,
                    "diagnostic": r.diagnostic, "permanent": permanent,
                    "recipientMarked": marked, "verified": true, "proof": proof.as_str(),
                }),
            },
        )?;
    }
    if !ignored.is_empty() {
        tracing::info!(did, ignored = ?ignored, "inbound: DSN named addresses that were not recipients");
    }
    Ok(match (bounced, delayed, duplicate) {
        (b, _, _) if b > 0 => Effect::Bounced,
        (_, d, _) if d > 0 => Effect::Delayed,
        (_, _, d) if d > 0 => Effect::Duplicate,
        _ => Effect::NoKnownRecipient,
    })
}

/// Applies an ARF report.
pub fn apply_arf(
    tx: &Connection,
    report: &Feedback,
    who: &Attribution,
    now: i64,
) -> Result<Effect, StoreError> {
    let (Some(did), Some(proof)) = (&who.did, who.proof) else {
        let named: Vec<&str> = report.complainants.iter().map(|m| m.as_str()).collect();
        return unverified(tx, "arf", who, serde_json::json!(named), now);
    };
    // "not-spam" is a retraction, not a complaint.
    if report.feedback_type == "not-spam" {
        return Ok(Effect::Retraction);
    }
    // Who complained: the addresses the report names, or, when it names none and the proof
    // names exactly one recipient (per-recipient VERP), that recipient.
    let complainants: Vec<&ProvenRecipient> = if report.complainants.is_empty() {
        match who.recipients.as_slice() {
            [one] => vec![one],
            _ => Vec::new(),
        }
    } else {
        let mut out = Vec::new();
        for c in &report.complainants {
            match who.recipient(c) {
                Some(r) => out.push(r),
                None => {
                    tracing::info!(did, address = %c, "inbound: complaint names an address that was not a recipient")
                }
            }
        }
        out
    };
    let (mut recorded, mut duplicate) = (0, 0);
    for rcpt in complainants {
        if !crate::store::inbound_log::first_report_fact(tx, rcpt.id, "complaint", now)? {
            duplicate += 1;
            continue;
        }
        recorded += 1;
        suppressions::add(
            tx,
            did,
            rcpt.address.as_str(),
            "complaint",
            Some(&rcpt.message_id),
            now,
        )?;
        events::append(
            tx,
            now,
            &NewEvent {
                kind: "complaint_received",
                did: Some(did),
                message_id: Some(&rcpt.message_id),
                actor: Some("inbound"),
                data: serde_json::json!({
                    "complainants": [rcpt.address.as_str()], "feedbackType": report.feedback_type,
                    "verified": true, "proof": proof.as_str(),
                }),
            },
        )?;
    }
    Ok(match (recorded, duplicate) {
        (r, _) if r > 0 => Effect::Complained,
        (_, d) if d > 0 => Effect::Duplicate,
        _ => Effect::NoKnownRecipient,
    })
}
