//! What a received report does to the relay's state, inside the spool transaction that also logs
//! it: a DSN marks the recipient bounced and suppresses a hard-bounced address (`bounce_received`);
//! an ARF complaint suppresses the complainant for good (`complaint_received`).

use super::report::{Dsn, Feedback};
use crate::store::events::{self, NewEvent};
use crate::store::{StoreError, members, messages, suppressions};
use rusqlite::Connection;

/// Who a report is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub did: Option<String>,
    /// The relay's message the report refers to, when known.
    pub message_id: Option<String>,
    /// True when the message was found in the store (VERP tag or Message-ID), not only named by
    /// headers a third party could write.
    pub verified: bool,
}

/// Works out who a report is about: the VERP message id when the report came to a bounce
/// address, else the message whose Message-ID the enclosed original carries, else the member
/// named by `X-Atmos-Member-Did` / `Feedback-ID`.
pub fn attribute(
    conn: &Connection,
    verp_message_id: Option<&str>,
    original: &super::report::Original,
) -> Result<Attribution, StoreError> {
    let ours = match original.message_id.as_deref() {
        Some(header_id) => messages::by_header_id(conn, header_id)?,
        None => None,
    };
    for candidate in verp_message_id.map(str::to_string).into_iter().chain(ours) {
        if let Some((did, _, source)) = messages::origin(conn, &candidate)?
            && !messages::is_relay_source(&source)
        {
            return Ok(Attribution {
                did: Some(did),
                message_id: Some(candidate),
                verified: true,
            });
        }
    }
    let named = original.did();
    let did = match named {
        Some(did) if members::get(conn, &did)?.is_some() => Some(did),
        _ => None,
    };
    Ok(Attribution {
        did,
        message_id: None,
        verified: false,
    })
}

/// Applies a DSN; returns how many recipients it reported as permanently failed.
pub fn apply_dsn(
    tx: &Connection,
    dsn: &Dsn,
    who: &Attribution,
    now: i64,
) -> Result<usize, StoreError> {
    let mut failed = 0;
    for r in &dsn.recipients {
        let permanent = r.is_permanent();
        let mut marked = false;
        if permanent {
            failed += 1;
            if let Some(id) = &who.message_id {
                marked = messages::mark_bounced(tx, id, &r.address, &r.reply(), now)?;
            }
            if let Some(did) = &who.did
                && crate::suppression::is_hard_bounce(&r.status)
            {
                suppressions::add(
                    tx,
                    did,
                    &r.address,
                    "bounce",
                    who.message_id.as_deref(),
                    now,
                )?;
            }
        }
        events::append(
            tx,
            now,
            &NewEvent {
                kind: "bounce_received",
                did: who.did.as_deref(),
                message_id: who.message_id.as_deref(),
                actor: Some("inbound"),
                data: serde_json::json!({
                    "recipient": r.address, "action": r.action, "status": r.status,
                    "diagnostic": r.diagnostic, "permanent": permanent,
                    "recipientMarked": marked, "verified": who.verified,
                }),
            },
        )?;
    }
    Ok(failed)
}

/// Applies an ARF report; returns how many complainants were suppressed.
pub fn apply_arf(
    tx: &Connection,
    report: &Feedback,
    who: &Attribution,
    now: i64,
) -> Result<usize, StoreError> {
    // "not-spam" is a retraction, not a complaint.
    let complaint = report.feedback_type != "not-spam";
    let mut suppressed = 0;
    for address in &report.complainants {
        if let (true, Some(did)) = (complaint, &who.did) {
            suppressions::add(
                tx,
                did,
                address,
                "complaint",
                who.message_id.as_deref(),
                now,
            )?;
            suppressed += 1;
        }
    }
    if complaint {
        events::append(
            tx,
            now,
            &NewEvent {
                kind: "complaint_received",
                did: who.did.as_deref(),
                message_id: who.message_id.as_deref(),
                actor: Some("inbound"),
                data: serde_json::json!({
                    "complainants": report.complainants, "feedbackType": report.feedback_type,
                    "verified": who.verified,
                }),
            },
        )?;
    }
    Ok(suppressed)
}
