//! Writes a CSV of `timestamp,value` rows in the NAB format, for the replay benchmark:
//! `cargo run --release --example gen_series -- OUT.csv [ROWS] [INTERVAL_SECONDS]`.
//! A daily wave with noise and a few spikes, deterministic.

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: gen_series OUT.csv [ROWS] [INTERVAL_SECONDS]");
    let rows: usize = args.next().map_or(1_000_000, |s| s.parse().expect("ROWS"));
    let interval: i64 = args.next().map_or(300, |s| s.parse().expect("INTERVAL_SECONDS"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out).expect("creating the output"));
    writeln!(w, "timestamp,value").unwrap();
    let mut rng = vigil::runtime::ops::collect::Rng::new(42);
    let start = 1_388_534_400_000i64; // 2014-01-01
    for i in 0..rows as i64 {
        let t = start + i * interval * 1000;
        let day = (t as f64 / 86_400_000.0) * std::f64::consts::TAU;
        let mut v = 50.0 + 10.0 * day.sin() + 2.0 * rng.normal();
        if i % 5000 == 4999 {
            v += 40.0;
        }
        writeln!(w, "{},{:.4}", vigil::time::format_timestamp(t), v).unwrap();
    }
}
