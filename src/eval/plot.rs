//! `vigil eval --plot`: one SVG per file — the series, its labelled windows (shaded), the
//! probationary period (grey) and the detections at the chosen threshold (red marks).

use std::fmt::Write as _;

/// What to draw.
pub struct PlotInput<'a> {
    pub title: &'a str,
    pub ts: &'a [i64],
    pub values: &'a [f64],
    pub scores: &'a [f64],
    /// Row ranges of the labelled windows.
    pub windows: &'a [(usize, usize)],
    pub probationary: usize,
    pub threshold: f64,
}

const W: f64 = 1200.0;
const H: f64 = 360.0;
const PAD: f64 = 40.0;

/// Renders the plot as an SVG document.
pub fn svg(p: &PlotInput<'_>) -> String {
    let n = p.values.len().max(1);
    let finite = p.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / (hi - lo);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{PAD}" y="20">{}</text>"#, escape(p.title));
    if p.probationary > 0 {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{PAD}" width="{:.1}" height="{:.1}" fill="#eeeeee"><title>probationary period</title></rect>"##,
            x(0),
            x(p.probationary.min(n - 1)) - x(0),
            H - 2.0 * PAD
        );
    }
    for &(a, b) in p.windows {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{PAD}" width="{:.1}" height="{:.1}" fill="#ffe08a" fill-opacity="0.6"><title>labelled window</title></rect>"##,
            x(a),
            (x(b) - x(a)).max(1.0),
            H - 2.0 * PAD
        );
    }
    // The series, reduced to at most two points (min and max) per pixel column.
    let columns = (W - 2.0 * PAD) as usize;
    let mut path = String::new();
    let per = n.div_ceil(columns).max(1);
    for (c, chunk) in p.values.chunks(per).enumerate() {
        let (mut mn, mut mx) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in chunk.iter().copied().filter(|v| v.is_finite()) {
            mn = mn.min(v);
            mx = mx.max(v);
        }
        if !mn.is_finite() {
            continue;
        }
        let xi = x(c * per);
        let _ = write!(path, "{}{xi:.1},{:.1} L{xi:.1},{:.1} ", if path.is_empty() { "M" } else { "L" }, y(mn), y(mx));
    }
    let _ = writeln!(s, r##"<path d="{path}" fill="none" stroke="#1f5fa8" stroke-width="1"/>"##);
    for (i, &sc) in p.scores.iter().enumerate() {
        if i >= p.probationary && sc >= p.threshold {
            let v = p.values.get(i).copied().filter(|v| v.is_finite()).unwrap_or(lo);
            let _ = writeln!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="none" stroke="#d62728" stroke-width="2"><title>detection, score {sc:.4}</title></circle>"##,
                x(i),
                y(v)
            );
        }
    }
    let first = p.ts.first().map(|&t| crate::time::format_timestamp(t)).unwrap_or_default();
    let last = p.ts.last().map(|&t| crate::time::format_timestamp(t)).unwrap_or_default();
    let _ = writeln!(s, r#"<text x="{PAD}" y="{}">{first}</text>"#, H - 12.0);
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{last}</text>"#, W - PAD, H - 12.0);
    let _ = writeln!(s, r#"<text x="{}" y="20" text-anchor="end">max {hi:.4} · min {lo:.4}</text>"#, W - PAD);
    s.push_str("</svg>\n");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
