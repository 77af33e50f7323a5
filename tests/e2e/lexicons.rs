//! The lexicon JSON in `lexicons/` validates records with `@atproto/lexicon` (npm), and the
//! records our Rust types produce (`atmos labeler attestation`) pass it.

use atmos_tests::relay::atmos_bin;
use atmos_tests::workspace_root;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

fn validate(lexicon: &str, records: &[Value]) -> Vec<Value> {
    let node = workspace_root().join("tests/node");
    assert!(
        node.join("node_modules/@atproto/lexicon").exists(),
        "run tests/install-peers"
    );
    let mut child = Command::new("node")
        .arg(node.join("validate-lexicons.mjs"))
        .arg(workspace_root().join("lexicons"))
        .current_dir(&node)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let input = json!({ "lexicon": lexicon, "records": records });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write records");
    let out = child.wait_with_output().expect("node finished");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON results")
}

#[test]
fn attestation_records_from_our_types_validate_and_bad_ones_do_not() {
    let ours = atmos_tests::run_json(
        Command::new(atmos_bin())
            .args(["labeler", "attestation", "--domain", "sender.test"])
            .args([
                "--selector",
                "atmos20261123r",
                "--selector",
                "atmos20261123e",
            ])
            .arg("--relay-member"),
    );
    assert_eq!(ours["$type"], "email.atmos.attestation");

    let with = |k: &str, v: Value| {
        let mut r = ours.clone();
        r[k] = v;
        r
    };
    let mut no_date = ours.clone();
    no_date.as_object_mut().expect("object").remove("createdAt");
    let records = [
        ours.clone(),
        with("relayMember", json!(false)),
        with("dkimSelectors", json!([])),
        with("dkimSelectors", json!(vec!["s"; 11])),
        with("dkimSelectors", json!(["x".repeat(64)])),
        with("domain", json!("d".repeat(254))),
        with("createdAt", json!("yesterday")),
        no_date,
    ];
    let results = validate("email.atmos.attestation", &records);
    let valid: Vec<bool> = results.iter().map(|r| r["valid"] == true).collect();
    assert_eq!(
        valid,
        [true, true, false, false, false, false, false, false],
        "{results:?}"
    );
}

#[test]
fn defs_declare_the_three_cooperative_labels() {
    let defs: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("lexicons/email/atmos/defs.json"))
            .expect("defs.json"),
    )
    .expect("JSON");
    assert_eq!(
        defs["defs"]["cooperativeLabel"]["knownValues"],
        json!(["verified-mail-operator", "relay-member", "clean-sender"])
    );
    // The lexicon loads (an invalid document would make the validator throw).
    let r = validate("email.atmos.attestation", &[]);
    assert!(r.is_empty());
}

#[test]
fn service_record_defines_each_label_value() {
    let record =
        atmos_tests::run_json(Command::new(atmos_bin()).args(["labeler", "service-record"]));
    assert_eq!(record["$type"], "app.bsky.labeler.service");
    let values = &record["policies"]["labelValues"];
    assert_eq!(
        values,
        &json!(["verified-mail-operator", "relay-member", "clean-sender"])
    );
    let defs = record["policies"]["labelValueDefinitions"]
        .as_array()
        .expect("definitions");
    for v in values.as_array().expect("values") {
        let d = defs
            .iter()
            .find(|d| &d["identifier"] == v)
            .expect("defined");
        assert_eq!(d["locales"][0]["lang"], "en");
        assert!(
            d["locales"][0]["description"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
    }
}

#[test]
fn the_attestation_command_refuses_what_the_lexicon_would() {
    let out = Command::new(atmos_bin())
        .args([
            "labeler",
            "attestation",
            "--domain",
            "sender.test",
            "--selector",
            "bad selector",
        ])
        .output()
        .expect("run atmos");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("selector \"bad selector\""), "{err}");
    assert!(out.stdout.is_empty(), "no record is printed");
}
