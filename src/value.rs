//! Constant values of stage parameters (what `crate::expr::fold` computes from
//! expressions), their display and validation.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::syntax::ast::Expr;
use crate::types::{self, ParamSpec, Scalar, Ty};

/// A resolved parameter value. Serialises to canonical JSON for fingerprints and the
/// runtime's configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Value {
    /// An optional parameter left out.
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// Milliseconds.
    Duration(u64),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// A reference to a secret, resolved at run time and never printed.
    Secret(SecretRef),
    /// A per-item condition, typed and resolved ([`Cond`]).
    Condition(Arc<Cond>),
}

/// A per-item condition (`when:`) as the plan carries it: typed and resolved.
///
/// `crate::expr::resolve` builds it when the plan is made, from the condition the user
/// wrote and the types of the stage's inputs:
/// - every name is resolved: the stage's input is `item`; a template's Condition
///   parameter is inlined as a subtree; a template's constant parameter becomes its value;
/// - every `item.field` is checked against the input type's field list ([`Ty::fields`]),
///   and the field's type is recorded ([`Cond::reads`]);
/// - every operator is typed (`crate::expr::binary_type`), and the whole is a `Bool`.
///
/// What is left is an expression tree of literals, `item.field`, `item.map.key` and
/// operators, which the runtime evaluates with the language's one evaluator
/// (`crate::expr::Condition`). Its printed form (flat, precedence-aware source,
/// [`Cond::text`]) is its identity: what fingerprints hold, what `vigil plan` shows, and
/// what two conditions compare by.
#[derive(Clone, Debug)]
pub struct Cond {
    expr: Expr,
    text: String,
    reads: Vec<(String, Ty)>,
}

impl Cond {
    /// A condition already resolved (by `crate::expr::resolve`): `expr` names nothing but
    /// `item`, whose fields `reads` lists with their types.
    pub fn resolved(expr: Expr, mut reads: Vec<(String, Ty)>) -> Cond {
        reads.sort_by(|a, b| a.0.cmp(&b.0));
        reads.dedup_by(|a, b| a.0 == b.0);
        let text = crate::syntax::print::flat(&expr);
        Cond { expr, text, reads }
    }

    /// The resolved expression tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The printed form: canonical source where the stage's input is called `item`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The input's fields the condition reads, with their types, sorted by name.
    pub fn reads(&self) -> &[(String, Ty)] {
        &self.reads
    }
}

impl PartialEq for Cond {
    fn eq(&self, other: &Cond) -> bool {
        self.text == other.text
    }
}

impl std::fmt::Display for Cond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Cond {
    /// As its printed form.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Where a secret comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "from", content = "name", rename_all = "snake_case")]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file's contents (trailing newline trimmed).
    File(String),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:PATH`.
    pub fn parse(s: &str) -> Option<SecretRef> {
        if let Some(name) = s.strip_prefix("env:") {
            let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return ok.then(|| SecretRef::Env(name.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            return (!path.is_empty()).then(|| SecretRef::File(path.to_owned()));
        }
        None
    }
}

impl std::fmt::Display for SecretRef {
    /// Shows where the secret comes from, never its value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "secret(\"env:{n}\")"),
            SecretRef::File(p) => write!(f, "secret(\"file:{p}\")"),
        }
    }
}

/// The value as the language writes it (`5.0`, `"checkout"`, `5m`, `[1, 2]`): what the
/// console and `/api/v1/status` show of a stage's parameters. A secret shows where it comes
/// from, never its value.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 => write!(f, "{x:.1}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Duration(ms) => f.write_str(&crate::time::format_duration_source(*ms)),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            Value::Secret(s) => write!(f, "{s}"),
            Value::Condition(c) => f.write_str(c.text()),
        }
    }
}

impl Value {
    /// The type of the value, where one can be named (`None` for `Null` and empty lists).
    pub fn ty(&self) -> Option<Ty> {
        Some(match self {
            Value::Null => return None,
            Value::Int(_) => Ty::Int,
            Value::Float(_) => Ty::Float,
            Value::Bool(_) => Ty::Bool,
            Value::Str(_) => Ty::String,
            Value::Duration(_) => Ty::Duration,
            Value::Map(_) => Ty::Map,
            Value::Secret(_) => Ty::Secret,
            Value::Condition(_) => Ty::Condition,
            Value::List(items) => {
                let mut elem: Option<Scalar> = None;
                for i in items {
                    let s = Scalar::from_ty(i.ty()?)?;
                    elem = match (elem, s) {
                        (None, s) => Some(s),
                        (Some(a), b) if a == b => Some(a),
                        (Some(Scalar::Int), Scalar::Float) | (Some(Scalar::Float), Scalar::Int) => Some(Scalar::Float),
                        _ => return None,
                    };
                }
                Ty::List(elem?)
            }
        })
    }

    /// Converts the value to the declared type where the language allows it silently
    /// (an Int where a Float is declared), so that `4` and `4.0` fingerprint alike.
    pub fn coerce(self, to: Ty) -> Value {
        match (to, self) {
            (Ty::Float, Value::Int(i)) => Value::Float(i as f64),
            (Ty::List(Scalar::Float), Value::List(items)) => Value::List(items.into_iter().map(|v| v.coerce(Ty::Float)).collect()),
            (_, v) => v,
        }
    }

    /// The value as canonical source text (secrets as their reference).
    pub fn to_source(&self) -> String {
        match self {
            Value::Null => "none".into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("{f:?}"),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => crate::syntax::print::quote(s),
            Value::Duration(ms) => crate::time::format_duration_source(*ms),
            Value::List(items) => format!("[{}]", items.iter().map(Value::to_source).collect::<Vec<_>>().join(", ")),
            Value::Map(m) => format!(
                "{{ {} }}",
                m.iter().map(|(k, v)| format!("{}: {}", crate::syntax::print::quote(k), v.to_source())).collect::<Vec<_>>().join(", ")
            ),
            Value::Secret(s) => s.to_string(),
            Value::Condition(c) => c.text().to_owned(),
        }
    }

    /// A parameter's declared default as a value.
    pub fn from_default(d: &types::Default) -> Value {
        use types::Default as D;
        match d {
            D::Required | D::Optional => Value::Null,
            D::Int(i) => Value::Int(*i),
            D::Float(f) => Value::Float(*f),
            D::Bool(b) => Value::Bool(*b),
            D::Str(s) => Value::Str((*s).to_owned()),
            D::Dur(ms) => Value::Duration(*ms),
            D::Strs(v) => Value::List(v.iter().map(|s| Value::Str((*s).to_owned())).collect()),
            D::Ints(v) => Value::List(v.iter().map(|i| Value::Int(*i)).collect()),
        }
    }

    /// Numeric view, for range checks.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Duration(ms) => Some(*ms as f64),
            _ => None,
        }
    }
}

/// Checks a value against a parameter's declared choices and minimum. Returns what is
/// wrong, in words, or `None`.
pub fn validate(value: &Value, spec: &ParamSpec) -> Option<String> {
    if !spec.choices.is_empty() {
        let strs: Vec<&str> = match value {
            Value::Str(s) => vec![s.as_str()],
            Value::List(items) => items.iter().filter_map(|i| if let Value::Str(s) = i { Some(s.as_str()) } else { None }).collect(),
            _ => vec![],
        };
        for s in strs {
            if !spec.choices.contains(&s) {
                return Some(format!(
                    "`{s}` is not one of {}",
                    spec.choices.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    let shown = |bound: f64, v: &Value| match v {
        Value::Duration(_) => crate::syntax::ast::Duration { millis: bound as u64 }.to_string(),
        _ => format!("{bound}"),
    };
    let numbers: Vec<&Value> = match value {
        Value::List(items) => items.iter().collect(),
        v => vec![v],
    };
    for v in numbers {
        let Some(x) = v.as_f64() else { continue };
        if let Some(min) = spec.min.filter(|m| x < *m) {
            return Some(format!("`{}` must be at least {}", spec.name, shown(min, v)));
        }
        if let Some(max) = spec.max.filter(|m| x > *m) {
            return Some(format!("`{}` must be at most {}", spec.name, shown(max, v)));
        }
    }
    None
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn values_display_as_source() {
        let m: BTreeMap<String, Value> = [("a".to_owned(), Value::Int(1))].into_iter().collect();
        let v = Value::List(vec![Value::Float(5.0), Value::Float(0.25), Value::Str("x".into()), Value::Duration(300_000), Value::Map(m)]);
        assert_eq!(v.to_string(), r#"[5.0, 0.25, "x", 5m, {a: 1}]"#);
        assert_eq!(Value::Secret(SecretRef::Env("K".into())).to_string(), r#"secret("env:K")"#);
    }
}
