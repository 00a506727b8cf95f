//! Planning: [`Checked`] → [`Plan`] (the plan's types are in [`crate::dag`]).
//!
//! Input: the checked program. Output: one DAG per pipeline whose nodes are single
//! operator instances — stage templates expanded (their stages keyed under the calling
//! stage: `pipeline.stage.inner`), nested calls and `|` chains split into steps
//! (`pipeline.stage~resample`), every parameter evaluated and defaults filled — each with
//! a stable [`StageKey`] and a [`Fingerprint`] of its canonical resolved configuration.
//!
//! The planner keeps the invariants [`crate::dag`] states (topological order, unique
//! keys, fingerprints).
//!
//! Every node's parameters go through its operator's validation (`src/operators/`), so
//! that a plan that is made builds, but for what the environment lacks.
//!
//! Codes: E0307 (a value passed through a template parameter is out of range, or that
//! the operator refuses), E0317
//! (constant arithmetic fails), E0503 (templates nested too deeply); warnings of a plan
//! that is made ([`lint`]): W0006 (a z-score's window cannot hold `min_samples` at a
//! known step).

mod lint;

use std::collections::{BTreeMap, HashMap};

use petgraph::graph::DiGraph;

use crate::check::{Call, Callee, Checked, CheckedStage, CheckedTemplate, Input};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::expr::EvalError;
use crate::source::Span;
use crate::stages::Ty;
use crate::value::{self, Value};

pub use lint::lint;

pub use crate::dag::{fingerprint, to_dot, to_mermaid, Fingerprint, PipelinePlan, Plan, StageKey, StageNode, StageOpt, Trigger};

/// How deeply templates may call templates.
pub const MAX_TEMPLATE_DEPTH: usize = 32;

/// Plans a checked program.
///
/// # Errors
/// The diagnostics, when a value passed through template parameters is invalid.
pub fn plan(checked: &Checked) -> Result<Plan, Diagnostics> {
    // Pipelines are planned independently: in parallel when there are many.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parts: Vec<(Vec<PipelinePlan>, Diagnostics)> = if checked.pipelines.len() < 256 || threads < 2 {
        vec![plan_pipelines(&checked.pipelines, &checked.templates)]
    } else {
        let per = checked.pipelines.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                checked.pipelines.chunks(per).map(|part| scope.spawn(|| plan_pipelines(part, &checked.templates))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
        })
    };
    let mut pipelines = Vec::with_capacity(checked.pipelines.len());
    let mut diags = Diagnostics::default();
    for (p, d) in parts {
        pipelines.extend(p);
        diags.extend(d.0);
    }
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    Ok(Plan { pipelines })
}

fn plan_pipelines(pipelines: &[crate::check::CheckedPipeline], templates: &[CheckedTemplate]) -> (Vec<PipelinePlan>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut out = Vec::with_capacity(pipelines.len());
    for p in pipelines {
        let mut b = Builder { templates, stages: Vec::new(), edges: Vec::new(), diags: &mut diags, used_keys: HashMap::new() };
        let frame =
            Frame { prefix: p.name.node.clone(), values: HashMap::new(), ports: HashMap::new(), depth: 0, user_span: None, via: None };
        b.expand_stages(&p.stages, &frame, None);
        let mut graph = DiGraph::new();
        let nodes: Vec<_> = (0..b.stages.len()).map(|i| graph.add_node(i)).collect();
        for (from, to, slot) in b.edges {
            graph.add_edge(nodes[from], nodes[to], slot);
        }
        out.push(PipelinePlan {
            name: p.name.node.clone(),
            doc: p.doc.clone(),
            triggers: p.triggers.clone(),
            stages: b.stages,
            graph,
            span: p.span,
        });
    }
    (out, diags)
}

/// The bindings of one body being expanded.
struct Frame {
    /// Key prefix for the stages of this body.
    prefix: String,
    /// Value parameters of the template.
    values: HashMap<String, (Value, Span)>,
    /// Port parameters: name → stage index.
    ports: HashMap<String, usize>,
    depth: usize,
    /// The user's stage statement everything in this frame comes from.
    user_span: Option<Span>,
    /// The stage template the user called, when this frame expands one.
    via: Option<String>,
}

struct Builder<'a> {
    templates: &'a [CheckedTemplate],
    stages: Vec<StageNode>,
    edges: Vec<(usize, usize, String)>,
    diags: &'a mut Diagnostics,
    /// Key → how many times it was asked for, to make chain step keys unique.
    used_keys: HashMap<String, usize>,
}

impl Builder<'_> {
    /// Expands a body's stages in dependency order. `result` names the stage whose key
    /// is the frame's prefix itself (a template's result). Returns local name → index.
    fn expand_stages(&mut self, stages: &[CheckedStage], frame: &Frame, result: Option<&str>) -> HashMap<String, usize> {
        let order = dependency_order(stages);
        let mut done: HashMap<String, usize> = HashMap::new();
        for i in order {
            let s = &stages[i];
            let key = if result == Some(s.name.node.as_str()) { frame.prefix.clone() } else { format!("{}.{}", frame.prefix, s.name.node) };
            let user_span = frame.user_span.unwrap_or(s.span);
            let opts: Vec<StageOpt> = s.options.iter().map(|(o, _)| o.clone()).collect();
            let Some(idx) = self.expand_call(&s.call, frame, &done, key, Some((s, opts)), user_span) else { continue };
            done.insert(s.name.node.clone(), idx);
        }
        done
    }

    fn resolve_input(&mut self, input: &Input, frame: &Frame, local: &HashMap<String, usize>, key: &str, user_span: Span) -> Option<usize> {
        match input {
            Input::Stage(n) => local.get(&n.node).copied(),
            Input::Param(n) => frame.ports.get(&n.node).copied(),
            Input::Call(c) => {
                let name = match c.callee {
                    Callee::Op(op) => op.name.to_owned(),
                    Callee::Template(id) => self.templates[id].name.node.clone(),
                };
                let base = format!("{key}~{name}");
                let n = self.used_keys.entry(base.clone()).or_insert(0);
                *n += 1;
                let step_key = if *n == 1 { base } else { format!("{base}{n}") };
                self.expand_call(c, frame, local, step_key, None, user_span)
            }
        }
    }

    /// Expands one call into nodes and returns the index of the node yielding its output.
    fn expand_call(
        &mut self,
        call: &Call,
        frame: &Frame,
        local: &HashMap<String, usize>,
        key: String,
        stage: Option<(&CheckedStage, Vec<StageOpt>)>,
        user_span: Span,
    ) -> Option<usize> {
        let mut inputs = Vec::new();
        for (slot, input) in &call.inputs {
            let idx = self.resolve_input(input, frame, local, &key, user_span)?;
            inputs.push((slot.clone(), idx));
        }
        // `fallback: stage` becomes one more input, after the operator's own.
        if let Some((s, _)) = &stage {
            for (opt, _) in &s.options {
                if let StageOpt::Fallback { stage: name } = opt {
                    if let Some(&idx) = local.get(name.as_str()) {
                        inputs.push(("fallback".to_owned(), idx));
                    }
                }
            }
        }
        // Conditions may name the call's inputs (stages or port parameters): each is the
        // `item`, of its stage's output type.
        let input_types: Vec<(String, Ty)> = call
            .inputs
            .iter()
            .zip(&inputs)
            .filter_map(|((_, i), (_, idx))| match i {
                Input::Stage(n) | Input::Param(n) => Some((n.node.clone(), self.stages[*idx].output)),
                Input::Call(_) => None,
            })
            .collect();
        let item = inputs.first().map(|(_, idx)| self.stages[*idx].output);
        match call.callee {
            Callee::Op(op) => {
                let mut params = BTreeMap::new();
                for spec in op.all_params() {
                    let explicit = call.values.iter().find(|v| v.name == spec.name);
                    let v = match explicit {
                        Some(arg) if spec.ty == Ty::Condition => self.condition(&arg.value, frame, &input_types, item)?,
                        Some(arg) => {
                            let v = self.eval(&arg.value, frame, user_span)?.coerce(spec.ty);
                            if let Some(why) = value::validate(&v, spec) {
                                self.invalid(&arg.value, frame, &arg.name, why, spec.choices);
                                return None;
                            }
                            v
                        }
                        None => Value::from_default(&spec.default).coerce(spec.ty),
                    };
                    params.insert(spec.name.to_owned(), v);
                }
                // Everything building would refuse that does not depend on the
                // environment: the operator's own rules (regular expressions, selectors,
                // templates, URLs, parameters needed together).
                let refusals = crate::operators::check(op.name, &params);
                if !refusals.is_empty() {
                    for bad in refusals {
                        match call.values.iter().find(|v| v.name == bad.param) {
                            Some(arg) => self.invalid(&arg.value, frame, &arg.name, bad.why, &[]),
                            None => self.diags.push(
                                Diagnostic::error(Code::E0307, call.span, format!("invalid value for `{}`", bad.param)).with_label(bad.why),
                            ),
                        }
                        if let Some(d) = self.diags.0.last_mut() {
                            *d = d.clone().with_help(bad.help);
                        }
                    }
                    return None;
                }
                let (options, doc, named) = match &stage {
                    Some((s, opts)) => (opts.clone(), s.doc.clone(), frame.depth == 0),
                    None => (Vec::new(), Vec::new(), false),
                };
                let output = match op.output {
                    crate::stages::Output::Fixed(t) => t,
                    crate::stages::Output::SameAsInput(i) => {
                        inputs.get(i).map_or(op.inputs[i].types[0], |(_, idx)| self.stages[*idx].output)
                    }
                };
                let fingerprint = fingerprint(
                    op.kind,
                    op.name,
                    &params,
                    &options,
                    &inputs.iter().map(|(s, i)| (s.as_str(), self.stages[*i].key.0.as_str())).collect::<Vec<_>>(),
                );
                let idx = self.stages.len();
                for (slot, from) in &inputs {
                    self.edges.push((*from, idx, slot.clone()));
                }
                self.stages.push(StageNode {
                    key: StageKey(key),
                    kind: op.kind,
                    operator: op.name,
                    params,
                    options,
                    inputs,
                    span: user_span,
                    call_span: call.span,
                    named,
                    via: frame.via.clone(),
                    doc,
                    fingerprint,
                    output,
                });
                Some(idx)
            }
            Callee::Template(id) => {
                let t = &self.templates[id];
                if frame.depth + 1 > MAX_TEMPLATE_DEPTH {
                    self.diags.push(
                        Diagnostic::error(Code::E0503, user_span, format!("templates nested more than {MAX_TEMPLATE_DEPTH} deep"))
                            .with_label("expanding this stage")
                            .with_secondary(call.callee_span, format!("`{}` is called here", t.name.node))
                            .with_help("flatten the templates: call operators directly in some of them"),
                    );
                    return None;
                }
                let mut inner = Frame {
                    prefix: key.clone(),
                    values: HashMap::new(),
                    ports: HashMap::new(),
                    depth: frame.depth + 1,
                    user_span: Some(user_span),
                    via: frame.via.clone().or_else(|| Some(t.name.node.clone())),
                };
                for (slot, idx) in &inputs {
                    inner.ports.insert(slot.clone(), *idx);
                }
                for p in &t.params {
                    if p.ty.is_port() {
                        continue;
                    }
                    let explicit = call.values.iter().find(|v| v.name == p.name.node);
                    let (v, span) = match (explicit, &p.default) {
                        (Some(arg), _) if p.ty == Ty::Condition => (self.condition(&arg.value, frame, &input_types, item)?, arg.value.span),
                        (Some(arg), _) => (self.eval(&arg.value, frame, user_span)?.coerce(p.ty), arg.value.span),
                        (None, Some(d)) if p.ty == Ty::Condition => {
                            // Over the template's ports, which `inner` binds.
                            let first_port = t.params.iter().find(|q| q.ty.is_port()).and_then(|q| inner.ports.get(&q.name.node));
                            let item = first_port.map(|idx| self.stages[*idx].output);
                            (self.condition(d, &inner, &[], item)?, d.span)
                        }
                        (None, Some(d)) => {
                            // Defaults may use the parameters bound before them.
                            let v = self.eval(d, &inner, user_span)?.coerce(p.ty);
                            (v, d.span)
                        }
                        (None, None) => (Value::Null, p.name.span),
                    };
                    inner.values.insert(p.name.node.clone(), (v, span));
                }
                let result_name = match &t.result {
                    Input::Stage(n) => Some(n.node.as_str()),
                    _ => None,
                };
                let mut done = self.expand_stages(&t.stages, &inner, result_name);
                // The caller's options (retry, timeout, ...) apply to the node that yields
                // the template's output.
                let out = match &t.result {
                    Input::Stage(n) => done.get(&n.node).copied(),
                    Input::Param(n) => inner.ports.get(&n.node).copied(),
                    Input::Call(c) => {
                        let c = c.clone();
                        let r = self.expand_call(&c, &inner, &done, key.clone(), None, user_span);
                        if let Some(r) = r {
                            done.insert(String::new(), r);
                        }
                        r
                    }
                }?;
                if let Some((s, opts)) = stage {
                    let node = &mut self.stages[out];
                    if node.key.0 == key {
                        for o in opts {
                            node.options.retain(|x| x.name() != o.name());
                            node.options.push(o);
                        }
                        node.named = frame.depth == 0;
                        if node.doc.is_empty() {
                            node.doc = s.doc.clone();
                        }
                        let input_idx = node.inputs.clone();
                        let inputs: Vec<(String, String)> =
                            input_idx.iter().map(|(s, i)| (s.clone(), self.stages[*i].key.0.clone())).collect();
                        let node = &mut self.stages[out];
                        node.fingerprint = fingerprint(
                            node.kind,
                            node.operator,
                            &node.params,
                            &node.options,
                            &inputs.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect::<Vec<_>>(),
                        );
                    }
                }
                Some(out)
            }
        }
    }

    fn eval(&mut self, e: &crate::syntax::ast::Expr, frame: &Frame, user_span: Span) -> Option<Value> {
        match crate::expr::fold(e, &|n| frame.values.get(n).map(|(v, _)| v.clone())) {
            Ok(v) => Some(v),
            Err(EvalError::Operand { span, message }) => {
                let mut d = Diagnostic::error(Code::E0317, span, "invalid operands in a constant")
                    .with_label(message)
                    .with_help("fix the arithmetic; it is evaluated when the pipeline is compiled");
                if span.source != user_span.source {
                    d = d.with_secondary(user_span, "while expanding this stage");
                }
                self.diags.push(d);
                None
            }
            Err(EvalError::NotConstant(span)) => {
                // The checker rejects non-constant values; reaching this is a bug, but a
                // diagnostic is better than a panic.
                self.diags.push(Diagnostic::error(Code::E0405, span, "not a constant").with_label("expected a constant value"));
                None
            }
        }
    }

    /// E0307 for a value that failed validation after template parameters were bound.
    /// When the value came through a parameter, the primary label is where the user
    /// wrote it and a secondary one shows where the template passes it on.
    fn invalid(&mut self, arg: &crate::syntax::ast::Expr, frame: &Frame, name: &str, why: String, choices: &[&str]) {
        let origin = match &arg.kind {
            crate::syntax::ast::ExprKind::Name(n) => frame.values.get(n).map(|(_, s)| *s),
            _ => None,
        };
        let primary = origin.unwrap_or(arg.span);
        let mut d = Diagnostic::error(Code::E0307, primary, format!("invalid value for `{name}`")).with_label(why);
        if primary != arg.span {
            d = d.with_secondary(arg.span, format!("passed to `{name}` here"));
        }
        if !choices.is_empty() {
            d = d.with_help(format!("accepted: {}", choices.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")));
        }
        self.diags.push(d);
    }

    /// A condition resolved and typed over the stage's inputs (`inputs`, then the frame's
    /// ports), inlining the frame's Condition parameters; `item` is the type
    /// of the stage's input. What does not resolve — a field the input type does not have,
    /// once a template's condition is inlined where another type flows — is a diagnostic.
    fn condition(&mut self, e: &crate::syntax::ast::Expr, frame: &Frame, inputs: &[(String, Ty)], item: Option<Ty>) -> Option<Value> {
        use crate::expr::{Name, Unresolved};
        let names = |n: &str| {
            if let Some((_, ty)) = inputs.iter().find(|(i, _)| i == n) {
                return Name::Input(*ty);
            }
            if let Some(idx) = frame.ports.get(n) {
                return Name::Input(self.stages[*idx].output);
            }
            match frame.values.get(n) {
                Some((Value::Condition(c), _)) => Name::Inline(c.clone()),
                _ => Name::Unknown,
            }
        };
        let item = item.or_else(|| inputs.first().map(|(_, t)| *t)).unwrap_or(Ty::Scores);
        match crate::expr::resolve(e, item, &names) {
            Ok(c) => Some(Value::Condition(std::sync::Arc::new(c))),
            Err(u) => {
                let (code, label, help) = match &u {
                    Unresolved::NoField { ty, .. } => {
                        let names: Vec<&str> = ty.fields().iter().map(|(f, _)| *f).collect();
                        (Code::E0209, "unknown field", format!("the condition reads a {ty} here, which has: {}", names.join(", ")))
                    }
                    Unresolved::UnknownName { .. } => (
                        Code::E0202,
                        "not an input of this stage",
                        "a condition reads the fields of the stage's input, e.g. `scores.anomalous`".into(),
                    ),
                    Unresolved::Construct { .. } => (
                        Code::E0405,
                        "not a value a condition can use",
                        "compare the input's fields with literals, e.g. `scores.score > 0.9`".into(),
                    ),
                    Unresolved::Operand { .. } => {
                        (Code::E0317, "invalid operands", "comparisons take like with like, `and`/`or` take Bools".into())
                    }
                    Unresolved::NotBool { .. } => (Code::E0304, "not a Bool", "compare it, for example `scores.score > 0.9`".into()),
                };
                let mut d = Diagnostic::error(code, u.span(), u.to_string()).with_label(label).with_help(help);
                if u.span().source != e.span.source || u.span().start < e.span.start || u.span().end > e.span.end {
                    d = d.with_secondary(e.span, "in this condition, where the template's condition is inlined");
                }
                self.diags.push(d);
                None
            }
        }
    }
}

/// Stage indices in an order where every stage comes after the stages it reads, and
/// otherwise in definition order (Kahn's algorithm, smallest index first), so that plans
/// and graphs read like the source. The checker has rejected cycles.
fn dependency_order(stages: &[CheckedStage]) -> Vec<usize> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let index: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.name.node.as_str(), i)).collect();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    let mut pending = vec![0usize; stages.len()];
    for (i, s) in stages.iter().enumerate() {
        s.call.for_each_ref(&mut |input| {
            if let Input::Stage(n) = input {
                if let Some(&j) = index.get(n.node.as_str()) {
                    readers[j].push(i);
                    pending[i] += 1;
                }
            }
        });
        // A predict stage's fallback runs before it and feeds it.
        for (opt, _) in &s.options {
            if let StageOpt::Fallback { stage } = opt {
                if let Some(&j) = index.get(stage.as_str()).filter(|&&j| j != i) {
                    readers[j].push(i);
                    pending[i] += 1;
                }
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..stages.len()).filter(|i| pending[*i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(stages.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &r in &readers[i] {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.push(Reverse(r));
            }
        }
    }
    if order.len() < stages.len() {
        // A cycle slipped through: keep the rest in definition order rather than lose it.
        order.extend((0..stages.len()).filter(|i| pending[*i] > 0));
    }
    order
}
