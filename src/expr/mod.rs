//! The language's expressions: the one evaluator ([`eval`], over an [`Env`] that says what
//! names mean), constant folding ([`fold`]), conditions (`when:`) evaluated per item at
//! run time, and message templates.
//!
//! A condition reaches the runtime as part of the plan, resolved and typed by [`resolve`]
//! when the plan was made ([`crate::value::Cond`]: the stage's input is `item`, every
//! field is checked against the input's type, `item.anomalous and item.score > 0.9`). The
//! stage evaluates it against each item's fields ([`Fields`]) with the same evaluator that
//! folds constants and computes `vigil test`'s expectations; nothing is parsed at run
//! time. Message and key templates use minijinja (`{{ labels.service }}`), compiled once
//! per stage.

mod cond;
mod eval;
mod fold;

pub use cond::{binary_type, resolve, resolve_text, unary_type, Name, Unresolved};
pub use eval::{binary, eval, logic, unary, Env, EvalError, Val};
pub use fold::fold;

use std::sync::Arc;

use crate::source::Span;
use crate::value::Cond;

/// An item a condition reads: one scored sample, one event.
pub trait Fields {
    /// The value of a field (`score`, `labels`, ...), `Null` if there is none.
    fn field(&self, name: &str) -> Val<'_>;
}

/// A condition as a stage evaluates it: the plan's resolved [`Cond`], evaluated against
/// each item's fields by the one evaluator.
#[derive(Clone, Debug)]
pub struct Condition(Arc<Cond>);

impl Condition {
    /// The stage's condition, as the plan resolved it.
    pub fn new(cond: Arc<Cond>) -> Condition {
        Condition(cond)
    }

    /// The condition's printed form.
    pub fn text(&self) -> &str {
        self.0.text()
    }

    /// The condition's value for `item` ([`eval`] with the item's fields as `item.…`).
    ///
    /// # Errors
    /// What [`eval`] refuses (an operand of the wrong type, a division by zero).
    pub fn eval<'a>(&self, item: &'a dyn Fields) -> Result<Val<'a>, EvalError> {
        eval(self.0.expr(), &Item(item))
    }

    /// Whether the condition holds for `item`: only `true` holds — not a value not known
    /// (a missing field, a comparison with NaN), not an error.
    pub fn holds(&self, item: &dyn Fields) -> bool {
        matches!(self.eval(item), Ok(Val::Bool(true)))
    }
}

/// A condition's names at run time: `item`, whose fields are the item's.
struct Item<'a>(&'a dyn Fields);

impl<'a> Env<'a> for Item<'a> {
    fn name(&self, _: &str, span: Span) -> Result<Val<'a>, EvalError> {
        Err(EvalError::NotConstant(span))
    }

    fn field(&self, base: &str, field: &str, span: Span) -> Result<Val<'a>, EvalError> {
        if base == "item" {
            Ok(self.0.field(field))
        } else {
            Err(EvalError::NotConstant(span))
        }
    }
}

/// A compiled minijinja template.
pub struct Template {
    env: minijinja::Environment<'static>,
    source: String,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl Template {
    /// Compiles a template.
    ///
    /// # Errors
    /// The template's syntax error, in words.
    pub fn new(source: &str) -> Result<Template, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.add_template_owned("t", source.to_owned()).map_err(|e| format!("invalid template `{source}`: {e}"))?;
        Ok(Template { env, source: source.to_owned() })
    }

    /// Renders with `ctx`, or says why it cannot.
    ///
    /// # Errors
    /// The rendering error, in words.
    pub fn try_render(&self, ctx: &serde_json::Value) -> Result<String, String> {
        self.env.get_template("t").and_then(|t| t.render(ctx)).map_err(|e| e.to_string())
    }

    /// Renders with `ctx`, refusing any value put in by `{{ … }}` that `allow` does not
    /// match (command arguments: the caller of a webhook must not choose them freely).
    ///
    /// # Errors
    /// The refused value (shortened), or the rendering error.
    pub fn render_values(&self, ctx: &serde_json::Value, allow: &regex::Regex) -> Result<String, String> {
        let mut env = self.env.clone();
        let allow = allow.clone();
        env.set_formatter(move |out, state, value| {
            let text = value.to_string();
            if !allow.is_match(&text) {
                let shown: String = text.chars().take(60).collect();
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("the value {shown:?} does not match the allowed pattern `{}`", allow.as_str()),
                ));
            }
            minijinja::escape_formatter(out, state, value)
        });
        env.get_template("t").and_then(|t| t.render(ctx)).map_err(|e| match e.detail() {
            Some(d) if e.kind() == minijinja::ErrorKind::InvalidOperation => d.to_owned(),
            _ => e.to_string(),
        })
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders with `ctx`. A rendering error gives the template's source text, so that a
    /// message is never lost.
    pub fn render(&self, ctx: &serde_json::Value) -> String {
        match self.env.get_template("t").and_then(|t| t.render(ctx)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(template = %self.source, error = %e, "template failed to render");
                self.source.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(f64, bool);
    impl Fields for Item {
        fn field(&self, name: &str) -> Val<'_> {
            match name {
                "score" => Val::Float(self.0),
                "anomalous" => Val::Bool(self.1),
                _ => Val::Null,
            }
        }
    }

    /// A condition over scores, resolved as the planner resolves it.
    fn cond(text: &str) -> Condition {
        Condition::new(Arc::new(resolve_text(text, crate::types::Ty::Scores).unwrap()))
    }

    #[test]
    fn conditions_evaluate_over_fields() {
        let c = cond("item.anomalous and item.score > 0.9");
        assert!(c.holds(&Item(0.95, true)));
        assert!(!c.holds(&Item(0.5, true)));
        assert!(!c.holds(&Item(0.95, false)));
        // `expected` is not known for this item (a detector without a band).
        assert!(!cond("item.expected > 1").holds(&Item(1.0, true)));
        assert!(cond("not (item.score < 0.5)").holds(&Item(0.7, false)));
        // A value not known is unknown, as in `vigil test`: `or` holds when the known
        // side does, `and` fails when it does not.
        assert!(cond("item.anomalous or item.expected > 1").holds(&Item(0.0, true)));
        assert!(!cond("item.anomalous and item.expected > 1").holds(&Item(0.0, true)));
        assert!(!cond("not (item.anomalous or item.expected > 1)").holds(&Item(0.0, false)));
    }

    #[test]
    fn null_is_not_known_and_logic_is_kleene() {
        let v = |t: &str| cond(t).eval(&Item(0.5, true)).map(|v| v.to_string());
        let unknown = "item.expected > 1";
        assert_eq!(v(&format!("true or {unknown}")).as_deref(), Ok("true"));
        assert_eq!(v(&format!("{unknown} or true")).as_deref(), Ok("true"));
        assert_eq!(v(&format!("false and {unknown}")).as_deref(), Ok("false"));
        assert_eq!(v(&format!("{unknown} and false")).as_deref(), Ok("false"));
        assert_eq!(v(&format!("{unknown} or false")).as_deref(), Ok("null"));
        assert_eq!(v(&format!("not ({unknown})")).as_deref(), Ok("null"));
        assert_eq!(v("item.expected + 1 > 2").as_deref(), Ok("null"));
        // `==` is total: a missing value equals only another.
        assert_eq!(v("item.expected == 1").as_deref(), Ok("false"));
        assert_eq!(v("item.labels.env != \"x\"").as_deref(), Ok("true"));
        // The right side is not evaluated when the left one decides.
        assert_eq!(v("true or 1 / 0 > 1").as_deref(), Ok("true"));
        assert!(v("false or 1 / 0 > 1").is_err(), "division by zero");
        assert!(v("item.score / 0 > 1").is_err(), "not a finite number");
        assert_eq!(v("item.score == 0.5 and 1 == 1.0").as_deref(), Ok("true"));
    }

    #[test]
    fn resolving_types_every_field_and_operator() {
        use crate::types::Ty;
        let c = resolve_text("item.anomalous and item.labels.env == \"prod\"", Ty::Scores).unwrap();
        assert_eq!(c.reads(), [("anomalous".to_owned(), Ty::Bool), ("labels".to_owned(), Ty::Map)]);
        assert_eq!(c.text(), "item.anomalous and item.labels.env == \"prod\"");
        for (text, why) in [
            ("item.anomalus", "Scores has no field `anomalus`"),
            ("item.severity == \"critical\"", "Scores has no field `severity`"),
            ("item.score", "a condition must be a Bool, not a Float"),
            ("item.series < 1", "`<` cannot combine a String and a Int"),
            ("not item.score", "`not` takes a Bool, not a Float"),
            ("item.labels.env.x == \"a\"", "String has no field `x`"),
            ("other.score > 1", "unknown name `other`"),
        ] {
            let err = resolve_text(text, Ty::Scores).unwrap_err();
            assert!(err.ends_with(why), "{text}: {err}");
        }
        // The same condition over incidents reads their fields.
        assert!(resolve_text("item.severity == \"critical\"", Ty::Incidents).is_ok());
    }

    #[test]
    fn folding_computes_constants_exactly() {
        let f = |t: &str| fold(&crate::syntax::parse_expr(t).unwrap(), &|n| (n == "k").then_some(crate::value::Value::Int(3)));
        use crate::value::Value;
        assert_eq!(f("k * 2 + 1"), Ok(Value::Int(7)));
        assert_eq!(f("1h + 30m"), Ok(Value::Duration(5_400_000)));
        assert_eq!(f("5m * k"), Ok(Value::Duration(900_000)));
        assert_eq!(f("1 + 0.5"), Ok(Value::Float(1.5)));
        assert_eq!(f("\"a\" + \"b\""), Ok(Value::Str("ab".into())));
        assert!(matches!(f("9223372036854775807 + 1"), Err(EvalError::Operand { .. })));
        assert!(matches!(f("1 / 0"), Err(EvalError::Operand { .. })));
        assert!(matches!(f("1 + true"), Err(EvalError::Operand { .. })));
        assert!(matches!(f("1m < 5"), Err(EvalError::Operand { .. })));
        assert!(matches!(f("nope + 1"), Err(EvalError::NotConstant(_))));
        assert!(matches!(f("raw.value"), Err(EvalError::NotConstant(_))));
        assert_eq!(f("true or 1 / 0 == 1"), Ok(Value::Bool(true)), "`or` stops at the left side, as at run time");
    }

    proptest::proptest! {
        /// One duration codec: what the language writes (`1h30m`, as `Value` displays it)
        /// is what the language, the CLI and the API (`time::parse_duration`) read.
        #[test]
        fn durations_round_trip_through_the_language_the_cli_and_the_api(ms in 1u64..100 * 86_400_000) {
            let written = crate::value::Value::Duration(ms).to_string();
            proptest::prop_assert_eq!(&written, &crate::syntax::ast::Duration { millis: ms }.to_string());
            let e = crate::syntax::parse_expr(&written).unwrap();
            proptest::prop_assert_eq!(fold(&e, &|_| None), Ok(crate::value::Value::Duration(ms)), "{}", written);
            proptest::prop_assert_eq!(crate::time::parse_duration(&written), Some(ms as i64), "{}", written);
            // The shorter form people read (`14d ago`) reads back too.
            proptest::prop_assert_eq!(crate::time::parse_duration(&crate::time::format_duration_ms(ms as i64)), Some(ms as i64));
        }
    }

    #[test]
    fn templates_render_and_never_lose_the_message() {
        let t = Template::new("{{ incident.status }} {{ key }}").unwrap();
        assert_eq!(t.render(&serde_json::json!({"incident": {"status": "firing"}, "key": "k"})), "firing k");
        assert!(Template::new("{{ broken").is_err());
    }
}
