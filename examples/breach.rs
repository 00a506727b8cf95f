//! Anticipating breaches (#14): `forecast_breach` against Prometheus's `predict_linear` on
//! generated scenarios.
//!
//! ```sh
//! cargo run --release --example breach            # seed 1, the reported figures
//! cargo run --release --example breach -- 2       # another seed
//! ```
//!
//! Seven days of 5-minute samples per series, 20 series of each kind:
//! - **breaches** (the bound, 90, is crossed once): a disk filling at a steady rate from
//!   30–60% with a small daily cycle; a memory leak under a daily traffic cycle of ±3–8;
//!   a saturation (a queue that fills along a logistic curve once load passes capacity);
//! - **no breach**: a daily cycle whose peaks reach 75–85; bursts that climb to 80–88 for
//!   one to three hours, three times a week.
//!
//! Every method raises an alarm when its trajectory reaches 90 within 4 hours. The lead
//! time is how long before the crossing the alarm that was on at the crossing started (0
//! when none was); a false alarm is any other alarm start (on the series without a breach,
//! and more than a day before a crossing). Methods: `predict_linear` (least squares over
//! the window, `sigmas: 0`) with windows of 1, 2, 6 and 12 hours; `forecast_breach` with a
//! 6-hour window and 0–3 standard errors taken off the slope, without and with `season: 1d`.

use vigil::runtime::ops::breach::{alarms, Breach};
use vigil::stats::Rng;

const STEP: i64 = 300_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const ABOVE: f64 = 90.0;

struct Series {
    kind: &'static str,
    ts: Vec<i64>,
    xs: Vec<f64>,
}

fn generate(seed: u64) -> Vec<Series> {
    let mut rng = Rng::new(seed);
    let n = (7 * DAY / STEP) as usize;
    let ts: Vec<i64> = (0..n as i64).map(|i| i * STEP).collect();
    let phase = |t: i64| 2.0 * std::f64::consts::PI * (t % DAY) as f64 / DAY as f64;
    let u = |lo: f64, hi: f64, rng: &mut Rng| lo + (hi - lo) * rng.uniform();
    let mut out = Vec::new();
    for _ in 0..20 {
        // Disk fill: crossing on day 2–6.
        let (start, cross_day, amp, noise) = (u(30.0, 60.0, &mut rng), u(2.0, 6.0, &mut rng), u(0.5, 2.0, &mut rng), u(0.2, 1.0, &mut rng));
        let rate = (ABOVE + 1.0 - start) / (cross_day * 24.0);
        let xs = ts.iter().map(|&t| start + rate * t as f64 / HOUR as f64 + amp * phase(t).sin() + noise * rng.normal()).collect();
        out.push(Series { kind: "disk fill", ts: ts.clone(), xs });
        // Memory leak under traffic.
        let (start, cross_day, amp) = (u(40.0, 60.0, &mut rng), u(3.0, 6.0, &mut rng), u(3.0, 8.0, &mut rng));
        let rate = (ABOVE + 1.0 - start) / (cross_day * 24.0);
        let xs = ts.iter().map(|&t| start + rate * t as f64 / HOUR as f64 + amp * phase(t).sin() + rng.normal()).collect();
        out.push(Series { kind: "memory leak", ts: ts.clone(), xs });
        // Saturation: a logistic climb from 40 to 100 centred on day 3–5, over τ = 2–8 h.
        let (mid, tau) = (u(3.0, 5.0, &mut rng) * DAY as f64, u(2.0, 8.0, &mut rng) * HOUR as f64);
        let xs = ts.iter().map(|&t| 40.0 + 60.0 / (1.0 + (-(t as f64 - mid) / tau).exp()) + 3.0 * phase(t).sin() + rng.normal()).collect();
        out.push(Series { kind: "saturation", ts: ts.clone(), xs });
        // No breach: a daily cycle peaking at 75–85.
        let (peak, amp, noise) = (u(75.0, 85.0, &mut rng), u(5.0, 15.0, &mut rng), u(0.5, 2.0, &mut rng));
        let xs = ts.iter().map(|&t| (peak - amp) + amp * phase(t).sin() + noise * rng.normal()).collect();
        out.push(Series { kind: "daily cycle", ts: ts.clone(), xs });
        // No breach: bursts to 80–88 for 1–3 hours, three a week.
        let bursts: Vec<(i64, i64, f64)> = (0..3)
            .map(|k| {
                let at = (k as f64 * 2.0 + u(0.5, 1.5, &mut rng)) * DAY as f64;
                (at as i64, (u(1.0, 3.0, &mut rng) * HOUR as f64) as i64, u(80.0, 88.0, &mut rng))
            })
            .collect();
        let xs = ts
            .iter()
            .map(|&t| {
                let mut x = 60.0 + 2.0 * phase(t).sin() + rng.normal();
                for &(at, len, top) in &bursts {
                    if t >= at && t < at + len {
                        // Up linearly for two thirds of the burst, then back down.
                        let f = (t - at) as f64 / len as f64;
                        let up = if f < 2.0 / 3.0 { f * 1.5 } else { (1.0 - f) * 3.0 };
                        x += (top - 60.0) * up;
                    }
                }
                x
            })
            .collect();
        out.push(Series { kind: "bursts", ts: ts.clone(), xs });
    }
    out
}

struct Outcome {
    leads_h: Vec<f64>,
    false_alarms: usize,
    days: f64,
}

fn measure(set: &[Series], window: i64, sigmas: f64, season: i64) -> Outcome {
    let breach = Breach { above: ABOVE, within_ms: 4 * HOUR, window_ms: window, sigmas, season_ms: season };
    let mut o = Outcome { leads_h: Vec::new(), false_alarms: 0, days: 0.0 };
    for s in set {
        o.days += (s.ts[s.ts.len() - 1] - s.ts[0]) as f64 / DAY as f64;
        let starts = alarms(&s.ts, &s.xs, &breach);
        match s.xs.iter().position(|&x| x >= ABOVE).map(|i| s.ts[i]) {
            None => o.false_alarms += starts.len(),
            Some(cross) => {
                // The warning: the last alarm start at or before the crossing, within a day.
                let warning = starts.iter().copied().rfind(|&t| t <= cross && cross - t <= DAY);
                o.leads_h.push(warning.map_or(0.0, |t| (cross - t) as f64 / HOUR as f64));
                o.false_alarms += starts.iter().filter(|&&t| t < cross && Some(t) != warning).count();
            }
        }
    }
    o
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let seed = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let set = generate(seed);
    let breaches = set.iter().filter(|s| s.xs.iter().any(|&x| x >= ABOVE)).count();
    println!("seed {seed}: {} series, {breaches} with a breach, bound {ABOVE}, alarm when a breach is forecast within 4 h\n", set.len());
    println!("{:<36} {:>16} {:>14} {:>12}", "method", "false alarms/day", "median lead h", "no warning");
    let mut rows: Vec<(String, i64, f64, i64)> =
        [1, 2, 6, 12].iter().map(|&w| (format!("predict_linear, window {w}h"), w * HOUR, 0.0, 0)).collect();
    rows.extend([0.5, 1.0, 1.64, 2.33, 3.0].iter().map(|&z| (format!("forecast_breach, 6h, sigmas {z}"), 6 * HOUR, z, 0)));
    rows.extend([0.0, 1.0, 1.64, 3.0].iter().map(|&z| (format!("forecast_breach, 6h, 1d, sigmas {z}"), 6 * HOUR, z, DAY)));
    for (name, window, sigmas, season) in rows {
        let mut o = measure(&set, window, sigmas, season);
        let missed = o.leads_h.iter().filter(|&&l| l == 0.0).count();
        println!("{name:<36} {:>16.3} {:>14.2} {:>12}", o.false_alarms as f64 / o.days, median(&mut o.leads_h), missed);
    }
    println!("\nper kind (false alarms/day, median lead h): predict_linear 6h | forecast_breach 6h, sigmas 1.64 | the same, season 1d");
    for kind in ["disk fill", "memory leak", "saturation", "daily cycle", "bursts"] {
        let of: Vec<Series> =
            set.iter().filter(|s| s.kind == kind).map(|s| Series { kind: s.kind, ts: s.ts.clone(), xs: s.xs.clone() }).collect();
        let (mut a, mut b, mut c) = (measure(&of, 6 * HOUR, 0.0, 0), measure(&of, 6 * HOUR, 1.64, 0), measure(&of, 6 * HOUR, 1.64, DAY));
        println!(
            "{kind:<12} {:>6.3} {:>6.2} | {:>6.3} {:>6.2} | {:>6.3} {:>6.2}",
            a.false_alarms as f64 / a.days,
            median(&mut a.leads_h),
            b.false_alarms as f64 / b.days,
            median(&mut b.leads_h),
            c.false_alarms as f64 / c.days,
            median(&mut c.leads_h)
        );
    }
}
