//! The compiler driver: loads files (and the files they import), the stdlib, and runs
//! every phase, collecting diagnostics.
//!
//! ```text
//! paths ─load─▶ SourceMap ─syntax::parse─▶ ModuleInput* ─check─▶ Checked ─plan─▶ Plan
//! ```
//!
//! A phase runs only when the previous one found no errors, and reports every error it
//! finds. I/O problems with the paths the user named are [`LoadError`]s (exit status 2);
//! problems inside the sources, including unreadable imports, are diagnostics (status 1).
//!
//! `test` blocks are checked against the plan here too ([`test_blocks`], their fixtures
//! in [`fixtures`]); `crate::testing` runs them.

pub mod fixtures;
pub mod test_blocks;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::check::{self, ModuleInput, ModuleRole};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::plan::{self, Plan};
use crate::source::{Origin, SourceId, SourceMap};
use crate::syntax::{self, ast};

/// The largest source file read, in bytes.
pub const MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// The most files one compilation loads (roots and imports).
pub const MAX_FILES: usize = 100_000;

/// What compiling produced.
#[derive(Debug)]
pub struct Compiled {
    pub sources: SourceMap,
    /// Errors and warnings of every phase that ran, sorted by file and position.
    pub diagnostics: Diagnostics,
    /// The plan, when there were no errors.
    pub plan: Option<Plan>,
    /// The `test` items, checked against the plan (`vigil test`).
    pub tests: Vec<test_blocks::TestCase>,
    /// A content hash of every source compiled (user files, imports and stdlib): the
    /// version of the plan.
    pub version: String,
    /// How many user files (roots and imports) were compiled.
    pub user_files: usize,
    /// Wall time of each phase that ran: `load+parse`, `check`, `plan`.
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

/// Where the stdlib comes from.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Read the stdlib modules from this directory (`<dir>/<name>.vigil` is `std.<name>`)
    /// instead of the embedded copies.
    pub stdlib_dir: Option<PathBuf>,
    /// Leave out the `*.test.vigil` files found in directories (`vigil run`: a broken test
    /// must not keep the pipelines from running; `vigil check` and `vigil test` report it).
    pub skip_test_files: bool,
}

/// An I/O problem with a path the user named.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is {size} bytes; the largest source file vigil reads is {MAX_FILE_SIZE} bytes")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("more than {MAX_FILES} source files")]
    TooMany,
}

/// Compiles the files and directories at `paths` (directories are searched recursively
/// for `*.vigil` files) with the embedded stdlib.
///
/// # Errors
/// When a named path cannot be read.
pub fn compile(paths: &[PathBuf]) -> Result<Compiled, LoadError> {
    compile_with(paths, &CompileOptions::default())
}

/// [`compile`] with options.
///
/// # Errors
/// When a named path, or the stdlib directory, cannot be read.
pub fn compile_with(paths: &[PathBuf], options: &CompileOptions) -> Result<Compiled, LoadError> {
    let mut files = source_files(paths)?;
    if options.skip_test_files {
        files.retain(|f| tested_file(f).is_none() || paths.contains(f));
    }
    // A test file `NAME.test.vigil` is compiled with the pipeline file beside it.
    for f in files.clone() {
        if let Some(pipeline) = tested_file(&f) {
            if pipeline.is_file() && !files.contains(&pipeline) {
                files.push(pipeline);
            }
        }
    }
    let mut roots = Vec::new();
    for f in files {
        let bytes = read_limited(&f)?;
        roots.push(Root { name: f.display().to_string(), path: Some(f), bytes });
    }
    let stdlib = load_stdlib(options)?;
    Ok(compile_roots(roots, stdlib))
}

/// The pipeline file a test file (`NAME.test.vigil`) tests: `NAME.vigil` beside it.
pub fn tested_file(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".test.vigil")?;
    Some(path.with_file_name(format!("{stem}.vigil")))
}

/// Compiles one in-memory file with the embedded stdlib. Imports are resolved relative to
/// the current directory.
pub fn compile_str(name: &str, text: &str) -> Compiled {
    compile_roots(vec![Root { name: name.to_owned(), path: None, bytes: text.as_bytes().to_vec() }], embedded_stdlib())
}

/// One file the user named.
pub struct Root {
    /// The name shown in diagnostics.
    pub name: String,
    pub path: Option<PathBuf>,
    pub bytes: Vec<u8>,
}

/// A stdlib module's source.
pub struct StdModule {
    pub name: String,
    pub file: String,
    pub path: Option<PathBuf>,
    pub text: String,
}

fn embedded_stdlib() -> Vec<StdModule> {
    crate::stdlib::MODULES
        .iter()
        .map(|m| StdModule { name: m.name.to_owned(), file: m.file.to_owned(), path: None, text: m.text.to_owned() })
        .collect()
}

fn load_stdlib(options: &CompileOptions) -> Result<Vec<StdModule>, LoadError> {
    let Some(dir) = &options.stdlib_dir else { return Ok(embedded_stdlib()) };
    let mut out = Vec::new();
    for f in source_files(std::slice::from_ref(dir))? {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let bytes = read_limited(&f)?;
        out.push(StdModule {
            name: crate::stdlib::module_name(&stem),
            file: f.display().to_string(),
            path: Some(f),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    Ok(out)
}

/// The `*.vigil` files named by `paths`, directories searched recursively (hidden entries
/// skipped), each directory's files sorted.
///
/// # Errors
/// When a path cannot be read.
pub fn source_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| LoadError::Io { path: p.clone(), source })?;
        if !meta.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut stack = vec![p.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|source| LoadError::Io { path: dir.clone(), source })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
                .collect();
            entries.sort();
            let mut subdirs = Vec::new();
            for e in entries {
                if e.is_dir() {
                    subdirs.push(e);
                } else if e.extension().is_some_and(|x| x == "vigil") {
                    out.push(e);
                }
                if out.len() > MAX_FILES {
                    return Err(LoadError::TooMany);
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
    }
    Ok(out)
}

fn read_limited(path: &Path) -> Result<Vec<u8>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(LoadError::TooLarge { path: path.to_owned(), size: meta.len() });
    }
    std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })
}

/// Compiles root files with a stdlib: the core of every entry point.
pub fn compile_roots(roots: Vec<Root>, stdlib: Vec<StdModule>) -> Compiled {
    let started = std::time::Instant::now();
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::default();
    let mut modules: Vec<ModuleInput> = Vec::new();
    let mut hasher = Sha256::new();
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();

    let mut add = |sources: &mut SourceMap,
                   diags: &mut Diagnostics,
                   name: &str,
                   path: Option<&Path>,
                   origin: Origin,
                   bytes: Vec<u8>|
     -> (SourceId, ast::File) {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
        let (text, bad) = syntax::decode(bytes);
        let id = sources.add(name, path, origin, text);
        if let Some(at) = bad {
            diags.push(syntax::invalid_utf8(id, at));
            return (id, ast::File { doc: Vec::new(), items: Vec::new() });
        }
        let parsed = syntax::parse(id, &sources.get(id).text.clone());
        diags.extend(parsed.diagnostics);
        (id, parsed.file)
    };

    for m in stdlib {
        let (source, file) = add(&mut sources, &mut diags, &m.file, m.path.as_deref(), Origin::Stdlib, m.text.into_bytes());
        modules.push(ModuleInput { source, name: m.name, role: ModuleRole::Stdlib, file, file_imports: HashMap::new() });
    }
    let mut queue = VecDeque::new();
    for r in roots {
        if let Some(p) = &r.path {
            let key = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if by_path.contains_key(&key) {
                continue;
            }
            by_path.insert(key, modules.len());
        }
        let (source, file) = add(&mut sources, &mut diags, &r.name, r.path.as_deref(), Origin::User, r.bytes);
        queue.push_back(modules.len());
        modules.push(ModuleInput { source, name: r.name, role: ModuleRole::Root, file, file_imports: HashMap::new() });
    }
    // Imported files, breadth first; each file is loaded once whatever imports it.
    while let Some(mi) = queue.pop_front() {
        let base = sources.get(modules[mi].source).path.as_ref().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
        let imports: Vec<(crate::source::Span, String)> = modules[mi]
            .file
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Use(ast::Use { target: ast::UseTarget::File { path, .. }, .. }) => Some((path.span, path.node.clone())),
                _ => None,
            })
            .collect();
        for (span, rel) in imports {
            let path = base.join(&rel);
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if let Some(&target) = by_path.get(&key) {
                modules[mi].file_imports.insert(span, Some(target));
                continue;
            }
            let read =
                if modules.len() >= MAX_FILES { Err("too many files".to_owned()) } else { read_limited(&path).map_err(|e| e.to_string()) };
            match read {
                Ok(bytes) => {
                    let name = path.display().to_string();
                    let (source, file) = add(&mut sources, &mut diags, &name, Some(&path), Origin::User, bytes);
                    by_path.insert(key, modules.len());
                    let target = modules.len();
                    modules[mi].file_imports.insert(span, Some(target));
                    queue.push_back(modules.len());
                    modules.push(ModuleInput { source, name, role: ModuleRole::Imported, file, file_imports: HashMap::new() });
                }
                Err(why) => {
                    modules[mi].file_imports.insert(span, None);
                    let mut d = Diagnostic::error(Code::E0207, span, format!("cannot read `{rel}`")).with_label(why);
                    d = d.with_help(format!("paths are relative to the importing file; this one resolves to `{}`", path.display()));
                    diags.push(d);
                }
            }
        }
    }
    let version: String = hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let user_files = modules.iter().filter(|m| m.role != ModuleRole::Stdlib).count();
    let mut out = Compiled {
        sources,
        diagnostics: Diagnostics::default(),
        plan: None,
        tests: Vec::new(),
        version,
        user_files,
        timings: vec![("load+parse", started.elapsed())],
    };
    if diags.has_errors() {
        diags.sort();
        out.diagnostics = diags;
        return out;
    }
    let t = std::time::Instant::now();
    let checked = check::check(&modules);
    out.timings.push(("check", t.elapsed()));
    match checked {
        Err(d) => diags.extend(d.0),
        Ok(checked) => {
            diags.extend(checked.warnings.iter().cloned());
            let t = std::time::Instant::now();
            let planned = plan::plan(&checked);
            out.timings.push(("plan", t.elapsed()));
            match planned {
                Ok(p) => {
                    diags.extend(p.pipelines.iter().flat_map(plan::lint));
                    let files: Vec<(crate::source::SourceId, &ast::File)> =
                        modules.iter().filter(|m| m.role != ModuleRole::Stdlib).map(|m| (m.source, &m.file)).collect();
                    let (tests, d) = test_blocks::check_tests(&files, &out.sources, &p);
                    if d.is_empty() {
                        out.tests = tests;
                        out.plan = Some(p);
                    } else {
                        diags.extend(d);
                    }
                }
                Err(d) => diags.extend(d.0),
            }
        }
    }
    diags.sort();
    out.diagnostics = diags;
    out
}
