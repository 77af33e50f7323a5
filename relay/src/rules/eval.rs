//! Evaluating CEL expressions over an event: the variables a rule sees are `event` (type, did,
//! data...), `member` (state, tier, age_days, labels) and `counters` (`<name>_<window>` totals for
//! the event's entity). Whole numbers are CEL `int`s throughout, so `counters.x * 100` and
//! `event.data.code >= 500` both work.

use cel::{Context, IdedExpr, Program, Value};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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
        let mut ctx = root.new_inner_scope();
        ctx.add_variable("event", IntJson(scope.event))
            .map_err(|e| err(&e))?;
        add_member(&mut ctx, scope.member, scope.counters)?;
        Ok(Self(ctx))
    }

    /// The event alone (`member` null, no counters), as counter conditions see it.
    pub fn event(
        root: &'a Context<'static, 'static>,
        event: &serde_json::Value,
    ) -> Result<Self, EvalError> {
        Self::new(
            root,
            &Scope {
                event,
                member: None,
                counters: &BTreeMap::new(),
            },
        )
    }

    /// This event's scope with the member and its counters on top, as rules see it; the event
    /// is converted once for both.
    pub fn with_member(
        &self,
        member: &MemberView,
        counters: &BTreeMap<String, i64>,
    ) -> Result<Prepared<'_>, EvalError> {
        let mut ctx = self.0.new_inner_scope();
        add_member(&mut ctx, Some(member), counters)?;
        Ok(Prepared(ctx))
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

fn err(e: &dyn std::fmt::Display) -> EvalError {
    EvalError(e.to_string())
}

fn add_member(
    ctx: &mut Context<'_, 'static>,
    member: Option<&MemberView>,
    counters: &BTreeMap<String, i64>,
) -> Result<(), EvalError> {
    let member = match member {
        Some(m) => serde_json::to_value(m).map_err(|e| err(&e))?,
        None => serde_json::Value::Null,
    };
    ctx.add_variable("member", IntJson(&member))
        .map_err(|e| err(&e))?;
    ctx.add_variable("counters", counters.clone())
        .map_err(|e| err(&e))?;
    Ok(())
}

/// The `counters.<name>` keys `program` reads, or `None` when it may read any (it uses
/// `counters` other than as `counters.<name>`), so the engine sums only what a rule can see.
pub fn counters_read(program: &Program) -> Option<BTreeSet<String>> {
    use cel::common::ast::{EntryExpr, Expr};
    // False when `counters` is used whole (`size(counters)`, `counters[k]`, a shadowing name).
    fn walk(e: &IdedExpr, out: &mut BTreeSet<String>) -> bool {
        match &e.expr {
            Expr::Select(s) => match &s.operand.expr {
                Expr::Ident(n) if n == "counters" => {
                    out.insert(s.field.clone());
                    true
                }
                _ => walk(&s.operand, out),
            },
            Expr::Ident(n) => n != "counters",
            Expr::Call(c) => {
                c.target.iter().all(|t| walk(t, out)) && c.args.iter().all(|a| walk(a, out))
            }
            Expr::List(l) => l.elements.iter().all(|a| walk(a, out)),
            Expr::Map(m) => m.entries.iter().all(|en| entry(&en.expr, out)),
            Expr::Struct(st) => st.entries.iter().all(|en| entry(&en.expr, out)),
            Expr::Comprehension(c) => {
                c.iter_var != "counters"
                    && c.accu_var != "counters"
                    && c.iter_var2.as_deref() != Some("counters")
                    && [
                        &c.iter_range,
                        &c.accu_init,
                        &c.loop_cond,
                        &c.loop_step,
                        &c.result,
                    ]
                    .into_iter()
                    .all(|a| walk(a, out))
            }
            Expr::Literal(_) | Expr::Unspecified => true,
        }
    }
    fn entry(e: &EntryExpr, out: &mut BTreeSet<String>) -> bool {
        match e {
            EntryExpr::StructField(f) => walk(&f.value, out),
            EntryExpr::MapEntry(m) => walk(&m.key, out) && walk(&m.value, out),
        }
    }
    let mut out = BTreeSet::new();
    walk(program.expression(), &mut out).then_some(out)
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

    #[test]
    fn the_counters_a_condition_reads_are_found_or_it_reads_all() {
        let reads = |e: &str| counters_read(&Program::compile(e).expect("compiles"));
        let set = |keys: &[&str]| Some(keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>());
        assert_eq!(
            reads(
                "member.state == 'active' && counters.a_24h * 100 > counters.b_24h && has(counters.c_1h)"
            ),
            set(&["a_24h", "b_24h", "c_1h"])
        );
        assert_eq!(
            reads("event.data.x in [counters.a_1h, {'k': counters.b_1h}]"),
            set(&["a_1h", "b_1h"])
        );
        assert_eq!(reads("true"), set(&[]));
        assert_eq!(reads("size(counters) > 0"), None);
        assert_eq!(reads("counters['a_24h'] > 0"), None);
        assert_eq!(reads("[1].exists(counters, counters > 0)"), None);
    }

    #[test]
    fn a_member_scope_on_an_event_scope_sees_both() {
        let event = serde_json::json!({"type": "delivery_result", "data": {"code": 250}});
        let member = MemberView {
            state: "active".into(),
            tier: "warming".into(),
            age_days: 3,
            labels: vec![],
        };
        let counters = BTreeMap::from([("sent_24h".to_string(), 7)]);
        with_root(|root| {
            let base = Prepared::event(root, &event).expect("event");
            let p = |e: &str| Program::compile(e).expect("compiles");
            assert!(
                base.test(&p("event.data.code == 250 && member == null"))
                    .unwrap()
            );
            assert!(
                base.test(&p("counters.sent_24h == 7")).is_err(),
                "no counters yet"
            );
            let full = base.with_member(&member, &counters).expect("member");
            assert!(
                full.test(&p(
                    "event.data.code == 250 && member.tier == 'warming' && counters.sent_24h == 7"
                ))
                .unwrap()
            );
        });
    }
}
