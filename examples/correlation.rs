//! Alert correlation (#17): grouping quality on generated scenarios, and the cost of `observe`.
//!
//! ```sh
//! cargo run --release --example correlation            # the reported seeds 1–5
//! cargo run --release --example correlation -- dev     # seeds 101–105, for choosing constants
//! ```
//!
//! Quality: for each scenario (default, hard, dense) the adjusted Rand index, purity, origin
//! accuracy and reduction (1 − situations / alerts), averaged over five seeds, for the
//! default config and a few alternatives. Cost: `observe` latency (p50, p99, max) and
//! throughput on a 10 000-alert scenario, with 1 000 and with 100 000 open situations, and a
//! burst of 50 000 alerts in one tick.

use std::collections::BTreeMap;
use std::time::Instant;

use vigil::correlate::scenario::{evaluate, Quality, Rng, Scenario, ScenarioConfig};
use vigil::correlate::{Alert, Config, Correlator, Topology};

fn main() {
    let dev = std::env::args().any(|a| a == "dev");
    let seeds: Vec<u64> = if dev { (101..=105).collect() } else { (1..=5).collect() };
    println!("seeds {seeds:?}\n");
    let mut configs: Vec<(&str, Config)> = vec![
        ("default: window 5m, hops 1, by service+host", Config::default()),
        ("hops 2", Config { hops: 2, ..Config::default() }),
        ("labels only (no topology)", Config { topology: Some(Topology::default()), ..Config::default() }),
        ("text similarity 0.7 added", Config { similarity: Some(0.7), ..Config::default() }),
    ];
    if dev {
        configs.push(("window 3m", Config { window_ms: 3 * 60_000, ..Config::default() }));
        configs.push(("window 10m", Config { window_ms: 10 * 60_000, ..Config::default() }));
        configs.push(("max span 30m", Config { max_span_ms: 30 * 60_000, ..Config::default() }));
    }
    println!(
        "{:<10} {:<46} {:>6} {:>7} {:>7} {:>9} {:>9} {:>7} {:>10}",
        "scenario", "config", "ARI", "purity", "origin", "reduction", "(ideal)", "alerts", "situations"
    );
    for (name, sc) in
        [("default", ScenarioConfig::default_scenario()), ("hard", ScenarioConfig::hard()), ("dense", ScenarioConfig::dense())]
    {
        let scenarios: Vec<Scenario> = seeds.iter().map(|&s| Scenario::generate(&sc, s)).collect();
        for (label, config) in &configs {
            let qs: Vec<Quality> = scenarios.iter().map(|s| evaluate(s, config.clone())).collect();
            let avg = |f: fn(&Quality) -> f64| qs.iter().map(f).sum::<f64>() / qs.len() as f64;
            println!(
                "{:<10} {:<46} {:>6.3} {:>7.3} {:>6.1}% {:>8.1}% {:>8.1}% {:>7.0} {:>10.1}",
                name,
                label,
                avg(|q| q.ari),
                avg(|q| q.purity),
                100.0 * avg(|q| q.origin_accuracy),
                100.0 * avg(|q| q.reduction),
                100.0 * avg(|q| q.ideal_reduction),
                avg(|q| q.alerts as f64),
                avg(|q| q.situations as f64),
            );
        }
    }
    println!();
    cost();
}

fn percentiles(name: &str, mut nanos: Vec<u64>, open: usize) {
    nanos.sort_unstable();
    let at = |p: f64| nanos[((nanos.len() as f64 - 1.0) * p) as usize] as f64 / 1_000.0;
    let total: u64 = nanos.iter().sum();
    println!(
        "{:<52} {:>8} calls  {:>10.0} alerts/s  p50 {:>7.2} µs  p99 {:>7.2} µs  max {:>8.1} µs  open {:>6}",
        name,
        nanos.len(),
        nanos.len() as f64 / (total as f64 / 1e9),
        at(0.5),
        at(0.99),
        at(1.0),
        open
    );
}

fn timed(c: &mut Correlator, alert: Alert, out: &mut Vec<u64>) {
    let start = Instant::now();
    let changes = c.observe(alert);
    out.push(start.elapsed().as_nanos() as u64);
    std::hint::black_box(changes);
}

fn labels(service: &str, host: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("service".to_string(), service.to_string()), ("host".to_string(), host.to_string())])
}

fn alert(key: String, ts: i64, service: &str, host: &str) -> Alert {
    Alert {
        id: key.clone(),
        key,
        source: "bench".into(),
        ts,
        firing: true,
        labels: labels(service, host),
        title: format!("latency high on {service}"),
    }
}

fn cost() {
    // 1. A 10 000-alert scenario over a 1 000-service topology (firings and resolutions).
    let big = ScenarioConfig { services: 1_000, layers: 6, faults: 400, alerts: 10_000, ..ScenarioConfig::default_scenario() };
    let scenario = Scenario::generate(&big, 1);
    let mut c = Correlator::new(Config { topology: Some(scenario.topology.clone()), ..Config::default() });
    let mut nanos = Vec::new();
    let mut peak = 0;
    for (i, a) in scenario.alerts.iter().enumerate() {
        let a = a.clone();
        let start = Instant::now();
        std::hint::black_box(c.advance(scenario.arrives_at[i]));
        std::hint::black_box(c.observe(a));
        nanos.push(start.elapsed().as_nanos() as u64);
        peak = peak.max(c.open_count());
    }
    percentiles("scenario: 10 000 alerts, 1 000 services (+advance)", nanos, peak);

    // 2. 1 000 open situations; 100 000 alerts that each join one (by host) after a
    //    topology lookup over a 1 000-service graph.
    let topology = scenario.topology.clone();
    let names: Vec<String> = topology.edges().into_iter().map(|(a, _)| a).collect();
    let mut c = Correlator::new(Config { topology: Some(topology.clone()), ..Config::default() });
    for i in 0..1_000 {
        c.observe(alert(format!("seed{i}"), 0, &format!("u{i}"), &format!("h{i}")));
    }
    let mut rng = Rng::new(7);
    let mut nanos = Vec::new();
    for i in 0..100_000i64 {
        let service = &names[rng.below(names.len())];
        let host = format!("h{}", rng.below(1_000));
        timed(&mut c, alert(format!("k{i}"), i, service, &host), &mut nanos);
    }
    percentiles("1 000 open situations, 100 000 alerts joining", nanos, c.open_count());

    // 3. 100 000 open situations; 10 000 more alerts, half joining one by host.
    let mut c = Correlator::new(Config { topology: Some(topology), max_open: 200_000, ..Config::default() });
    let mut fill = Vec::new();
    for i in 0..100_000i64 {
        timed(&mut c, alert(format!("seed{i}"), i, &format!("u{i}"), &format!("h{i}")), &mut fill);
    }
    percentiles("opening 100 000 situations", fill, c.open_count());
    let mut nanos = Vec::new();
    for i in 0..10_000i64 {
        let service = &names[rng.below(names.len())];
        let host = format!("h{}", rng.below(200_000));
        timed(&mut c, alert(format!("k{i}"), 100_000 + i, service, &host), &mut nanos);
    }
    percentiles("100 000 open situations, 10 000 alerts", nanos, c.open_count());

    // 4. A burst of 50 000 alerts with one timestamp over 5 services and 7 hosts.
    let mut c = Correlator::new(Config::default());
    let mut nanos = Vec::new();
    for i in 0..50_000usize {
        timed(&mut c, alert(format!("k{i}"), 0, &format!("s{}", i % 5), &format!("h{}", i % 7)), &mut nanos);
    }
    let dropped: u64 = c.situations().map(|s| s.dropped_members).sum();
    percentiles("burst: 50 000 alerts in one tick", nanos, c.open_count());
    println!("  burst: {} situations, {} members stored, {} counted past max_members", c.open_count(), 50_000 - dropped, dropped);
}
