//! Writing an accepted message into the spool transaction: the queue cap, the member's caps,
//! the message with its recipients and return paths, and its `relay_attempt` event, as one step.

use super::Source;
use crate::address::{Mailbox, ReversePath};
use crate::secrets::Secrets;
use crate::store::StoreError;
use crate::store::events::{self, NewEvent};
use crate::store::members;
use crate::store::messages::{self, NewMessage};
use crate::warming::Budget;
use std::sync::Arc;

/// The envelope sender delivery uses for a queued message.
#[derive(Clone)]
pub(crate) enum ReturnPath {
    /// A VERP address per recipient on the operator domain, so a bounce names exactly one
    /// recipient and cannot be forged.
    Verp {
        secrets: Arc<Secrets>,
        operator_domain: String,
    },
    /// The same sender for every recipient (`None`: the null reverse path of DSNs).
    Fixed(ReversePath),
}

/// A message ready for the spool.
pub(crate) struct QueueItem {
    pub id: String,
    pub did: String,
    /// The member's envelope sender (empty for the relay's own mail).
    pub mail_from: String,
    pub return_path: ReturnPath,
    pub category: String,
    pub from_domain: String,
    pub source: Source,
    pub received_at: i64,
    pub raw: Vec<u8>,
    pub recipients: Vec<Mailbox>,
    /// The `Message-ID` header value (without `<>`), so reports can find the message.
    pub header_message_id: Option<String>,
    /// Member mail: the fingerprint of the key it authenticated with, checked again in the
    /// transaction (a suspension or a new key between authentication and commit wins).
    pub credential: Option<[u8; 32]>,
}

/// What a queued message spends of the sending caps.
enum Spends {
    /// A member's own mail.
    Member,
    /// A forwarded reply to a member's domain: a stranger mailing that domain makes the relay
    /// send from its shared IP on the member's behalf.
    Forward,
    /// A bounce of forwarded mail returned to its sender.
    Return,
    /// DSNs and the operator's own forwards.
    Nothing,
}

impl QueueItem {
    fn spends(&self) -> Spends {
        match self.source {
            Source::Smtp | Source::Http => Spends::Member,
            Source::Forward if !self.did.is_empty() => Spends::Forward,
            Source::Forward if self.category == RETURN_CATEGORY => Spends::Return,
            Source::Forward | Source::Dsn => Spends::Nothing,
        }
    }
}

/// The category of a bounce of forwarded mail on its way back to the original sender.
pub(crate) const RETURN_CATEGORY: &str = "srs_return";

/// Caps acceptance applies inside the transaction.
#[derive(Debug, Clone)]
pub(crate) struct QueueCaps {
    pub limits: crate::config::LimitsConfig,
    /// Largest database size; 0 = none.
    pub max_queue_bytes: u64,
    /// Share of `max_queue_bytes` forwarded inbound mail may fill, in percent.
    pub forward_share_percent: u8,
}

/// Inserts a queued message with its `relay_attempt` event inside the spool transaction `tx`,
/// checking the queue cap and the member's caps there so concurrent sessions cannot overshoot.
/// Member mail and forwards count against the queue cap (forwards only up to their share); DSNs
/// do not, so a full queue never loses a bounce notice (forwards can wait: their sender retries
/// after a 451).
pub(crate) fn insert_queued(
    tx: &rusqlite::Connection,
    item: &QueueItem,
    caps: &QueueCaps,
) -> Result<Vec<messages::DueRecipient>, StoreError> {
    let cap = match item.source {
        Source::Dsn => 0,
        Source::Forward => caps.max_queue_bytes / 100 * u64::from(caps.forward_share_percent),
        Source::Smtp | Source::Http => caps.max_queue_bytes,
    };
    if cap > 0 {
        let used = match item.source {
            Source::Forward => messages::queued_bytes_of_source(tx, "forward")?,
            _ => messages::used_bytes(tx)?,
        };
        if used + item.raw.len() as u64 > cap {
            return Err(StoreError::QueueFull);
        }
    }
    let spends = item.spends();
    let member = match spends {
        Spends::Member | Spends::Forward => members::get(tx, &item.did)?,
        Spends::Return | Spends::Nothing => None,
    };
    if matches!(spends, Spends::Member) {
        let standing = match &member {
            Some(m) => m.may_send(item.credential.as_ref()),
            None => Err(members::Standing::Gone),
        };
        standing.map_err(StoreError::MayNotSend)?;
    }
    let share = caps.forward_share_percent;
    let budget = match (&spends, &member) {
        (Spends::Member, Some(m)) => Some(Budget::Member(m)),
        (Spends::Forward, Some(m)) => Some(Budget::Forwards(m, share)),
        (Spends::Return, _) => Some(Budget::Returns(share)),
        _ => None,
    };
    let counted = budget.map(|b| b.buckets()).unwrap_or_default();
    if let Some(budget) = budget {
        let adding = item.recipients.len() as u32;
        let verdict =
            crate::warming::check_budget(tx, budget, &caps.limits, adding, item.received_at)?;
        if let Err(over) = verdict {
            return Err(StoreError::RateLimited(over.retry_after_secs));
        }
    }
    let (message_return_path, per_recipient): (String, Option<PerRecipientPath>) = match &item
        .return_path
    {
        ReturnPath::Verp {
            secrets,
            operator_domain,
        } => {
            let (secrets, domain, id) = (secrets.clone(), operator_domain.clone(), item.id.clone());
            (
                crate::verp::return_path(secrets.as_ref(), &item.id, None, operator_domain),
                Some(Box::new(move |rcpt: i64| {
                    crate::verp::return_path(secrets.as_ref(), &id, Some(rcpt), &domain)
                })),
            )
        }
        ReturnPath::Fixed(path) => (
            path.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            None,
        ),
    };
    let due = messages::insert(
        tx,
        &NewMessage {
            id: &item.id,
            did: &item.did,
            mail_from: &item.mail_from,
            return_path: &message_return_path,
            recipient_return_path: per_recipient.as_deref(),
            category: &item.category,
            from_domain: &item.from_domain,
            source: item.source.as_str(),
            received_at: item.received_at,
            body: &item.raw,
            recipients: &item.recipients,
            header_message_id: item.header_message_id.as_deref(),
            counted: &counted,
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

/// Builds one recipient's return path from its row id (VERP per recipient).
type PerRecipientPath = Box<dyn Fn(i64) -> String>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn forward(did: &str, to: &str) -> QueueItem {
        QueueItem {
            id: crate::accept::new_id(),
            did: did.into(),
            mail_from: "stranger@elsewhere.test".into(),
            return_path: ReturnPath::Fixed(None),
            category: "forward".into(),
            from_domain: "operator.test".into(),
            source: Source::Forward,
            received_at: 1_000_000,
            raw: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
            recipients: vec![Mailbox::parse(to).unwrap()],
            header_message_id: None,
            credential: None,
        }
    }

    #[test]
    fn forwards_have_their_own_budget_and_a_share_of_the_relay_cap() {
        let (_d, store) = test_store();
        let caps = QueueCaps {
            limits: crate::config::LimitsConfig {
                hourly: 3,
                daily: 1000,
                global_per_minute: 10,
            },
            max_queue_bytes: 0,
            forward_share_percent: 30,
        };
        let did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
        store
            .write(|tx| {
                let mut m = members::Member::active(did, 0);
                m.api_key_hash = "x".into();
                members::insert(tx, &m)?;
                crate::store::labels::add(tx, did, crate::warming::HIGHLY_TRUSTED, None, 0)?;
                Ok(())
            })
            .unwrap();
        let put = |item: QueueItem| store.write(|tx| insert_queued(tx, &item, &caps).map(|_| ()));
        let limited = |r: Result<(), StoreError>| matches!(r, Err(StoreError::RateLimited(_)));
        // A stranger mailing the member's domain: at most 30 % of the relay's minute (3).
        for to in ["a@rcpt.test", "b@rcpt.test", "c@rcpt.test"] {
            put(forward(did, to)).expect("a forward within the share");
        }
        assert!(
            limited(put(forward(did, "d@rcpt.test"))),
            "over the forwards' share"
        );
        // Returned bounces share the forwards' part.
        let mut back = forward("", "sender@elsewhere.test");
        back.category = RETURN_CATEGORY.into();
        assert!(limited(put(back)), "returns count with forwards");
        // None of it spent the member's own sending (its hourly cap is 3).
        let mut own = forward(did, "e@rcpt.test");
        own.source = Source::Http;
        own.credential = None;
        put(own).expect("the member's own mail: its budget is untouched");
        // The operator's own forwards are not held back.
        put(forward("", "ops@operator.test")).expect("operator mail");
        // The member's own mail stops at its own hourly cap.
        for n in 0..6 {
            let mut own = forward(did, &format!("m{n}@rcpt.test"));
            own.source = Source::Http;
            let r = put(own);
            if n < 2 {
                r.expect("within the member's hour");
            } else {
                assert!(limited(r), "the member's hourly cap of 3 ({n})");
            }
        }
    }
}
