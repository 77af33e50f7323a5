//! The Kafka bridge (SPEC §8) against a real Kafka-protocol broker (tansu) and an independent
//! client (PyPI confluent-kafka): every event reaches the events topic in Osprey's action format,
//! once each across a restart, and verdicts written to the results topic act on the member like
//! embedded rules. Skips, saying so, where tansu is not installed.

use atmos_tests::http::{curl, member_headers, send_ok};
use atmos_tests::kafka::Tansu;
use atmos_tests::poll_until;
use atmos_tests::setup::{DID, RCPT_DOMAIN, World};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

const TOKEN: &str = "kafka-admin-token-0123456789abcdefgh";
const EVENTS: &str = "osprey.actions_input";
const RESULTS: &str = "osprey.execution_results";

#[test]
fn events_flow_out_once_and_verdicts_flow_back() {
    let Some(broker) = Tansu::start() else {
        return;
    };
    let mut world = World::start_with_env(
        Some(&[]),
        "",
        &[
            ("ADMIN_TOKEN", TOKEN),
            ("ATMOS_KAFKA_BROKERS", &broker.address()),
        ],
    );
    let http = world.relay.http.expect("http");
    let body = json!({"from": "app@sender.test", "to": format!("fan@{RCPT_DOMAIN}"), "subject": "hi", "text": "hello"});
    send_ok(http, &member_headers(&world.member), &body);

    // The delivery result arrives on the events topic as an Osprey action.
    let result = poll_until(Duration::from_secs(60), "delivery_result on Kafka", || {
        broker.read(EVENTS).into_iter().find(|a| {
            a["data"]["action_name"] == "delivery_result" && a["data"]["data"]["did"] == DID
        })
    });
    assert!(result["send_time"].is_string(), "{result}");
    assert_eq!(result["data"]["data"]["event"]["status"], "sent");
    let action_id = result["data"]["action_id"].as_i64().expect("action_id");

    // An external engine's verdicts on that action act on its member.
    broker.write(
        RESULTS,
        &json!({"__action_id": action_id, "__verdicts": ["burst_warming@1h", "shadow:osprey-watch", "suspend"]}),
    );
    poll_until(
        Duration::from_secs(60),
        "suspension by an Osprey verdict",
        || {
            (world.relay.count(&format!(
                "SELECT count(*) FROM members WHERE did = '{DID}' AND state = 'suspended'"
            )) == 1)
                .then_some(())
        },
    );
    assert_eq!(
        world.relay.count(&format!(
            "SELECT count(*) FROM member_labels WHERE did = '{DID}' AND label = 'burst_warming' AND expires_at IS NOT NULL"
        )),
        1
    );
    let (_, verdicts, _) = curl(
        "GET",
        &format!("http://{http}/admin/verdicts?did={DID}"),
        &[format!("Authorization: Bearer {TOKEN}")],
        None,
    );
    let rules: Vec<(&str, bool)> = verdicts
        .as_array()
        .expect("verdicts")
        .iter()
        .filter_map(|v| Some((v["effect"].as_str()?, v["shadow"].as_bool()?)))
        .collect();
    for want in [
        ("suspend: osprey verdict", false),
        ("add_label: shadow:osprey-watch", true),
    ] {
        assert!(rules.contains(&want), "{want:?} missing in {rules:?}");
    }
    // A malformed result is skipped, and what follows it still applies.
    broker.write(RESULTS, &json!({"no": "action id"}));
    broker.write(
        RESULTS,
        &json!({"__action_id": action_id, "__verdicts": ["remove:burst_warming"]}),
    );
    poll_until(
        Duration::from_secs(60),
        "label removal after a bad message",
        || {
            (world.relay.count(&format!(
                "SELECT count(*) FROM member_labels WHERE did = '{DID}' AND label = 'burst_warming'"
            )) == 0)
                .then_some(())
        },
    );

    // After a restart, publishing resumes from the outbox cursor: every event once, in order.
    world.relay.terminate();
    world.relay.start();
    let events = world.relay.count("SELECT max(id) FROM relay_events");
    let actions = poll_until(Duration::from_secs(60), "every event on Kafka", || {
        let all = broker.read(EVENTS);
        (all.len() as i64 >= events).then_some(all)
    });
    let ids: Vec<i64> = actions
        .iter()
        .filter_map(|a: &Value| a["data"]["action_id"].as_i64())
        .collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "an event was published twice: {ids:?}"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
}
