//! The member API with curl: status (state, labels, tier, caps, usage), metrics by window, and
//! forward-to.

use atmos_tests::http::curl;
use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use serde_json::json;
use std::time::Duration;

#[test]
fn status_metrics_and_forward_to() {
    let world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let base = format!("http://{http}");
    let headers = vec![
        format!("X-Atmos-DID: {}", world.member.did),
        format!("Authorization: Bearer {}", world.member.api_key),
    ];
    let body = json!({"from": "app@sender.test", "to": [format!("a@{RCPT_DOMAIN}"), format!("b@{RCPT_DOMAIN}")], "text": "t"});
    let (status, _, _) = curl(
        "POST",
        &format!("{base}/v1/send"),
        &headers,
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(status, 200);

    let (status, s, _) = curl("GET", &format!("{base}/member/status"), &headers, None);
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["state"], "active");
    assert_eq!(s["tier"], "warming", "approved just now");
    assert_eq!(s["labels"], json!(["highly_trusted"]));
    assert_eq!(s["usage"]["lastHour"], 2, "counted per recipient");
    assert!(
        s["caps"]["hourly"].as_u64().unwrap_or(0) > 5,
        "highly_trusted lifts the warming cap"
    );
    assert_eq!(s["domains"][0]["domain"], "sender.test");

    let m = poll_until(Duration::from_secs(20), "both recipients sent", || {
        let (_, m, _) = curl("GET", &format!("{base}/member/metrics"), &headers, None);
        (m["1h"]["sent"] == 2).then_some(m)
    });
    assert_eq!(m["30d"]["sent"], 2);
    assert_eq!(m["24h"]["bounceRate"], 0.0);

    let put = |b: serde_json::Value| {
        let mut h = headers.clone();
        h.push("Content-Type: application/json".into());
        curl(
            "PUT",
            &format!("{base}/member/forward-to"),
            &h,
            Some(b.to_string().as_bytes()),
        )
    };
    let (status, v, _) = put(json!({"domain": "sender.test", "address": "ops@sender.test"}));
    assert_eq!(
        (status, v["forwardTo"].as_str()),
        (200, Some("ops@sender.test"))
    );
    let (status, v, _) = put(json!({"domain": "bank.test", "address": "x@bank.test"}));
    assert_eq!((status, v["code"].as_str()), (403, Some("DOMAIN_MISMATCH")));
    let (status, v, _) = put(json!({"domain": "sender.test", "address": "not-an-address"}));
    assert_eq!((status, v["code"].as_str()), (400, Some("INVALID_REQUEST")));
    let (_, s, _) = curl("GET", &format!("{base}/member/status"), &headers, None);
    assert_eq!(s["domains"][0]["forwardTo"], "ops@sender.test");
    let (status, v, _) = curl("GET", &format!("{base}/member/status"), &[], None);
    assert_eq!((status, v["code"].as_str()), (400, Some("AUTH_REQUIRED")));
}
