//! A scenario generator that knows the true grouping, and the metrics to score against it.
//!
//! No public benchmark for alert correlation exists, so this builds one (#17):
//!
//! - a random layered DAG of `services` services in `layers` layers; each service above the
//!   bottom layer depends on 1–3 services of lower layers (named after their layer: `db07`,
//!   `cache23`, `core41`, `api63`, `web88`);
//! - `faults` root-cause faults at random services and times. A fault affects its service,
//!   then spreads to each dependant with probability `propagation` per edge after a delay of
//!   10–90 s per hop, transitively. Each service runs on 2–4 hosts and alerts per host
//!   (key `alertname:host`): the root's first host always (`latency_high`); every other
//!   host of an affected service with probability `alert_probability` (not every instance
//!   trips every alert; a service with no alerting host is a silent link of the cascade),
//!   and a second alert (`error_rate_high`) within a minute with probability `second_alert`;
//! - noise alerts (latency, error rate, CPU, disk) on random services at random times,
//!   enough to bring the firing alerts to `alerts`;
//! - each incident resolves 2–15 minutes after it fires (a resolution is an [`Alert`] with
//!   `firing: false`); an incident key is never fired twice at once (a later one that would
//!   overlap is not raised — the incident is already open);
//! - the hard variant puts faults in bursts (`burst` faults within `burst_spread_ms`) and
//!   jitters every timestamp by up to `jitter_ms` either way while alerts arrive in true
//!   order, so timestamps arrive out of order.
//!
//! Metrics ([`evaluate`]): the adjusted Rand index and purity of the situations against the
//! truth, over firing alerts, each noise alert its own singleton cluster in the truth;
//! origin accuracy — the fraction of faults whose root alert's situation names as origin a
//! member on the fault's service; reduction — 1 − situations / firing alerts (one
//! notification per situation opened).
//!
//! The generator uses its own SplitMix64, so a seed gives the same scenario on every
//! platform and vigil needs no random-number dependency for it.

use std::collections::{BTreeMap, HashMap};

use super::{Alert, Change, Config, Correlator, Topology};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioConfig {
    pub services: usize,
    pub layers: usize,
    pub faults: usize,
    /// Firing alerts in all (fault alerts, then noise to fill up to this).
    pub alerts: usize,
    pub duration_ms: i64,
    /// Probability that a fault spreads along one dependency edge.
    pub propagation: f64,
    /// Probability that an affected service (other than the root) raises an alert.
    pub alert_probability: f64,
    /// Probability of a second alert (error rate) on an alerting service.
    pub second_alert: f64,
    /// Delay of one hop, ms: uniform in this range.
    pub hop_delay_ms: (i64, i64),
    /// How long an incident fires before it resolves, ms: uniform in this range.
    pub resolve_after_ms: (i64, i64),
    /// Faults per burst (1: independent uniform times).
    pub burst: usize,
    pub burst_spread_ms: i64,
    /// Timestamps move by up to this either way (clock skew).
    pub jitter_ms: i64,
}

impl ScenarioConfig {
    /// 100 services, 20 faults, 500 alerts over one day: faults independent (a few overlap
    /// by chance), exact timestamps.
    pub fn default_scenario() -> ScenarioConfig {
        ScenarioConfig {
            services: 100,
            layers: 5,
            faults: 20,
            alerts: 500,
            duration_ms: 24 * 3_600_000,
            propagation: 0.7,
            alert_probability: 0.85,
            second_alert: 0.35,
            hop_delay_ms: (10_000, 90_000),
            resolve_after_ms: (2 * 60_000, 15 * 60_000),
            burst: 1,
            burst_spread_ms: 0,
            jitter_ms: 0,
        }
    }

    /// The default, with faults in bursts of four within five minutes and timestamps
    /// jittered by ±60 s.
    pub fn hard() -> ScenarioConfig {
        ScenarioConfig { burst: 4, burst_spread_ms: 5 * 60_000, jitter_ms: 60_000, ..ScenarioConfig::default_scenario() }
    }

    /// The default squeezed into four hours: six times the density of faults and noise.
    pub fn dense() -> ScenarioConfig {
        ScenarioConfig { duration_ms: 4 * 3_600_000, ..ScenarioConfig::default_scenario() }
    }
}

/// A generated scenario with its truth.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub topology: Topology,
    /// Firing alerts and resolutions, in the order they arrive.
    pub alerts: Vec<Alert>,
    /// When each alert arrives (true time; `ts` may be skewed): drive `advance` with it.
    pub arrives_at: Vec<i64>,
    /// Fault of each alert; `None` for noise. A resolution carries its firing's truth.
    pub truth: Vec<Option<usize>>,
    /// The root service of each fault.
    pub fault_origins: Vec<String>,
    /// Index in `alerts` of each fault's root alert.
    pub fault_roots: Vec<usize>,
}

/// SplitMix64: small, fast, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_c0de_d00d_f00d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

const KINDS: [&str; 6] = ["db", "cache", "core", "api", "web", "edge"];

struct Event {
    at: i64,
    order: usize,
    alert: Alert,
    truth: Option<usize>,
}

impl Scenario {
    /// Generates a scenario; the same config and seed give the same scenario.
    pub fn generate(config: &ScenarioConfig, seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let n = config.services.max(1);
        let layers = config.layers.clamp(1, n);
        let layer_of = |i: usize| i * layers / n;
        let names: Vec<String> = (0..n).map(|i| format!("{}{:02}", KINDS[layer_of(i).min(KINDS.len() - 1)], i)).collect();
        let mut edges = Vec::new();
        let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in 0..n {
            let lower = (0..n).take_while(|&j| layer_of(j) < layer_of(i)).count();
            if lower == 0 {
                continue;
            }
            let k = 1 + rng.below(3);
            let mut chosen: Vec<usize> = Vec::new();
            for _ in 0..k {
                let j = rng.below(lower);
                if !chosen.contains(&j) {
                    chosen.push(j);
                }
            }
            for j in chosen {
                edges.push((names[i].clone(), names[j].clone()));
                dependants[j].push(i);
            }
        }
        let topology = match Topology::from_parts(names.clone(), edges) {
            Ok(t) => t,
            Err(e) => unreachable!("generated names are never empty: {e}"),
        };
        let hosts: Vec<usize> = (0..n).map(|_| 2 + rng.below(3)).collect();

        let mut g = Gen { config, rng, names, hosts, busy: HashMap::new(), events: Vec::new() };
        // Fault times: independent, or in bursts.
        let mut times = Vec::new();
        let burst = config.burst.max(1);
        while times.len() < config.faults {
            let start = g.rng.range(0, config.duration_ms.max(1) - 1);
            for _ in 0..burst.min(config.faults - times.len()) {
                times.push(start + g.rng.range(0, config.burst_spread_ms.max(0)));
            }
        }
        let mut fault_origins = Vec::new();
        let mut root_orders = Vec::new();
        for (f, &t0) in times.iter().enumerate() {
            // A root whose alert is already open cannot fault anew: pick another service.
            let mut root = g.rng.below(n);
            let mut order = None;
            for _ in 0..50 {
                order = g.raise(root, 0, "latency_high", t0, Some(f));
                if order.is_some() {
                    break;
                }
                root = g.rng.below(n);
            }
            let Some(order) = order else { continue };
            fault_origins.push(g.names[root].clone());
            root_orders.push(order);
            g.symptoms(root, t0, Some(f), true);
            let mut affected = vec![false; n];
            affected[root] = true;
            let mut queue = std::collections::VecDeque::from([(root, t0)]);
            while let Some((s, t)) = queue.pop_front() {
                for &d in &dependants[s] {
                    if affected[d] || !g.rng.chance(config.propagation) {
                        continue;
                    }
                    affected[d] = true;
                    let td = t + g.rng.range(config.hop_delay_ms.0, config.hop_delay_ms.1);
                    g.symptoms(d, td, Some(f), false);
                    queue.push_back((d, td));
                }
            }
        }
        // Noise up to the number of alerts asked for.
        let fired = |g: &Gen| g.events.iter().filter(|e| e.alert.firing).count();
        let mut attempts = 0;
        while fired(&g) < config.alerts && attempts < config.alerts * 100 {
            attempts += 1;
            let s = g.rng.below(n);
            let name = ["latency_high", "error_rate_high", "cpu_high", "disk_usage_high"][g.rng.below(4)];
            let t = g.rng.range(0, config.duration_ms.max(1) - 1);
            let host = g.rng.below(g.hosts[s]);
            g.raise(s, host, name, t, None);
        }

        let mut events = g.events;
        events.sort_by_key(|e| (e.at, e.order));
        let mut position = vec![0usize; events.len()];
        for (i, e) in events.iter().enumerate() {
            position[e.order] = i;
        }
        let fault_roots = root_orders.iter().map(|&o| position[o]).collect();
        let mut scenario = Scenario { topology, alerts: Vec::new(), arrives_at: Vec::new(), truth: Vec::new(), fault_origins, fault_roots };
        for e in events {
            scenario.arrives_at.push(e.at);
            scenario.truth.push(e.truth);
            scenario.alerts.push(e.alert);
        }
        scenario
    }
}

struct Gen<'a> {
    config: &'a ScenarioConfig,
    rng: Rng,
    names: Vec<String>,
    hosts: Vec<usize>,
    /// Key → intervals during which an incident of it fires.
    busy: HashMap<String, Vec<(i64, i64)>>,
    events: Vec<Event>,
}

impl Gen<'_> {
    /// The alerts of one affected service: on each host, latency with probability
    /// `alert_probability` and then error rate with probability `second_alert` (the root's
    /// first host has already raised its latency alert).
    fn symptoms(&mut self, service: usize, t: i64, truth: Option<usize>, root: bool) {
        for host in 0..self.hosts[service] {
            let t = if host == 0 { t } else { t + self.rng.range(0, 30_000) };
            if !(root && host == 0) && self.rng.chance(self.config.alert_probability) {
                self.raise(service, host, "latency_high", t, truth);
            }
            if self.rng.chance(self.config.second_alert) {
                let t2 = t + self.rng.range(0, 60_000);
                self.raise(service, host, "error_rate_high", t2, truth);
            }
        }
    }

    /// Raises one incident (its firing and its resolution); `None` when its key is already
    /// firing then. Returns the firing's creation order.
    fn raise(&mut self, service: usize, host: usize, alertname: &str, t: i64, truth: Option<usize>) -> Option<usize> {
        let svc = self.names[service].clone();
        let host = format!("{svc}-{host}");
        let key = format!("{alertname}:{host}");
        let end = t + self.rng.range(self.config.resolve_after_ms.0, self.config.resolve_after_ms.1);
        let spans = self.busy.entry(key.clone()).or_default();
        if spans.iter().any(|&(a, b)| t <= b && a <= end) {
            return None;
        }
        spans.push((t, end));
        let value = self.rng.range(1, 999);
        let title = match alertname {
            "latency_high" => format!("latency high on {svc}: p99 {value} ms"),
            "error_rate_high" => format!("error rate high on {svc}: {}%", value / 10),
            "cpu_high" => format!("cpu high on {host}: {}%", 50 + value / 20),
            _ => format!("disk usage high on {host}: {}%", 50 + value / 20),
        };
        let source = match alertname {
            "latency_high" => "shop.latency_page",
            "error_rate_high" => "shop.errors_page",
            _ => "infra.node_page",
        };
        let labels =
            BTreeMap::from([("service".to_string(), svc), ("host".to_string(), host), ("alertname".to_string(), alertname.to_string())]);
        let jitter = self.config.jitter_ms.max(0);
        let ts = t + self.rng.range(-jitter, jitter);
        let ts_end = (end + self.rng.range(-jitter, jitter)).max(ts + 1);
        let id = format!("inc-{}", self.events.len());
        let fire = Alert {
            id: id.clone(),
            key: key.clone(),
            source: source.into(),
            ts,
            firing: true,
            labels: labels.clone(),
            title: title.clone(),
        };
        let resolve = Alert { id, key, source: source.into(), ts: ts_end, firing: false, labels, title };
        let order = self.events.len();
        self.events.push(Event { at: t, order, alert: fire, truth });
        self.events.push(Event { at: end, order: order + 1, alert: resolve, truth });
        Some(order)
    }
}

/// Scores of one run against the truth.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    pub ari: f64,
    pub purity: f64,
    pub origin_accuracy: f64,
    pub reduction: f64,
    /// The reduction a perfect grouping would reach: 1 − true clusters / firing alerts
    /// (every noise alert is its own cluster).
    pub ideal_reduction: f64,
    /// Firing alerts.
    pub alerts: usize,
    pub situations: usize,
    pub faults: usize,
}

/// Runs a correlator with `config` over the scenario (its topology is used when the config
/// has none; `advance` is called at each arrival) and scores the situations.
pub fn evaluate(scenario: &Scenario, mut config: Config) -> Quality {
    if config.topology.is_none() {
        config.topology = Some(scenario.topology.clone());
    }
    let mut correlator = Correlator::new(config);
    let mut landed: Vec<Option<String>> = vec![None; scenario.alerts.len()];
    let mut origins: HashMap<String, String> = HashMap::new();
    let mut opened = 0usize;
    for (i, alert) in scenario.alerts.iter().enumerate() {
        correlator.advance(scenario.arrives_at[i]);
        for change in correlator.observe(alert.clone()) {
            match change {
                Change::Opened { situation, member } => {
                    opened += 1;
                    origins.insert(situation.clone(), member);
                    landed[i] = Some(situation);
                }
                Change::Joined { situation, .. } | Change::Duplicate { situation, .. } | Change::Overflowed { situation, .. }
                    if alert.firing =>
                {
                    landed[i] = Some(situation);
                }
                Change::OriginChanged { situation, to, .. } => {
                    origins.insert(situation, to);
                }
                _ => {}
            }
        }
    }
    let service_of: HashMap<&str, &str> =
        scenario.alerts.iter().filter_map(|a| a.labels.get("service").map(|s| (a.key.as_str(), s.as_str()))).collect();
    let faults = scenario.fault_origins.len();
    let mut truth = Vec::new();
    let mut predicted = Vec::new();
    let mut clusters: HashMap<&str, usize> = HashMap::new();
    for (i, alert) in scenario.alerts.iter().enumerate() {
        if !alert.firing {
            continue;
        }
        truth.push(scenario.truth[i].unwrap_or(faults + i));
        let next = clusters.len();
        // An alert that landed nowhere (a bug) is its own cluster, so it costs, not hides.
        let cluster = match landed[i].as_deref() {
            Some(s) => *clusters.entry(s).or_insert(next),
            None => usize::MAX - i,
        };
        predicted.push(cluster);
    }
    let mut correct = 0;
    for (f, &root) in scenario.fault_roots.iter().enumerate() {
        let origin = landed[root].as_ref().and_then(|s| origins.get(s));
        if origin.and_then(|k| service_of.get(k.as_str())).is_some_and(|s| *s == scenario.fault_origins[f]) {
            correct += 1;
        }
    }
    Quality {
        ari: adjusted_rand_index(&truth, &predicted),
        purity: purity(&truth, &predicted),
        origin_accuracy: if faults == 0 { 1.0 } else { correct as f64 / faults as f64 },
        reduction: if truth.is_empty() { 0.0 } else { 1.0 - opened as f64 / truth.len() as f64 },
        ideal_reduction: if truth.is_empty() {
            0.0
        } else {
            1.0 - truth.iter().collect::<std::collections::HashSet<_>>().len() as f64 / truth.len() as f64
        },
        alerts: truth.len(),
        situations: opened,
        faults,
    }
}

fn pairs(n: usize) -> f64 {
    let n = n as f64;
    n * (n - 1.0) / 2.0
}

fn contingency(truth: &[usize], predicted: &[usize]) -> HashMap<(usize, usize), usize> {
    let mut table = HashMap::new();
    for (t, p) in truth.iter().zip(predicted) {
        *table.entry((*t, *p)).or_insert(0) += 1;
    }
    table
}

/// The adjusted Rand index (Hubert and Arabie) of two labelings of the same items: 1 for
/// identical partitions, about 0 for chance agreement. 1 when both are trivial.
pub fn adjusted_rand_index(truth: &[usize], predicted: &[usize]) -> f64 {
    let n = truth.len().min(predicted.len());
    let (truth, predicted) = (&truth[..n], &predicted[..n]);
    let mut rows: HashMap<usize, usize> = HashMap::new();
    let mut cols: HashMap<usize, usize> = HashMap::new();
    for (t, p) in truth.iter().zip(predicted) {
        *rows.entry(*t).or_insert(0) += 1;
        *cols.entry(*p).or_insert(0) += 1;
    }
    let index: f64 = contingency(truth, predicted).values().map(|&c| pairs(c)).sum();
    let a: f64 = rows.values().map(|&c| pairs(c)).sum();
    let b: f64 = cols.values().map(|&c| pairs(c)).sum();
    let total = pairs(n);
    if total == 0.0 {
        return 1.0;
    }
    let expected = a * b / total;
    let max = (a + b) / 2.0;
    if max == expected {
        1.0
    } else {
        (index - expected) / (max - expected)
    }
}

/// Purity: each predicted cluster counts its most common true class; the sum over all items.
pub fn purity(truth: &[usize], predicted: &[usize]) -> f64 {
    let n = truth.len().min(predicted.len());
    if n == 0 {
        return 1.0;
    }
    let mut best: HashMap<usize, usize> = HashMap::new();
    for ((_, p), c) in contingency(&truth[..n], &predicted[..n]) {
        let e = best.entry(p).or_insert(0);
        *e = (*e).max(c);
    }
    best.values().sum::<usize>() as f64 / n as f64
}
