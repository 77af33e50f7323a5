//! createReport with real atproto service auth: an account on a real PDS (`@atproto/pds` with an
//! in-memory PLC directory) gets a token for the labeler's DID from
//! `com.atproto.server.getServiceAuth`; the labeler resolves the issuer through PLC, verifies
//! the signature, and refuses replays and tokens bound to another method.

use atmos_tests::atproto::{Pds, create_report};
use atmos_tests::http::curl;
use atmos_tests::labeler::ADMIN_TOKEN;
use atmos_tests::relay::Relay;

const LXM: &str = "com.atproto.moderation.createReport";
const LABELER_DID: &str = "did:web:relay.test";

#[test]
fn reports_need_a_fresh_service_auth_token_for_this_labeler_and_method() {
    let pds = Pds::start();
    let mut relay = Relay::new(
        None,
        25,
        &format!(
            "[labeler]\nplc_url = \"{}\"\nreports_per_minute = 5\n",
            pds.plc_url()
        ),
    );
    relay.env = vec![("ADMIN_TOKEN".into(), ADMIN_TOKEN.into())];
    relay.start();
    let http = relay.http.expect("http");
    let alice = pds.create_account("alice.test");
    let body = serde_json::json!({
        "reasonType": "com.atproto.moderation.defs#reasonSpam",
        "reason": "unsolicited mail from this sender",
        "subject": { "$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb" },
    });

    let token = pds.service_auth(&alice, LABELER_DID, LXM);
    let (status, report) = create_report(http, &token, &body);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["reportedBy"], alice.did.as_str());
    assert_eq!(
        report["reasonType"],
        "com.atproto.moderation.defs#reasonSpam"
    );
    assert!(report["id"].as_i64() > Some(0));

    // The same token again: refused, nothing stored.
    let (status, err) = create_report(http, &token, &body);
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("BadJwt")),
        "{err}"
    );

    // A token bound to another method, or addressed to another service.
    let other = pds.service_auth(&alice, LABELER_DID, "com.atproto.repo.createRecord");
    let (status, err) = create_report(http, &other, &body);
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("BadJwtLexiconMethod")),
        "{err}"
    );
    let elsewhere = pds.service_auth(&alice, "did:web:other.test", LXM);
    let (status, err) = create_report(http, &elsewhere, &body);
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("BadJwtAudience")),
        "{err}"
    );

    // A forged signature (payload changed after signing).
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = parts[1].chars().rev().collect();
    let (status, _) = create_report(http, &parts.join("."), &body);
    assert_eq!(status, 401);

    // Bad input is refused before any token is spent.
    let fresh = pds.service_auth(&alice, LABELER_DID, LXM);
    let (status, err) = create_report(
        http,
        &fresh,
        &serde_json::json!({"reasonType": "x", "subject": {"did": "nope"}}),
    );
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("InvalidRequest")),
        "{err}"
    );
    let (status, _) = create_report(http, &fresh, &body);
    assert_eq!(
        status, 200,
        "the token was not burnt by the invalid request"
    );
    let (status, _) = create_report(http, "", &body);
    assert_eq!(status, 401);

    // Stored for the operator.
    let (status, list, _) = curl(
        "GET",
        &format!("http://{http}/admin/labeler/reports"),
        &[format!("Authorization: Bearer {ADMIN_TOKEN}")],
        None,
    );
    assert_eq!(status, 200);
    let reports = list["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 2, "{list}");
    assert!(
        reports
            .iter()
            .all(|r| r["reportedBy"] == alice.did.as_str())
    );

    // Issue 27 (L4). Eleven forged tokens naming alice (right shape, wrong signature) do not
    // use up her quota: only a verified token is counted, so her next genuine report is taken.
    for n in 0..11 {
        let (status, err) = create_report(http, &forged(&alice.did, n), &body);
        assert_eq!(
            (status, err["error"].as_str()),
            (401, Some("BadJwtSignature")),
            "{err}"
        );
    }
    let (status, err) = create_report(http, &pds.service_auth(&alice, LABELER_DID, LXM), &body);
    assert_eq!(status, 200, "the genuine report after the forgeries: {err}");
    // Issuers cost nothing to make, so everyone together is capped too (5 a minute here).
    let bob = pds.create_account("bob.test");
    for _ in 0..2 {
        let (status, err) = create_report(http, &pds.service_auth(&bob, LABELER_DID, LXM), &body);
        assert_eq!(status, 200, "{err}");
    }
    let carol = pds.create_account("carol.test");
    let (status, err) = create_report(http, &pds.service_auth(&carol, LABELER_DID, LXM), &body);
    assert_eq!(
        (status, err["error"].as_str()),
        (429, Some("RateLimitExceeded")),
        "{err}"
    );
}

/// A service-auth token in the right shape for this labeler, claiming `issuer`, with a
/// signature nobody made.
fn forged(issuer: &str, n: u32) -> String {
    use base64::Engine;
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 60)
        .unwrap_or_default();
    format!(
        "{}.{}.{}",
        enc(serde_json::json!({"alg": "ES256K", "typ": "JWT"})),
        enc(
            serde_json::json!({"iss": issuer, "aud": LABELER_DID, "lxm": LXM, "exp": exp, "jti": format!("forged-{n}")})
        ),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64])
    )
}
