//! Constant values of stage parameters, and the evaluator that computes them from
//! expressions.
//!
//! The checker evaluates literal arguments to validate them early; the planner evaluates
//! every argument with template parameters bound, fills defaults, and fingerprints the
//! result. Both use [`eval`], so a value means the same thing in both phases.

use std::collections::BTreeMap;

use crate::syntax::ast::{BinaryOp, Expr, ExprKind, UnaryOp};
use crate::types::{self, ParamSpec, Scalar, Ty};

/// A resolved parameter value. Serialises to canonical JSON for fingerprints and the
/// runtime's configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// A per-item condition, as canonical source text where the item is called `item`.
    Condition(String),
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
            Value::Duration(ms) => f.write_str(&crate::time::format_duration_ms(i64::try_from(*ms).unwrap_or(i64::MAX))),
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
            Value::Condition(c) => f.write_str(c),
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
            Value::Duration(ms) => crate::syntax::ast::Duration { millis: *ms }.to_string(),
            Value::List(items) => format!("[{}]", items.iter().map(Value::to_source).collect::<Vec<_>>().join(", ")),
            Value::Map(m) => format!(
                "{{ {} }}",
                m.iter().map(|(k, v)| format!("{}: {}", crate::syntax::print::quote(k), v.to_source())).collect::<Vec<_>>().join(", ")
            ),
            Value::Secret(s) => s.to_string(),
            Value::Condition(c) => c.clone(),
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

/// Why an expression could not be evaluated to a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum EvalError {
    /// An operator applied to operands it does not take (E0317); the message says which.
    Operand { span: crate::source::Span, message: String },
    /// The expression is not a constant (a stage reference, a call): the caller decides.
    NotConstant(crate::source::Span),
}

/// `and` and `or` for every evaluator of the language (constants, conditions at run time,
/// `vigil test`'s expectations): Kleene's three-valued logic, where `None` is a value not
/// known — a missing field, a comparison with NaN. The left side decides when it can
/// (`false and x` is false, `true or x` is true, whatever `x` is, and `right` is not
/// evaluated); otherwise the result is known only when both sides are.
pub fn logic(and: bool, left: Option<bool>, right: impl FnOnce() -> Option<bool>) -> Option<bool> {
    match (and, left) {
        (true, Some(false)) => Some(false),
        (false, Some(true)) => Some(true),
        (true, l) => match (l, right()) {
            (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        (false, l) => match (l, right()) {
            (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

/// Evaluates a constant expression. `lookup` gives the value of a name (a template
/// parameter) or `None` if the name is not a constant.
///
/// Recursion follows the expression tree, whose depth `syntax` bounds.
pub fn eval(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<Value, EvalError> {
    let bad = |message: String| EvalError::Operand { span: e.span, message };
    Ok(match &e.kind {
        ExprKind::Int(i) => Value::Int(*i),
        ExprKind::Float(f) => Value::Float(*f),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Str(s) => Value::Str(s.value.clone()),
        ExprKind::Duration(d) => Value::Duration(d.millis),
        ExprKind::List(items) => Value::List(items.iter().map(|i| eval(i, lookup)).collect::<Result<_, _>>()?),
        ExprKind::Map(entries) => {
            let mut m = BTreeMap::new();
            for (k, v) in entries {
                m.insert(k.node.clone(), eval(v, lookup)?);
            }
            Value::Map(m)
        }
        ExprKind::Name(n) => lookup(n).ok_or(EvalError::NotConstant(e.span))?,
        ExprKind::Secret(inner) => match &inner.kind {
            ExprKind::Str(s) => {
                Value::Secret(SecretRef::parse(&s.value).ok_or_else(|| bad(format!("`{}` is not `env:NAME` or `file:PATH`", s.value)))?)
            }
            _ => return Err(bad("`secret(...)` takes a string literal".into())),
        },
        ExprKind::Unary(op, inner) => {
            let v = eval(inner, lookup)?;
            match (op, v) {
                (UnaryOp::Neg, Value::Int(i)) => Value::Int(i.checked_neg().ok_or_else(|| bad("integer overflow".into()))?),
                (UnaryOp::Neg, Value::Float(f)) => Value::Float(-f),
                (UnaryOp::Not, Value::Bool(b)) => Value::Bool(!b),
                (UnaryOp::Neg, v) => return Err(bad(format!("`-` needs a number, not {}", describe(&v)))),
                (UnaryOp::Not, v) => return Err(bad(format!("`not` needs a boolean, not {}", describe(&v)))),
            }
        }
        ExprKind::Binary(op, l, r) => binary(*op, eval(l, lookup)?, eval(r, lookup)?).map_err(bad)?,
        ExprKind::Field(..) | ExprKind::Call { .. } | ExprKind::Pipe(..) | ExprKind::Error => return Err(EvalError::NotConstant(e.span)),
    })
}

fn describe(v: &Value) -> String {
    match v.ty() {
        Some(t) => format!("a {t}"),
        None => "a list".into(),
    }
}

fn binary(op: BinaryOp, l: Value, r: Value) -> Result<Value, String> {
    use BinaryOp::*;
    use Value as V;
    let overflow = || "arithmetic overflow".to_owned();
    Ok(match (op, &l, &r) {
        (And | Or, V::Bool(a), V::Bool(b)) => V::Bool(logic(op == And, Some(*a), || Some(*b)).unwrap_or(false)),
        (Eq, a, b) => V::Bool(a == b),
        (Ne, a, b) => V::Bool(a != b),
        (Add, V::Str(a), V::Str(b)) => V::Str(format!("{a}{b}")),
        (Add, V::Duration(a), V::Duration(b)) => V::Duration(a.checked_add(*b).ok_or_else(overflow)?),
        (Sub, V::Duration(a), V::Duration(b)) => V::Duration(a.checked_sub(*b).ok_or("a negative duration")?),
        (Mul, V::Duration(a), V::Int(b)) | (Mul, V::Int(b), V::Duration(a)) => {
            V::Duration(u64::try_from(*b).ok().and_then(|b| a.checked_mul(b)).ok_or("a negative or overflowing duration")?)
        }
        (Div, V::Duration(a), V::Int(b)) => match u64::try_from(*b) {
            Ok(0) => return Err("division by zero".into()),
            Ok(b) => V::Duration(a / b),
            Err(_) => return Err("a negative duration".into()),
        },
        (Add | Sub | Mul | Div | Rem, V::Int(a), V::Int(b)) => {
            let (a, b) = (*a, *b);
            V::Int(
                match op {
                    Add => a.checked_add(b),
                    Sub => a.checked_sub(b),
                    Mul => a.checked_mul(b),
                    Div if b == 0 => return Err("division by zero".into()),
                    Div => a.checked_div(b),
                    Rem if b == 0 => return Err("division by zero".into()),
                    _ => a.checked_rem(b),
                }
                .ok_or_else(overflow)?,
            )
        }
        (Add | Sub | Mul | Div | Rem, a, b)
            if a.as_f64().is_some() && b.as_f64().is_some() && !matches!(a, V::Duration(_)) && !matches!(b, V::Duration(_)) =>
        {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            let v = match op {
                Add => a + b,
                Sub => a - b,
                Mul => a * b,
                Div => a / b,
                _ => a % b,
            };
            if !v.is_finite() {
                return Err("the result is not a finite number".into());
            }
            V::Float(v)
        }
        (Lt | Le | Gt | Ge, a, b)
            if a.as_f64().is_some() && b.as_f64().is_some() && (matches!(a, V::Duration(_)) == matches!(b, V::Duration(_))) =>
        {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            V::Bool(match op {
                Lt => a < b,
                Le => a <= b,
                Gt => a > b,
                _ => a >= b,
            })
        }
        _ => return Err(format!("`{}` cannot combine {} and {}", op.as_str(), describe(&l), describe(&r))),
    })
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
