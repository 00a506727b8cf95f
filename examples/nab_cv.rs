//! Leave-one-category-out cross-validation of the NAB detector (`vigil::learn::novelty`,
//! the `novelty` operator behind the stdlib's `nab` stage) over NAB dev, plus a generated
//! labelled set (`vigil::eval::synth`) to see whether the chosen threshold transfers.
//!
//! ```text
//! cargo run --release --example nab_cv                                  # the default Params
//! cargo run --release --example nab_cv -- --grid "ctx_persist=0.5,1;floor_q_ctx=0,0.999;odds_factor=1,2" --files
//! cargo run --release --example nab_cv -- --grid "ctx_persist=0.5,1;floor_q_ctx=0,0.999;odds_factor=1,2;long_days=2,4"
//! cargo run --release --example nab_cv -- --set "ctx_persist=1;floor_q_ctx=0"   # one fixed setting
//! cargo run --release --example nab_cv -- --write-synth /tmp/synth     # also writes the generated set
//! cargo run --example nab_cv -- --pipeline fc.vigil --synth 0     # a pipeline, e.g. a stdlib detector
//! cargo run --example nab_cv -- --pipeline exp.vigil --set "epochs=20" --grid "suppress=12h,1d"
//! ```
//!
//! With `--pipeline FILE`, the grid is over the file's text: `${key}` is replaced by the
//! values of `--set` and `--grid`, every file is replayed through the pipeline as `vigil
//! eval` does (each from scratch, `--threads` at once, default one per core) and its
//! `scores` are scored. The stdlib is read from `--stdlib DIR` (default the crate's
//! `stdlib/`) at run time, so edits to it need no rebuild. The generated set is replayed
//! from CSVs written to a temporary directory (`--synth 0` skips it). The reported time is
//! the dev replay's wall time, training included.
//!
//! Options: `--grid "key=v1,v2;key2=v3,v4"` (the cartesian product of the axes, the first
//! values first), `--set "key=v;key2=v"` (fixed for every grid point), both over the fields
//! of `vigil::learn::novelty::Params`; `--data DIR` (default `../shared/data/nab-dev` from
//! the crate root: one folder per category, and `windows.json`); `--synth N` (30) and
//! `--seed S` (20240601): the generated set; `--files`: per-file results at the chosen
//! threshold; `--write-synth DIR`: writes the generated set as NAB CSVs and `windows.json`
//! (which `vigil eval` reads).
//!
//! Protocol:
//! - Every file is replayed from scratch, one point at a time, as the `novelty` operator
//!   does (memory 25 000, suppress 12 h as in `stdlib/detect.vigil`; non-finite or
//!   out-of-order points score 0). vigil's NAB scorer (`vigil::eval::Corpus`) picks one
//!   threshold per profile for the whole corpus.
//! - One line per grid point: its dev score at its best threshold, the generated set's
//!   score at its own best threshold and at the dev threshold, and the throughput.
//! - CV, one fold per category folder: every grid point is scored on the other categories
//!   at its own best threshold; the grid point with the best normalised training score
//!   (ties: the earlier, simpler one) and its threshold are applied to the held-out
//!   category's files. The held-out raw scores of all folds are summed and normalised with
//!   the summed held-out null (`−fn` per scored window) and perfect (`tp` per window)
//!   scores — NAB's normalisation of a corpus, over the pooled held-out results. (A
//!   category without windows contributes only its false positives.)
//! - Finally the procedure applied to all files: the grid point with the best dev score,
//!   its detection counts per profile, and its score on the generated set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use vigil::compile::{compile_with, CompileOptions};
use vigil::eval::{find_csvs, load_windows, synth, Corpus, FileScores, Profile, Windows, PROFILES};
use vigil::learn::novelty::{NoveltyState, Params};

/// The `novelty` operator's default memory.
const MEMORY: usize = 25_000;
/// The stdlib `nab` stage's quiet period (12 h).
const SUPPRESS_MS: i64 = 12 * 3_600_000;

#[derive(Parser)]
#[command(about = "Leave-one-category-out cross-validation of the novelty detector on NAB dev")]
struct Args {
    /// Grid axes, `key=v1,v2;key2=v3,v4`: every combination is tried.
    #[arg(long)]
    grid: Option<String>,
    /// Fixed parameters, `key=v;key2=v`.
    #[arg(long)]
    set: Option<String>,
    /// The NAB data: one folder per category, and `windows.json`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Series in the generated set.
    #[arg(long, default_value_t = 30)]
    synth: usize,
    /// Seed of the generated set.
    #[arg(long, default_value_t = 20_240_601)]
    seed: u64,
    /// Show per-file results at the chosen threshold.
    #[arg(long)]
    files: bool,
    /// Write the generated set (CSVs and windows.json) under this directory.
    #[arg(long)]
    write_synth: Option<PathBuf>,
    /// Cross-validate a pipeline instead of the novelty detector: a vigil file whose
    /// `scores` stage is scored (as `vigil eval` does). `${key}` in its text is replaced by
    /// the values of `--set` and `--grid`.
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// The stdlib the pipeline compiles against (default: the crate's `stdlib/`, read at
    /// run time, so that edits need no rebuild).
    #[arg(long)]
    stdlib: Option<PathBuf>,
    /// Files replayed at once (pipelines).
    #[arg(long)]
    threads: Option<usize>,
}

/// What is cross-validated: the novelty detector's Params, or a pipeline's text.
#[derive(Clone)]
enum Detector {
    Novelty(Params),
    Pipeline(String),
}

/// One series to replay.
struct Input {
    name: String,
    /// Its CSV (pipelines replay the file).
    path: PathBuf,
    ts: Vec<i64>,
    xs: Vec<f64>,
}

/// One grid point's scores.
struct ConfigResult {
    label: String,
    dev: Vec<FileScores>,
    synth: Vec<FileScores>,
    pts_per_s: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = args.data.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nab-dev"));
    let grid: Vec<(String, Detector)> = match &args.pipeline {
        None => {
            let mut base = Params::default();
            if let Some(spec) = &args.set {
                for (k, v) in parse_pairs(spec, "--set")? {
                    set_param(&mut base, &k, v, "--set")?;
                }
            }
            println!("base {base:?}; memory {MEMORY}, suppress 12h");
            build_grid(&base, args.grid.as_deref())?.into_iter().map(|(l, p)| (l, Detector::Novelty(p))).collect()
        }
        Some(path) => {
            let mut text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
            for (k, v) in parse_pairs(args.set.as_deref().unwrap_or(""), "--set")? {
                text = text.replace(&format!("${{{k}}}"), v);
            }
            println!("pipeline {} (set: {})", path.display(), args.set.as_deref().unwrap_or("-"));
            text_grid(&text, args.grid.as_deref())?.into_iter().map(|(l, t)| (l, Detector::Pipeline(t))).collect()
        }
    };
    let runner = Runner {
        stdlib: args.stdlib.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib")),
        base_dir: args.pipeline.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_default(),
        threads: args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1),
    };

    let labels = load_windows(&data.join("windows.json"))
        .with_context(|| format!("the NAB data directory is `{}` (set it with --data)", data.display()))?;
    let names = find_csvs(&data)?;
    if names.is_empty() {
        bail!("no CSV files under `{}`", data.display());
    }
    let inputs: Vec<Input> = names
        .iter()
        .map(|n| load_csv(&data.join(n)).map(|(ts, xs)| Input { name: n.clone(), path: data.join(n), ts, xs }))
        .collect::<anyhow::Result<_>>()?;
    let set = synth::generate(args.synth, args.seed);
    let synth_dir = match (&args.write_synth, &args.pipeline) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(_)) if !set.is_empty() => Some(std::env::temp_dir().join(format!("nab_cv_synth_{}", std::process::id()))),
        _ => None,
    };
    if let Some(dir) = &synth_dir {
        synth::write(&set, dir).with_context(|| format!("cannot write the generated set under `{}`", dir.display()))?;
    }
    let synth_labels = synth::labels(&set);
    let synth_inputs: Vec<Input> = set
        .into_iter()
        .map(|s| Input { path: synth_dir.as_ref().map(|d| d.join(&s.name)).unwrap_or_default(), name: s.name, ts: s.ts, xs: s.xs })
        .collect();
    let standard = &PROFILES[0];

    if let (Some(longest), Detector::Novelty(p)) = (inputs.iter().max_by_key(|i| i.ts.len()), &grid[0].1) {
        let mut d = NoveltyState::with_params(MEMORY, SUPPRESS_MS, p.clone());
        for (&t, &x) in longest.ts.iter().zip(&longest.xs) {
            if x.is_finite() {
                d.push(t, x);
            }
        }
        println!("state after {} ({} rows): {} bytes", longest.name, longest.ts.len(), d.memory_bytes());
    }
    let mut results = Vec::with_capacity(grid.len());
    for (label, p) in &grid {
        let t0 = Instant::now();
        let dev = runner.score_all(p, &inputs)?;
        let secs = t0.elapsed().as_secs_f64();
        let pts: usize = inputs.iter().map(|i| i.ts.len()).sum();
        let pts_per_s = pts as f64 / secs.max(1e-9);
        let synth_scores = runner.score_all(p, &synth_inputs)?;
        let c = Corpus::new(&dev, &labels);
        let (thr, raw) = c.best_threshold(standard);
        let sc = Corpus::new(&synth_scores, &synth_labels);
        let (sthr, sraw) = sc.best_threshold(standard);
        println!(
            "config [{label}]: dev {:.2} @ {thr:.5} | synth best {:.2} @ {sthr:.3}, synth @ dev thr {:.2} | {pts_per_s:.0} pts/s, dev in {secs:.1} s wall",
            c.normalise(standard, raw),
            sc.normalise(standard, sraw),
            sc.normalise(standard, sc.raw_at(standard, thr)),
        );
        results.push(ConfigResult { label: label.clone(), dev, synth: synth_scores, pts_per_s });
    }

    // Leave-one-category-out CV.
    let mut cats: Vec<&str> = names.iter().map(|n| category(n)).collect();
    cats.dedup(); // `names` is sorted
    println!();
    for prof in &PROFILES {
        cross_validate(prof, &cats, &results, &labels, prof.name == "standard");
    }

    // The procedure applied to every file: the grid point with the best dev score.
    let mut best = (0, f64::NEG_INFINITY);
    for (k, r) in results.iter().enumerate() {
        let c = Corpus::new(&r.dev, &labels);
        let s = c.normalise(standard, c.best_threshold(standard).1);
        if s > best.1 + 1e-9 {
            best = (k, s);
        }
    }
    let r = &results[best.0];
    let c = Corpus::new(&r.dev, &labels);
    println!("\nchosen on all {} files: [{}]", names.len(), r.label);
    for prof in &PROFILES {
        let (thr, raw) = c.best_threshold(prof);
        let s = c.detection_stats(thr);
        println!(
            "  dev {:<19} {:6.2} @ {thr:.3}: {} detections, {} adjacent to another, {} FP rows, {}/{} windows",
            prof.name,
            c.normalise(prof, raw),
            s.detections,
            s.adjacent,
            s.false_positives,
            s.windows_detected,
            s.windows_scored
        );
    }
    let (thr, _) = c.best_threshold(standard);
    let sc = Corpus::new(&r.synth, &synth_labels);
    let (sthr, sraw) = sc.best_threshold(standard);
    let ss = sc.detection_stats(thr);
    println!(
        "  synth standard best {:.2} @ {sthr:.3}; at the dev threshold {thr:.3}: {:.2} ({} detections, {} adjacent, {} FP rows, {}/{} windows)",
        sc.normalise(standard, sraw),
        sc.normalise(standard, sc.raw_at(standard, thr)),
        ss.detections,
        ss.adjacent,
        ss.false_positives,
        ss.windows_detected,
        ss.windows_scored
    );
    println!("  throughput {:.0} points/s (dev corpus, detector only, one core)", r.pts_per_s);
    if args.files {
        println!("\nper file at the dev threshold {thr:.3}:");
        for f in c.per_file(standard, thr) {
            println!("  {:<60} {}/{} windows, {:3} FP, {:+.3}", f.file, f.detected, f.windows, f.fp, f.score);
        }
        println!("\ngenerated set per file at the dev threshold:");
        for f in sc.per_file(standard, thr) {
            println!("  {:<75} {}/{} windows, {:3} FP, {:+.3}", f.file, f.detected, f.windows, f.fp, f.score);
        }
    }
    Ok(())
}

/// `key=v;key2=v` (or with `key=v1,v2` values, split by the caller) as (key, value) pairs.
fn parse_pairs<'a>(spec: &'a str, flag: &str) -> anyhow::Result<Vec<(String, &'a str)>> {
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| -> anyhow::Result<(String, &'a str)> {
            let (k, v) = kv.split_once('=').with_context(|| format!("{flag}: `{kv}` is not key=value"))?;
            Ok((k.trim().to_owned(), v.trim()))
        })
        .collect()
}

/// Sets one field of `p` from its text value.
fn set_param(p: &mut Params, key: &str, value: &str, flag: &str) -> anyhow::Result<f64> {
    let v: f64 = value.parse().with_context(|| format!("{flag}: `{value}` (for `{key}`) is not a number"))?;
    if !p.set(key, v) {
        bail!("{flag}: `{key}` is not a field of vigil::learn::novelty::Params");
    }
    Ok(v)
}

/// The grid: the cartesian product of the axes of `spec` over `base`, labelled
/// `key=v key2=v`, the first values first (the simplest setting, when they are listed
/// simplest first, wins ties).
fn build_grid(base: &Params, spec: Option<&str>) -> anyhow::Result<Vec<(String, Params)>> {
    let mut grid = vec![(String::new(), base.clone())];
    for (k, values) in parse_pairs(spec.unwrap_or(""), "--grid")? {
        let mut next = Vec::new();
        for (label, p) in &grid {
            for value in values.split(',').map(str::trim) {
                let mut q = p.clone();
                let v = set_param(&mut q, &k, value, "--grid")?;
                let sep = if label.is_empty() { "" } else { " " };
                next.push((format!("{label}{sep}{k}={v}"), q));
            }
        }
        grid = next;
    }
    if grid[0].0.is_empty() {
        grid[0].0 = "base".to_owned(); // no axis
    }
    Ok(grid)
}

/// A NAB CSV (`timestamp,value` with a header): timestamps (ms) and values (NaN where the
/// value does not parse).
fn load_csv(path: &Path) -> anyhow::Result<(Vec<i64>, Vec<f64>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let (mut ts, mut xs) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let (t, x) = line.split_once(',').with_context(|| format!("{}: expected `timestamp,value`", at()))?;
        ts.push(vigil::time::parse_timestamp(t).with_context(|| format!("{}: `{t}` is not a timestamp", at()))?);
        xs.push(x.trim().parse().unwrap_or(f64::NAN));
    }
    Ok((ts, xs))
}

/// Replays one series through a fresh detector, as the `novelty` operator does.
fn score(p: &Params, input: &Input) -> Vec<f64> {
    let mut d = NoveltyState::with_params(MEMORY, SUPPRESS_MS, p.clone());
    let mut last = i64::MIN;
    input
        .ts
        .iter()
        .zip(&input.xs)
        .map(|(&t, &x)| {
            if !x.is_finite() || t <= last {
                return 0.0;
            }
            last = t;
            d.push(t, x)
        })
        .collect()
}

/// How grid points are scored.
struct Runner {
    stdlib: PathBuf,
    base_dir: PathBuf,
    threads: usize,
}

impl Runner {
    /// Replays every series through a fresh detector: the novelty state (see [`score`]),
    /// or the pipeline as `vigil eval` does (each file from scratch, `threads` at once).
    fn score_all(&self, d: &Detector, inputs: &[Input]) -> anyhow::Result<Vec<FileScores>> {
        let text = match d {
            Detector::Novelty(p) => {
                return Ok(inputs.iter().map(|i| FileScores { name: i.name.clone(), ts: i.ts.clone(), scores: score(p, i) }).collect())
            }
            Detector::Pipeline(text) => text,
        };
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let file = std::env::temp_dir().join(format!("nab_cv_{}.vigil", std::process::id()));
        std::fs::write(&file, text)?;
        let out =
            compile_with(std::slice::from_ref(&file), &CompileOptions { stdlib_dir: Some(self.stdlib.clone()), ..Default::default() })?;
        let Some(plan) = &out.plan else {
            bail!("the pipeline does not compile:\n{}", vigil::diagnostic::render_all(&out.diagnostics.0, &out.sources, false));
        };
        let p = vigil::replay::pick_pipeline(plan, None)?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut results: Vec<Option<anyhow::Result<FileScores>>> = (0..inputs.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.threads.min(inputs.len()))
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(i) = inputs.get(k) else { break };
                            let mut buf = Vec::with_capacity(1 << 20);
                            let r = vigil::replay::replay_to(p, &self.base_dir, &i.path, &mut buf, &i.name)
                                .map(|_| vigil::eval::parse_scores(&i.name, &buf).0)
                                .with_context(|| format!("replaying {}", i.name));
                            done.push((k, r));
                        }
                        done
                    })
                })
                .collect();
            for h in handles {
                for (k, r) in h.join().unwrap_or_default() {
                    results[k] = Some(r);
                }
            }
        });
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("a replay thread stopped")))).collect()
    }
}

/// The grid over a pipeline's text: every combination of the axes' values substituted for
/// `${key}`, the first values first.
fn text_grid(text: &str, spec: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
    let mut grid = vec![(String::new(), text.to_owned())];
    for (k, values) in parse_pairs(spec.unwrap_or(""), "--grid")? {
        let key = format!("${{{k}}}");
        if !text.contains(&key) {
            bail!("--grid: the pipeline has no `{key}`");
        }
        let mut next = Vec::new();
        for (label, t) in &grid {
            for value in values.split(',').map(str::trim) {
                let sep = if label.is_empty() { "" } else { " " };
                next.push((format!("{label}{sep}{k}={value}"), t.replace(&key, value)));
            }
        }
        grid = next;
    }
    if grid[0].0.is_empty() {
        grid[0].0 = "base".to_owned();
    }
    if let Some(rest) = grid[0].1.find("${") {
        bail!("the pipeline still has a placeholder at byte {rest}: give it with --set or --grid");
    }
    Ok(grid)
}

/// The category of `category/file.csv`.
fn category(name: &str) -> &str {
    name.split('/').next().unwrap_or("")
}

/// The files of `files` whose names `keep`, prepared for scoring.
fn corpus_of(files: &[FileScores], keep: impl Fn(&str) -> bool, labels: &Windows) -> Corpus {
    let sel: Vec<FileScores> = files.iter().filter(|f| keep(&f.name)).cloned().collect();
    Corpus::new(&sel, labels)
}

/// One CV run for a profile: prints the pooled score, and the folds when `show`.
fn cross_validate(prof: &Profile, cats: &[&str], results: &[ConfigResult], labels: &Windows, show: bool) {
    let (mut raw, mut null, mut perfect) = (0.0, 0.0, 0.0);
    let mut lines = Vec::new();
    for &held in cats {
        // (grid point, threshold, training score); ties go to the earlier grid point.
        let mut best: Option<(usize, f64, f64)> = None;
        for (k, r) in results.iter().enumerate() {
            let train = corpus_of(&r.dev, |n| category(n) != held, labels);
            let (thr, traw) = train.best_threshold(prof);
            let s = train.normalise(prof, traw);
            if best.is_none_or(|b| s > b.2 + 1e-9) {
                best = Some((k, thr, s));
            }
        }
        let Some((k, thr, train_score)) = best else { return };
        let test = corpus_of(&results[k].dev, |n| category(n) == held, labels);
        let r = test.raw_at(prof, thr);
        let (n0, p0) = test.null_perfect(prof);
        raw += r;
        null += n0;
        perfect += p0;
        let st = test.detection_stats(thr);
        lines.push(format!(
            "    hold out {held:<22} config [{}] thr {thr:.3} (train {train_score:.2}) -> held-out raw {r:+.3} (null {n0:.0}, perfect {p0:.0}), {} det, {} FP, {}/{} windows",
            results[k].label, st.detections, st.false_positives, st.windows_detected, st.windows_scored
        ));
    }
    let score = if perfect > null { 100.0 * (raw - null) / (perfect - null) } else { 0.0 };
    println!("CV {:<19} {score:6.2}  (pooled raw {raw:+.2}, null {null:.0}, perfect {perfect:.0})", prof.name);
    if show {
        for l in lines {
            println!("{l}");
        }
    }
}
