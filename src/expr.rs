//! Conditions (`when:`) and message templates, evaluated per item at run time.
//!
//! A condition reaches the runtime as canonical text in which the stage's input is called
//! `item` (`item.anomalous and item.score > 0.9`); it is parsed once, when the stage is
//! built, and evaluated against each item's fields. Message and key templates use
//! minijinja (`{{ labels.service }}`), compiled once per stage.

use std::collections::BTreeMap;

use crate::syntax::ast::{BinaryOp, Expr, ExprKind, UnaryOp};

/// A value a condition computes with.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Num(f64),
    Bool(bool),
    Str(std::borrow::Cow<'a, str>),
    Map(&'a BTreeMap<String, String>),
    Labels(&'a [(String, String)]),
    Null,
}

/// An item a condition reads: one scored sample, one event.
pub trait Fields {
    /// The value of a field (`score`, `labels`, ...), `Null` if there is none.
    fn field(&self, name: &str) -> Val<'_>;
}

/// A parsed condition.
#[derive(Clone, Debug)]
pub struct Condition {
    expr: Expr,
    text: String,
}

impl Condition {
    /// Parses a condition's canonical text.
    ///
    /// # Errors
    /// When the text is not an expression (a plan built by this version never has one).
    pub fn parse(text: &str) -> Result<Condition, String> {
        let expr = crate::syntax::parse_expr(text)
            .map_err(|d| format!("invalid condition `{text}`: {}", d.first().map_or("", |d| d.message.as_str())))?;
        Ok(Condition { expr, text: text.to_owned() })
    }

    /// The condition's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the condition holds for `item`. Anything but `true` (a missing field, a
    /// comparison with NaN) does not hold.
    pub fn holds(&self, item: &dyn Fields) -> bool {
        matches!(eval(&self.expr, item), Val::Bool(true))
    }
}

fn eval<'a>(e: &Expr, item: &'a dyn Fields) -> Val<'a> {
    match &e.kind {
        ExprKind::Int(i) => Val::Num(*i as f64),
        ExprKind::Float(f) => Val::Num(*f),
        ExprKind::Bool(b) => Val::Bool(*b),
        ExprKind::Str(s) => Val::Str(std::borrow::Cow::Owned(s.value.clone())),
        ExprKind::Duration(d) => Val::Num(d.millis as f64),
        ExprKind::Field(inner, f) => match &inner.kind {
            ExprKind::Name(n) if n == "item" => item.field(&f.node),
            _ => match eval(inner, item) {
                Val::Map(m) => m.get(&f.node).map_or(Val::Null, |v| Val::Str(std::borrow::Cow::Borrowed(v.as_str()))),
                Val::Labels(l) => {
                    l.iter().find(|(k, _)| *k == f.node).map_or(Val::Null, |(_, v)| Val::Str(std::borrow::Cow::Borrowed(v.as_str())))
                }
                _ => Val::Null,
            },
        },
        ExprKind::Unary(op, inner) => match (op, eval(inner, item)) {
            (UnaryOp::Neg, Val::Num(n)) => Val::Num(-n),
            (UnaryOp::Not, Val::Bool(b)) => Val::Bool(!b),
            _ => Val::Null,
        },
        ExprKind::Binary(op @ (BinaryOp::And | BinaryOp::Or), l, r) => {
            let known = |v: Val<'_>| if let Val::Bool(b) = v { Some(b) } else { None };
            match crate::value::logic(*op == BinaryOp::And, known(eval(l, item)), || known(eval(r, item))) {
                Some(b) => Val::Bool(b),
                None => Val::Null,
            }
        }
        ExprKind::Binary(op, l, r) => {
            let (l, r) = (eval(l, item), eval(r, item));
            match (op, l, r) {
                (BinaryOp::Eq, a, b) => Val::Bool(a == b),
                (BinaryOp::Ne, a, b) => Val::Bool(a != b),
                (op, Val::Num(a), Val::Num(b)) => match op {
                    BinaryOp::Lt => Val::Bool(a < b),
                    BinaryOp::Le => Val::Bool(a <= b),
                    BinaryOp::Gt => Val::Bool(a > b),
                    BinaryOp::Ge => Val::Bool(a >= b),
                    BinaryOp::Add => Val::Num(a + b),
                    BinaryOp::Sub => Val::Num(a - b),
                    BinaryOp::Mul => Val::Num(a * b),
                    BinaryOp::Div => Val::Num(a / b),
                    BinaryOp::Rem => Val::Num(a % b),
                    _ => Val::Null,
                },
                (BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge, Val::Str(a), Val::Str(b)) => Val::Bool(match op {
                    BinaryOp::Lt => a < b,
                    BinaryOp::Le => a <= b,
                    BinaryOp::Gt => a > b,
                    _ => a >= b,
                }),
                _ => Val::Null,
            }
        }
        _ => Val::Null,
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
                "score" => Val::Num(self.0),
                "anomalous" => Val::Bool(self.1),
                _ => Val::Null,
            }
        }
    }

    #[test]
    fn conditions_evaluate_over_fields() {
        let c = Condition::parse("item.anomalous and item.score > 0.9").unwrap();
        assert!(c.holds(&Item(0.95, true)));
        assert!(!c.holds(&Item(0.5, true)));
        assert!(!c.holds(&Item(0.95, false)));
        assert!(!Condition::parse("item.nope > 1").unwrap().holds(&Item(1.0, true)));
        assert!(Condition::parse("not (item.score < 0.5)").unwrap().holds(&Item(0.7, false)));
        // A field that is not there is unknown, as in `vigil test`: `or` holds when the
        // known side does, `and` fails when it does not.
        assert!(Condition::parse("item.anomalous or item.nope > 1").unwrap().holds(&Item(0.0, true)));
        assert!(!Condition::parse("item.anomalous and item.nope > 1").unwrap().holds(&Item(0.0, true)));
        assert!(!Condition::parse("not (item.anomalous or item.nope > 1)").unwrap().holds(&Item(0.0, false)));
    }

    #[test]
    fn templates_render_and_never_lose_the_message() {
        let t = Template::new("{{ incident.status }} {{ key }}").unwrap();
        assert_eq!(t.render(&serde_json::json!({"incident": {"status": "firing"}, "key": "k"})), "firing k");
        assert!(Template::new("{{ broken").is_err());
    }
}
