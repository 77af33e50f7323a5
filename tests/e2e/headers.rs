//! What the relay adds, as the recipient MX sees it: per category List-Unsubscribe or not,
//! Feedback-ID, X-Atmos-Member-Did, Message-ID/Date when missing, X-Atmos-Category removed, a
//! forged X-Atmos-Member-Did replaced, and a VERP envelope sender on the operator domain.

use atmos_tests::setup::{DID, RCPT_DOMAIN, World};
use atmos_tests::{client, poll_until};
use std::time::Duration;

#[test]
fn category_headers_and_verp_envelope_as_delivered() {
    let world = World::start(Some(&[]), "");
    let to = format!("reader@{RCPT_DOMAIN}");
    let cases = [
        ("password-reset", false),
        ("transactional", false),
        ("newsletter", true),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        for (category, _) in cases {
            // No Message-ID or Date: the relay adds them. A forged member DID is dropped.
            let body = format!(
                "From: <app@sender.test>\r\nTo: <{to}>\r\nSubject: {category}\r\nX-Atmos-Category: {category}\r\n\
                 X-Atmos-Member-Did: did:plc:forgedforgedforgedforged\r\nX-Test-Id: cat-{category}\r\n\r\nhello\r\n"
            );
            client::send(&mut s, "app@sender.test", &[&to], body.as_bytes()).await.expect("accepted");
        }
    });
    for (category, unsubscribe) in cases {
        let msg = poll_until(
            Duration::from_secs(30),
            &format!("{category} delivered"),
            || {
                world
                    .sink
                    .messages_with(&format!("X-Test-Id: cat-{category}"))
                    .into_iter()
                    .next()
            },
        );
        let head = msg.split("\n\n").next().unwrap_or("").to_string();
        assert_eq!(
            head.contains("List-Unsubscribe: <https://relay.test/unsubscribe/"),
            unsubscribe,
            "{category}:\n{head}"
        );
        assert_eq!(
            head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            unsubscribe,
            "{category}"
        );
        assert!(
            !head.contains("X-Atmos-Category"),
            "{category}: category header must be stripped"
        );
        assert!(
            !head.contains("forged"),
            "{category}: forged member DID must be dropped"
        );
        assert!(head.contains(&format!("X-Atmos-Member-Did: {DID}")));
        let feedback = if unsubscribe { "bulk" } else { category };
        assert!(
            head.contains(&format!(
                "Feedback-ID: {feedback}:{DID}:sender.test:atmosphere-mail"
            )),
            "{head}"
        );
        assert!(
            head.contains("Message-ID: <") && head.contains("@relay.test>"),
            "Message-ID added"
        );
        assert!(head.contains("\nDate: "), "Date added");
        assert_eq!(head.matches("DKIM-Signature:").count(), 4);
        let envelope = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Mail-Args: "))
            .expect("envelope recorded by smtp-sink");
        assert!(
            envelope.starts_with("<bounces+") && envelope.ends_with("@operator.test>"),
            "VERP envelope sender expected, got {envelope}"
        );
    }
}
