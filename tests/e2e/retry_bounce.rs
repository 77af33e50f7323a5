//! Retry and bounce against smtp-sink's fault switches: 4xx then 2xx → deferred then sent;
//! 5xx → bounced; the MX unreachable past the queue lifetime → bounced. Every reply is stored.

use atmos_tests::setup::{RCPT_DOMAIN, World};
use atmos_tests::{client, poll_until};
use std::time::Duration;

fn submit(world: &World, id: &str) -> String {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
            .await
            .expect("session");
        let to = format!("user@{RCPT_DOMAIN}");
        let body = client::message(&world.from(), &to, id, 512);
        let reply = client::send(&mut s, &world.from(), &[&to], &body)
            .await
            .expect("accepted");
        reply.rsplit(' ').next().expect("queue id").to_string()
    })
}

fn recipient(world: &World, message_id: &str) -> (String, i64, String) {
    world
        .relay
        .db()
        .query_row(
            "SELECT status, attempts, coalesce(last_reply, '') FROM recipients WHERE message_id = ?1",
            [message_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("recipient row")
}

fn attempt_codes(world: &World, message_id: &str) -> Vec<i64> {
    let db = world.relay.db();
    let mut stmt = db
        .prepare(
            "SELECT a.code FROM delivery_attempts a JOIN recipients r ON r.id = a.recipient_id
             WHERE r.message_id = ?1 ORDER BY a.id",
        )
        .expect("prepare");
    stmt.query_map([message_id], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

#[test]
fn soft_failure_is_deferred_then_sent() {
    let mut world = World::start(Some(&["-r", "rcpt"]), "");
    let id = submit(&world, "retry-1");
    let (status, _, reply) = poll_until(Duration::from_secs(20), "deferred", || {
        let r = recipient(&world, &id);
        (r.0 == "deferred").then_some(r)
    });
    assert_eq!(status, "deferred");
    assert!(reply.starts_with("450"), "remote 4xx reply stored: {reply}");
    world.sink.restart(&[]);
    let (_, attempts, reply) = poll_until(Duration::from_secs(30), "sent after retry", || {
        let r = recipient(&world, &id);
        (r.0 == "sent").then_some(r)
    });
    assert!(attempts >= 2, "at least one retry, got {attempts}");
    assert!(reply.starts_with("250"), "{reply}");
    let codes = attempt_codes(&world, &id);
    assert_eq!(codes.first(), Some(&450));
    assert_eq!(codes.last(), Some(&250));
    assert_eq!(world.sink.messages_with("X-Test-Id: retry-1").len(), 1);
    // Final state: the body is gone, the metadata stays.
    assert_eq!(world.relay.count("SELECT count(*) FROM message_bodies"), 0);
}

#[test]
fn hard_failure_bounces_with_the_reply_stored() {
    let world = World::start(
        Some(&["-f", "rcpt", "-B", "550 5.1.1 no such user here"]),
        "",
    );
    let id = submit(&world, "bounce-1");
    let (_, attempts, reply) = poll_until(Duration::from_secs(20), "bounced", || {
        let r = recipient(&world, &id);
        (r.0 == "bounced").then_some(r)
    });
    assert_eq!(attempts, 1, "a 5xx is not retried");
    assert_eq!(reply, "550 5.1.1 no such user here");
    assert_eq!(attempt_codes(&world, &id), vec![550]);
    assert!(world.sink.messages().is_empty());
    let events = world.relay.count(
        "SELECT count(*) FROM relay_events WHERE type = 'delivery_result' AND data LIKE '%bounced%'",
    );
    assert_eq!(events, 1);
}

#[test]
fn unreachable_mx_past_the_queue_lifetime_bounces() {
    let world = World::start(None, "max_queue_lifetime = \"3s\"");
    let id = submit(&world, "lifetime-1");
    let (_, attempts, reply) =
        poll_until(Duration::from_secs(30), "bounced after lifetime", || {
            let r = recipient(&world, &id);
            (r.0 == "bounced").then_some(r)
        });
    assert!(attempts >= 2, "retried before giving up, got {attempts}");
    assert!(
        reply.contains("cannot connect"),
        "network error recorded: {reply}"
    );
}
