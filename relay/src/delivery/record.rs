//! Recording an attempt: each recipient's new state, its event, the member's suppression list,
//! the body once all are final, and the bounce reports (SPEC §5.2, §5.3).

use super::Delivery;
use super::Job;
use super::client::RemoteReply;
use super::dsn::{self, BounceReport};
use super::retry::Outcome;
use crate::store::events::{self, NewEvent};
use crate::store::messages::{self, AttemptRecord, RecipientStatus};
use crate::store::now_ms;

impl Delivery {
    /// Commits the attempt of each recipient, its event, and drops the body once all are final.
    pub(super) async fn record(
        &self,
        job: &Job,
        results: Vec<(RemoteReply, Outcome, Option<String>)>,
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
        // Bounces need the original headers for the DSN; read them before the body may go.
        let bounced = decided.iter().any(|(s, _)| *s == RecipientStatus::Bounced);
        let origin = if bounced && self.reporter.is_some() {
            self.bounce_context(&job.message_id)
        } else {
            None
        };
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
        let job = job.clone();
        let job_for_write = job.clone();
        let write = self
            .spool
            .write_lazy(move |tx| {
                let job = job_for_write;
                let mut finished = None;
                let mut recorded = Vec::with_capacity(job.recipients.len());
                // Who sent it, so rules can count results per member and leave the relay's own
                // mail (DSNs, forwards) out.
                let (did, source) = messages::origin(tx, &job.message_id)?
                    .map(|(did, _, source)| (Some(did), source))
                    .unwrap_or((None, String::new()));
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
                            did: did.as_deref(),
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
                        && let Some(did) = &did
                        && !messages::is_relay_source(&source)
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
                Ok(recorded)
            })
            .await;
        let recorded = match write {
            Ok(recorded) => recorded,
            Err(e) => {
                // The attempt stays unrecorded; the recipients are due again and will be retried.
                tracing::error!(error = %e, "delivery: cannot record attempt");
                return;
            }
        };
        if let (Some(reporter), Some((did, domain, source, headers))) = (&self.reporter, origin) {
            for (_, recipient, reply, mx) in
                reports.into_iter().filter(|(id, ..)| recorded.contains(id))
            {
                reporter.report(BounceReport {
                    message_id: job.message_id.clone(),
                    did: did.clone(),
                    domain: domain.clone(),
                    recipient,
                    reply: reply.text,
                    mx,
                    original_headers: headers.clone(),
                    source: source.clone(),
                    arrival_ms: job.received_at,
                });
            }
        }
    }

    /// (DID, sending domain, source, original header block) of a message.
    fn bounce_context(&self, message_id: &str) -> Option<(String, String, String, Vec<u8>)> {
        let (did, domain, source) = self
            .store
            .with(|c| messages::origin(c, message_id))
            .ok()
            .flatten()?;
        let body = self
            .store
            .with(|c| messages::body(c, message_id))
            .ok()
            .flatten()
            .unwrap_or_default();
        let end = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 2)
            .unwrap_or(body.len());
        Some((did, domain, source, body[..end].to_vec()))
    }
}
