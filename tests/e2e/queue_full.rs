//! A full queue (the database size cap; SQLite reports it as it would a full disk) answers
//! `451 4.3.1 queue full, retry later`: never a 250 for mail not on disk, and nothing already
//! accepted is lost. Once delivery frees space, mail is accepted again.

use atmos_tests::setup::{RCPT_DOMAIN, World};
use atmos_tests::{client, poll_until};
use std::time::Duration;

#[test]
fn full_queue_answers_451_and_loses_nothing() {
    // The MX is down, so nothing leaves the queue while it fills.
    let mut world = World::start_with_env(None, "", &[("ATMOS_SERVER_MAX_QUEUE_BYTES", "524288")]);
    let to = format!("full@{RCPT_DOMAIN}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (acked, refusal) = rt.block_on(async {
        let mut acked = Vec::new();
        for n in 0..40 {
            // A session per message: a failed DATA leaves mail-send's session unusable.
            let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
                .await
                .expect("session");
            let id = format!("full-{n}");
            let body = client::message(&world.from(), &to, &id, 60_000);
            match client::send(&mut s, &world.from(), &[&to], &body).await {
                Ok(_) => acked.push(id),
                Err(e) => return (acked, e.to_string()),
            }
        }
        (acked, String::from("never refused"))
    });
    assert!(
        refusal.contains("451") && refusal.contains("queue full, retry later"),
        "{refusal}"
    );
    assert!(!acked.is_empty(), "some mail fits before the cap");
    // Exactly the acknowledged messages are queued: the refused one left nothing behind.
    assert_eq!(
        world.relay.count("SELECT count(*) FROM messages") as usize,
        acked.len()
    );

    world.sink.restart(&[]);
    poll_until(
        Duration::from_secs(60),
        "every acknowledged message delivered",
        || {
            let delivered = world.sink.test_ids();
            acked
                .iter()
                .all(|id| delivered.get(id) == Some(&1))
                .then_some(())
        },
    );
    // Space freed by delivered bodies is reused: a new message is accepted again.
    let reply = rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        let body = client::message(&world.from(), &to, "after-drain", 60_000);
        client::send(&mut s, &world.from(), &[&to], &body).await
    });
    assert!(reply.expect("accepted after drain").starts_with("250"));
}
