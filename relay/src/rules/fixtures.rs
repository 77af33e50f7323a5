//! Running a rule file's test fixtures: each gets a fresh store with one member, its events
//! (one minute apart, ending now), and the engine; the rules that fired, the member's state and
//! labels must be what the fixture expects. `cargo test` runs the built-in rules' fixtures, and
//! `atmos rules test` runs an operator's.

use super::Engine;
use super::spec::{Fixture, Rules};
use crate::store::events::{self, NewEvent};
use crate::store::members::{self as member_rows, Member};
use crate::store::{Store, labels, now_ms};
use serde::Serialize;
use std::sync::Arc;

/// The DID fixtures' events belong to.
pub const FIXTURE_DID: &str = "did:plc:fixturefixturefixturefix";
const DAY_MS: i64 = 86_400_000;

/// What one fixture did.
#[derive(Debug, Clone, Serialize)]
pub struct FixtureResult {
    pub file: String,
    pub name: String,
    pub passed: bool,
    /// Rules that fired, in order of first firing.
    pub fired: Vec<String>,
    pub state: String,
    pub labels: Vec<String>,
    /// What differed from the expectation.
    pub problems: Vec<String>,
}

/// Runs every fixture of `rules`.
pub fn run_all(rules: Arc<Rules>) -> Vec<FixtureResult> {
    rules
        .fixtures
        .iter()
        .map(|(file, f)| run(rules.clone(), file, f))
        .collect()
}

/// Runs one fixture.
pub fn run(rules: Arc<Rules>, file: &str, f: &Fixture) -> FixtureResult {
    let mut result = FixtureResult {
        file: file.to_string(),
        name: f.name.clone(),
        passed: false,
        fired: Vec::new(),
        state: String::new(),
        labels: Vec::new(),
        problems: Vec::new(),
    };
    if let Err(e) = play(rules, f, &mut result) {
        result.problems.push(format!("could not run: {e}"));
    }
    result.passed = result.problems.is_empty();
    result
}

fn play(rules: Arc<Rules>, f: &Fixture, out: &mut FixtureResult) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Arc::new(Store::open(dir.path()).map_err(|e| e.to_string())?);
    let now = now_ms();
    let total: i64 = f.events.iter().map(|e| i64::from(e.repeat)).sum();
    let start = now - total * 60_000;
    store
        .write(|tx| {
            member_rows::insert(
                tx,
                &Member::active(FIXTURE_DID, start - i64::from(f.member.age_days) * DAY_MS),
            )?;
            for label in &f.member.labels {
                labels::add(tx, FIXTURE_DID, label, None, start)?;
            }
            // Judge every fixture event (a fresh engine would only count existing history).
            crate::store::rules::set_cursor(
                tx,
                crate::store::rules::Cursor {
                    event: 0,
                    judge_from: 0,
                },
            )?;
            let mut at = start;
            for e in &f.events {
                for _ in 0..e.repeat {
                    at += 60_000;
                    events::append(
                        tx,
                        at,
                        &NewEvent {
                            kind: &e.kind,
                            did: Some(FIXTURE_DID),
                            actor: Some("fixture"),
                            data: e.data.clone(),
                            ..Default::default()
                        },
                    )?;
                }
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    let engine = Engine::new(store.clone(), rules, None);
    while engine.step().map_err(|e| e.to_string())? > 0 {}
    let (verdicts, member, active) = store
        .with(|c| {
            Ok((
                crate::store::rules::list(c, None, Some(FIXTURE_DID), 10_000)?,
                member_rows::get(c, FIXTURE_DID)?,
                labels::active(c, FIXTURE_DID, now_ms())?,
            ))
        })
        .map_err(|e| e.to_string())?;
    for v in verdicts.iter().rev() {
        if !out.fired.contains(&v.rule) {
            out.fired.push(v.rule.clone());
        }
    }
    out.state = member
        .map(|m| m.state.as_str().to_string())
        .unwrap_or_default();
    out.labels = active;
    if out.fired != f.expect {
        out.problems
            .push(format!("fired {:?}, expected {:?}", out.fired, f.expect));
    }
    if let Some(state) = &f.expect_state
        && &out.state != state
    {
        out.problems
            .push(format!("state {}, expected {state}", out.state));
    }
    if let Some(want) = &f.expect_labels {
        let mut want = want.clone();
        want.sort();
        if out.labels != want {
            out.problems
                .push(format!("labels {:?}, expected {want:?}", out.labels));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rule_fixtures_pass() {
        let rules = Arc::new(Rules::builtin().expect("built-in rules load"));
        assert!(!rules.fixtures.is_empty());
        let results = run_all(rules);
        let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }

    #[test]
    fn a_wrong_expectation_fails() {
        let text = r#"
[counters.sent]
on = ["delivery_result"]
windows = ["1h"]

[[rules]]
name = "noisy"
on = ["delivery_result"]
when = "counters.sent_1h >= 2"
effects = [{ add_label = "shadow:noisy" }]

[[tests]]
name = "expects too little"
events = [{ type = "delivery_result", repeat = 3 }]
expect = []
"#;
        let rules = Arc::new(Rules::parse(&[("t.toml".into(), text.into())]).expect("parses"));
        let r = &run_all(rules)[0];
        assert!(!r.passed);
        assert_eq!(r.fired, vec!["noisy".to_string()]);
        assert!(r.problems[0].contains("expected []"), "{:?}", r.problems);
    }

    #[test]
    fn bad_files_are_refused_with_the_item_named() {
        let bad = |text: &str| {
            Rules::parse(&[("t.toml".into(), text.into())])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(bad("[[rules]]\nname = \"x\"\non = [\"a\"]\nwhen = \"1 +\"\neffects = [{ suspend = \"r\" }]\n").contains("rule x: invalid CEL"));
        assert!(bad("[[rules]]\nname = \"x\"\non = [\"a\"]\nwhen = \"true\"\neffects = [{ suspend = \"r\", add_label = \"y\" }]\n").contains("exactly one"));
        assert!(bad("[[rules]]\nname = \"x\"\non = [\"a\"]\nwhen = \"true\"\neffects = [{ add_label = \"bad label\" }]\n").contains("not a valid label"));
        assert!(
            bad("[counters.c]\non = [\"a\"]\nwindows = [\"soon\"]\n").contains("counter c: window")
        );
        assert!(
            bad("[[tests]]\nname = \"t\"\nevents = []\nexpect = [\"ghost\"]\n")
                .contains("unknown rule ghost")
        );
        assert!(bad("[[rule]]\n").contains("t.toml"), "unknown table named");
    }
}
