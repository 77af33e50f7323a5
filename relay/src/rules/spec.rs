//! Rule files (TOML): windowed counters, rules (`on` event types, a CEL `when`, effects) and the
//! test fixtures that travel with them. Loading compiles every expression, so a bad file stops
//! start-up with the rule's name instead of failing later on some event.

use cel::Program;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The rules shipped with the relay, used when `[rules] files` is empty.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.toml");

/// A rule file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read rule file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rule file {file}: {message}")]
    Syntax { file: String, message: String },
    #[error("rule file {file}, {item}: {message}")]
    Invalid {
        file: String,
        item: String,
        message: String,
    },
}

/// What a counter is kept per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// The event's member DID.
    Did,
    /// The domain of the event's `data.recipient`.
    RecipientDomain,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    counters: BTreeMap<String, CounterSpec>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
    #[serde(default)]
    tests: Vec<Fixture>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterSpec {
    on: Vec<String>,
    #[serde(rename = "where")]
    condition: Option<String>,
    #[serde(default = "default_entity")]
    by: Entity,
    windows: Vec<String>,
}

fn default_entity() -> Entity {
    Entity::Did
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    on: Vec<String>,
    when: String,
    #[serde(default)]
    shadow: bool,
    effects: Vec<EffectSpec>,
    threshold: Option<Threshold>,
}

/// What a rule's condition amounts to, in words a member's page can show next to their own
/// rate (`threshold = { metric = "bounce_rate", above = 0.05, window = "24h", min_recipients =
/// 50 }`). Descriptive only: the CEL `when` is what is enforced.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct Threshold {
    /// `bounce_rate` or `complaint_rate`.
    pub metric: String,
    /// The rule fires above this fraction.
    pub above: f64,
    /// Over this window (`24h`, `30d`).
    pub window: String,
    /// …once this many recipients were sent to in the window.
    #[serde(default)]
    pub min_recipients: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectSpec {
    suspend: Option<String>,
    add_label: Option<String>,
    remove_label: Option<String>,
    expires: Option<String>,
    emit: Option<String>,
    #[serde(default)]
    neg: bool,
}

/// A test fixture: a member, events in, verdicts out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub name: String,
    #[serde(default)]
    pub member: FixtureMember,
    pub events: Vec<FixtureEvent>,
    /// Rules expected to fire, in order of first firing (each named once).
    pub expect: Vec<String>,
    /// The member's state afterwards, when given.
    pub expect_state: Option<String>,
    /// The member's internal labels afterwards, when given.
    pub expect_labels: Option<Vec<String>>,
}

/// The fixture's member.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureMember {
    /// Days since approval.
    #[serde(default)]
    pub age_days: u32,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Events of one kind fed to a fixture (`repeat` times, one minute apart).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: serde_json::Value,
    #[serde(default = "one")]
    pub repeat: u32,
}

fn one() -> u32 {
    1
}

/// A compiled counter: `counters.<name>_<window>` in rule expressions.
pub struct Counter {
    pub name: String,
    pub on: Vec<String>,
    pub condition: Option<Program>,
    pub by: Entity,
    /// (suffix, minutes).
    pub windows: Vec<(String, i64)>,
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Suspend(String),
    AddLabel {
        label: String,
        expires: Option<Duration>,
    },
    RemoveLabel(String),
    /// A public label through the labeler (negated when `neg`).
    Emit {
        val: String,
        neg: bool,
    },
}

impl Effect {
    /// Adds `label` (expiring after `expires`), if it is a valid label name.
    pub fn add_label(label: &str, expires: Option<Duration>) -> Option<Self> {
        crate::members::valid_label(label).then(|| Self::AddLabel {
            label: label.to_string(),
            expires,
        })
    }

    /// Removes `label`, if it is a valid label name.
    pub fn remove_label(label: &str) -> Option<Self> {
        crate::members::valid_label(label).then(|| Self::RemoveLabel(label.to_string()))
    }

    /// Publishes (or with `neg`, negates) the public label `val`, if it is a valid value
    /// (`shadow:` may prefix it).
    pub fn emit(val: &str, neg: bool) -> Option<Self> {
        atmos_labeler::label::valid_value(val.strip_prefix("shadow:").unwrap_or(val)).then(|| {
            Self::Emit {
                val: val.to_string(),
                neg,
            }
        })
    }

    /// The effect as recorded in verdicts.
    pub fn describe(&self) -> String {
        match self {
            Self::Suspend(reason) => format!("suspend: {reason}"),
            Self::AddLabel {
                label,
                expires: Some(d),
            } => format!("add_label: {label} for {}", humantime::format_duration(*d)),
            Self::AddLabel { label, .. } => format!("add_label: {label}"),
            Self::RemoveLabel(label) => format!("remove_label: {label}"),
            Self::Emit { val, neg: false } => format!("emit: {val}"),
            Self::Emit { val, neg: true } => format!("emit: -{val}"),
        }
    }

    /// A `shadow:` label is recorded, never enforced.
    pub fn is_shadow(&self) -> bool {
        match self {
            Self::AddLabel { label, .. } | Self::RemoveLabel(label) => label.starts_with("shadow:"),
            Self::Emit { val, .. } => val.starts_with("shadow:"),
            Self::Suspend(_) => false,
        }
    }
}

/// A compiled rule.
pub struct Rule {
    pub name: String,
    pub on: Vec<String>,
    pub when: Program,
    /// The `counters.<key>`s `when` reads (`None`: it may read any); only these are summed.
    pub reads: Option<std::collections::BTreeSet<String>>,
    /// Every effect of a shadow rule is recorded, not enforced.
    pub shadow: bool,
    pub effects: Vec<Effect>,
    /// What the condition amounts to, for people (optional).
    pub threshold: Option<Threshold>,
}

/// Every counter, rule and fixture of the loaded files.
pub struct Rules {
    pub counters: Vec<Counter>,
    pub rules: Vec<Rule>,
    pub fixtures: Vec<(String, Fixture)>,
}

impl Rules {
    /// The built-in rules.
    pub fn builtin() -> Result<Self, RulesError> {
        Self::parse(&[("default.toml".into(), DEFAULT_RULES.into())])
    }

    /// Loads `files`, or the built-in rules when there are none.
    pub fn load(files: &[PathBuf]) -> Result<Self, RulesError> {
        if files.is_empty() {
            return Self::builtin();
        }
        let mut texts = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
                path: path.clone(),
                source,
            })?;
            texts.push((path.display().to_string(), text));
        }
        Self::parse(&texts)
    }

    /// Parses and compiles (file name, text) pairs; names must be unique across files.
    pub fn parse(files: &[(String, String)]) -> Result<Self, RulesError> {
        let mut out = Rules {
            counters: Vec::new(),
            rules: Vec::new(),
            fixtures: Vec::new(),
        };
        for (file, text) in files {
            let spec: FileSpec = toml::from_str(text).map_err(|e| RulesError::Syntax {
                file: file.clone(),
                message: e.message().to_string(),
            })?;
            let bad = |item: String, message: String| RulesError::Invalid {
                file: file.clone(),
                item,
                message,
            };
            for (name, c) in spec.counters {
                let item = format!("counter {name}");
                if !is_identifier(&name) || out.counters.iter().any(|k| k.name == name) {
                    return Err(bad(item, "needs a unique name of [a-z0-9_]".into()));
                }
                if c.on.is_empty() || c.windows.is_empty() {
                    return Err(bad(item, "needs `on` event types and `windows`".into()));
                }
                let mut windows = Vec::new();
                for w in &c.windows {
                    let minutes = humantime::parse_duration(w)
                        .ok()
                        .map(|d| (d.as_secs() / 60) as i64)
                        .filter(|m| *m >= 1)
                        .ok_or_else(|| {
                            bad(
                                item.clone(),
                                format!("window {w:?} is not a duration of a minute or more"),
                            )
                        })?;
                    windows.push((w.clone(), minutes));
                }
                let condition = c
                    .condition
                    .as_deref()
                    .map(|e| compile(e).map_err(|m| bad(item.clone(), m)))
                    .transpose()?;
                out.counters.push(Counter {
                    name,
                    on: c.on,
                    condition,
                    by: c.by,
                    windows,
                });
            }
            for r in spec.rules {
                let item = format!("rule {}", r.name);
                if !is_identifier(&r.name) || out.rules.iter().any(|k| k.name == r.name) {
                    return Err(bad(item, "needs a unique name of [a-z0-9_]".into()));
                }
                if r.on.is_empty() || r.effects.is_empty() {
                    return Err(bad(item, "needs `on` event types and `effects`".into()));
                }
                let when = compile(&r.when).map_err(|m| bad(item.clone(), m))?;
                if let Some(t) = &r.threshold
                    && (!matches!(t.metric.as_str(), "bounce_rate" | "complaint_rate")
                        || !(0.0..=1.0).contains(&t.above))
                {
                    return Err(bad(
                        item,
                        "threshold needs metric bounce_rate or complaint_rate and `above` in 0..1"
                            .into(),
                    ));
                }
                let effects = r
                    .effects
                    .into_iter()
                    .map(effect)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| bad(item.clone(), m))?;
                out.rules.push(Rule {
                    name: r.name,
                    on: r.on,
                    reads: super::eval::counters_read(&when),
                    when,
                    shadow: r.shadow,
                    effects,
                    threshold: r.threshold,
                });
            }
            out.fixtures
                .extend(spec.tests.into_iter().map(|t| (file.clone(), t)));
        }
        for (file, t) in &out.fixtures {
            if let Some(unknown) = t
                .expect
                .iter()
                .find(|n| !out.rules.iter().any(|r| &r.name == *n))
            {
                return Err(RulesError::Invalid {
                    file: file.clone(),
                    item: format!("test {:?}", t.name),
                    message: format!("expects unknown rule {unknown}"),
                });
            }
        }
        Ok(out)
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn compile(expression: &str) -> Result<Program, String> {
    Program::compile(expression).map_err(|e| format!("invalid CEL {expression:?}: {e}"))
}

fn effect(e: EffectSpec) -> Result<Effect, String> {
    let expires = e
        .expires
        .as_deref()
        .map(|d| humantime::parse_duration(d).map_err(|err| format!("expires {d:?}: {err}")))
        .transpose()?;
    let bad_label = |l: &str| format!("{l:?} is not a valid label");
    let effect = match (e.suspend, e.add_label, e.remove_label, e.emit) {
        (Some(reason), None, None, None) => Effect::Suspend(reason),
        (None, Some(label), None, None) => {
            Effect::add_label(&label, expires).ok_or_else(|| bad_label(&label))?
        }
        (None, None, Some(label), None) => {
            Effect::remove_label(&label).ok_or_else(|| bad_label(&label))?
        }
        (None, None, None, Some(val)) => Effect::emit(&val, e.neg)
            .ok_or_else(|| format!("{val:?} is not a valid label value"))?,
        _ => {
            return Err(
                "each effect is exactly one of suspend, add_label, remove_label, emit".into(),
            );
        }
    };
    if expires.is_some() && !matches!(effect, Effect::AddLabel { .. }) {
        return Err("`expires` goes only with add_label".into());
    }
    Ok(effect)
}

/// Reads rule files from paths (for the CLI).
pub fn read(paths: &[&Path]) -> Result<Rules, RulesError> {
    Rules::load(&paths.iter().map(|p| p.to_path_buf()).collect::<Vec<_>>())
}
