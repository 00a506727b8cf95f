//! `vigil eval`: replays every CSV under a directory through a pipeline, each from
//! scratch, and scores the results the way the Numenta Anomaly Benchmark (NAB v1.1) does.
//!
//! The scoring, as NAB's `sweeper.py` defines it:
//! - Each file's first `min(⌊0.15·rows⌋, 750)` rows are a probationary period: not scored.
//! - A row inside a labelled window would, if detected, earn `σ(p)·tp / σ(-1)`, where `p`
//!   runs from -1 at the window's first row to about 0 at its last and
//!   `σ(y) = 2/(1+e^{5y}) − 1` (−1 when `y > 3`): early detections earn more. Only the best
//!   detection of a window counts; an undetected window costs `fn`.
//! - A row outside every window, if detected, costs `fp·σ(d)` where `d` is its distance
//!   past the preceding window's end in window lengths (−`fp` when no window precedes):
//!   a detection just after a window costs little.
//! - A row is detected when its score is at or above the threshold. One threshold per
//!   profile is chosen to maximise the sum over the whole corpus; the sum is normalised
//!   so that detecting nothing scores 0 and detecting every window at its first row 100.
//! - Profiles (tp, fp, fn): standard (1, 0.11, 1), reward_low_FP_rate (1, 0.22, 1),
//!   reward_low_FN_rate (1, 0.11, 2).

pub mod plot;
pub mod synth;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A NAB cost profile.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's three profiles.
pub const PROFILES: [Profile; 3] = [
    Profile { name: "standard", tp: 1.0, fp: 0.11, fn_: 1.0 },
    Profile { name: "reward_low_FP_rate", tp: 1.0, fp: 0.22, fn_: 1.0 },
    Profile { name: "reward_low_FN_rate", tp: 1.0, fp: 0.11, fn_: 2.0 },
];

/// Labelled windows per file (`category/file.csv`), as `[start, end]` timestamps.
pub type Windows = BTreeMap<String, Vec<(i64, i64)>>;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read `{path}`: {message}")]
    Read { path: String, message: String },
}

/// Reads a NAB windows file: `{"category/file.csv": [["start", "end"], ...], ...}`.
///
/// # Errors
/// When the file cannot be read, is not such a map, or a timestamp does not parse.
pub fn load_windows(path: &Path) -> Result<Windows, EvalError> {
    let err = |message: String| EvalError::Read { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| err(format!("expected {{\"file.csv\": [[\"start\", \"end\"], ...]}}: {e}")))?;
    let mut out = Windows::new();
    for (file, windows) in raw {
        let mut ws = Vec::new();
        for w in windows {
            let [a, b] = &w[..] else { return Err(err(format!("a window of `{file}` is not a [start, end] pair"))) };
            let parse =
                |s: &str| crate::time::parse_timestamp(s).ok_or_else(|| err(format!("`{s}` (a window of `{file}`) is not a timestamp")));
            let (a, b) = (parse(a)?, parse(b)?);
            if b < a {
                return Err(err(format!("a window of `{file}` ends before it starts")));
            }
            ws.push((a, b));
        }
        out.insert(file, ws);
    }
    Ok(out)
}

/// NAB's scaled sigmoid.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// The rows of one file as the scorer sees them.
#[derive(Clone, Debug, Default)]
pub struct FileScores {
    /// `category/file.csv`.
    pub name: String,
    pub ts: Vec<i64>,
    pub scores: Vec<f64>,
}

/// One row's part in the sweep.
#[derive(Clone, Copy, Debug)]
struct Point {
    score: f64,
    /// The weighted reward (in a window) or cost (outside), for tp = fp = 1.
    unweighted: f64,
    /// The window (index into the corpus's windows) or None.
    window: Option<usize>,
}

/// The probationary rows of a file of `n` rows.
pub fn probationary(n: usize) -> usize {
    ((0.15 * n as f64).floor() as usize).min(750)
}

/// Row ranges `[first, last]` of a file's windows (rows whose timestamps fall inside).
pub fn window_rows(ts: &[i64], windows: &[(i64, i64)]) -> Vec<Option<(usize, usize)>> {
    windows
        .iter()
        .map(|&(a, b)| {
            let first = ts.iter().position(|&t| t >= a)?;
            let last = ts.iter().rposition(|&t| t <= b)?;
            (first <= last).then_some((first, last))
        })
        .collect()
}

/// The corpus prepared for sweeping thresholds.
pub struct Corpus {
    points: Vec<Point>,
    /// Windows with at least one scored row.
    scored_windows: usize,
    /// All labelled windows.
    windows: usize,
    /// Per point: which file it belongs to (for per-file counts).
    file_of: Vec<u32>,
    files: Vec<String>,
}

impl Corpus {
    /// Prepares the files' scores against their windows.
    pub fn new(files: &[FileScores], labels: &Windows) -> Corpus {
        let mut c = Corpus { points: Vec::new(), scored_windows: 0, windows: 0, file_of: Vec::new(), files: Vec::new() };
        for (fi, f) in files.iter().enumerate() {
            c.files.push(f.name.clone());
            let labelled = labels.get(&f.name).map(Vec::as_slice).unwrap_or(&[]);
            let rows = window_rows(&f.ts, labelled);
            let prob = probationary(f.ts.len());
            let base = c.windows;
            c.windows += labelled.len();
            let max_tp = scaled_sigmoid(-1.0);
            let mut in_window: Vec<Option<usize>> = vec![None; f.ts.len()];
            for (wi, r) in rows.iter().enumerate() {
                if let Some((a, b)) = r {
                    for slot in &mut in_window[*a..=*b] {
                        *slot = Some(wi);
                    }
                    if *b >= prob {
                        c.scored_windows += 1;
                    }
                }
            }
            let mut prev: Option<(usize, usize)> = None; // (right index, width) of the last window passed
            #[allow(clippy::needless_range_loop)] // `i` is also the row's position in the window
            for i in 0..f.ts.len() {
                let (unweighted, window) = match in_window[i] {
                    Some(wi) => {
                        let (a, b) = rows[wi].expect("window has rows");
                        let width = (b - a + 1) as f64;
                        let pos = -((b as f64 - i as f64 + 1.0) / width);
                        (scaled_sigmoid(pos) / max_tp, Some(base + wi))
                    }
                    None => match prev {
                        None => (-1.0, None),
                        Some((right, width)) => {
                            let d = (i - right) as f64 / (width as f64 - 1.0).max(1.0);
                            (scaled_sigmoid(d), None)
                        }
                    },
                };
                if let Some(wi) = in_window[i] {
                    let (a, b) = rows[wi].expect("window has rows");
                    if i == b {
                        prev = Some((b, b - a + 1));
                    }
                }
                if i >= prob {
                    let s = f.scores.get(i).copied().unwrap_or(0.0);
                    c.points.push(Point { score: if s.is_finite() { s } else { 0.0 }, unweighted, window });
                    c.file_of.push(fi as u32);
                }
            }
        }
        c
    }

    /// Sweeps every threshold for a profile: the best (threshold, raw score).
    pub fn best_threshold(&self, p: &Profile) -> (f64, f64) {
        let mut order: Vec<usize> = (0..self.points.len()).collect();
        order.sort_by(|&a, &b| self.points[b].score.total_cmp(&self.points[a].score));
        let mut best_tp: Vec<Option<f64>> = vec![None; self.windows];
        let (mut tp, mut fp) = (0.0, 0.0);
        let mut fn_ = -p.fn_ * self.scored_windows as f64;
        let (mut best, mut best_t) = (fn_, 1.1);
        for (k, &i) in order.iter().enumerate() {
            let pt = self.points[i];
            match pt.window {
                Some(w) => {
                    let v = pt.unweighted * p.tp;
                    match best_tp[w] {
                        None => {
                            best_tp[w] = Some(v);
                            tp += v;
                            fn_ += p.fn_;
                        }
                        Some(old) if v > old => {
                            tp += v - old;
                            best_tp[w] = Some(v);
                        }
                        Some(_) => {}
                    }
                }
                None => fp += pt.unweighted * p.fp,
            }
            let last_of_tie = order.get(k + 1).is_none_or(|&j| self.points[j].score != pt.score);
            if last_of_tie && tp + fp + fn_ > best {
                best = tp + fp + fn_;
                best_t = pt.score;
            }
        }
        (best_t, best)
    }

    /// The normalised score of a raw score.
    pub fn normalise(&self, p: &Profile, raw: f64) -> f64 {
        let null = -p.fn_ * self.scored_windows as f64;
        let perfect = p.tp * self.windows as f64;
        if perfect - null <= 0.0 {
            return 0.0;
        }
        100.0 * (raw - null) / (perfect - null)
    }

    /// Per file at a threshold: (windows detected, windows missed, false-positive rows,
    /// raw score) for a profile.
    pub fn per_file(&self, p: &Profile, threshold: f64) -> Vec<FileResult> {
        let mut out: Vec<FileResult> = self.files.iter().map(|f| FileResult { file: f.clone(), ..FileResult::default() }).collect();
        let mut best_tp: BTreeMap<usize, f64> = BTreeMap::new();
        let mut windows_of: BTreeMap<usize, u32> = BTreeMap::new();
        for (pt, &fi) in self.points.iter().zip(&self.file_of) {
            if let Some(w) = pt.window {
                windows_of.insert(w, fi);
            }
            if pt.score < threshold {
                continue;
            }
            match pt.window {
                Some(w) => {
                    let e = best_tp.entry(w).or_insert(f64::NEG_INFINITY);
                    *e = e.max(pt.unweighted * p.tp);
                }
                None => {
                    out[fi as usize].fp += 1;
                    out[fi as usize].score += pt.unweighted * p.fp;
                }
            }
        }
        for (w, fi) in windows_of {
            let r = &mut out[fi as usize];
            r.windows += 1;
            match best_tp.get(&w) {
                Some(v) => {
                    r.detected += 1;
                    r.score += v;
                }
                None => r.score -= p.fn_,
            }
        }
        out
    }

    /// The raw score at a given threshold (the sum of the [`Corpus::per_file`] scores):
    /// a threshold chosen on other files applied to these.
    pub fn raw_at(&self, p: &Profile, threshold: f64) -> f64 {
        self.per_file(p, threshold).iter().map(|r| r.score).sum()
    }

    /// NAB's null (detect nothing: `−fn` per scored window) and perfect (`tp` per window)
    /// raw scores, the ends of [`Corpus::normalise`]'s scale. Summed over several corpora
    /// they normalise the pooled raw scores, as NAB normalises a whole corpus.
    pub fn null_perfect(&self, p: &Profile) -> (f64, f64) {
        (-p.fn_ * self.scored_windows as f64, p.tp * self.windows as f64)
    }

    /// Detection counts at a threshold, over the scored rows (after each file's
    /// probationary period).
    pub fn detection_stats(&self, threshold: f64) -> DetectionStats {
        let mut s = DetectionStats { windows_scored: self.scored_windows, ..DetectionStats::default() };
        let mut detected = std::collections::BTreeSet::new();
        let mut prev: Option<(u32, bool)> = None;
        for (pt, &fi) in self.points.iter().zip(&self.file_of) {
            let hit = pt.score >= threshold;
            if hit {
                s.detections += 1;
                if prev == Some((fi, true)) {
                    s.adjacent += 1;
                }
                match pt.window {
                    Some(w) => {
                        s.in_window += 1;
                        detected.insert(w);
                    }
                    None => s.false_positives += 1,
                }
            }
            prev = Some((fi, hit));
        }
        s.windows_detected = detected.len();
        s
    }
}

/// Detection counts at a threshold ([`Corpus::detection_stats`]), over the scored rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DetectionStats {
    /// Rows at or above the threshold.
    pub detections: usize,
    /// Of them, rows whose previous row (in the same file) was detected too.
    pub adjacent: usize,
    /// Of them, rows outside every window.
    pub false_positives: usize,
    /// Of them, rows inside a window (only the best of a window counts for NAB).
    pub in_window: usize,
    /// Windows with at least one detected row.
    pub windows_detected: usize,
    /// Windows with at least one scored row.
    pub windows_scored: usize,
}

/// One file's outcome at the chosen threshold.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct FileResult {
    pub file: String,
    pub windows: u32,
    pub detected: u32,
    pub fp: u32,
    pub score: f64,
}

/// A profile's outcome over the corpus.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProfileResult {
    pub profile: &'static str,
    pub threshold: f64,
    pub raw: f64,
    pub score: f64,
}

/// Scores a corpus under all three profiles.
pub fn score_corpus(files: &[FileScores], labels: &Windows) -> (Corpus, Vec<ProfileResult>) {
    let corpus = Corpus::new(files, labels);
    let results = PROFILES
        .iter()
        .map(|p| {
            let (threshold, raw) = corpus.best_threshold(p);
            ProfileResult { profile: p.name, threshold, raw, score: corpus.normalise(p, raw) }
        })
        .collect();
    (corpus, results)
}

/// The CSV files under `dir`, as paths relative to it with `/` separators, sorted.
///
/// # Errors
/// When the directory cannot be read.
pub fn find_csvs(dir: &Path) -> Result<Vec<String>, EvalError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "csv") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out).map_err(|e| EvalError::Read { path: dir.display().to_string(), message: e.to_string() })?;
    out.sort();
    Ok(out)
}

/// Reads a scores CSV written by replay: `timestamp,value,anomaly_score`.
pub fn parse_scores(name: &str, csv: &[u8]) -> (FileScores, Vec<f64>) {
    let mut f = FileScores { name: name.to_owned(), ..FileScores::default() };
    let mut values = Vec::new();
    for line in csv.split(|&b| b == b'\n').skip(1) {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.rsplitn(3, |&b| b == b',');
        let score = parts.next().and_then(|s| std::str::from_utf8(s).ok()?.trim().parse::<f64>().ok()).unwrap_or(0.0);
        let value = parts.next().and_then(|s| std::str::from_utf8(s).ok()?.trim().parse::<f64>().ok()).unwrap_or(f64::NAN);
        let ts = parts.next().and_then(crate::time::parse_timestamp_bytes).unwrap_or(i64::MIN);
        f.ts.push(ts);
        f.scores.push(score);
        values.push(value);
    }
    (f, values)
}

/// Where a file's results go in NAB's layout: `OUT/<detector>/<category>/<detector>_<file>.csv`.
pub fn result_path(out: &Path, detector: &str, file: &str) -> PathBuf {
    let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
    let mut p = out.join(detector);
    if !dir.is_empty() {
        p = p.join(dir);
    }
    p.join(format!("{detector}_{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, n: usize, hits: &[usize]) -> FileScores {
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 300_000).collect();
        let mut scores = vec![0.0; n];
        for &h in hits {
            scores[h] = 1.0;
        }
        FileScores { name: name.into(), ts, scores }
    }

    fn labels(name: &str, n: usize, windows: &[(usize, usize)]) -> Windows {
        let mut w = Windows::new();
        w.insert(name.into(), windows.iter().map(|&(a, b)| (a as i64 * 300_000, b as i64 * 300_000)).collect());
        let _ = n;
        w
    }

    #[test]
    fn nothing_scores_zero_and_perfect_scores_100() {
        let l = labels("a.csv", 2000, &[(800, 900), (1500, 1600)]);
        let (_, none) = score_corpus(&[file("a.csv", 2000, &[])], &l);
        let (_, perfect) = score_corpus(&[file("a.csv", 2000, &[800, 1500])], &l);
        for r in &none {
            assert!(r.score.abs() < 1e-9, "{r:?}");
        }
        for r in &perfect {
            assert!((r.score - 100.0).abs() < 1e-9, "{r:?}");
        }
    }

    #[test]
    fn late_detections_earn_less_and_false_positives_cost() {
        let l = labels("a.csv", 2000, &[(800, 900)]);
        let early = score_corpus(&[file("a.csv", 2000, &[810])], &l).1[0].score;
        let late = score_corpus(&[file("a.csv", 2000, &[890])], &l).1[0].score;
        let with_fp = score_corpus(&[file("a.csv", 2000, &[810, 1900])], &l).1[0].score;
        assert!(early > late && late > 0.0, "{early} {late}");
        assert!(with_fp < early, "{with_fp} {early}");
        // A detection in the probationary period (first 300 rows) counts for nothing.
        let prob = score_corpus(&[file("a.csv", 2000, &[810, 100])], &l).1[0].score;
        assert!((prob - early).abs() < 1e-9);
        assert_eq!(probationary(2000), 300);
        assert_eq!(probationary(100_000), 750);
    }

    #[test]
    fn sigmoid_matches_nab() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298).abs() < 1e-6);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
        assert!(scaled_sigmoid(0.0).abs() < 1e-12);
    }

    #[test]
    fn result_paths_follow_nab() {
        assert_eq!(result_path(Path::new("out"), "nab", "realTweets/x.csv"), PathBuf::from("out/nab/realTweets/nab_x.csv"));
    }
}

/// What `vigil eval` found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub pipeline: String,
    pub files: Vec<FileResult>,
    /// The standard profile first.
    pub profiles: Vec<ProfileResult>,
    /// Files the windows file names that are not under the data directory (skipped).
    pub missing: Vec<String>,
    /// Files under the data directory the windows file does not name (scored as having
    /// no anomalies).
    pub unlabelled: Vec<String>,
    pub rows: u64,
    pub seconds: f64,
}

/// How to run an evaluation.
pub struct EvalOptions<'a> {
    pub data: &'a Path,
    pub windows: &'a Path,
    pub out: Option<&'a Path>,
    pub plot: bool,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// Replays every CSV under `opts.data` through `p` (each from scratch, in parallel) and
/// scores the results.
///
/// # Errors
/// When the windows file or data directory cannot be read, there is no CSV, an output
/// cannot be written, or a replay fails.
pub fn evaluate(p: &crate::plan::PipelinePlan, base_dir: &Path, opts: &EvalOptions<'_>) -> Result<EvalReport, EvalError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let started = std::time::Instant::now();
    let labels = load_windows(opts.windows)?;
    let files = find_csvs(opts.data)?;
    if files.is_empty() {
        return Err(EvalError::Usage(format!("no CSV files under `{}`", opts.data.display())));
    }
    if opts.plot && opts.out.is_none() {
        return Err(EvalError::Usage("--plot needs --out DIR to write the plots to".into()));
    }
    let missing: Vec<String> = labels.keys().filter(|k| !files.contains(k)).cloned().collect();
    let unlabelled: Vec<String> = files.iter().filter(|f| !labels.contains_key(*f)).cloned().collect();
    let bar = if opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let b = indicatif::ProgressBar::new(files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} files, {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_prefix("replaying");
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len());
    type One = Result<(FileScores, Vec<f64>, Vec<u8>), EvalError>;
    let mut results: Vec<Option<One>> = (0..files.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = files.get(i) else { break };
                        bar.set_message(name.clone());
                        let input = opts.data.join(name);
                        let mut buf = Vec::with_capacity(1 << 20);
                        let r = crate::replay::replay_to(p, base_dir, &input, &mut buf, name)
                            .map_err(|e| EvalError::Usage(format!("{name}: {e}")))
                            .map(|_| {
                                let (f, values) = parse_scores(name, &buf);
                                (f, values, buf)
                            });
                        bar.inc(1);
                        done.push((i, r));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().unwrap_or_default() {
                results[i] = Some(r);
            }
        }
    });
    bar.finish_and_clear();
    let mut scored = Vec::with_capacity(files.len());
    let mut values = Vec::with_capacity(files.len());
    let mut raw = Vec::with_capacity(files.len());
    for r in results {
        let (f, v, b) = r.ok_or_else(|| EvalError::Usage("a replay thread stopped".into()))??;
        scored.push(f);
        values.push(v);
        raw.push(b);
    }
    let (corpus, profiles) = score_corpus(&scored, &labels);
    let standard = &profiles[0];
    let per_file = corpus.per_file(&PROFILES[0], standard.threshold);
    if let Some(out) = opts.out {
        let werr =
            |path: &Path, e: std::io::Error| EvalError::Read { path: path.display().to_string(), message: format!("cannot write: {e}") };
        for (f, bytes) in scored.iter().zip(&raw) {
            let path = result_path(out, &p.name, &f.name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| werr(dir, e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| werr(&path, e))?;
        }
        if opts.plot {
            for (f, v) in scored.iter().zip(&values) {
                let rows: Vec<(usize, usize)> =
                    window_rows(&f.ts, labels.get(&f.name).map(Vec::as_slice).unwrap_or(&[])).into_iter().flatten().collect();
                let svg = plot::svg(&plot::PlotInput {
                    title: &f.name,
                    ts: &f.ts,
                    values: v,
                    scores: &f.scores,
                    windows: &rows,
                    probationary: probationary(f.ts.len()),
                    threshold: standard.threshold,
                });
                let path = out.join("plots").join(f.name.replace(".csv", ".svg"));
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| werr(dir, e))?;
                }
                std::fs::write(&path, svg).map_err(|e| werr(&path, e))?;
            }
        }
        let summary = out.join(format!("{}_scores.json", p.name));
        let report = serde_json::json!({ "pipeline": p.name, "profiles": profiles, "files": per_file });
        std::fs::write(&summary, serde_json::to_vec_pretty(&report).unwrap_or_default()).map_err(|e| werr(&summary, e))?;
    }
    Ok(EvalReport {
        pipeline: p.name.clone(),
        files: per_file,
        profiles,
        missing,
        unlabelled,
        rows: scored.iter().map(|f| f.ts.len() as u64).sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
