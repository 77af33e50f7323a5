//! The labeler's `app.bsky.labeler.service` record: its policies, with a definition of each
//! label value it publishes, so atproto apps can show and let users subscribe to them.

use atmos_lexicons::labels::{CLEAN_SENDER, RELAY_MEMBER, VERIFIED_MAIL_OPERATOR};

fn definition(value: &str, name: &str, description: &str) -> serde_json::Value {
    serde_json::json!({
        "identifier": value,
        "severity": "inform",
        "blurs": "none",
        "defaultSetting": "ignore",
        "adultOnly": false,
        "locales": [{ "lang": "en", "name": name, "description": description }],
    })
}

/// The record, dated `created_at` (RFC 3339).
pub fn record(created_at: &str) -> serde_json::Value {
    serde_json::json!({
        "$type": "app.bsky.labeler.service",
        "policies": {
            "labelValues": [VERIFIED_MAIL_OPERATOR, RELAY_MEMBER, CLEAN_SENDER],
            "labelValueDefinitions": [
                definition(VERIFIED_MAIL_OPERATOR, "Verified mail operator",
                    "This account operates a sending domain whose DKIM records are live in DNS and match the Atmosphere Mail relay's keys."),
                definition(RELAY_MEMBER, "Relay member",
                    "A verified mail operator and approved member of the Atmosphere Mail cooperative relay."),
                definition(CLEAN_SENDER, "Clean sender",
                    "No bounce or complaint spike from this sender in the last 7 days."),
            ],
        },
        "createdAt": created_at,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn defines_every_value_it_lists() {
        let r = super::record("2026-11-23T00:00:00.000Z");
        let values = r["policies"]["labelValues"].as_array().expect("values");
        let defs = r["policies"]["labelValueDefinitions"]
            .as_array()
            .expect("defs");
        assert_eq!(values.len(), 3);
        for v in values {
            assert!(defs.iter().any(|d| &d["identifier"] == v), "{v} undefined");
        }
    }
}
