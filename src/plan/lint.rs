//! Warnings about a plan that compiles but will not do what it says.
//!
//! W0006: a `zscore` stage (also behind the stdlib's `zscore_detector` and
//! `robust_zscore`) whose window cannot hold `min_samples` at its input's step, where the
//! step is known before anything runs: `synthetic(interval:)`,
//! `prometheus.query_range(step:)`, `prometheus.scrape` under the pipeline's only `every`
//! trigger (a sample per scrape), or `resample(every:)` on the way. Nothing would ever be
//! scored. The engine warns at run time too, once the data's step is seen
//! (`window_below_min_samples`), for the sources whose step is known only then.

use crate::diagnostic::{Code, Diagnostic};
use crate::plan::{PipelinePlan, StageNode, Trigger};
use crate::time::format_duration_source;
use crate::value::Value;

/// Preprocessing operators that keep their input's step (one output sample per input
/// sample, at its time).
const KEEP_STEP: &[&str] = &["diff", "fill", "normalize", "select", "rolling"];

/// The plan's warnings.
pub fn lint(p: &PipelinePlan) -> Vec<Diagnostic> {
    p.stages.iter().filter(|s| s.operator == "zscore").filter_map(|s| window_below_min_samples(p, s)).collect()
}

fn duration(node: &StageNode, name: &str) -> Option<u64> {
    match node.params.get(name)? {
        Value::Duration(ms) => Some(*ms),
        _ => None,
    }
}

/// The step (ms) of a stage's output, when the plan alone says it.
fn step_of(p: &PipelinePlan, node: &StageNode) -> Option<u64> {
    match node.operator {
        "synthetic" => duration(node, "interval"),
        "prometheus.query_range" => duration(node, "step"),
        "prometheus.scrape" => match p.triggers.as_slice() {
            [Trigger::Every { ms }] => Some(*ms),
            _ => None,
        },
        "resample" => duration(node, "every"),
        op if KEEP_STEP.contains(&op) => match node.inputs.as_slice() {
            [(_, i)] => step_of(p, &p.stages[*i]),
            _ => None,
        },
        _ => None,
    }
}

fn window_below_min_samples(p: &PipelinePlan, node: &StageNode) -> Option<Diagnostic> {
    let window = duration(node, "window")?;
    let Some(Value::Int(min_samples)) = node.params.get("min_samples") else { return None };
    let min_samples = u64::try_from(*min_samples).ok()?;
    let [(_, input)] = node.inputs.as_slice() else { return None };
    let step = step_of(p, &p.stages[*input]).filter(|&s| s > 0)?;
    let holds = window / step;
    if holds >= min_samples {
        return None;
    }
    let name = node.key.0.strip_prefix(&format!("{}.", p.name)).unwrap_or(&node.key.0);
    let dur = format_duration_source;
    Some(
        Diagnostic::warning(Code::W0006, node.span, format!("the window of `{name}` cannot hold `min_samples`: nothing will be scored"))
            .with_label(format!(
                "a {} window holds {holds} samples at the input's step of {}, fewer than min_samples {min_samples}",
                dur(window),
                dur(step)
            ))
            .with_help(format!(
                "lengthen `window` to at least {} or lower `min_samples` to {}",
                dur(step.saturating_mul(min_samples)),
                holds.max(2)
            )),
    )
}
