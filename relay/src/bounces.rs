//! Bounce notices: for each bounced recipient, an RFC 3464 DSN to the sending domain's forward-to
//! address (signed with the operator keys, null envelope sender), or, with no forward-to, a
//! `dsn_recorded` event. A bounced DSN never produces another one.

use crate::accept::{Acceptor, QueueItem, Source};
use crate::delivery::dsn::{self, BounceReport, BounceReporter};
use crate::store::events::{self, NewEvent};
use crate::store::members;
use crate::store::now_ms;
use std::sync::Arc;

/// Reports bounces through an [`Acceptor`].
pub struct DsnReporter(pub Arc<Acceptor>);

impl BounceReporter for DsnReporter {
    fn report(&self, report: BounceReport) {
        let acceptor = self.0.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(&acceptor, report).await {
                tracing::error!(error = %e, "bounces: cannot record or queue the DSN");
            }
        });
    }
}

async fn handle(acceptor: &Acceptor, r: BounceReport) -> Result<(), String> {
    let relay_own = crate::store::messages::is_relay_source(&r.source);
    let forward_to = if relay_own {
        None
    } else {
        acceptor
            .store()
            .with(|c| members::forward_to(c, &r.domain))
            .map_err(|e| e.to_string())?
    };
    let Some(to) = forward_to else {
        let status = dsn::status_code(&r.reply);
        let data = serde_json::json!({
            "recipient": r.recipient, "status": status, "diagnostic": r.reply, "mx": r.mx,
            "reason": if relay_own { "the relay's own mail bounced" } else { "no forward-to address" },
        });
        let (did, message_id) = (r.did.clone(), r.message_id.clone());
        return acceptor
            .spool()
            .write(move |tx| {
                events::append(
                    tx,
                    now_ms(),
                    &NewEvent {
                        kind: "dsn_recorded",
                        did: Some(&did),
                        message_id: Some(&message_id),
                        actor: Some("relay"),
                        data,
                    },
                )
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
    };
    let settings = acceptor.settings();
    let now = now_ms();
    let body = dsn::build(
        &r,
        &settings.hostname,
        &settings.operator_domain,
        to.as_str(),
        now / 1000,
    );
    let signatures = acceptor
        .signer()
        .sign_operator(&body)
        .map_err(|e| e.to_string())?;
    let mut raw = signatures.into_bytes();
    raw.extend_from_slice(&body);
    acceptor
        .queue(QueueItem {
            id: crate::accept::new_id(),
            did: r.did,
            // RFC 3464/5321: notices go out with a null reverse-path, so they cannot loop.
            mail_from: String::new(),
            return_path: crate::accept::ReturnPath::Fixed(None),
            category: "dsn".into(),
            from_domain: settings.operator_domain.clone(),
            source: Source::Dsn,
            received_at: now,
            raw,
            recipients: vec![to],
            header_message_id: None,
            credential: None,
        })
        .await
        .map_err(|e| e.to_string())
}
