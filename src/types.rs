//! The types of the language: port types carried on DAG edges, value types of
//! parameters, the fields each data type offers to conditions, and what a parameter's
//! spec is (its type, default and range: [`ParamSpec`]), which constant values are
//! checked against.

use std::fmt;

/// A type in the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Ty {
    // ---- port types: what flows along the DAG's edges ----
    /// Samples `(timestamp, f64)` per series identity.
    Series,
    /// Timestamped structured records (alerts, log lines).
    Events,
    /// Window matrices.
    Features,
    /// A handle into the model registry.
    Model,
    /// Per series and timestamp: value, score in [0,1], expected value and bounds, flag.
    Scores,
    /// The respond side's incidents.
    Incidents,
    // ---- value types: what parameters take ----
    Int,
    Float,
    Bool,
    String,
    Duration,
    /// A `secret("env:NAME")` or `secret("file:PATH")` reference.
    Secret,
    /// An expression evaluated per item at run time (`when: scores.anomalous`).
    Condition,
    /// A map from names to values.
    Map,
    /// A list of a scalar type.
    List(Scalar),
}

/// The element types a list may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Scalar {
    Int,
    Float,
    Bool,
    String,
    Duration,
}

impl Scalar {
    pub fn ty(self) -> Ty {
        match self {
            Scalar::Int => Ty::Int,
            Scalar::Float => Ty::Float,
            Scalar::Bool => Ty::Bool,
            Scalar::String => Ty::String,
            Scalar::Duration => Ty::Duration,
        }
    }

    /// The scalar of a value type, if it is one.
    pub fn from_ty(t: Ty) -> Option<Scalar> {
        Some(match t {
            Ty::Int => Scalar::Int,
            Ty::Float => Scalar::Float,
            Ty::Bool => Scalar::Bool,
            Ty::String => Scalar::String,
            Ty::Duration => Scalar::Duration,
            _ => return None,
        })
    }
}

impl Ty {
    /// The type names a user may write, for "did you mean" and docs.
    pub const NAMES: &'static [&'static str] = &[
        "Series",
        "Events",
        "Features",
        "Model",
        "Scores",
        "Incidents",
        "Int",
        "Float",
        "Bool",
        "String",
        "Duration",
        "Secret",
        "Condition",
        "Map",
        "List",
    ];

    /// Whether values of this type flow along DAG edges (as opposed to parameters).
    pub fn is_port(self) -> bool {
        matches!(self, Ty::Series | Ty::Events | Ty::Features | Ty::Model | Ty::Scores | Ty::Incidents)
    }

    /// Resolves a written type: a name and an optional argument (`List[Float]`).
    pub fn from_name(name: &str, arg: Option<Ty>) -> Option<Ty> {
        let t = match name {
            "Series" => Ty::Series,
            "Events" => Ty::Events,
            "Features" => Ty::Features,
            "Model" => Ty::Model,
            "Scores" => Ty::Scores,
            "Incidents" => Ty::Incidents,
            "Int" => Ty::Int,
            "Float" => Ty::Float,
            "Bool" => Ty::Bool,
            "String" => Ty::String,
            "Duration" => Ty::Duration,
            "Secret" => Ty::Secret,
            "Condition" => Ty::Condition,
            "Map" => Ty::Map,
            "List" => return Scalar::from_ty(arg?).map(Ty::List),
            _ => return None,
        };
        if arg.is_some() {
            None
        } else {
            Some(t)
        }
    }

    /// Whether a value of type `found` may be given where `self` is expected
    /// (an Int where a Float is expected, say).
    pub fn accepts(self, found: Ty) -> bool {
        self == found || matches!((self, found), (Ty::Float, Ty::Int) | (Ty::List(Scalar::Float), Ty::List(Scalar::Int)))
    }

    /// The fields of a port type that conditions may read, with their types.
    pub fn fields(self) -> &'static [(&'static str, Ty)] {
        match self {
            Ty::Series => &[("value", Ty::Float), ("timestamp", Ty::Int), ("series", Ty::String), ("labels", Ty::Map)],
            Ty::Scores => &[
                ("score", Ty::Float),
                ("value", Ty::Float),
                ("anomalous", Ty::Bool),
                ("expected", Ty::Float),
                ("lower", Ty::Float),
                ("upper", Ty::Float),
                ("series", Ty::String),
                ("timestamp", Ty::Int),
                ("labels", Ty::Map),
            ],
            Ty::Events => &[
                ("labels", Ty::Map),
                ("annotations", Ty::Map),
                ("status", Ty::String),
                ("timestamp", Ty::Int),
                ("fingerprint", Ty::String),
            ],
            Ty::Incidents => &[
                ("key", Ty::String),
                ("status", Ty::String),
                ("severity", Ty::String),
                ("labels", Ty::Map),
                ("opened_at", Ty::Int),
                ("score", Ty::Float),
                ("value", Ty::Float),
                ("series", Ty::String),
                ("stage", Ty::String),
                ("timestamp", Ty::Int),
            ],
            _ => &[],
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::List(s) => write!(f, "List[{}]", s.ty()),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Formats a list of port types as `Series or Features`.
pub fn one_of(types: &[Ty]) -> String {
    match types {
        [] => "nothing".into(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {}", init.iter().map(Ty::to_string).collect::<Vec<_>>().join(", "), last),
    }
}

/// A parameter's default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    /// The argument must be given.
    Required,
    /// The argument may be left out; the operator then does without it.
    Optional,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
    /// A duration in milliseconds.
    Dur(u64),
    Strs(&'static [&'static str]),
    Ints(&'static [i64]),
}

/// One parameter: a constant value (or a condition), given by name or position.
#[derive(Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub default: Default,
    /// For strings (and lists of strings): the values accepted; empty means any.
    pub choices: &'static [&'static str],
    /// For numbers and durations (and each item of a list of numbers): the smallest value
    /// accepted.
    pub min: Option<f64>,
    /// Likewise, the largest.
    pub max: Option<f64>,
    pub doc: &'static str,
}
