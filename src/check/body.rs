//! Checking the bodies of pipelines and stage templates: stage statements, calls and their
//! arguments, conditions, port types on every edge, cycles, and unused stages.
//!
//! A body is checked in two passes. The first binds every call to its callee's signature
//! and resolves names, without needing types; the second walks the stages in dependency
//! order (cycles are reported first, with their full path) and checks port types, which
//! may depend on the types of earlier stages (`select` yields what it is given).

use std::collections::{HashMap, HashSet};

use petgraph::graph::{DiGraph, NodeIndex};

use super::{options, Cx, Scope, Slot, TemplateId, TemplateSig};
use crate::diagnostic::{suggest, Code, Diagnostic};
use crate::source::Span;
use crate::stages::{OperatorSpec, Output, Ty};
use crate::syntax::ast::{self, Expr, ExprKind, Ident, StageKind};
use crate::types::one_of;
use crate::value::{self, Value};

/// A positional argument: the input it names (with its span) or the expression given.
type Positional<'a> = (Option<(Input, Span)>, Option<&'a Expr>);

/// What a call calls.
#[derive(Clone, Copy, Debug)]
pub enum Callee {
    Op(&'static OperatorSpec),
    Template(TemplateId),
}

/// A call bound to its callee's signature.
#[derive(Clone, Debug)]
pub struct Call {
    pub callee: Callee,
    /// Where the callee's name is written.
    pub callee_span: Span,
    /// One entry per input slot of the callee, in order: the slot's name and what feeds it.
    pub inputs: Vec<(String, Input)>,
    /// The value parameters given explicitly, in the callee's slot order.
    pub values: Vec<ValueArg>,
    /// The whole call.
    pub span: Span,
}

/// What feeds an input slot.
#[derive(Clone, Debug)]
pub enum Input {
    /// A stage of the same pipeline or template.
    Stage(Ident),
    /// A port-typed parameter of the enclosing template.
    Param(Ident),
    /// A nested call (`a | f()` or `f(g(a))`), run as an anonymous step of the stage.
    Call(Box<Call>),
}

/// An explicit value argument.
#[derive(Clone, Debug)]
pub struct ValueArg {
    /// The parameter it is bound to.
    pub name: String,
    /// The declared type of that parameter.
    pub ty: Ty,
    pub value: Expr,
    /// The whole argument (`name: value`).
    pub span: Span,
}

impl Call {
    /// Calls `f` for every template called by this call or a nested one.
    pub fn for_each_template_call(&self, f: &mut dyn FnMut(TemplateId, Span)) {
        if let Callee::Template(id) = self.callee {
            f(id, self.callee_span);
        }
        for (_, input) in &self.inputs {
            if let Input::Call(c) = input {
                c.for_each_template_call(f);
            }
        }
    }

    /// Calls `f` for every stage or parameter name this call reads.
    pub fn for_each_ref<'a>(&'a self, f: &mut dyn FnMut(&'a Input)) {
        for (_, input) in &self.inputs {
            match input {
                Input::Call(c) => c.for_each_ref(f),
                other => f(other),
            }
        }
    }
}

/// A cycle through `start` inside `members`, as nodes in edge order. Iterative DFS.
pub(crate) fn find_cycle<N, E>(g: &DiGraph<N, E>, start: NodeIndex, members: &HashSet<NodeIndex>) -> Vec<NodeIndex> {
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut stack = vec![start];
    let mut seen = HashSet::from([start]);
    while let Some(n) = stack.pop() {
        for next in g.neighbors(n) {
            if next == start {
                let mut path = vec![n];
                let mut cur = n;
                while cur != start {
                    cur = parent[&cur];
                    path.push(cur);
                }
                path.reverse();
                return path;
            }
            if members.contains(&next) && seen.insert(next) {
                parent.insert(next, n);
                stack.push(next);
            }
        }
    }
    vec![start]
}

/// The port types a stage of `kind` may produce.
/// Every string in a value (lists and maps walked).
fn collect_strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::Str(s) => out.push(s),
        Value::List(items) => items.iter().for_each(|x| collect_strings(x, out)),
        Value::Map(m) => m.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn kind_outputs(kind: StageKind) -> &'static [Ty] {
    match kind {
        StageKind::Collect => &[Ty::Series, Ty::Events],
        StageKind::Preprocess => &[Ty::Series, Ty::Events, Ty::Features],
        StageKind::Train => &[Ty::Model],
        StageKind::Predict => &[Ty::Scores],
        StageKind::Respond => &[Ty::Incidents],
    }
}

/// The signature of a template, read from its header before any body is checked.
pub(crate) fn template_sig(cx: &mut Cx, t: &ast::Template) -> TemplateSig {
    let mut slots = Vec::new();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for p in &t.params {
        if let Some(first) = seen.get(p.name.node.as_str()) {
            cx.diags.push(super::duplicate(&p.name, *first, "parameter"));
            continue;
        }
        seen.insert(&p.name.node, p.name.span);
        let Some(ty) = resolve_type(cx, &p.ty) else { continue };
        if ty.is_port() {
            if let Some(d) = &p.default {
                cx.diags.push(
                    Diagnostic::error(Code::E0405, d.span, format!("the input `{}` cannot have a default", p.name.node))
                        .with_label("a default for a stage input")
                        .with_help(format!("`{}` is a {ty}, fed by a stage; remove the default", p.name.node)),
                );
            }
            slots.push(Slot { name: p.name.node.clone(), ports: Some(vec![ty]), ty, required: true, many: false });
        } else {
            slots.push(Slot { name: p.name.node.clone(), ports: None, ty, required: p.default.is_none(), many: false });
        }
    }
    let broken = slots.len() < t.params.len();
    let output = resolve_type(cx, &t.output);
    if let Some(o) = output {
        if !o.is_port() {
            cx.diags.push(
                Diagnostic::error(Code::E0318, t.output.span, format!("a template must yield a port type, not {o}"))
                    .with_label("not a port type")
                    .with_help("templates yield Series, Events, Features, Model, Scores or Incidents"),
            );
        }
    }
    let broken = broken || output.is_none_or(|o| !o.is_port());
    TemplateSig { slots: slots.into(), output: output.filter(|o| o.is_port()), name: t.name.node.clone(), span: t.name.span, broken }
}

fn resolve_type(cx: &mut Cx, t: &ast::TypeExpr) -> Option<Ty> {
    let arg = match &t.arg {
        Some(a) => Some(resolve_type(cx, a)?),
        None => None,
    };
    let ty = Ty::from_name(&t.name.node, arg);
    if ty.is_none() {
        let help = match suggest(&t.name.node, Ty::NAMES.iter().copied()) {
            Some(s) => s,
            None if t.name.node == "List" => {
                "write the element type: `List[String]`; elements are Int, Float, Bool, String or Duration".into()
            }
            None => format!("types: {}", Ty::NAMES.join(", ")),
        };
        cx.diags.push(
            Diagnostic::error(Code::E0318, t.span, format!("unknown type `{}`", crate::syntax::print::type_str(t)))
                .with_label("not a type")
                .with_help(help),
        );
    }
    ty
}

/// The names visible in one body.
struct Local<'a> {
    /// Stages: name → (index, name span).
    stages: HashMap<&'a str, (usize, Span)>,
    /// Template parameters: name → (type, span).
    params: HashMap<&'a str, (Ty, Span)>,
    /// Template parameters used so far (for W0004).
    used_params: HashSet<String>,
    /// Stages whose definition failed: no cascade errors for them.
    broken: HashSet<String>,
    /// Template parameters whose type failed to resolve: uses report nothing more.
    untyped: HashSet<String>,
}

impl Local<'_> {
    fn names(&self) -> impl Iterator<Item = &str> {
        self.stages.keys().chain(self.params.keys()).copied()
    }
}

struct Body<'c, 'm, 's> {
    cx: &'c mut Cx<'m>,
    scope: &'s mut Scope,
}

/// Checks a template's body.
pub(crate) fn check_template(cx: &mut Cx, scope: &mut Scope, mi: usize, t: &ast::Template) -> super::CheckedTemplate {
    let id = cx.template_defs.iter().position(|(m, d)| *m == mi && std::ptr::eq(*d, t)).expect("template registered");
    let sig = cx.sigs[id].clone();
    let mut local = Local {
        stages: HashMap::new(),
        params: HashMap::new(),
        used_params: HashSet::new(),
        broken: HashSet::new(),
        untyped: HashSet::new(),
    };
    let mut params = Vec::new();
    for p in &t.params {
        let Some(slot) = sig.slots.iter().find(|s| s.name == p.name.node) else {
            local.untyped.insert(p.name.node.clone());
            continue;
        };
        local.params.insert(&p.name.node, (slot.ty, p.name.span));
        params.push(super::TemplateParam { name: p.name.clone(), ty: slot.ty, default: p.default.clone(), doc: p.doc.clone() });
    }
    let mut b = Body { cx, scope };
    // Defaults are checked as constants (a Condition default may read a port parameter).
    for p in &t.params {
        let (Some(d), Some((ty, _))) = (&p.default, local.params.get(p.name.node.as_str()).copied()) else { continue };
        if ty.is_port() {
            continue;
        }
        let ports: Vec<(String, Ty)> =
            local.params.iter().filter(|(_, (t, _))| t.is_port()).map(|(n, (t, _))| ((*n).to_owned(), *t)).collect();
        b.check_value(&mut local, d, ty, &[], &ports);
        // A default's own use of other parameters does not count as a use.
    }
    local.used_params.clear();
    let body: Vec<&ast::Stage> = t.body.iter().collect();
    let stages = b.check_stages(&body, &mut local);
    let result_input = b.result_input(&t.result, &mut local);
    let output = sig.output;
    let mut types = b.order_and_type(&stages, &mut local);
    let result_ty = result_input.as_ref().and_then(|i| b.input_type(i, &stages, &mut types, &local));
    if let (Some(declared), Some(found)) = (output, result_ty) {
        if declared != found {
            b.cx.diags.push(
                Diagnostic::error(Code::E0404, t.result.span, format!("the template yields {found}, but declares {declared}"))
                    .with_label(format!("this is {found}"))
                    .with_secondary(t.output.span, format!("declared {declared} here"))
                    .with_help("change the declared type after `->`, or the final expression"),
            );
        }
    }
    // Unused stages: names no other stage (or the result) mentions. Read from the
    // source, so that a stage whose call failed to bind does not make its inputs unused.
    let mut used: HashSet<String> = HashSet::new();
    walk_names(&t.result, &mut |n, _| {
        used.insert(n.to_owned());
    });
    for s in &t.body {
        walk_names(&s.value, &mut |n, _| {
            used.insert(n.to_owned());
        });
    }
    mark_fallbacks_used(&stages, &mut used);
    b.check_escalations(&stages, &local);
    b.warn_unused(&stages, &used);
    for p in &t.params {
        let n = p.name.node.as_str();
        if !local.used_params.contains(n) && !n.starts_with('_') && local.params.contains_key(n) {
            b.cx.diags.push(
                Diagnostic::warning(Code::W0004, p.name.span, format!("parameter `{n}` is never used"))
                    .with_label("declared here, not used in the body")
                    .with_help(format!("use it, remove it, or rename it `_{n}`")),
            );
        }
    }
    let result = result_input.unwrap_or(Input::Stage(Ident::new(String::new(), t.result.span)));
    super::CheckedTemplate {
        name: t.name.clone(),
        module: b.cx.modules[mi].name.clone(),
        doc: t.doc.clone(),
        params,
        output: output.unwrap_or(Ty::Series),
        stages,
        result,
        span: t.span,
    }
}

/// Checks a pipeline.
pub(crate) fn check_pipeline(
    cx: &mut Cx,
    scope: &mut Scope,
    p: &ast::Pipeline,
    webhook_paths: &mut HashMap<String, Span>,
) -> super::CheckedPipeline {
    let mut b = Body { cx, scope };
    let mut triggers = Vec::new();
    let mut stage_asts = Vec::new();
    for stmt in &p.body {
        match stmt {
            ast::PipelineStmt::Trigger(t) => {
                triggers.extend(b.check_trigger(t, webhook_paths));
            }
            ast::PipelineStmt::Stage(s) => stage_asts.push(s),
        }
    }
    let mut local = Local {
        stages: HashMap::new(),
        params: HashMap::new(),
        used_params: HashSet::new(),
        broken: HashSet::new(),
        untyped: HashSet::new(),
    };
    let stages = b.check_stages(&stage_asts, &mut local);
    b.order_and_type(&stages, &mut local);

    let has_collect = stage_asts.iter().any(|s| matches!(s.kind.node, Ok(StageKind::Collect)));
    let any_broken_kind = stage_asts.iter().any(|s| s.kind.node.is_err());
    if !has_collect && !any_broken_kind {
        b.cx.diags.push(
            Diagnostic::error(Code::E0406, p.name.span, format!("pipeline `{}` has no collect stage", p.name.node))
                .with_label("nothing brings data into this pipeline")
                .with_help("add a collect stage, for example `collect raw = csv(path: \"data.csv\")`"),
        );
    }
    let webhook_written =
        p.body.iter().any(|s| matches!(s, ast::PipelineStmt::Trigger(ast::Trigger { kind: ast::TriggerKind::On { .. }, .. })));
    // An invalid `on webhook` trigger was reported already: no second error here.
    if !webhook_written {
        for s in &stages {
            if let Callee::Op(op) = s.call.callee {
                if op.name == "webhook_events" {
                    b.cx.diags.push(
                        Diagnostic::error(Code::E0407, s.call.callee_span, "`webhook_events` needs an `on webhook` trigger")
                            .with_label("receives the requests of the pipeline's webhook")
                            .with_secondary(p.name.span, "this pipeline has no `on webhook` trigger")
                            .with_help("add `on webhook \"/hooks/<name>\"` to the pipeline"),
                    );
                }
            }
        }
    }
    if triggers.is_empty() && !p.body.iter().any(|s| matches!(s, ast::PipelineStmt::Trigger(_))) {
        b.cx.diags.push(
            Diagnostic::warning(Code::W0003, p.name.span, format!("pipeline `{}` has no trigger", p.name.node))
                .with_label("never ticks on its own")
                .with_help("add a trigger such as `every 30s`, unless the pipeline is only replayed"),
        );
    }
    let mut used: HashSet<String> = HashSet::new();
    for s in &stage_asts {
        walk_names(&s.value, &mut |n, _| {
            used.insert(n.to_owned());
        });
    }
    mark_fallbacks_used(&stages, &mut used);
    // A fallback must name a predict stage of this pipeline.
    for s in &stages {
        for (opt, span) in &s.options {
            if let options::StageOpt::Fallback { stage } = opt {
                match local.stages.get(stage.as_str()) {
                    Some((i, _)) if stages.get(*i).is_some_and(|t| t.kind == StageKind::Predict) => {}
                    Some(_) => b.cx.diags.push(
                        Diagnostic::error(Code::E0314, *span, format!("the fallback `{stage}` is not a predict stage"))
                            .with_label("a fallback must yield Scores")
                            .with_help("name a predict stage of this pipeline"),
                    ),
                    None => b.cx.diags.push(
                        Diagnostic::error(Code::E0202, *span, format!("unknown stage `{stage}`"))
                            .with_label("no stage of this name in the pipeline")
                            .with_help(suggest(stage, local.names()).unwrap_or_else(|| "name a predict stage of this pipeline".into())),
                    ),
                }
            }
        }
    }
    b.check_escalations(&stages, &local);
    b.warn_unused(&stages, &used);
    super::CheckedPipeline { name: p.name.clone(), doc: p.doc.clone(), source: p.span.source, triggers, stages, span: p.span }
}

impl Body<'_, '_, '_> {
    /// A stdlib template's parameter under its old name ([`super::RENAMED_PARAMS`]): the
    /// slot of its new name, with W0005.
    fn renamed_param(&mut self, callee: &Callee, name: &Ident, slots: &[super::Slot]) -> Option<usize> {
        let Callee::Template(id) = callee else { return None };
        let (mi, t) = self.cx.template_defs[*id];
        let module = &self.cx.modules[mi];
        if module.role != super::ModuleRole::Stdlib {
            return None;
        }
        let (_, _, old, new) =
            super::RENAMED_PARAMS.iter().find(|(m, tn, old, _)| *m == module.name && *tn == t.name.node && *old == name.node)?;
        let i = slots.iter().position(|s| s.name == *new)?;
        self.cx.diags.push(
            Diagnostic::warning(Code::W0005, name.span, format!("`{}`'s parameter `{old}` is now `{new}`", t.name.node))
                .with_label("deprecated; accepted for one release")
                .with_help(format!("write `{new}:`, the name the operator it wraps uses")),
        );
        Some(i)
    }

    /// An escalation names another respond stage of the same pipeline (or template).
    fn check_escalations(&mut self, stages: &[super::CheckedStage], local: &Local<'_>) {
        for (i, s) in stages.iter().enumerate() {
            for (opt, span) in &s.options {
                let options::StageOpt::Escalate { to, .. } = opt else { continue };
                let d = match local.stages.get(to.as_str()) {
                    Some((j, _)) if *j == i => Diagnostic::error(Code::E0314, *span, format!("`{to}` escalates to itself"))
                        .with_label("escalation needs another stage")
                        .with_help("name another respond stage of this pipeline, such as a manager's pager"),
                    Some((j, _)) if stages.get(*j).is_some_and(|t| t.kind == StageKind::Respond) => continue,
                    Some(_) => Diagnostic::error(Code::E0314, *span, format!("the escalation target `{to}` is not a respond stage"))
                        .with_label("escalations are sent through a respond stage's channel")
                        .with_help("name a respond stage of this pipeline"),
                    None => Diagnostic::error(Code::E0202, *span, format!("unknown stage `{to}`"))
                        .with_label("no stage of this name in the pipeline")
                        .with_help(suggest(to, local.names()).unwrap_or_else(|| "name a respond stage of this pipeline".into())),
                };
                self.cx.diags.push(d);
            }
        }
    }
}

/// A stage named as another's `fallback` or escalation target is used.
fn mark_fallbacks_used(stages: &[super::CheckedStage], used: &mut HashSet<String>) {
    for s in stages {
        for (opt, _) in &s.options {
            if let options::StageOpt::Fallback { stage } | options::StageOpt::Escalate { to: stage, .. } = opt {
                used.insert(stage.clone());
            }
        }
    }
}

impl Body<'_, '_, '_> {
    fn check_trigger(&mut self, t: &ast::Trigger, webhook_paths: &mut HashMap<String, Span>) -> Option<super::Trigger> {
        match &t.kind {
            ast::TriggerKind::Every(d) => {
                if d.node.millis == 0 {
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0107, d.span, "`every` needs a positive duration")
                            .with_label("zero")
                            .with_help("write a duration such as `30s`"),
                    );
                    return None;
                }
                Some(super::Trigger::Every { ms: d.node.millis })
            }
            ast::TriggerKind::Cron(s) => match options::cron_error(&s.value) {
                None => Some(super::Trigger::Cron { schedule: s.value.clone() }),
                Some(why) => {
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0310, s.span, "invalid cron expression")
                            .with_label(format!("not a five-field schedule: {why}"))
                            .with_help("write minute, hour, day of month, month and day of week, for example `cron \"*/5 * * * *\"` (UTC)"),
                    );
                    None
                }
            },
            ast::TriggerKind::On { source, path } => {
                if source.node != "webhook" {
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0210, source.span, format!("unknown trigger source `{}`", source.node))
                            .with_label("not a trigger source")
                            .with_help(
                                suggest(&source.node, ["webhook"])
                                    .unwrap_or_else(|| "use `on webhook \"/path\"`, `every 30s` or `cron \"...\"`".into()),
                            ),
                    );
                    return None;
                }
                let p = &path.value;
                let valid = p.starts_with('/')
                    && p.len() > 1
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
                    && !p.contains("//")
                    && !p.split('/').any(|seg| seg == "..");
                if !valid {
                    let fixed = format!("/{}", p.trim_start_matches('/'));
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0311, path.span, format!("invalid webhook path `{p}`"))
                            .with_label("must start with `/` and hold only letters, digits and `-_./`")
                            .with_help(if p.starts_with('/') {
                                "write an absolute path such as \"/hooks/alerts\"".to_owned()
                            } else {
                                format!("write \"{fixed}\"")
                            }),
                    );
                    return None;
                }
                if let Some(first) = webhook_paths.get(p) {
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0408, path.span, format!("webhook path `{p}` is used twice"))
                            .with_label("listened on again here")
                            .with_secondary(*first, "first used here")
                            .with_help("give each trigger its own path"),
                    );
                    return None;
                }
                webhook_paths.insert(p.clone(), path.span);
                Some(super::Trigger::Webhook { path: p.clone() })
            }
        }
    }

    /// Pass one over a list of stage statements: names, kinds, calls, options.
    fn check_stages<'a>(&mut self, stages: &[&'a ast::Stage], local: &mut Local<'a>) -> Vec<super::CheckedStage> {
        let mut keep: Vec<&'a ast::Stage> = Vec::new();
        for &s in stages {
            if let Some((_, first)) = local.stages.get(s.name.node.as_str()) {
                self.cx.diags.push(super::duplicate(&s.name, *first, "stage"));
                continue;
            }
            if let Some((_, pspan)) = local.params.get(s.name.node.as_str()) {
                self.cx.diags.push(super::duplicate(&s.name, *pspan, "name"));
                continue;
            }
            local.stages.insert(&s.name.node, (keep.len(), s.name.span));
            keep.push(s);
        }
        let mut out = Vec::new();
        for s in keep {
            let kind = match &s.kind.node {
                Ok(k) => *k,
                Err(word) => {
                    let help = suggest(word, StageKind::ALL.iter().map(|k| k.as_str()))
                        .unwrap_or_else(|| "stage kinds: collect, preprocess, train, predict, respond".into());
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0201, s.kind.span, format!("unknown stage kind `{word}`"))
                            .with_label("not a stage kind")
                            .with_help(help),
                    );
                    local.broken.insert(s.name.node.clone());
                    // Still check the call, with the kind its operator suggests, to report
                    // everything at once.
                    StageKind::Preprocess
                }
            };
            let kind_known = s.kind.node.is_ok();
            let call = self.stage_call(s, kind, kind_known, local);
            let options = options::check_options(s.options.as_deref().unwrap_or(&[]), kind, &mut self.cx.diags);
            match call {
                Some(call) => out.push(super::CheckedStage { name: s.name.clone(), kind, doc: s.doc.clone(), call, options, span: s.span }),
                None => {
                    local.broken.insert(s.name.node.clone());
                    // Keep indices aligned with `local.stages` with a placeholder that is
                    // never planned (errors stop the compilation before planning).
                    out.push(super::CheckedStage {
                        name: s.name.clone(),
                        kind,
                        doc: s.doc.clone(),
                        call: Call {
                            callee: Callee::Op(crate::operators::OPERATORS[0].spec),
                            callee_span: s.value.span,
                            inputs: vec![],
                            values: vec![],
                            span: s.value.span,
                        },
                        options,
                        span: s.span,
                    });
                }
            }
        }
        out
    }

    /// The call of a stage statement.
    fn stage_call(&mut self, s: &ast::Stage, kind: StageKind, kind_known: bool, local: &mut Local) -> Option<Call> {
        match &s.value.kind {
            ExprKind::Call { .. } | ExprKind::Pipe(..) => {}
            ExprKind::Error => return None,
            _ => {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0211, s.value.span, format!("stage `{}` does not call an operator", s.name.node))
                        .with_label("not a call")
                        .with_help(match &s.value.kind {
                            ExprKind::Name(n) => format!("to pass `{n}` on, call an operator on it, for example `fill({n}, \"previous\")`"),
                            _ => "a stage is `kind name = operator(inputs, param: value)`".into(),
                        }),
                );
                return None;
            }
        }
        self.call_expr(&s.value, None, kind, kind_known, true, local)
    }

    /// Binds a call expression (`f(args)`, `recv.f(args)` or `a | f(args)`), with an
    /// optional input piped in. `outer` is whether this is the stage's final call.
    fn call_expr(
        &mut self,
        e: &Expr,
        piped: Option<(Input, Span)>,
        kind: StageKind,
        kind_known: bool,
        outer: bool,
        local: &mut Local,
    ) -> Option<Call> {
        match &e.kind {
            ExprKind::Pipe(l, r) => {
                let left = self.input_expr(l, kind, kind_known, local)?;
                if piped.is_some() {
                    // `a | (b | c)` is parsed left-associatively, so this cannot happen.
                    unreachable!("a pipe's right side is never itself piped into");
                }
                self.call_expr(r, Some((left, l.span)), kind, kind_known, outer, local)
            }
            ExprKind::Call { callee, args } => {
                let path: Option<Vec<(&str, Span)>> = callee.as_path().map(|_| {
                    let mut v = Vec::new();
                    let mut c: &Expr = callee;
                    loop {
                        match &c.kind {
                            ExprKind::Field(inner, f) => {
                                v.push((f.node.as_str(), f.span));
                                c = inner;
                            }
                            ExprKind::Name(n) => {
                                v.push((n.as_str(), c.span));
                                break;
                            }
                            _ => break,
                        }
                    }
                    v.reverse();
                    v
                });
                let Some(path) = path else {
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0211, callee.span, "only operators and templates can be called")
                            .with_label("not a name")
                            .with_help("call an operator by name: `fill(raw)`"),
                    );
                    return None;
                };
                let callee_span = callee.span;
                // `recv.op(args)`: a method call on a stage or port parameter.
                let mut receiver = None;
                let resolved = if path.len() == 2
                    && (local.stages.contains_key(path[0].0) || local.params.get(path[0].0).is_some_and(|(t, _)| t.is_port()))
                {
                    receiver = Some((self.name_input(path[0].0, path[0].1, local), path[0].1));
                    match crate::operators::spec(path[1].0) {
                        Some(op) => Some(Callee::Op(op)),
                        None => self.cx.resolve_callee(self.scope, &path[1..]),
                    }
                } else {
                    self.cx.resolve_callee(self.scope, &path)
                };
                let callee_res = resolved?;
                if let Callee::Template(id) = callee_res {
                    if self.cx.sigs[id].broken {
                        // Its header was reported; checking calls against it would only
                        // repeat that.
                        return None;
                    }
                }
                let sig_slots = callee_res.slots(&self.cx.sigs);
                // Stage kind rules.
                match callee_res {
                    Callee::Op(op) if kind_known => {
                        let ok = op.kind == kind || (!outer && op.kind == StageKind::Preprocess && kind > StageKind::Preprocess);
                        if !ok {
                            let mut d = Diagnostic::error(
                                Code::E0402,
                                callee_span,
                                format!("`{}` is a {} operator, used in a {kind} stage", op.name, op.kind),
                            )
                            .with_label(format!("a {} operator", op.kind));
                            d = if outer {
                                d.with_help(format!("write `{} ...` for this stage, or use a {kind} operator", op.kind))
                            } else {
                                d.with_help(format!("move it into its own `{}` stage and refer to that stage", op.kind))
                            };
                            self.cx.diags.push(d);
                        }
                    }
                    Callee::Template(id) if kind_known && outer => {
                        if let Some(out) = self.cx.sigs[id].output {
                            if !kind_outputs(kind).contains(&out) {
                                let sig = &self.cx.sigs[id];
                                self.cx.diags.push(
                                    Diagnostic::error(
                                        Code::E0403,
                                        callee_span,
                                        format!("the template `{}` yields {out}, which a {kind} stage cannot produce", sig.name),
                                    )
                                    .with_label(format!("yields {out}"))
                                    .with_secondary(sig.span, "the template is defined here")
                                    .with_help(format!(
                                        "a {kind} stage yields {}; write `{} ...`",
                                        one_of(kind_outputs(kind)),
                                        kind_for(out).as_str()
                                    )),
                                );
                            }
                        }
                    }
                    _ => {}
                }
                let mut positional: Vec<Positional<'_>> = Vec::new();
                if let Some(r) = receiver {
                    positional.push((Some(r), None));
                }
                if let Some(p) = piped {
                    positional.push((Some(p), None));
                }
                self.bind_args(&callee_res, &sig_slots, callee_span, e.span, positional, args, kind, kind_known, local)
            }
            _ => {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0211, e.span, "expected a call after `|`")
                        .with_label("not a call")
                        .with_help("the right side of `|` is an operator call such as `fill(\"linear\")`"),
                );
                None
            }
        }
    }

    /// An expression in an input position: a stage name, a port parameter, or a call.
    fn input_expr(&mut self, e: &Expr, kind: StageKind, kind_known: bool, local: &mut Local) -> Option<Input> {
        match &e.kind {
            ExprKind::Name(n) => Some(self.name_input(n, e.span, local)),
            ExprKind::Call { .. } | ExprKind::Pipe(..) => {
                self.call_expr(e, None, kind, kind_known, false, local).map(|c| Input::Call(Box::new(c)))
            }
            ExprKind::Error => None,
            _ => {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0405, e.span, "a constant where a stage's output is expected")
                        .with_label("a constant")
                        .with_help("pass the name of a stage, or a call"),
                );
                None
            }
        }
    }

    /// A name in an input position. Unknown names are reported; the input is kept so
    /// that binding goes on.
    fn name_input(&mut self, n: &str, span: Span, local: &mut Local) -> Input {
        if local.stages.contains_key(n) {
            return Input::Stage(Ident::new(n.to_owned(), span));
        }
        if local.untyped.contains(n) {
            return Input::Param(Ident::new(n.to_owned(), span));
        }
        if let Some((ty, _)) = local.params.get(n) {
            local.used_params.insert(n.to_owned());
            if !ty.is_port() {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0405, span, format!("`{n}` is a {ty} parameter, not a stage"))
                        .with_label("a value, not a stage's output")
                        .with_help("pass a stage or a port-typed parameter here"),
                );
            }
            return Input::Param(Ident::new(n.to_owned(), span));
        }
        let help = suggest(n, local.names()).unwrap_or_else(|| "stages are visible only inside their own pipeline or template".into());
        self.cx.diags.push(
            Diagnostic::error(Code::E0202, span, format!("unknown stage `{n}`"))
                .with_label("no stage or input of this name")
                .with_help(help),
        );
        local.broken.insert(n.to_owned());
        Input::Stage(Ident::new(n.to_owned(), span))
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_args(
        &mut self,
        callee: &Callee,
        slots: &[Slot],
        callee_span: Span,
        span: Span,
        leading: Vec<Positional<'_>>,
        args: &[ast::Arg],
        kind: StageKind,
        kind_known: bool,
        local: &mut Local,
    ) -> Option<Call> {
        let callee_name = match callee {
            Callee::Op(op) => op.name.to_owned(),
            Callee::Template(id) => self.cx.sigs[*id].name.clone(),
        };
        // slot index → (argument span, bound value)
        let mut bound: Vec<Option<(Span, Bound)>> = vec![None; slots.len()];
        // Further stages bound to an input that takes many, by slot.
        let mut more: Vec<(usize, Input)> = Vec::new();
        let many = slots.iter().position(|s| s.many);
        let mut next_pos = 0;
        let mut seen_named: Option<Span> = None;
        let mut ok = true;
        for (input, _) in leading {
            let Some((input, ispan)) = input else { continue };
            if next_pos < slots.len() {
                bound[next_pos] = Some((ispan, Bound::Input(input)));
            }
            next_pos += 1;
        }
        for a in args {
            let arg_span = match &a.name {
                Some(n) => n.span.to(a.value.span),
                None => a.value.span,
            };
            let idx = match &a.name {
                None => {
                    if let Some(named) = seen_named {
                        self.cx.diags.push(
                            Diagnostic::error(Code::E0306, a.value.span, "positional argument after a named one")
                                .with_label("positional")
                                .with_secondary(named, "named argument before it")
                                .with_help("move positional arguments first, or name this one"),
                        );
                        ok = false;
                        continue;
                    }
                    let i = match many {
                        Some(m) if next_pos > m => m,
                        _ => next_pos,
                    };
                    next_pos += 1;
                    if i >= slots.len() {
                        self.cx.diags.push(
                            Diagnostic::error(Code::E0305, a.value.span, format!("too many arguments to `{callee_name}`"))
                                .with_label("extra argument")
                                .with_help(format!(
                                    "`{callee_name}` takes {}: {}",
                                    slots.len(),
                                    slots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
                                )),
                        );
                        ok = false;
                        continue;
                    }
                    i
                }
                Some(name) => {
                    seen_named = Some(name.span);
                    match slots.iter().position(|s| s.name == name.node).or_else(|| self.renamed_param(callee, name, slots)) {
                        Some(i) => i,
                        None => {
                            let help = suggest(&name.node, slots.iter().map(|s| s.name.as_str())).unwrap_or_else(|| {
                                format!("`{callee_name}` takes: {}", slots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "))
                            });
                            let mut d =
                                Diagnostic::error(Code::E0301, name.span, format!("`{callee_name}` has no parameter `{}`", name.node))
                                    .with_label("unknown parameter")
                                    .with_help(help);
                            if let Callee::Template(id) = callee {
                                d = d.with_secondary(self.cx.sigs[*id].span, "the template is defined here");
                            }
                            self.cx.diags.push(d);
                            ok = false;
                            continue;
                        }
                    }
                }
            };
            if bound[idx].is_some() && slots[idx].many && a.name.is_none() {
                match self.input_expr(&a.value, kind, kind_known, local) {
                    Some(i) => more.push((idx, i)),
                    None => ok = false,
                }
                continue;
            }
            if let Some((first, _)) = &bound[idx] {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0303, arg_span, format!("`{}` is given twice", slots[idx].name))
                        .with_label("given again here")
                        .with_secondary(*first, "first given here")
                        .with_help("remove one of them"),
                );
                ok = false;
                continue;
            }
            let slot = &slots[idx];
            let b = if slot.ports.is_some() {
                match self.input_expr(&a.value, kind, kind_known, local) {
                    Some(i) => Bound::Input(i),
                    None => {
                        ok = false;
                        Bound::Failed
                    }
                }
            } else {
                Bound::Value(a.value.clone())
            };
            bound[idx] = Some((arg_span, b));
        }
        // Missing required arguments.
        let mut missing = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            if bound[i].is_none() && s.required {
                missing.push(s);
            }
        }
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|s| format!("`{}`", s.name)).collect();
            let example: Vec<String> = missing
                .iter()
                .map(|s| if s.ports.is_some() { s.name.clone() } else { format!("{}: {}", s.name, example_value(s.ty)) })
                .collect();
            self.cx.diags.push(
                Diagnostic::error(Code::E0302, span, format!("`{callee_name}` is missing {}", names.join(", ")))
                    .with_label(format!("missing {}", names.join(", ")))
                    .with_help(format!("add {}", example.join(", "))),
            );
            ok = false;
        }
        let mut inputs = Vec::new();
        let mut values = Vec::new();
        let mut more = more.into_iter().peekable();
        for (i, b) in bound.into_iter().enumerate() {
            match b {
                Some((_, Bound::Input(input))) => {
                    inputs.push((slots[i].name.clone(), input));
                    while let Some((_, input)) = more.next_if(|(slot, _)| *slot == i) {
                        inputs.push((slots[i].name.clone(), input));
                    }
                }
                Some((aspan, Bound::Value(v))) => {
                    values.push(ValueArg { name: slots[i].name.clone(), ty: slots[i].ty, value: v, span: aspan })
                }
                Some((_, Bound::Failed)) | None => {}
            }
        }
        // Values: types, constants, secrets, conditions (conditions may read only inputs).
        let call_inputs: Vec<&Input> = inputs.iter().map(|(_, i)| i).collect();
        for v in &values {
            let slot = slots.iter().find(|s| s.name == v.name).expect("bound slot");
            let spec = match callee {
                Callee::Op(op) => op.param(&v.name),
                Callee::Template(_) => None,
            };
            let good = self.check_value(local, &v.value, slot.ty, &call_inputs, &[]);
            if let (Some(val), Some(spec)) = (&good, spec) {
                if let Some(why) = value::validate(val, spec) {
                    let help = if spec.choices.is_empty() {
                        format!("{}: {}", spec.name, spec.doc)
                    } else {
                        let s = match val {
                            Value::Str(s) => s.clone(),
                            Value::List(l) => l
                                .iter()
                                .find_map(|x| {
                                    if let Value::Str(s) = x {
                                        (!spec.choices.contains(&s.as_str())).then(|| s.clone())
                                    } else {
                                        None
                                    }
                                })
                                .unwrap_or_default(),
                            _ => String::new(),
                        };
                        suggest(&s, spec.choices.iter().copied()).unwrap_or_else(|| {
                            format!("accepted: {}", spec.choices.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", "))
                        })
                    };
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0307, v.value.span, format!("invalid value for `{}`", v.name))
                            .with_label(why)
                            .with_help(help),
                    );
                }
            }
            // What building would refuse, refused here: notification templates' variables,
            // exec's `allow` pattern.
            if let (Some(val), Callee::Op(op)) = (good.as_ref(), callee) {
                let mut wrong = Vec::new();
                if op.kind == StageKind::Respond && crate::respond::templates::TEMPLATED_PARAMS.contains(&v.name.as_str()) {
                    let mut texts = Vec::new();
                    collect_strings(val, &mut texts);
                    for t in texts {
                        wrong.extend(crate::respond::templates::problems(t));
                    }
                }
                if op.name == "exec" && v.name == "allow" {
                    if let Value::Str(re) = val {
                        if let Err(e) = regex::Regex::new(re) {
                            wrong.push(format!("not a regular expression: {e}"));
                        }
                    }
                }
                for why in wrong {
                    let (label, help) = why.split_once(": ").map_or((why.as_str(), ""), |(l, h)| (l, h));
                    let mut d = Diagnostic::error(Code::E0307, v.value.span, format!("invalid value for `{}`", v.name))
                        .with_label(label.to_owned());
                    if !help.is_empty() {
                        d = d.with_help(help.to_owned());
                    }
                    self.cx.diags.push(d);
                }
            }
        }
        ok.then_some(Call { callee: *callee, callee_span, inputs, values, span })
    }

    /// Checks a value argument against its declared type. Returns its constant value when
    /// it is one (no template parameters involved), for range and choice checks.
    fn check_value(&mut self, local: &mut Local, e: &Expr, ty: Ty, call_inputs: &[&Input], ports: &[(String, Ty)]) -> Option<Value> {
        if ty == Ty::Condition {
            self.check_condition(local, e, call_inputs, ports);
            return None;
        }
        // A stage where a value is expected.
        if let ExprKind::Name(n) = &e.kind {
            if local.stages.contains_key(n.as_str()) || local.params.get(n.as_str()).is_some_and(|(t, _)| t.is_port()) {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0405, e.span, format!("`{n}` is a stage, but this parameter takes a {ty}"))
                        .with_label("a stage's output")
                        .with_help(format!("write a {ty} value, such as `{}`", example_value(ty))),
                );
                return None;
            }
        }
        let found = self.infer(local, e)?;
        if ty == Ty::Secret && found == Ty::String {
            self.cx.diags.push(
                Diagnostic::error(Code::E0309, e.span, "a credential written in plain text")
                    .with_label("this parameter takes a secret reference")
                    .with_help(
                        "put the value in an environment variable or a file and write `secret(\"env:NAME\")` or `secret(\"file:/path\")`",
                    ),
            );
            return None;
        }
        let list_any = matches!((ty, &e.kind), (Ty::List(_), ExprKind::List(items)) if items.is_empty());
        if !ty.accepts(found) && !list_any {
            let help = match (ty, found) {
                (Ty::Duration, Ty::String) => "write the duration without quotes, such as `5m`".to_owned(),
                (Ty::Duration, Ty::Int) => "add a unit: ms, s, m, h, d or w (`30s`)".to_owned(),
                (Ty::List(_), t) if !matches!(t, Ty::List(_)) => format!("write a list: `[{}]`", crate::syntax::print::flat(e)),
                (Ty::Int, Ty::Float) => "write a whole number".to_owned(),
                _ => format!("write a {ty}, such as `{}`", example_value(ty)),
            };
            self.cx.diags.push(
                Diagnostic::error(Code::E0304, e.span, format!("expected {ty}, found {found}"))
                    .with_label(format!("this is a {found}"))
                    .with_help(help),
            );
            return None;
        }
        let mut depends = false;
        check_names(e, &mut |n| {
            if local.params.contains_key(n) {
                depends = true;
            }
        });
        if depends {
            return None;
        }
        crate::expr::fold(e, &|_| None).ok().map(|v| v.coerce(ty))
    }

    /// The type of a value expression, reporting what is wrong with it.
    fn infer(&mut self, local: &mut Local, e: &Expr) -> Option<Ty> {
        use crate::stages::Scalar;
        Some(match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Float(_) => Ty::Float,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Str(_) => Ty::String,
            ExprKind::Duration(_) => Ty::Duration,
            ExprKind::Error => return None,
            ExprKind::Map(entries) => {
                for (_, v) in entries {
                    self.infer(local, v)?;
                }
                Ty::Map
            }
            ExprKind::List(items) => {
                let mut elem: Option<Ty> = None;
                for i in items {
                    let t = self.infer(local, i)?;
                    elem = match elem {
                        None => Some(t),
                        Some(a) if a == t => Some(a),
                        Some(Ty::Int) if t == Ty::Float => Some(Ty::Float),
                        Some(Ty::Float) if t == Ty::Int => Some(Ty::Float),
                        Some(a) => {
                            self.cx.diags.push(
                                Diagnostic::error(Code::E0304, i.span, format!("a list of {a} cannot hold a {t}"))
                                    .with_label(format!("this is a {t}"))
                                    .with_help("every element of a list has the same type"),
                            );
                            return None;
                        }
                    };
                }
                let scalar = match elem {
                    None | Some(Ty::String) => Scalar::String,
                    Some(Ty::Int) => Scalar::Int,
                    Some(Ty::Float) => Scalar::Float,
                    Some(Ty::Bool) => Scalar::Bool,
                    Some(Ty::Duration) => Scalar::Duration,
                    Some(t) => {
                        self.cx.diags.push(
                            Diagnostic::error(Code::E0304, e.span, format!("a list cannot hold {t} values"))
                                .with_label("not a list of scalars")
                                .with_help("lists hold Int, Float, Bool, String or Duration"),
                        );
                        return None;
                    }
                };
                Ty::List(scalar)
            }
            ExprKind::Secret(inner) => {
                match &inner.kind {
                    ExprKind::Str(s) if value::SecretRef::parse(&s.value).is_some() => {}
                    ExprKind::Str(s) => {
                        let guess = s.value.trim_start_matches(['$', '/']);
                        let help = if s.value.starts_with('/') {
                            format!("write `secret(\"file:{}\")`", s.value)
                        } else {
                            format!("write `secret(\"env:{guess}\")` or `secret(\"file:/path\")`")
                        };
                        self.cx.diags.push(
                            Diagnostic::error(Code::E0308, inner.span, format!("invalid secret reference `{}`", s.value))
                                .with_label("expected `env:NAME` or `file:PATH`")
                                .with_help(help),
                        );
                        return None;
                    }
                    _ => {
                        self.cx.diags.push(
                            Diagnostic::error(Code::E0308, inner.span, "`secret(...)` takes a string literal")
                                .with_label("not a string literal")
                                .with_help("write `secret(\"env:NAME\")` or `secret(\"file:/path\")`"),
                        );
                        return None;
                    }
                }
                Ty::Secret
            }
            ExprKind::Name(n) if local.untyped.contains(n.as_str()) => return None,
            ExprKind::Name(n) => match local.params.get(n.as_str()) {
                Some((t, _)) => {
                    local.used_params.insert(n.clone());
                    *t
                }
                None => {
                    let help = suggest(n, local.params.keys().copied()).unwrap_or_else(|| {
                        if local.stages.contains_key(n.as_str()) {
                            "a stage cannot be used as a value".into()
                        } else {
                            "values are literals or template parameters".into()
                        }
                    });
                    self.cx.diags.push(
                        Diagnostic::error(Code::E0202, e.span, format!("unknown name `{n}`"))
                            .with_label("not a parameter in scope")
                            .with_help(help),
                    );
                    return None;
                }
            },
            ExprKind::Unary(op, inner) => {
                let t = self.infer(local, inner)?;
                self.unary_type(*op, t, e.span)?
            }
            ExprKind::Binary(op, l, r) => {
                let (lt, rt) = (self.infer(local, l)?, self.infer(local, r)?);
                self.binary_type(*op, lt, rt, e.span)?
            }
            ExprKind::Field(..) | ExprKind::Call { .. } | ExprKind::Pipe(..) => {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0405, e.span, "a stage expression where a constant value is expected")
                        .with_label("not a constant")
                        .with_help("parameters take literals or template parameters; data flows through stage inputs"),
                );
                return None;
            }
        })
    }

    /// Checks a condition: names must be the call's inputs (or, in templates, port
    /// parameters or Condition parameters); the value must be a Bool. Field names are
    /// checked against the input's type in the typing pass.
    fn check_condition(&mut self, local: &mut Local, e: &Expr, call_inputs: &[&Input], ports: &[(String, Ty)]) {
        let mut bad = Vec::new();
        walk_names(e, &mut |n, span| {
            let is_input = call_inputs.iter().any(|i| match i {
                Input::Stage(s) | Input::Param(s) => s.node == n,
                Input::Call(_) => false,
            }) || ports.iter().any(|(p, _)| p == n);
            if is_input {
                if local.params.contains_key(n) {
                    local.used_params.insert(n.to_owned());
                }
                return;
            }
            if local.untyped.contains(n) {
                return;
            }
            if let Some((t, _)) = local.params.get(n) {
                if *t == Ty::Condition {
                    local.used_params.insert(n.to_owned());
                    return;
                }
            }
            bad.push((n.to_owned(), span));
        });
        for (n, span) in bad {
            let input_names: Vec<String> = call_inputs
                .iter()
                .filter_map(|i| match i {
                    Input::Stage(s) | Input::Param(s) => Some(s.node.clone()),
                    Input::Call(_) => None,
                })
                .collect();
            if local.stages.contains_key(n.as_str()) || local.params.contains_key(n.as_str()) {
                let help = match input_names.first() {
                    Some(first) => format!("refer to the stage's input: `{first}`"),
                    None => "a condition can only refer to the stage's inputs".into(),
                };
                self.cx.diags.push(
                    Diagnostic::error(Code::E0312, span, format!("the condition refers to `{n}`, which is not an input of this stage"))
                        .with_label("not an input")
                        .with_help(help),
                );
            } else {
                let help = suggest(&n, input_names.iter().map(String::as_str))
                    .unwrap_or_else(|| "a condition reads the fields of the stage's input, e.g. `scores.anomalous`".into());
                self.cx.diags.push(
                    Diagnostic::error(Code::E0202, span, format!("unknown name `{n}`"))
                        .with_label("not an input of this stage")
                        .with_help(help),
                );
            }
        }
    }

    /// The template's result expression as an input.
    fn result_input(&mut self, e: &Expr, local: &mut Local) -> Option<Input> {
        match &e.kind {
            ExprKind::Name(n) => Some(self.name_input(n, e.span, local)),
            ExprKind::Call { .. } | ExprKind::Pipe(..) => {
                // An anonymous final call: its kind is not fixed by a keyword.
                self.call_expr(e, None, StageKind::Respond, false, true, local).map(|c| Input::Call(Box::new(c)))
            }
            ExprKind::Error => None,
            _ => {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0404, e.span, "a template must end with a stage")
                        .with_label("not a stage or call")
                        .with_help("end the template with the name of the stage whose output it yields"),
                );
                None
            }
        }
    }

    /// Pass two: cycles (E0501) and port types on every edge (E0401), conditions' fields
    /// (E0209). Returns each stage's output type.
    fn order_and_type(&mut self, stages: &[super::CheckedStage], local: &mut Local) -> Vec<Option<Option<Ty>>> {
        let mut g: DiGraph<usize, Span> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| g.add_node(i)).collect();
        for (i, s) in stages.iter().enumerate() {
            s.call.for_each_ref(&mut |input| {
                if let Input::Stage(n) = input {
                    if let Some((j, _)) = local.stages.get(n.node.as_str()) {
                        g.add_edge(nodes[*j], nodes[i], n.span);
                    }
                }
            });
        }
        let mut in_cycle: HashSet<usize> = HashSet::new();
        for scc in petgraph::algo::tarjan_scc(&g) {
            let cyclic = scc.len() > 1 || g.find_edge(scc[0], scc[0]).is_some();
            if !cyclic {
                continue;
            }
            let members: HashSet<NodeIndex> = scc.iter().copied().collect();
            // Start at the member defined first, for a stable message.
            let start = *scc.iter().min_by_key(|n| stages[g[**n]].span.start).expect("non-empty");
            let cycle = find_cycle(&g, start, &members);
            let names: Vec<&str> = cycle.iter().map(|n| stages[g[*n]].name.node.as_str()).collect();
            let path = format!("{} → {}", names.join(" → "), names[0]);
            let first = cycle[0];
            let next = *cycle.get(1).unwrap_or(&first);
            let edge = g.find_edge(first, next).expect("cycle edge");
            let mut d = Diagnostic::error(Code::E0501, g[edge], format!("cycle between stages: {path}")).with_label(format!(
                "`{}` reads `{}` here",
                names.get(1).unwrap_or(&names[0]),
                names[0]
            ));
            for w in 1..cycle.len() {
                let (a, b) = (cycle[w], cycle[(w + 1) % cycle.len()]);
                if let Some(e) = g.find_edge(a, b) {
                    d = d.with_secondary(g[e], format!("`{}` reads `{}` here", stages[g[b]].name.node, stages[g[a]].name.node));
                }
            }
            self.cx.diags.push(d.with_help("break the cycle: data flows from collect stages down to respond stages"));
            in_cycle.extend(scc.iter().map(|n| g[*n]));
        }
        // Types, in dependency order (cycle members stay unknown).
        let mut types: Vec<Option<Option<Ty>>> = vec![None; stages.len()];
        for &i in &in_cycle {
            types[i] = Some(None);
        }
        let order: Vec<usize> = match petgraph::algo::toposort(&g, None) {
            Ok(o) => o.into_iter().map(|n| g[n]).collect(),
            Err(_) => {
                // Type what is outside the cycles, in definition order; unknown inputs are skipped.
                (0..stages.len()).filter(|i| !in_cycle.contains(i)).collect()
            }
        };
        for i in order {
            if types[i].is_some() {
                continue;
            }
            let s = &stages[i];
            let t = if local.broken.contains(&s.name.node) { None } else { self.call_type(&s.call, stages, &mut types, local) };
            types[i] = Some(t);
            self.check_routing_options(s, &types, local);
        }
        types
    }

    /// The type of whatever feeds an input.
    fn input_type(
        &mut self,
        input: &Input,
        stages: &[super::CheckedStage],
        types: &mut Vec<Option<Option<Ty>>>,
        local: &Local,
    ) -> Option<Ty> {
        match input {
            Input::Stage(n) => {
                let (i, _) = *local.stages.get(n.node.as_str())?;
                if local.broken.contains(&n.node) {
                    return None;
                }
                match types[i] {
                    Some(t) => t,
                    None => {
                        // Not typed yet (only when toposort failed): type it now, guarding
                        // against re-entry.
                        types[i] = Some(None);
                        let t = self.call_type(&stages[i].call, stages, types, local);
                        types[i] = Some(t);
                        t
                    }
                }
            }
            Input::Param(n) => local.params.get(n.node.as_str()).map(|(t, _)| *t).filter(|t| t.is_port()),
            Input::Call(c) => self.call_type(c, stages, types, local),
        }
    }

    /// Checks the port types of a call's inputs and returns its output type.
    fn call_type(&mut self, call: &Call, stages: &[super::CheckedStage], types: &mut Vec<Option<Option<Ty>>>, local: &Local) -> Option<Ty> {
        let slots = call.callee.slots(&self.cx.sigs);
        let mut input_types = Vec::new();
        for (slot_name, input) in &call.inputs {
            let t = self.input_type(input, stages, types, local);
            input_types.push(t);
            let (Some(t), Some(slot)) = (t, slots.iter().find(|s| &s.name == slot_name)) else { continue };
            let accepted = slot.ports.as_deref().unwrap_or(&[]);
            if !accepted.contains(&t) {
                let callee = match call.callee {
                    Callee::Op(op) => op.name.to_owned(),
                    Callee::Template(id) => self.cx.sigs[id].name.clone(),
                };
                let span = input_span(input);
                let mut d = Diagnostic::error(
                    Code::E0401,
                    span,
                    format!("`{callee}` takes {} as `{slot_name}`, but this is {t}", one_of(accepted)),
                )
                .with_label(format!("this is {t}"));
                if let Input::Stage(n) = input {
                    if let Some((i, _)) = local.stages.get(n.node.as_str()) {
                        d = d.with_secondary(stages[*i].name.span, format!("`{}` is defined here", n.node));
                    }
                }
                let help = match (t, accepted.first()) {
                    (Ty::Events, Some(Ty::Series)) => {
                        "turn events into a series first, e.g. `aggregate(events, by: [\"alertname\"], op: \"count\", every: 1m)`"
                            .to_owned()
                    }
                    (Ty::Series, Some(Ty::Model)) => {
                        "train a model on the series first, e.g. `train m = autoencoder(series)`, then call `m.score(series)`".to_owned()
                    }
                    (Ty::Series, Some(Ty::Scores | Ty::Incidents)) => {
                        "score the series first, e.g. `predict s = zscore(series)`".to_owned()
                    }
                    (Ty::Incidents, Some(Ty::Scores)) => {
                        "this input takes scores; to route incidents to channels, respond to them directly \
                         (`respond page = email(other_stage, when: other_stage.severity == \"critical\", ...)`); to group the \
                         incidents of several respond stages, use `predict s = correlate(a, b)`"
                            .to_owned()
                    }
                    _ => format!("connect a stage that yields {}", one_of(accepted)),
                };
                self.cx.diags.push(d.with_help(help));
            }
        }
        // Conditions: fields of the inputs.
        for v in &call.values {
            if v.ty == Ty::Condition {
                self.check_condition_fields(&v.value, call, &input_types, local);
            }
        }
        match call.callee {
            Callee::Op(op) => match op.output {
                Output::Fixed(t) => Some(t),
                Output::SameAsInput(i) => input_types.get(i).copied().flatten().or(Some(op.inputs[i].types[0])),
            },
            Callee::Template(id) => self.cx.sigs[id].output,
        }
    }

    /// Checks a condition in the typing pass: fields exist on the input's port type
    /// (E0209), operands fit their operators (E0317), and the whole is a Bool (E0304).
    fn check_condition_fields(&mut self, e: &Expr, call: &Call, input_types: &[Option<Ty>], local: &Local) {
        let mut input_ty = |base: &str| -> Option<Ty> {
            let t = call.inputs.iter().zip(input_types).find_map(|((_, i), t)| match i {
                Input::Stage(s) | Input::Param(s) if s.node == base => *t,
                _ => None,
            });
            t.or_else(|| local.params.get(base).map(|(t, _)| *t).filter(|t| t.is_port()))
        };
        if let Some(t) = self.cond_type(e, &mut input_ty, local) {
            if t != Ty::Bool {
                self.cx.diags.push(
                    Diagnostic::error(Code::E0304, e.span, format!("a condition must be a Bool, not a {t}"))
                        .with_label(format!("this is a {t}"))
                        .with_help("compare it, for example `scores.score > 0.9`, or use a Bool field such as `scores.anomalous`"),
                );
            }
        }
    }

    /// The type of a condition expression; `None` when unknown or already reported.
    fn cond_type(&mut self, e: &Expr, input_ty: &mut dyn FnMut(&str) -> Option<Ty>, local: &Local) -> Option<Ty> {
        Some(match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Float(_) => Ty::Float,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Str(_) => Ty::String,
            ExprKind::Duration(_) => Ty::Duration,
            ExprKind::Name(n) => match local.params.get(n.as_str()) {
                Some((Ty::Condition, _)) => Ty::Bool,
                Some((t, _)) if !t.is_port() => *t,
                _ => input_ty(n)?,
            },
            ExprKind::Field(inner, field) => {
                let ExprKind::Name(base) = &inner.kind else { return None };
                let ty = input_ty(base)?;
                let fields = ty.fields();
                match fields.iter().find(|(f, _)| *f == field.node) {
                    Some((_, t)) => *t,
                    None => {
                        let names: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
                        let help = suggest(&field.node, names.iter().copied()).unwrap_or_else(|| format!("{ty} has: {}", names.join(", ")));
                        self.cx.diags.push(
                            Diagnostic::error(Code::E0209, field.span, format!("{ty} has no field `{}`", field.node))
                                .with_label("unknown field")
                                .with_help(help),
                        );
                        return None;
                    }
                }
            }
            ExprKind::Unary(op, inner) => {
                let t = self.cond_type(inner, input_ty, local)?;
                self.unary_type(*op, t, e.span)?
            }
            ExprKind::Binary(op, l, r) => {
                let lt = self.cond_type(l, input_ty, local);
                let rt = self.cond_type(r, input_ty, local);
                self.binary_type(*op, lt?, rt?, e.span)?
            }
            _ => return None,
        })
    }

    /// E0315 for `resolve_timeout` on a respond stage fed incidents (routing): it counts
    /// from the upstream incident's last transition, which comes only when that incident
    /// changes, so a routed incident would resolve while its upstream one still fires.
    fn check_routing_options(&mut self, s: &super::CheckedStage, types: &[Option<Option<Ty>>], local: &Local) {
        let Some(span) = s.options.iter().find_map(|(o, span)| matches!(o, crate::dag::StageOpt::ResolveTimeout { .. }).then_some(*span))
        else {
            return;
        };
        let upstream = s.call.inputs.first().and_then(|(_, i)| match i {
            Input::Stage(n) => local.stages.get(n.node.as_str()).filter(|(j, _)| types[*j].flatten() == Some(Ty::Incidents)).map(|_| n),
            _ => None,
        });
        if let Some(n) = upstream {
            self.cx.diags.push(
                Diagnostic::error(Code::E0315, span, "`resolve_timeout` does not apply to a stage fed incidents")
                    .with_label("the routed incidents resolve with the upstream ones")
                    .with_help(format!("give `resolve_timeout` to `{}`, the stage whose incidents this one routes", n.node)),
            );
        }
    }

    /// The type of a unary operation, or E0317.
    fn unary_type(&mut self, op: ast::UnaryOp, t: Ty, span: Span) -> Option<Ty> {
        let found = crate::expr::unary_type(op, t);
        if found.is_none() {
            let (word, need) = if op == ast::UnaryOp::Neg { ("-", "a number") } else { ("not", "a Bool") };
            self.cx.diags.push(
                Diagnostic::error(Code::E0317, span, format!("`{word}` cannot apply to a {t}"))
                    .with_label(format!("a {t}"))
                    .with_help(format!("`{word}` takes {need}")),
            );
        }
        found
    }

    /// The type of a binary operation, or E0317.
    fn binary_type(&mut self, op: ast::BinaryOp, lt: Ty, rt: Ty, span: Span) -> Option<Ty> {
        let t = crate::expr::binary_type(op, lt, rt);
        if t.is_none() {
            self.cx.diags.push(
                Diagnostic::error(Code::E0317, span, format!("`{}` cannot combine a {lt} and a {rt}", op.as_str()))
                    .with_label("invalid operands")
                    .with_help(
                        "arithmetic takes numbers (and durations with integers), comparisons take like with like, `and`/`or` take Bools",
                    ),
            );
        }
        t
    }

    fn warn_unused(&mut self, stages: &[super::CheckedStage], used: &HashSet<String>) {
        for s in stages {
            let n = s.name.node.as_str();
            if s.kind == StageKind::Respond || used.contains(n) || n.starts_with('_') {
                continue;
            }
            self.cx.diags.push(
                Diagnostic::warning(Code::W0001, s.name.span, format!("stage `{n}` is never used"))
                    .with_label("no stage reads its output")
                    .with_help(format!("use it, remove it, or rename it `_{n}` to keep it")),
            );
        }
    }
}

#[derive(Clone, Debug)]
enum Bound {
    Input(Input),
    Value(Expr),
    /// An argument that was reported; the slot counts as given.
    Failed,
}

/// The stage kind that yields a port type.
fn kind_for(t: Ty) -> StageKind {
    match t {
        Ty::Model => StageKind::Train,
        Ty::Scores => StageKind::Predict,
        Ty::Incidents => StageKind::Respond,
        _ => StageKind::Preprocess,
    }
}

fn input_span(i: &Input) -> Span {
    match i {
        Input::Stage(n) | Input::Param(n) => n.span,
        Input::Call(c) => c.span,
    }
}

/// An example literal of a type, for help texts.
fn example_value(t: Ty) -> String {
    match t {
        Ty::Int => "10".into(),
        Ty::Float => "0.5".into(),
        Ty::Bool => "true".into(),
        Ty::String => "\"...\"".into(),
        Ty::Duration => "5m".into(),
        Ty::Secret => "secret(\"env:NAME\")".into(),
        Ty::Map => "{ key: \"value\" }".into(),
        Ty::List(s) => format!("[{}]", example_value(s.ty())),
        Ty::Condition => "input.anomalous".into(),
        other => other.to_string(),
    }
}

/// Calls `f` with every bare name in an expression (not field names).
fn check_names(e: &Expr, f: &mut dyn FnMut(&str)) {
    walk_names(e, &mut |n, _| f(n));
}

fn walk_names(e: &Expr, f: &mut dyn FnMut(&str, Span)) {
    match &e.kind {
        ExprKind::Name(n) => f(n, e.span),
        ExprKind::Field(inner, _) | ExprKind::Unary(_, inner) | ExprKind::Secret(inner) => walk_names(inner, f),
        ExprKind::Binary(_, l, r) | ExprKind::Pipe(l, r) => {
            walk_names(l, f);
            walk_names(r, f);
        }
        ExprKind::List(items) => items.iter().for_each(|i| walk_names(i, f)),
        ExprKind::Map(entries) => entries.iter().for_each(|(_, v)| walk_names(v, f)),
        ExprKind::Call { callee, args } => {
            walk_names(callee, f);
            args.iter().for_each(|a| walk_names(&a.value, f));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orderings_the_checker_accepts_are_those_the_evaluator_computes() {
        use ast::BinaryOp::Lt;
        let item = |t: &str| crate::expr::fold(&crate::syntax::parse_expr(t).unwrap(), &|_| None);
        for (l, r, text) in
            [(Ty::String, Ty::String, "\"a\" < \"b\""), (Ty::Duration, Ty::Duration, "1m < 1h"), (Ty::Int, Ty::Float, "1 < 1.5")]
        {
            assert_eq!(crate::expr::binary_type(Lt, l, r), Some(Ty::Bool), "{text}");
            assert_eq!(item(text), Ok(crate::value::Value::Bool(true)), "{text}");
        }
        for (l, r, text) in [(Ty::String, Ty::Int, "\"a\" < 1"), (Ty::Bool, Ty::Bool, "false < true"), (Ty::Duration, Ty::Int, "1m < 5")] {
            assert_eq!(crate::expr::binary_type(Lt, l, r), None, "{text}");
            assert!(item(text).is_err(), "{text}");
        }
    }

    #[test]
    fn cycle_path_follows_edges() {
        let mut g: DiGraph<&str, ()> = DiGraph::new();
        let a = g.add_node("a");
        let b = g.add_node("b");
        let c = g.add_node("c");
        g.add_edge(a, b, ());
        g.add_edge(b, c, ());
        g.add_edge(c, a, ());
        let members = HashSet::from([a, b, c]);
        let cycle = find_cycle(&g, a, &members);
        assert_eq!(cycle.iter().map(|n| g[*n]).collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
