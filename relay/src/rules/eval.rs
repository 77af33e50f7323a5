//! Evaluating CEL expressions over an event: the variables a rule sees are `event` (type, did,
//! data...), `member` (state, tier, age_days, labels) and `counters` (`<name>_<window>` totals for
//! the event's entity). Whole numbers are CEL `int`s throughout, so `counters.x * 100` and
//! `event.data.code >= 500` both work.

use cel::{Context, Program, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// The member as rules see it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub state: String,
    pub tier: String,
    /// Whole days since approval (0 when not approved).
    pub age_days: i64,
    pub labels: Vec<String>,
}

/// Everything one evaluation sees.
pub struct Scope<'a> {
    pub event: &'a serde_json::Value,
    pub member: Option<&'a MemberView>,
    pub counters: &'a BTreeMap<String, i64>,
}

/// Serializes JSON with every whole number as a signed integer (CEL has no mixed arithmetic
/// between `int` and `uint`, and serde_json would hand non-negative numbers over as `uint`).
struct IntJson<'a>(&'a serde_json::Value);

impl Serialize for IntJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => s.serialize_i64(i),
                None => s.serialize_f64(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&IntJson(item))?;
                }
                seq.end()
            }
            serde_json::Value::Object(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, &IntJson(v))?;
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
}

/// Why an expression gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(String);

thread_local! {
    /// A root CEL context per thread: registering the built-in functions costs ~35 µs, far more
    /// than evaluating an expression, so each event gets a cheap child scope of this one.
    static ROOT: Context<'static, 'static> = Context::default();
}

/// Runs `f` with this thread's root CEL context.
pub fn with_root<R>(f: impl FnOnce(&Context<'static, 'static>) -> R) -> R {
    ROOT.with(f)
}

/// A scope turned into CEL variables once, then used for every expression judged on one event.
pub struct Prepared<'a>(Context<'a, 'static>);

impl<'a> Prepared<'a> {
    /// Converts `scope` into CEL variables in a child of `root`.
    pub fn new(root: &'a Context<'static, 'static>, scope: &Scope<'_>) -> Result<Self, EvalError> {
        let err = |e: &dyn std::fmt::Display| EvalError(e.to_string());
        let mut ctx = root.new_inner_scope();
        ctx.add_variable("event", IntJson(scope.event))
            .map_err(|e| err(&e))?;
        let member = match scope.member {
            Some(m) => serde_json::to_value(m).map_err(|e| err(&e))?,
            None => serde_json::Value::Null,
        };
        ctx.add_variable("member", IntJson(&member))
            .map_err(|e| err(&e))?;
        ctx.add_variable("counters", scope.counters.clone())
            .map_err(|e| err(&e))?;
        Ok(Self(ctx))
    }

    /// Evaluates `program` to a boolean; anything but `true` or `false` is an error.
    pub fn test(&self, program: &Program) -> Result<bool, EvalError> {
        match program.execute(&self.0) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError(format!("not a boolean: {other:?}"))),
            Err(e) => Err(EvalError(e.to_string())),
        }
    }
}

/// Evaluates one `program` over `scope`.
pub fn test(program: &Program, scope: &Scope<'_>) -> Result<bool, EvalError> {
    with_root(|root| Prepared::new(root, scope)?.test(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_ints_and_missing_keys_are_errors() {
        let event = serde_json::json!({"type": "delivery_result", "data": {"code": 550, "status": "bounced"}});
        let member = MemberView {
            state: "active".into(),
            tier: "warming".into(),
            age_days: 3,
            labels: vec!["burst_warming".into()],
        };
        let counters = BTreeMap::from([
            ("bounced_24h".to_string(), 3),
            ("recipients_24h".to_string(), 50),
        ]);
        let scope = Scope {
            event: &event,
            member: Some(&member),
            counters: &counters,
        };
        let t = |e: &str| test(&Program::compile(e).expect("compiles"), &scope);
        assert!(t("counters.bounced_24h * 100 > counters.recipients_24h * 5").unwrap());
        assert!(t("event.data.code >= 500 && event.data.status == 'bounced'").unwrap());
        assert!(t("'burst_warming' in member.labels && member.tier == 'warming'").unwrap());
        assert!(!t("member.age_days >= 30").unwrap());
        assert!(!t("has(event.data.nope)").unwrap());
        assert!(t("event.data.nope == 1").is_err());
        assert!(t("counters.bounced_24h").is_err(), "not a boolean");
    }
}
