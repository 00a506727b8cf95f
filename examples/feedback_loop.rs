//! The MLOps loop, proven on generated data (#15): feedback that retrains, and drift that
//! retrains.
//!
//! ```sh
//! cargo run --release --example feedback_loop            # seeds 1–5, the reported figures
//! cargo run --release --example feedback_loop -- dev     # seeds 101–105, for choosing
//! ```
//!
//! **Feedback.** Fourteen days of 5-minute data: a daily rhythm with noise, a nightly batch
//! job (02:00–02:30, a bump the detector has no way to expect) and six real incidents (an
//! hour each, larger). A burn forecaster (`pipelines`-style: retrained every two days,
//! warm-started) scores it; an alarm is the start of a run of scores ≥ 0.99. The first
//! five days are replayed and on-call's verdicts derived from the truth: each alarm in a
//! batch window is a `false_positive` over that window, each in an incident a
//! `true_positive`. Then the whole series is replayed twice — without verdicts, and with
//! them (train stages learn the batch windows as normal, weighted, and leave the incidents
//! out; the score stage raises its calibration where the false positives fell) — and
//! alarms on days 6–14 are scored against the truth: precision (alarms inside an incident
//! or batch window that are incidents), recall (incidents with an alarm), and nightly
//! false alarms.
//!
//! **Drift.** A seasonal baseline (retrained daily) over a series whose level shifts for
//! good on day 7: without `retrain when drift > 0.25` the old profile keeps alarming;
//! with it the shift is detected, the stage retrains on the new regime and the false
//! alarms stop. Reported: false alarms after the shift, and when the last one was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil::feedback::{FeedbackRecord, Verdict};
use vigil::respond::Responder;
use vigil::stats::Rng;

const STEP: i64 = 300_000;
const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_571_200_000; // 2026-01-05T00:00:00Z

struct Series {
    ts: Vec<i64>,
    values: Vec<f64>,
    incidents: Vec<(i64, i64)>,
    batches: Vec<(i64, i64)>,
}

fn normal(rng: &mut Rng) -> f64 {
    // Box–Muller.
    let (u, v) = (rng.uniform().max(1e-12), rng.uniform());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn generate(seed: u64, days: i64, shift_on: Option<i64>) -> Series {
    let mut rng = Rng::new(seed);
    let n = days * DAY / STEP;
    let mut s = Series { ts: Vec::new(), values: Vec::new(), incidents: Vec::new(), batches: Vec::new() };
    for d in 0..days {
        let start = T0 + d * DAY + 2 * 3_600_000;
        s.batches.push((start, start + 30 * 60_000));
    }
    // Real incidents, an hour each, away from the batches: six on days 3–14, or (drift)
    // four after the shift.
    let days_of: Vec<i64> = match shift_on {
        None => (0..6).map(|k| 2 + k * 2 + rng.range(0, 1)).collect(),
        Some(d) => (0..4).map(|k| d + 2 + k + rng.range(0, 1).min(days - d - 3 - k)).collect(),
    };
    for day in days_of {
        let hour = rng.range(6, 21);
        let start = T0 + day * DAY + hour * 3_600_000;
        s.incidents.push((start, start + 3_600_000));
    }
    for i in 0..n {
        let t = T0 + i * STEP;
        let phase = (t.rem_euclid(DAY)) as f64 / DAY as f64;
        let mut v = 50.0 + 10.0 * (2.0 * std::f64::consts::PI * phase).sin() + normal(&mut rng);
        if shift_on.is_none() && s.batches.iter().any(|&(a, b)| t >= a && t < b) {
            v += 8.0;
        }
        if s.incidents.iter().any(|&(a, b)| t >= a && t < b) {
            v += 20.0;
        }
        if shift_on.is_some_and(|d| t >= T0 + d * DAY) {
            v += 25.0;
        }
        s.ts.push(t);
        s.values.push(v);
    }
    s
}

fn write_csv(path: &Path, s: &Series) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "timestamp,value").unwrap();
    for (t, v) in s.ts.iter().zip(&s.values) {
        writeln!(f, "{},{v:.4}", vigil::time::format_timestamp(*t)).unwrap();
    }
}

/// Replays `csv` through the pipeline in `file` with `verdicts`; the alarms (starts of runs
/// of scores at or above 0.99), with their scores.
fn alarms(file: &Path, csv: &Path, verdicts: Vec<FeedbackRecord>) -> Vec<i64> {
    let out = vigil::compile(&[file.to_path_buf()]).expect("the pipeline compiles");
    let plan = out.plan.expect("the pipeline plans");
    let p = &plan.pipelines[0];
    let responder = Responder::with_verdicts(verdicts);
    let mut buf = Vec::new();
    vigil::replay::replay_with(p, file.parent().unwrap(), csv, &mut buf, "scores", Arc::new(responder)).expect("replay");
    let text = String::from_utf8(buf).unwrap();
    let mut out = Vec::new();
    let mut above = false;
    for line in text.lines().skip(1) {
        let mut cols = line.split(',');
        let (Some(t), _, Some(score)) = (cols.next(), cols.next(), cols.next()) else { continue };
        let (Some(t), Ok(score)) = (vigil::time::parse_timestamp(t), score.parse::<f64>()) else { continue };
        let now = score >= 0.99;
        if now && !above {
            out.push(t);
        }
        above = now;
    }
    out
}

fn inside(t: i64, windows: &[(i64, i64)], slack: i64) -> Option<(i64, i64)> {
    windows.iter().copied().find(|&(a, b)| t >= a && t <= b + slack)
}

#[derive(Default, Clone, Copy)]
struct Figures {
    alarms: usize,
    true_alarms: usize,
    batch_alarms: usize,
    found: usize,
    incidents: usize,
}

impl Figures {
    fn of(alarms: &[i64], s: &Series, from: i64) -> Figures {
        let alarms: Vec<i64> = alarms.iter().copied().filter(|&t| t >= from).collect();
        let incidents: Vec<(i64, i64)> = s.incidents.iter().copied().filter(|&(a, _)| a >= from).collect();
        // An alarm up to 30 minutes after a window's end still belongs to it (the drop back).
        Figures {
            alarms: alarms.len(),
            true_alarms: alarms.iter().filter(|&&t| inside(t, &incidents, 1_800_000).is_some()).count(),
            batch_alarms: alarms.iter().filter(|&&t| inside(t, &s.batches, 1_800_000).is_some()).count(),
            found: incidents.iter().filter(|w| alarms.iter().any(|&t| inside(t, &[**w], 1_800_000).is_some())).count(),
            incidents: incidents.len(),
        }
    }

    fn precision(&self) -> f64 {
        if self.alarms == 0 {
            1.0
        } else {
            self.true_alarms as f64 / self.alarms as f64
        }
    }

    fn recall(&self) -> f64 {
        if self.incidents == 0 {
            1.0
        } else {
            self.found as f64 / self.incidents as f64
        }
    }
}

fn verdict(window: (i64, i64), v: Verdict) -> FeedbackRecord {
    FeedbackRecord {
        id: 0,
        incident: format!("{}-{}", window.0, window.1),
        pipeline: "feedback_loop".into(),
        stage: "feedback_loop.page".into(),
        series: vec!["value".into()],
        from: window.0,
        to: window.1,
        verdict: v,
        note: None,
        by: "on-call".into(),
        at: window.1,
    }
}

fn main() {
    let dev = std::env::args().any(|a| a == "dev");
    let seeds: Vec<u64> = if dev { (101..=105).collect() } else { (1..=5).collect() };
    let dir = std::env::temp_dir().join(format!("vigil-feedback-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pipeline = dir.join("loop.vigil");
    std::fs::write(
        &pipeline,
        "pipeline feedback_loop {\n  every 1m\n  collect raw = csv(path: \"data.csv\")\n  \
         train model = forecaster(raw, lookback: 12, epochs: 30) {\n    min_samples 288\n    retrain every 576 samples\n    warm_start true\n  }\n  \
         predict scores = model.score(raw, threshold: 0.99, suppress: 2h)\n}\n",
    )
    .unwrap();
    let feedback_days = 5;
    let from = T0 + feedback_days * DAY;
    println!("feedback: verdicts on the alarms of days 1–{feedback_days}; figures on days {}–14\n", feedback_days + 1);
    println!(
        "{:>5} {:>9} {:>7} {:>7} {:>9} {:>7}   {:>7} {:>7} {:>9} {:>7}",
        "seed", "verdicts", "alarms", "nightly", "precision", "recall", "alarms", "nightly", "precision", "recall"
    );
    println!("{:>5} {:>9} {:^35}   {:^35}", "", "", "without feedback", "with feedback");
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for &seed in &seeds {
        let s = generate(seed, 14, None);
        let csv = dir.join(format!("feedback-{seed}.csv"));
        write_csv(&csv, &s);
        let plain = alarms(&pipeline, &csv, Vec::new());
        // On-call's verdicts on the first days' alarms.
        let mut verdicts = Vec::new();
        for &t in plain.iter().filter(|&&t| t < from) {
            if let Some(w) = inside(t, &s.batches, 1_800_000) {
                verdicts.push(verdict(w, Verdict::FalsePositive));
            } else if let Some(w) = inside(t, &s.incidents, 1_800_000) {
                verdicts.push(verdict(w, Verdict::TruePositive));
            }
        }
        let n_verdicts = verdicts.len();
        let learned = alarms(&pipeline, &csv, verdicts);
        let (b, a) = (Figures::of(&plain, &s, from), Figures::of(&learned, &s, from));
        println!(
            "{seed:>5} {n_verdicts:>9} {:>7} {:>7} {:>9.2} {:>7.2}   {:>7} {:>7} {:>9.2} {:>7.2}",
            b.alarms,
            b.batch_alarms,
            b.precision(),
            b.recall(),
            a.alarms,
            a.batch_alarms,
            a.precision(),
            a.recall()
        );
        before.push(b);
        after.push(a);
    }
    let mean = |v: &[Figures], f: fn(&Figures) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    println!(
        "{:>5} {:>9} {:>7.1} {:>7.1} {:>9.2} {:>7.2}   {:>7.1} {:>7.1} {:>9.2} {:>7.2}\n",
        "mean",
        "",
        mean(&before, |f| f.alarms as f64),
        mean(&before, |f| f.batch_alarms as f64),
        mean(&before, Figures::precision),
        mean(&before, Figures::recall),
        mean(&after, |f| f.alarms as f64),
        mean(&after, |f| f.batch_alarms as f64),
        mean(&after, Figures::precision),
        mean(&after, Figures::recall)
    );

    // Drift.
    let drift_file = |retrain: &str| -> PathBuf {
        let p = dir.join(format!("drift-{}.vigil", if retrain.is_empty() { "plain" } else { "retrain" }));
        std::fs::write(
            &p,
            format!(
                "pipeline drift_loop {{\n  every 1m\n  collect raw = csv(path: \"data.csv\")\n  \
                 train profile = baseline(raw, season: 1d, bucket: 30m) {{\n    min_samples 576\n    retrain every 288 samples\n{retrain}  }}\n  \
                 predict scores = profile.score(raw, threshold: 0.99, suppress: 2h)\n}}\n"
            ),
        )
        .unwrap();
        p
    };
    let (plain_file, drift_retrain) = (drift_file(""), drift_file("    retrain when drift > 0.25\n"));
    let shift_day = 7;
    let shift = T0 + shift_day * DAY;
    println!(
        "drift: the level shifts for good on day {}, four real incidents after it; alarms after the shift (days {}–14)\n",
        shift_day + 1,
        shift_day + 1
    );
    println!("{:>5} {:>7} {:>8} {:>7}   {:>7} {:>8} {:>7}", "seed", "false", "last (h)", "recall", "false", "last (h)", "recall");
    println!("{:>5} {:^24}   {:^24}", "", "daily retrain only", "retrain when drift > 0.25");
    let (mut plain_sum, mut drift_sum) = ((0.0, 0.0), (0.0, 0.0));
    for &seed in &seeds {
        let s = generate(seed, 14, Some(shift_day));
        let csv = dir.join(format!("drift-{seed}.csv"));
        write_csv(&csv, &s);
        // The first alarm at the shift is right; later ones outside an incident are false.
        let figures = |alarms: Vec<i64>| -> (usize, f64, f64) {
            let late: Vec<i64> = alarms.into_iter().filter(|&t| t > shift + 3_600_000).collect();
            let false_alarms: Vec<i64> = late.iter().copied().filter(|&t| inside(t, &s.incidents, 1_800_000).is_none()).collect();
            let found = s.incidents.iter().filter(|w| late.iter().any(|&t| inside(t, &[**w], 1_800_000).is_some())).count();
            (
                false_alarms.len(),
                false_alarms.last().map_or(0.0, |&t| (t - shift) as f64 / 3_600_000.0),
                found as f64 / s.incidents.len().max(1) as f64,
            )
        };
        let (a, la, ra) = figures(alarms(&plain_file, &csv, Vec::new()));
        let (b, lb, rb) = figures(alarms(&drift_retrain, &csv, Vec::new()));
        println!("{seed:>5} {a:>7} {la:>8.1} {ra:>7.2}   {b:>7} {lb:>8.1} {rb:>7.2}");
        plain_sum = (plain_sum.0 + a as f64, plain_sum.1 + ra);
        drift_sum = (drift_sum.0 + b as f64, drift_sum.1 + rb);
    }
    let k = seeds.len() as f64;
    println!(
        "{:>5} {:>7.1} {:>8} {:>7.2}   {:>7.1} {:>8} {:>7.2}",
        "mean",
        plain_sum.0 / k,
        "",
        plain_sum.1 / k,
        drift_sum.0 / k,
        "",
        drift_sum.1 / k
    );
    let _ = std::fs::remove_dir_all(&dir);
}
