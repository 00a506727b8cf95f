//! Checking: ASTs of all files → [`Checked`].
//!
//! Input: the parsed user files and stdlib modules ([`ModuleInput`]). Output: every
//! pipeline and stage template with names resolved, calls bound to the signatures of
//! built-in operators or templates, port types known on every edge, options validated.
//! Values stay expressions here (template parameters are only known at expansion);
//! `plan` evaluates them.
//!
//! Invariants: a `Checked` is only returned when no error was found; all errors of the
//! phase are reported at once, and a name whose definition failed causes no second error.
//! Nothing here recurses over user input deeper than the expression depth bound: stage
//! graphs are walked iteratively (petgraph).
//!
//! Codes: E0201–E0212, E0301–E0318, E0401–E0408, E0501, E0502, W0001–W0004.

mod body;
pub mod options;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::diagnostic::{suggest, Code, Diagnostic, Diagnostics};
use crate::source::{SourceId, Span};
use crate::stages::{OperatorSpec, Ty};
use crate::syntax::ast::{self, Ident, StageKind};

pub use body::{Call, Callee, Input, ValueArg};
pub use options::StageOpt;

/// How a file entered the compilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleRole {
    /// A file the user named: its pipelines run.
    Root,
    /// A file reached only through `use "file.vigil"`: it contributes templates.
    Imported,
    /// An embedded stdlib module.
    Stdlib,
}

/// One parsed file handed to the checker.
#[derive(Debug)]
pub struct ModuleInput {
    pub source: SourceId,
    /// `std.detect` for stdlib modules; the path for files.
    pub name: String,
    pub role: ModuleRole,
    pub file: ast::File,
    /// For each `use "file"` in this file (by the span of its path), the module it loaded,
    /// or `None` if it could not be read (already reported as E0207).
    pub file_imports: HashMap<Span, Option<usize>>,
}

/// Index of a template in [`Checked::templates`].
pub type TemplateId = usize;

/// The checked program.
#[derive(Debug)]
pub struct Checked {
    pub pipelines: Vec<CheckedPipeline>,
    pub templates: Vec<CheckedTemplate>,
    /// Warnings found while checking (errors prevent a `Checked`).
    pub warnings: Vec<Diagnostic>,
}

/// A pipeline, checked.
#[derive(Debug)]
pub struct CheckedPipeline {
    pub name: Ident,
    pub doc: Vec<String>,
    pub source: SourceId,
    pub triggers: Vec<Trigger>,
    pub stages: Vec<CheckedStage>,
    pub span: Span,
}

pub use crate::dag::Trigger;

/// A stage template, checked.
#[derive(Debug)]
pub struct CheckedTemplate {
    pub name: Ident,
    /// The module that defines it (`std.detect` or a path).
    pub module: String,
    pub doc: Vec<String>,
    pub params: Vec<TemplateParam>,
    pub output: Ty,
    pub stages: Vec<CheckedStage>,
    pub result: Input,
    pub span: Span,
}

/// A template parameter.
#[derive(Debug, Clone)]
pub struct TemplateParam {
    pub name: Ident,
    pub ty: Ty,
    pub default: Option<ast::Expr>,
    pub doc: Vec<String>,
}

/// A stage, checked: its call bound to a signature, and its options.
#[derive(Debug, Clone)]
pub struct CheckedStage {
    pub name: Ident,
    pub kind: StageKind,
    pub doc: Vec<String>,
    pub call: Call,
    pub options: Vec<(StageOpt, Span)>,
    pub span: Span,
}

// ---------------------------------------------------------------------------------------
// Module scopes
// ---------------------------------------------------------------------------------------

/// What a name in a module's scope stands for.
#[derive(Clone, Copy, Debug)]
enum Binding {
    Template(TemplateId),
    Module(usize),
    /// An import that failed (already reported): uses of the name report nothing more.
    Broken,
}

/// The names a module sees.
#[derive(Default, Clone)]
pub(crate) struct Scope {
    names: HashMap<String, (Binding, Span)>,
    /// Imports not yet used, for W0002: name → span of the `use`.
    unused_imports: HashMap<String, Span>,
}

/// Checks all modules. Returns the checked program, or the diagnostics if any is an
/// error. Warnings come with the program.
pub fn check<'m>(modules: &'m [ModuleInput]) -> Result<Checked, Diagnostics> {
    let mut cx = Cx { modules, diags: Vec::new(), sigs: Vec::new(), template_defs: Vec::new(), exports: Vec::new() };
    cx.collect_templates();
    let mut scopes: Vec<Scope> = modules.iter().enumerate().map(|(i, _)| cx.module_scope(i)).collect();

    // Templates first, so that their output types are known when pipelines use them.
    let mut templates = Vec::new();
    for tid in 0..cx.template_defs.len() {
        let (mi, def) = cx.template_defs[tid];
        let t = body::check_template(&mut cx, &mut scopes[mi], mi, def);
        templates.push(t);
    }
    cx.check_template_recursion(&templates);

    let mut seen_pipelines: HashMap<&str, Span> = HashMap::new();
    let mut work: Vec<(usize, &ast::Pipeline)> = Vec::new();
    for (mi, m) in modules.iter().enumerate() {
        if m.role != ModuleRole::Root {
            continue;
        }
        for item in &m.file.items {
            if let ast::Item::Pipeline(p) = item {
                if let Some(first) = seen_pipelines.get(p.name.node.as_str()) {
                    cx.diags.push(duplicate(&p.name, *first, "pipeline"));
                } else {
                    seen_pipelines.insert(&p.name.node, p.name.span);
                }
                work.push((mi, p));
            }
        }
    }
    // Pipelines are checked independently: in parallel when there are many, each thread
    // with its own copy of the module scopes. Afterwards an import counts as used if any
    // thread used it, and webhook paths are compared across threads.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let check_part = |mut cx: Cx<'m>, mut scopes: Vec<Scope>, part: &[(usize, &ast::Pipeline)]| {
        let mut webhook_paths: HashMap<String, Span> = HashMap::new();
        let mut out = Vec::with_capacity(part.len());
        for (mi, p) in part {
            out.push(body::check_pipeline(&mut cx, &mut scopes[*mi], p, &mut webhook_paths));
        }
        (out, cx.diags, scopes, webhook_paths)
    };
    let results = if work.len() < 256 || threads < 2 {
        vec![check_part(cx.fork(), scopes.clone(), &work)]
    } else {
        let per = work.len().div_ceil(threads);
        let forks: Vec<_> = work.chunks(per).map(|part| (cx.fork(), scopes.clone(), part)).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = forks.into_iter().map(|(c, s, part)| scope.spawn(move || check_part(c, s, part))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect::<Vec<_>>()
        })
    };
    let mut pipelines = Vec::with_capacity(work.len());
    let mut webhook_paths: HashMap<String, Span> = HashMap::new();
    let mut part_scopes = Vec::new();
    for (checked, diags, part_scope, paths) in results {
        pipelines.extend(checked);
        cx.diags.extend(diags);
        part_scopes.push(part_scope);
        let mut paths: Vec<_> = paths.into_iter().collect();
        paths.sort_by_key(|(_, s)| *s);
        for (path, span) in paths {
            if let Some(first) = webhook_paths.get(&path) {
                cx.diags.push(
                    Diagnostic::error(Code::E0408, span, format!("webhook path `{path}` is used twice"))
                        .with_label("listened on again here")
                        .with_secondary(*first, "first used here")
                        .with_help("give each trigger its own path"),
                );
            } else {
                webhook_paths.insert(path, span);
            }
        }
    }
    for (mi, scope) in scopes.iter_mut().enumerate() {
        scope.unused_imports.retain(|name, _| part_scopes.iter().all(|ps| ps[mi].unused_imports.contains_key(name)));
    }
    for (mi, scope) in scopes.iter().enumerate() {
        if modules[mi].role == ModuleRole::Stdlib {
            continue;
        }
        let mut unused: Vec<_> = scope.unused_imports.iter().collect();
        unused.sort_by_key(|(_, s)| **s);
        for (name, span) in unused {
            cx.diags.push(
                Diagnostic::warning(Code::W0002, *span, format!("unused import `{name}`"))
                    .with_label("imported here, never used")
                    .with_help("remove the `use`"),
            );
        }
    }
    let mut diags = Diagnostics(cx.diags);
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(Checked { pipelines, templates, warnings: diags.0 })
}

/// Parameters of stdlib templates renamed to the names of the operators they wrap, still
/// accepted for one release with W0005: module, template, old name, new name.
pub const RENAMED_PARAMS: &[(&str, &str, &str, &str)] = &[
    ("std.respond", "page", "email", "to"),
    ("std.respond", "page", "scores", "input"),
    ("std.respond", "notify_slack", "scores", "input"),
    ("std.respond", "page_pagerduty", "scores", "input"),
    ("std.collect", "file", "columns", "value_columns"),
];

/// The namespaces of built-in operators: `prometheus` of `prometheus.query_range`, `logs`.
pub fn builtin_namespaces() -> &'static [&'static str] {
    static NAMESPACES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMESPACES.get_or_init(|| {
        let mut v: Vec<&'static str> = crate::operators::specs().filter_map(|o| o.name.split_once('.').map(|(ns, _)| ns)).collect();
        v.sort_unstable();
        v.dedup();
        v
    })
}

/// E0212: a module imported under the name of a built-in namespace.
fn shadows_namespace(u: &ast::Use, name: &Ident) -> Diagnostic {
    let ns = name.node.as_str();
    let ops: Vec<String> = crate::operators::specs()
        .filter(|o| o.name.split_once('.').is_some_and(|(n, _)| n == ns))
        .map(|o| format!("`{}`", o.name))
        .collect();
    let other = format!("{ns}_lib");
    let help = match &u.target {
        ast::UseTarget::File { path, .. } => format!("import it under another name: `use \"{}\" as {other}`", path.node),
        ast::UseTarget::Path { path, .. } => {
            let full = path.iter().map(|i| i.node.as_str()).collect::<Vec<_>>().join(".");
            format!("import it under another name (`use {full} as {other}`), or import its templates by name (`use {full}.{{...}}`)")
        }
        ast::UseTarget::Group { .. } => format!("import it under another name, such as `{other}`"),
    };
    Diagnostic::error(Code::E0212, name.span, format!("the import `{ns}` would hide the built-in namespace `{ns}`"))
        .with_label(format!("{} would no longer be reachable", ops.join(", ")))
        .with_help(help)
}

/// Binds a name whose import failed, so that its uses are not reported again.
fn broken(scope: &mut Scope, name: &Ident) {
    scope.names.entry(name.node.clone()).or_insert((Binding::Broken, name.span));
}

pub(crate) struct Cx<'m> {
    pub modules: &'m [ModuleInput],
    pub diags: Vec<Diagnostic>,
    /// Template names per module: name → id.
    exports: Vec<BTreeMap<String, TemplateId>>,
    /// For each template id: its module and definition.
    template_defs: Vec<(usize, &'m ast::Template)>,
    /// Template signatures, resolved before any body is checked.
    pub(crate) sigs: Vec<TemplateSig>,
}

fn duplicate(name: &Ident, first: Span, what: &str) -> Diagnostic {
    Diagnostic::error(Code::E0204, name.span, format!("{what} `{}` is defined twice", name.node))
        .with_label("defined again here")
        .with_secondary(first, "first defined here")
        .with_help("rename one of them")
}

impl<'m> Cx<'m> {
    /// A copy for checking some pipelines on another thread, with no diagnostics yet, and
    /// this context unchanged.
    fn fork(&self) -> Cx<'m> {
        Cx {
            modules: self.modules,
            diags: Vec::new(),
            exports: self.exports.clone(),
            template_defs: self.template_defs.clone(),
            sigs: self.sigs.clone(),
        }
    }

    fn collect_templates(&mut self) {
        for (mi, m) in self.modules.iter().enumerate() {
            let mut names: BTreeMap<String, TemplateId> = BTreeMap::new();
            let mut spans: HashMap<String, Span> = HashMap::new();
            for item in &m.file.items {
                if let ast::Item::Template(t) = item {
                    if let Some(first) = spans.get(&t.name.node) {
                        self.diags.push(duplicate(&t.name, *first, "stage template"));
                        continue;
                    }
                    spans.insert(t.name.node.clone(), t.name.span);
                    let id = self.template_defs.len();
                    self.template_defs.push((mi, t));
                    let sig = body::template_sig(self, t);
                    self.sigs.push(sig);
                    names.insert(t.name.node.clone(), id);
                }
            }
            self.exports.push(names);
        }
    }

    /// The module named by a dotted `std.x.y` path.
    fn stdlib_module(&self, path: &str) -> Option<usize> {
        self.modules.iter().position(|m| m.role == ModuleRole::Stdlib && m.name == path)
    }

    fn stdlib_names(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().filter(|m| m.role == ModuleRole::Stdlib).map(|m| m.name.as_str())
    }

    /// Builds the scope of module `mi` from its templates and imports.
    fn module_scope(&mut self, mi: usize) -> Scope {
        let mut scope = Scope::default();
        for (name, id) in &self.exports[mi] {
            let span = self.template_defs[*id].1.name.span;
            scope.names.insert(name.clone(), (Binding::Template(*id), span));
        }
        let module = &self.modules[mi];
        for item in &module.file.items {
            let ast::Item::Use(u) = item else { continue };
            let bind = |cx: &mut Self, scope: &mut Scope, name: &Ident, b: Binding| {
                if matches!(b, Binding::Module(_)) && builtin_namespaces().contains(&name.node.as_str()) {
                    cx.diags.push(shadows_namespace(u, name));
                    broken(scope, name);
                    return;
                }
                if let Some((_, first)) = scope.names.get(&name.node) {
                    cx.diags.push(
                        Diagnostic::error(Code::E0208, name.span, format!("`{}` is imported twice", name.node))
                            .with_label("imported again here")
                            .with_secondary(*first, "first bound here")
                            .with_help("import one of them under another name with `as`"),
                    );
                    return;
                }
                scope.names.insert(name.node.clone(), (b, name.span));
                scope.unused_imports.insert(name.node.clone(), name.span);
            };
            match &u.target {
                ast::UseTarget::File { path, alias } => {
                    let Some(Some(target)) = module.file_imports.get(&path.span) else { continue };
                    let name = alias.clone().unwrap_or_else(|| {
                        let stem = std::path::Path::new(&path.node).file_stem().and_then(|s| s.to_str()).unwrap_or("module").to_owned();
                        Ident::new(stem, path.span)
                    });
                    bind(self, &mut scope, &name, Binding::Module(*target));
                }
                ast::UseTarget::Path { path, alias } => {
                    let full = path.iter().map(|i| i.node.as_str()).collect::<Vec<_>>().join(".");
                    let last = path.last().expect("grammar: a use path has a segment");
                    if let Some(m) = self.stdlib_module(&full) {
                        bind(self, &mut scope, alias.as_ref().unwrap_or(last), Binding::Module(m));
                        continue;
                    }
                    // `use std.detect.robust_zscore`: an item of a module.
                    let (head, _) = path.split_at(path.len() - 1);
                    let head_name = head.iter().map(|i| i.node.as_str()).collect::<Vec<_>>().join(".");
                    match self.stdlib_module(&head_name) {
                        Some(m) if !head.is_empty() => match self.exports[m].get(&last.node) {
                            Some(id) => bind(self, &mut scope, alias.as_ref().unwrap_or(last), Binding::Template(*id)),
                            None => {
                                self.unknown_item(m, last);
                                broken(&mut scope, alias.as_ref().unwrap_or(last));
                            }
                        },
                        _ => {
                            self.unknown_module(path, &full);
                            broken(&mut scope, alias.as_ref().unwrap_or(last));
                        }
                    }
                }
                ast::UseTarget::Group { path, names } => {
                    let full = path.iter().map(|i| i.node.as_str()).collect::<Vec<_>>().join(".");
                    let Some(m) = self.stdlib_module(&full) else {
                        self.unknown_module(path, &full);
                        names.iter().for_each(|n| broken(&mut scope, n));
                        continue;
                    };
                    for n in names {
                        match self.exports[m].get(&n.node) {
                            Some(id) => bind(self, &mut scope, n, Binding::Template(*id)),
                            None => {
                                self.unknown_item(m, n);
                                broken(&mut scope, n);
                            }
                        }
                    }
                }
            }
        }
        scope
    }

    fn unknown_module(&mut self, path: &[Ident], full: &str) {
        let span = path.first().expect("a path").span.to(path.last().expect("a path").span);
        let names: Vec<String> = self.stdlib_names().map(str::to_owned).collect();
        let help = suggest(full, names.iter().map(String::as_str)).unwrap_or_else(|| format!("stdlib modules: {}", names.join(", ")));
        self.diags
            .push(Diagnostic::error(Code::E0205, span, format!("unknown module `{full}`")).with_label("no such module").with_help(help));
    }

    fn unknown_item(&mut self, module: usize, name: &Ident) {
        let items: Vec<&str> = self.exports[module].keys().map(String::as_str).collect();
        let help = suggest(&name.node, items.iter().copied())
            .unwrap_or_else(|| format!("`{}` defines: {}", self.modules[module].name, items.join(", ")));
        self.diags.push(
            Diagnostic::error(Code::E0206, name.span, format!("module `{}` has no stage `{}`", self.modules[module].name, name.node))
                .with_label("not defined there")
                .with_help(help),
        );
    }

    /// Resolves a callee path to an operator or template. Reports E0203/E0206 and returns
    /// `None` when it resolves to nothing.
    pub(crate) fn resolve_callee(&mut self, scope: &mut Scope, path: &[(&str, Span)]) -> Option<Callee> {
        let (head, head_span) = path[0];
        if path.len() == 1 {
            if let Some((b, _)) = scope.names.get(head).copied() {
                scope.unused_imports.remove(head);
                match b {
                    Binding::Template(id) => return Some(Callee::Template(id)),
                    Binding::Broken => return None,
                    Binding::Module(_) => {}
                }
            }
            if let Some(op) = crate::operators::spec(head) {
                return Some(Callee::Op(op));
            }
        } else if let Some((Binding::Broken, _)) = scope.names.get(head).copied() {
            return None;
        } else if let Some((Binding::Module(m), _)) = scope.names.get(head).copied() {
            scope.unused_imports.remove(head);
            let span = path[1].1;
            if path.len() == 2 {
                if let Some(id) = self.exports[m].get(path[1].0) {
                    return Some(Callee::Template(*id));
                }
            }
            let name = Ident::new(path[1..].iter().map(|p| p.0).collect::<Vec<_>>().join("."), span);
            self.unknown_item(m, &name);
            return None;
        } else {
            let full = path.iter().map(|p| p.0).collect::<Vec<_>>().join(".");
            if let Some(op) = crate::operators::spec(&full) {
                return Some(Callee::Op(op));
            }
        }
        let full = path.iter().map(|p| p.0).collect::<Vec<_>>().join(".");
        let span = head_span.to(path[path.len() - 1].1);
        let mut candidates: Vec<String> = crate::operators::specs().map(|o| o.name.to_owned()).collect();
        candidates.extend(scope.names.keys().cloned());
        let mut d = Diagnostic::error(Code::E0203, span, format!("unknown operator or template `{full}`"))
            .with_label("not an operator or stage template");
        let module_hint = self.stdlib_module(&format!("std.{head}")).filter(|_| path.len() > 1);
        if let Some(help) = suggest(&full, candidates.iter().map(String::as_str)) {
            d = d.with_help(help);
        } else if let Some(m) = module_hint {
            d = d.with_help(format!("import the module first: `use {}`", self.modules[m].name));
        } else if let Some((m, id)) = self.find_template_anywhere(&full) {
            d = d
                .with_help(format!("`{full}` is defined in `{}`: add `use {}.{{{full}}}`", self.modules[m].name, self.modules[m].name))
                .with_secondary(self.template_defs[id].1.name.span, "defined here");
        } else {
            d = d.with_help("see `vigil explain operators` for the built-in operators");
        }
        self.diags.push(d);
        None
    }

    fn find_template_anywhere(&self, name: &str) -> Option<(usize, TemplateId)> {
        self.exports.iter().enumerate().find_map(|(m, ex)| ex.get(name).map(|id| (m, *id)))
    }

    /// E0502: templates that call themselves through a chain of templates.
    fn check_template_recursion(&mut self, templates: &[CheckedTemplate]) {
        use petgraph::graph::DiGraph;
        let mut g: DiGraph<TemplateId, Span> = DiGraph::new();
        let nodes: Vec<_> = (0..templates.len()).map(|i| g.add_node(i)).collect();
        for (i, t) in templates.iter().enumerate() {
            for s in &t.stages {
                s.call.for_each_template_call(&mut |id, span| {
                    g.add_edge(nodes[i], nodes[id], span);
                });
            }
            if let Input::Call(c) = &t.result {
                c.for_each_template_call(&mut |id, span| {
                    g.add_edge(nodes[i], nodes[id], span);
                });
            }
        }
        for scc in petgraph::algo::tarjan_scc(&g) {
            let is_cycle = scc.len() > 1 || g.find_edge(scc[0], scc[0]).is_some();
            if !is_cycle {
                continue;
            }
            let members: HashSet<_> = scc.iter().copied().collect();
            // Start at the template defined first, for a stable message.
            let start = *scc.iter().min_by_key(|n| templates[g[**n]].span).expect("non-empty");
            let cycle = body::find_cycle(&g, start, &members);
            let names: Vec<String> = cycle.iter().map(|n| templates[g[*n]].name.node.clone()).collect();
            let first = cycle[0];
            let next = cycle.get(1).copied().unwrap_or(first);
            let edge = g.find_edge(first, next).expect("cycle edge");
            let mut d = Diagnostic::error(Code::E0502, g[edge], format!("recursive template: {} → {}", names.join(" → "), names[0]))
                .with_label(format!("`{}` calls `{}` here", names[0], names.get(1).unwrap_or(&names[0])))
                .with_help("a template cannot call itself, directly or through other templates");
            for w in cycle.windows(2).skip(1) {
                if let Some(e) = g.find_edge(w[0], w[1]) {
                    d = d.with_secondary(g[e], format!("`{}` calls `{}` here", templates[g[w[0]]].name.node, templates[g[w[1]]].name.node));
                }
            }
            if cycle.len() > 1 {
                let last = *cycle.last().expect("non-empty");
                if let Some(e) = g.find_edge(last, first) {
                    d = d.with_secondary(g[e], format!("`{}` calls `{}` here", templates[g[last]].name.node, names[0]));
                }
            }
            self.diags.push(d);
        }
    }
}

/// The signature view shared by operators and templates: inputs (stage-valued) then
/// parameters (values), in positional order.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub name: String,
    /// Port types accepted for an input; `None` for a value parameter.
    pub ports: Option<Vec<Ty>>,
    pub ty: Ty,
    pub required: bool,
    /// An input taking every positional argument from here on.
    pub many: bool,
}

impl Callee {
    /// The callee's slots: shared, so that binding a call allocates nothing for them.
    pub(crate) fn slots(&self, templates: &[TemplateSig]) -> std::sync::Arc<[Slot]> {
        match self {
            Callee::Op(op) => op_slots(op),
            Callee::Template(id) => templates[*id].slots.clone(),
        }
    }
}

/// An operator's slots, computed once per operator.
fn op_slots(op: &'static OperatorSpec) -> std::sync::Arc<[Slot]> {
    use std::sync::{Arc, OnceLock};
    static CACHE: OnceLock<Vec<Arc<[Slot]>>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        crate::operators::specs()
            .map(|op| {
                let mut v: Vec<Slot> = op
                    .inputs
                    .iter()
                    .map(|i| Slot { name: i.name.into(), ports: Some(i.types.to_vec()), ty: i.types[0], required: true, many: i.many })
                    .collect();
                v.extend(op.all_params().map(|p| Slot {
                    name: p.name.into(),
                    ports: None,
                    ty: p.ty,
                    required: p.default == crate::stages::Default::Required,
                    many: false,
                }));
                Arc::from(v)
            })
            .collect()
    });
    let i = crate::operators::specs().position(|o| std::ptr::eq(o, op)).expect("a registered operator");
    all[i].clone()
}

/// A template's signature, known before its body is checked.
#[derive(Debug, Clone)]
pub(crate) struct TemplateSig {
    pub slots: std::sync::Arc<[Slot]>,
    pub output: Option<Ty>,
    pub name: String,
    pub span: Span,
    /// The header has errors (reported): calls to it are not checked further.
    pub broken: bool,
}
