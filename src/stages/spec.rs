//! Shorthands for writing operator specs (used by the files under `src/operators/`).

use super::{Default, InputSpec, ParamSpec, Ty};

pub(crate) const fn p(name: &'static str, ty: Ty, default: Default, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty, default, choices: &[], min: None, max: None, doc }
}

/// The `start_at` parameter of the file sources.
pub(crate) const START_AT_DOC: &str = "Where to start in a file met for the first time (no cursor in the state yet): `beginning` reads what it holds, `end` only lines written from then on (a CSV's header is still read). Unset: `end` under `vigil run` — a first start never pages about the past — and `beginning` under `replay`, `eval` and `test`. A file that does not exist yet is read from its beginning when it appears. Under `vigil run`, what `beginning` reads at the first start is a backlog: respond stages record the incidents it shows but notify only those still open once it is read.";

pub(crate) const fn choice(name: &'static str, choices: &'static [&'static str], default: Default, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty: Ty::String, default, choices, min: None, max: None, doc }
}

pub(crate) const fn min(name: &'static str, ty: Ty, default: Default, min: f64, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty, default, choices: &[], min: Some(min), max: None, doc }
}

pub(crate) const fn range(name: &'static str, ty: Ty, default: Default, min: f64, max: f64, doc: &'static str) -> ParamSpec {
    ParamSpec { name, ty, default, choices: &[], min: Some(min), max: Some(max), doc }
}

/// The largest network dimension (window, lookback, horizon, hidden sizes).
pub(crate) const MAX_DIM: f64 = 4096.0;

pub(crate) const fn input(name: &'static str, types: &'static [Ty], doc: &'static str) -> InputSpec {
    InputSpec { name, types, doc, many: false }
}

/// An input that takes one or more stages.
pub(crate) const fn inputs(name: &'static str, types: &'static [Ty], doc: &'static str) -> InputSpec {
    InputSpec { name, types, doc, many: true }
}

pub(crate) const NUMERIC: &[Ty] = &[Ty::Series];
/// What respond stages take: scores (a `correlate` stage's situations too), or another
/// respond stage's incidents, routed by `when:` on their fields.
pub(crate) const RESPONDABLE: &[Ty] = &[Ty::Scores, Ty::Incidents];
