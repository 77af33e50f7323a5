//! Service-auth JWTs (createReport's `Authorization`): any token is refused with a named error
//! or verifies, and one verifies only when signed by the issuer's `#atproto` key for this
//! audience and method, unexpired, with a fresh `jti`.
//! First byte even: the token is the fuzzer's text. Odd: the rest is the claims JSON, signed with
//! the issuer's real key, so the checks after the signature are reached too.
#![no_main]
use atmos_labeler::service_auth::{DidDocuments, DidResolver, verify};
use atmos_lexicons::did::Did;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k256::ecdsa::signature::Signer;
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

const ISSUER: &str = "did:plc:issuer";
const AUD: &str = "did:web:labeler.example";
const LXM: &str = "com.atproto.moderation.createReport";
const NOW: i64 = 1_796_000_000;

fn key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[5u8; 32]).expect("key")
}

struct Documents(serde_json::Value);

impl DidDocuments for Documents {
    fn document<'a>(
        &'a self,
        did: &'a Did,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send + 'a>> {
        Box::pin(async move {
            if did.as_str() == ISSUER {
                Ok(self.0.clone())
            } else {
                Err("unknown DID".into())
            }
        })
    }
}

fuzz_target!(|data: &[u8]| {
    static R: OnceLock<DidResolver> = OnceLock::new();
    let resolver = R.get_or_init(|| {
        let doc = atmos_labeler::identity::did_document(
            ISSUER,
            key().verifying_key(),
            "https://pds.example",
        );
        DidResolver::new(Arc::new(Documents(doc)), 60)
    });
    let Some((&mode, rest)) = data.split_first() else { return };
    let token = if mode & 1 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        }
    } else {
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256K","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(rest);
        let signed = format!("{head}.{body}");
        let sig: k256::ecdsa::Signature = key().sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    };
    let mut fresh = true;
    let result = atmos_fuzz::runtime().block_on(verify(
        &token,
        AUD,
        LXM,
        resolver,
        NOW,
        |_| Ok(()),
        |_, _, _| Ok(std::mem::replace(&mut fresh, false)),
    ));
    if let Ok(claims) = result {
        assert_eq!(claims.aud, AUD);
        assert_eq!(claims.lxm.as_deref(), Some(LXM));
        assert!(claims.exp > NOW && claims.exp <= NOW + 3600);
        assert!(claims.iss.starts_with(ISSUER), "accepted a token from another issuer");
        assert!(mode & 1 == 1, "accepted a token the fuzzer forged");
    }
});
