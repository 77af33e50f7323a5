//! The OAuth callback's query, the token answer and DPoP nonces: any callback is refused with a
//! named error or yields its code only for the issuer the sign-in started with; any token answer
//! is refused or yields DPoP-bound tokens for a valid DID; nonces kept are short visible ASCII.
//! The input is three fields split at NULs: the callback query, the token answer body, and a
//! `DPoP-Nonce` header value.
#![no_main]
use atmos_relay::oauth::client::{Callback, Pending, check_callback, tokens_from};
use atmos_relay::oauth::dpop::{Answer, Nonces, wants_nonce};
use atmos_relay::oauth::jose::EsKey;
use atmos_relay::oauth::discovery::ServerMetadata;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ISSUER: &str = "https://as.example";
const NOW: i64 = 1_796_000_000;

fn server() -> ServerMetadata {
    serde_json::from_value(serde_json::json!({
        "issuer": ISSUER,
        "authorization_endpoint": "https://as.example/authorize",
        "token_endpoint": "https://as.example/token",
        "pushed_authorization_request_endpoint": "https://as.example/par",
    }))
    .expect("server metadata")
}

fuzz_target!(|data: &[u8]| {
    static KEY: OnceLock<EsKey> = OnceLock::new();
    let key = KEY.get_or_init(EsKey::generate);
    let (query, rest) = atmos_fuzz::split2(data);
    let (body, nonce) = atmos_fuzz::split2(rest);
    let pending = Pending {
        state: "s".into(),
        client_id: "https://relay.example/oauth/client-metadata.json".into(),
        verifier: "v".into(),
        dpop_key: key.to_bytes(),
        server: server(),
        expected_did: None,
        pds: "https://pds.example".into(),
        scope: "atproto".into(),
        created_at: NOW - 10,
        return_to: "/account".into(),
    };
    if let Ok(cb) = serde_urlencoded::from_bytes::<Callback>(query)
        && let Ok(code) = check_callback(&pending, &cb, NOW)
    {
        assert!(!code.is_empty());
        assert_eq!(cb.iss.as_deref().map(|i| i.trim_end_matches('/')), Some(ISSUER));
        assert!(cb.error.is_none());
    }
    let status = 200 + (body.first().copied().unwrap_or(0) as u16 % 3) * 100;
    let answer = Answer {
        status,
        www_authenticate: None,
        body: body.to_vec(),
    };
    if let Ok(t) = tokens_from(answer, key, &pending.server, &pending.pds, &pending.client_id) {
        assert!(status == 200);
        assert!(atmos_lexicons::did::parse(&t.sub).is_ok());
        assert!(t.scope.split_whitespace().any(|s| s == "atproto"));
    }
    let _ = wants_nonce(status, std::str::from_utf8(nonce).ok(), body);
    if let Ok(n) = std::str::from_utf8(nonce) {
        let nonces = Nonces::default();
        nonces.set(ISSUER, n);
        if let Some(kept) = nonces.get(ISSUER) {
            assert!(kept.len() <= 256 && kept.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
});
