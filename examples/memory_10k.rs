//! Memory of the streaming state for 10 000 series with a 1 h window at 15 s resolution:
//! a robust z-score over every series, fed one hour of data then ten more ticks, and the
//! process's resident memory read from /proc. `cargo run --release --example memory_10k`.

use std::sync::Arc;

use vigil::data::{Data, SeriesColumn, SeriesData, SeriesId};
use vigil::runtime::ops::predict::ZScore;
use vigil::runtime::{OpCtx, Operator};

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

fn main() {
    let series = 10_000;
    let step = 15_000i64;
    let ids: Vec<SeriesId> = (0..series).map(|i| SeriesId::new("cpu", [("instance".to_owned(), format!("host-{i}"))])).collect();
    let mut z = ZScore::new(3_600_000, true, 4.0, 30);
    let before = rss_mb();
    let mut rng = vigil::runtime::ops::collect::Rng::new(1);
    // One hour (240 samples per series) in ticks of one minute, then ten more minutes.
    let started = std::time::Instant::now();
    for tick in 0..70 {
        let cols: Vec<SeriesColumn> = ids
            .iter()
            .map(|id| {
                let mut c = SeriesColumn::new(id.clone());
                for k in 0..4 {
                    c.push((tick * 4 + k) * step, 50.0 + rng.normal());
                }
                c
            })
            .collect();
        z.process(&[Data::Series(Arc::new(SeriesData { series: cols }))], &mut OpCtx::new(0)).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "10000 series x 1 h window at 15 s (240 samples each): RSS {:.1} MB (process baseline {:.1} MB); 2.8 M samples scored in {:.2} s",
        rss_mb(),
        before,
        secs
    );
}
