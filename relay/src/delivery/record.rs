//! Recording an attempt: each recipient's new state, its event, the member's suppression list,
//! the body once all are final, and the bounce reports (BEHAVIOUR §5.2, §5.3).

use super::Delivery;
use super::Job;
use super::client::RemoteReply;
use super::dsn::{self, BounceReport};
use super::retry::Outcome;
use crate::headers::fields::split_head;
use crate::store::events::{self, NewEvent};
use crate::store::messages::{self, AttemptRecord, RecipientStatus};
use crate::store::now_ms;

impl Delivery {
    /// Commits the attempt of each recipient, its event, and drops the body once all are final;
    /// then reports the bounces, with the header block of `body` (the copy the attempt sent).
    pub(super) async fn record(
        &self,
        job: Job,
        results: Vec<(RemoteReply, Outcome, Option<String>)>,
        body: Option<Vec<u8>>,
    ) {
        let now = now_ms();
        let decided: Vec<(RecipientStatus, i64)> = job
            .recipients
            .iter()
            .zip(&results)
            .map(|((_, _, attempts), (_, outcome, _))| {
                self.policy
                    .decide(*outcome, attempts + 1, job.received_at, now)
            })
            .collect();
        let reports: Vec<(i64, String, RemoteReply, Option<String>)> = job
            .recipients
            .iter()
            .zip(&results)
            .zip(&decided)
            .filter(|(_, (s, _))| *s == RecipientStatus::Bounced)
            .map(|(((id, address, _), (reply, _, mx)), _)| {
                (*id, address.to_string(), reply.clone(), mx.clone())
            })
            .collect();
        let headers = match (&self.reporter, reports.is_empty()) {
            (Some(_), false) => split_head(body.as_deref().unwrap_or_default()).0.to_vec(),
            _ => Vec::new(),
        };
        drop(body);
        let (message_id, received_at) = (job.message_id.clone(), job.received_at);
        let write = self
            .spool
            .write_lazy(move |tx| {
                let mut finished = None;
                let mut recorded = Vec::with_capacity(job.recipients.len());
                // Who sent it, so rules can count results per member and leave the relay's own
                // mail (DSNs, forwards) out; the bounce reports name it too.
                let origin = messages::origin(tx, &job.message_id)?;
                let (did, source) = origin
                    .as_ref()
                    .map(|(did, _, source)| (Some(did.as_str()), source.as_str()))
                    .unwrap_or((None, ""));
                for (((id, address, attempts), (reply, _outcome, mx)), (status, next)) in
                    job.recipients.iter().zip(results).zip(decided)
                {
                    let tries = attempts + 1;
                    let Some((message_id, all_final)) = messages::record_attempt(
                        tx,
                        &AttemptRecord {
                            recipient_id: *id,
                            at: now,
                            mx: mx.as_deref(),
                            code: Some(reply.code),
                            reply: &reply.text,
                            status,
                            next_attempt_at: next,
                        },
                    )?
                    else {
                        // Already final: a late duplicate changes nothing and reports nothing.
                        continue;
                    };
                    recorded.push(*id);
                    events::append(
                        tx,
                        now,
                        &NewEvent {
                            kind: "delivery_result",
                            did,
                            message_id: Some(&message_id),
                            actor: Some("relay"),
                            data: serde_json::json!({
                                "recipient": address.as_str(),
                                "source": source,
                                "status": status.as_str(),
                                "code": reply.code,
                                "reply": reply.text,
                                "mx": mx,
                                "attempt": tries,
                            }),
                        },
                    )?;
                    // A bad mailbox or domain (5.1.x) goes on the member's suppression list.
                    if status == RecipientStatus::Bounced
                        && crate::suppression::is_hard_bounce(&dsn::status_code(&reply.text))
                        && let Some(did) = did
                        && !messages::is_relay_source(source)
                    {
                        crate::store::suppressions::add(tx, did, address.as_str(), "bounce", Some(&message_id), now)?;
                    }
                    if status == RecipientStatus::Bounced {
                        tracing::info!(message_id, recipient = %address, reply = %reply.text, "delivery: bounced");
                    }
                    finished = all_final.then_some(message_id);
                }
                if let Some(message_id) = finished {
                    messages::delete_body(tx, &message_id)?;
                }
                Ok((recorded, origin))
            })
            .await;
        let (recorded, origin) = match write {
            Ok(done) => done,
            Err(e) => {
                // The attempt stays unrecorded; the recipients are due again and will be retried.
                tracing::error!(error = %e, "delivery: cannot record attempt");
                return;
            }
        };
        if let (Some(reporter), Some((did, domain, source))) = (&self.reporter, origin) {
            for (_, recipient, reply, mx) in
                reports.into_iter().filter(|(id, ..)| recorded.contains(id))
            {
                reporter.report(BounceReport {
                    message_id: message_id.clone(),
                    did: did.clone(),
                    domain: domain.clone(),
                    recipient,
                    reply: reply.text,
                    mx,
                    original_headers: headers.clone(),
                    source: source.clone(),
                    arrival_ms: received_at,
                });
            }
        }
    }
}
