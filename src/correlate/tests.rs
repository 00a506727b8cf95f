//! Tests of alert correlation (#17).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::scenario::{adjusted_rand_index, evaluate, purity, Scenario, ScenarioConfig};
use super::*;

const MIN: i64 = 60_000;

fn alert(key: &str, ts: i64, labels: &[(&str, &str)]) -> Alert {
    Alert {
        id: format!("{key}@{ts}"),
        key: key.into(),
        source: "shop.page".into(),
        ts,
        firing: true,
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        title: key.into(),
    }
}

fn resolved(a: &Alert, ts: i64) -> Alert {
    Alert { firing: false, ts, ..a.clone() }
}

fn svc(key: &str, ts: i64, service: &str) -> Alert {
    alert(key, ts, &[("service", service)])
}

/// checkout → payments → db, search → db, isolated: mail.
fn shop() -> Topology {
    Topology::from_json(
        r#"{"edges": [["checkout", "payments"], ["payments", "db"], ["search", "db"], ["frontend", "checkout"]], "services": ["mail"]}"#,
    )
    .unwrap()
}

fn topo_config() -> Config {
    Config { by: vec![], topology: Some(shop()), hops: 1, ..Config::default() }
}

fn situation_of(changes: &[Change]) -> Option<String> {
    changes.iter().find(|c| matches!(c, Change::Opened { .. } | Change::Joined { .. })).and_then(|c| c.situation()).map(String::from)
}

fn opened(changes: &[Change]) -> bool {
    changes.iter().any(|c| matches!(c, Change::Opened { .. }))
}

#[test]
fn label_join() {
    let mut c = Correlator::new(Config::default());
    let a = situation_of(&c.observe(alert("a", 0, &[("host", "h1")]))).unwrap();
    let changes = c.observe(alert("b", MIN, &[("host", "h1"), ("service", "x")]));
    assert_eq!(situation_of(&changes), Some(a.clone()));
    let Some(Change::Joined { reason, .. }) = changes.first() else { panic!("{changes:?}") };
    assert_eq!(reason, &JoinReason::Label { name: "host".into(), value: "h1".into(), with: "a".into() });
    // No shared label: a new situation.
    assert!(opened(&c.observe(alert("c", MIN, &[("host", "h2")]))));
}

#[test]
fn topology_join_within_hops_not_beyond() {
    let mut c = Correlator::new(topo_config());
    let s = situation_of(&c.observe(svc("db-down", 0, "db"))).unwrap();
    let changes = c.observe(svc("pay-slow", 30_000, "payments"));
    assert_eq!(situation_of(&changes), Some(s.clone()));
    assert!(changes.iter().any(|ch| matches!(ch, Change::Joined { reason: JoinReason::Topology { path, with }, .. }
        if path == &vec!["payments".to_string(), "db".to_string()] && with == "db-down")));
    // frontend is 2 hops from payments and 3 from db: not within hops 1... of payments it is
    // 2 hops (frontend → checkout → payments), so it opens its own situation.
    assert!(opened(&c.observe(svc("fe-slow", 40_000, "frontend"))));
    // With hops 2 it joins.
    let mut c = Correlator::new(Config { hops: 2, ..topo_config() });
    c.observe(svc("db-down", 0, "db"));
    c.observe(svc("pay-slow", 30_000, "payments"));
    let changes = c.observe(svc("fe-slow", 40_000, "frontend"));
    assert!(
        changes.iter().any(|ch| matches!(ch, Change::Joined { reason: JoinReason::Topology { path, .. }, .. }
        if path == &vec!["frontend".to_string(), "checkout".to_string(), "payments".to_string()])),
        "{changes:?}"
    );
}

#[test]
fn text_join() {
    let config = Config { by: vec![], similarity: Some(0.6), ..Config::default() };
    let mut c = Correlator::new(config);
    let mut a = alert("a", 0, &[]);
    a.title = "Connection refused to 10.0.0.12 port 5432".into();
    let s = situation_of(&c.observe(a)).unwrap();
    let mut b = alert("b", MIN, &[]);
    b.title = "connection refused to 10.0.3.7 port 6379".into();
    let changes = c.observe(b);
    assert_eq!(situation_of(&changes), Some(s));
    assert!(
        matches!(&changes[0], Change::Joined { reason: JoinReason::Text { similarity, with }, .. } if *similarity == 1.0 && with == "a")
    );
    let mut d = alert("d", MIN, &[]);
    d.title = "disk full on /var".into();
    assert!(opened(&c.observe(d)));
}

#[test]
fn origin_upstream_beats_earliest() {
    let mut c = Correlator::new(Config { hops: 2, ..topo_config() });
    let s = situation_of(&c.observe(svc("checkout-slow", 0, "checkout"))).unwrap();
    let changes = c.observe(svc("pay-slow", 10_000, "payments"));
    assert!(changes.contains(&Change::OriginChanged { situation: s.clone(), from: Some("checkout-slow".into()), to: "pay-slow".into() }));
    let changes = c.observe(svc("db-down", 20_000, "db"));
    assert!(changes.contains(&Change::OriginChanged { situation: s.clone(), from: Some("pay-slow".into()), to: "db-down".into() }));
    let sit = c.get(&s).unwrap();
    assert_eq!(sit.origin.as_deref(), Some("db-down"));
    assert!(sit.origin_reason.contains("upstream"), "{}", sit.origin_reason);
    // A later downstream member does not move it.
    let changes = c.observe(svc("search-slow", 30_000, "search"));
    assert!(!changes.iter().any(|ch| matches!(ch, Change::OriginChanged { .. })));
}

#[test]
fn origin_earliest_without_topology_and_on_ties() {
    let mut c = Correlator::new(Config::default());
    let s = situation_of(&c.observe(alert("late", 50_000, &[("host", "h")]))).unwrap();
    // Out of order: an earlier member takes the origin (no topology: earliest).
    let changes = c.observe(alert("early", 10_000, &[("host", "h")]));
    assert!(changes.contains(&Change::OriginChanged { situation: s.clone(), from: Some("late".into()), to: "early".into() }));
    // Two members with nothing upstream of each other (checkout and search): earliest.
    let mut c = Correlator::new(Config { by: vec!["team".into()], ..topo_config() });
    let s = situation_of(&c.observe(alert("search", 5_000, &[("service", "search"), ("team", "t")]))).unwrap();
    c.observe(alert("checkout", 1_000, &[("service", "checkout"), ("team", "t")]));
    assert_eq!(c.get(&s).unwrap().origin.as_deref(), Some("checkout"));
}

#[test]
fn rejoin_after_resolve() {
    let mut c = Correlator::new(Config::default());
    let a = alert("a", 0, &[("host", "h")]);
    let s = situation_of(&c.observe(a.clone())).unwrap();
    c.observe(alert("b", 1_000, &[("host", "h")]));
    assert!(matches!(&c.observe(resolved(&a, 2 * MIN))[0], Change::MemberResolved { member, .. } if member == "a"));
    let mut again = alert("a", 4 * MIN, &[("host", "h")]);
    again.id = "a#2".into();
    let changes = c.observe(again);
    assert_eq!(changes, vec![Change::Joined { situation: s.clone(), member: "a".into(), reason: JoinReason::Rejoined }]);
    let m = c.get(&s).unwrap().member("a").unwrap();
    assert!(m.firing && m.fires == 2 && m.incident_id == "a#2");
    // A stale resolution of the first incident does not resolve the second.
    assert_eq!(c.observe(resolved(&a, 5 * MIN)), vec![Change::Unmatched { key: "a".into() }]);
    // A firing duplicate is reported, not added.
    assert!(matches!(&c.observe(alert("a", 5 * MIN, &[]))[0], Change::Duplicate { firing: true, .. }));
    assert_eq!(c.get(&s).unwrap().members.len(), 2);
}

#[test]
fn close_after_window_and_not_before() {
    let mut c = Correlator::new(Config::default());
    let a = alert("a", 0, &[("host", "h")]);
    let s = situation_of(&c.observe(a.clone())).unwrap();
    // Firing: never closes.
    assert!(c.advance(100 * MIN).is_empty());
    c.observe(resolved(&a, 101 * MIN));
    assert!(c.advance(105 * MIN).is_empty());
    assert_eq!(c.advance(106 * MIN), vec![Change::Closed { situation: s.clone() }]);
    let sit = c.get(&s).unwrap();
    assert_eq!(sit.closed_at, Some(106 * MIN));
    assert!(!sit.is_open());
    // The key after its situation closed: a new situation, and its resolution matches.
    assert!(opened(&c.observe(alert("a", 107 * MIN, &[("host", "h")]))));
}

#[test]
fn span_cap() {
    let config = Config { max_span_ms: 10 * MIN, ..Config::default() };
    let mut c = Correlator::new(config);
    let s = situation_of(&c.observe(alert("k0", 0, &[("host", "h")]))).unwrap();
    // Each 4 minutes after the last: within the window, so it extends...
    for i in 1..=2 {
        assert_eq!(situation_of(&c.observe(alert(&format!("k{i}"), i * 4 * MIN, &[("host", "h")]))), Some(s.clone()));
    }
    // ...until the span would exceed 10 minutes.
    let changes = c.observe(alert("k3", 12 * MIN, &[("host", "h")]));
    assert!(opened(&changes));
}

#[test]
fn out_of_order_timestamps() {
    let mut c = Correlator::new(Config::default());
    let s = situation_of(&c.observe(alert("a", 10 * MIN, &[("host", "h")]))).unwrap();
    // 4 minutes before: within the window, joins and moves opened_at back.
    assert_eq!(situation_of(&c.observe(alert("b", 6 * MIN, &[("host", "h")]))), Some(s.clone()));
    assert_eq!(c.get(&s).unwrap().opened_at, 6 * MIN);
    // Older than the window of every open situation: its own.
    assert!(opened(&c.observe(alert("c", 0, &[("host", "h")]))));
    // Absurd timestamps do not panic.
    for ts in [i64::MIN, i64::MAX, 0] {
        c.observe(alert("x", ts, &[("host", "h")]));
        c.advance(ts);
    }
}

#[test]
fn topology_with_cycle() {
    let t =
        Topology::from_edges(vec![("a".into(), "b".into()), ("b".into(), "c".into()), ("c".into(), "a".into()), ("d".into(), "a".into())])
            .unwrap();
    let (a, d) = (t.id("a").unwrap(), t.id("d").unwrap());
    assert!(t.is_upstream(a, d));
    assert!(!t.is_upstream(d, a));
    let (b, c) = (t.id("b").unwrap(), t.id("c").unwrap());
    assert!(!t.is_upstream(b, c) && !t.is_upstream(c, b));
    // On the cycle the origin falls back to the earliest member.
    let mut cor = Correlator::new(Config { by: vec![], topology: Some(t), hops: 2, ..Config::default() });
    let s = situation_of(&cor.observe(svc("c", 0, "c"))).unwrap();
    cor.observe(svc("b", 1_000, "b"));
    cor.observe(svc("d", 2_000, "d"));
    assert_eq!(cor.get(&s).unwrap().origin.as_deref(), Some("c"));
    assert_eq!(cor.get(&s).unwrap().members.len(), 3);
}

#[test]
fn deep_topology_beyond_the_closure_limit() {
    // 6 000 services in one chain: no recursion to overflow, and the searched answer (past
    // the precomputed closure) agrees with the chain.
    let edges: Vec<(String, String)> = (0..6_000).map(|i| (format!("s{}", i + 1), format!("s{i}"))).collect();
    let t = Topology::from_edges(edges).unwrap();
    let id = |i: usize| t.id(&format!("s{i}")).unwrap();
    assert!(t.is_upstream(id(0), id(5_000)));
    assert!(!t.is_upstream(id(5_000), id(0)));
    assert!(t.is_upstream(id(10), id(11)));
    let near = t.neighbourhood(id(3_000), 2, 256);
    assert_eq!(near.len(), 5);
    assert_eq!(t.path(&near, 4).len(), 3);
}

#[test]
fn unknown_service_is_related_by_labels_only() {
    let mut c = Correlator::new(Config { by: vec!["host".into()], ..topo_config() });
    let s = situation_of(&c.observe(svc("db", 0, "db"))).unwrap();
    assert!(opened(&c.observe(svc("ghost", 1_000, "ghost"))));
    assert_eq!(c.stats().unknown_services, 1);
    let changes = c.observe(alert("ghost2", 2_000, &[("service", "ghost2"), ("host", "h")]));
    assert!(opened(&changes));
    let changes = c.observe(alert("ghost3", 3_000, &[("service", "ghost3"), ("host", "h")]));
    assert!(matches!(&changes[0], Change::Joined { reason: JoinReason::Label { .. }, .. }));
    // The known member stays the origin of its own situation.
    assert_eq!(c.get(&s).unwrap().origin.as_deref(), Some("db"));
}

#[test]
fn topology_errors_are_clear() {
    let err = |s: &str| Topology::from_json(s).unwrap_err().message;
    assert!(err("{\"edges\": [[\"a\", ").starts_with("malformed JSON"), "{}", err("{\"edges\": [[\"a\", "));
    assert!(err("[1, 2]").starts_with("expected an object"));
    let e = Topology::from_json("{\n  \"edges\": [[\"a\" \"b\"]]\n}").unwrap_err();
    assert!(matches!(e.kind, TopologyErrorKind::MalformedJson { line: 2, .. }), "{e:?}");
    assert_eq!(Topology::from_json(r#"{"edges": [["a", "b"], 7]}"#).unwrap_err().kind, TopologyErrorKind::BadEdge { edge: 2 });
    assert!(err(r#"{"edges": [["a", "b"], ["c"]]}"#).starts_with("edge 2:"));
    assert!(err(r#"{"edges": [["a", ""]]}"#).contains("empty service name"));
    assert!(err(r#"{"checkout": "payments"}"#).contains("service `checkout`"));
    assert!(err(r#"{"checkout": [1]}"#).contains("expected a service name"));
    assert!(err(r#"{"edges": [["a", "b"]], "extra": 1}"#).contains("unknown key"));
    // The map form, self-loops ignored and counted, round trip through serde.
    let t = Topology::from_json(r#"{"checkout": ["payments", "db", "checkout"], "db": []}"#).unwrap();
    assert!(t.depends_on("checkout", "payments") && t.contains("db") && t.ignored_self_loops() == 1);
    let back: Topology = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
    assert_eq!(Topology::from_json(&t.to_json()).unwrap(), t);
}

#[test]
fn many_open_situations_are_bounded() {
    let config = Config { max_open: 100_000, keep_closed: 10, ..Config::default() };
    let mut c = Correlator::new(config);
    for i in 0..100_000i64 {
        c.observe(alert(&format!("k{i}"), i, &[("host", &format!("h{i}"))]));
    }
    assert_eq!(c.open_count(), 100_000);
    let changes = c.observe(alert("one-more", 100_000, &[("host", "new")]));
    assert!(matches!(&changes[0], Change::Evicted { .. }));
    assert_eq!(c.open_count(), 100_000);
    assert_eq!(c.stats().evicted, 1);
    assert!(c.situations().count() <= 100_010);
}

#[test]
fn burst_of_50_000_in_one_tick() {
    let mut c = Correlator::new(Config { max_members: 1_000, topology: Some(shop()), ..Config::default() });
    let services = ["db", "payments", "checkout", "search", "ghost"];
    for i in 0..50_000usize {
        c.observe(alert(&format!("k{i}"), 0, &[("service", services[i % 5]), ("host", &format!("h{}", i % 7))]));
    }
    let s = c.stats();
    let stored: usize = c.situations().map(|s| s.members.len()).sum();
    let dropped: u64 = c.situations().map(|s| s.dropped_members).sum();
    assert_eq!(stored as u64 + dropped, 50_000);
    assert_eq!(s.overflowed, dropped);
    assert!(c.situations().all(|s| s.members.len() <= 1_000));
}

#[test]
fn snapshot_restore_behaves_identically() {
    let scenario = Scenario::generate(&ScenarioConfig::hard(), 99);
    let config = Config { topology: Some(scenario.topology.clone()), similarity: Some(0.9), keep_closed: 50, ..Config::default() };
    let mut live = Correlator::new(config);
    let half = scenario.alerts.len() / 2;
    for (i, a) in scenario.alerts[..half].iter().enumerate() {
        live.advance(scenario.arrives_at[i]);
        live.observe(a.clone());
    }
    let json = serde_json::to_string(&live).unwrap();
    let mut restored: Correlator = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&restored).unwrap(), json);
    for (i, a) in scenario.alerts.iter().enumerate().skip(half) {
        assert_eq!(live.advance(scenario.arrives_at[i]), restored.advance(scenario.arrives_at[i]));
        assert_eq!(live.observe(a.clone()), restored.observe(a.clone()), "alert {i}");
    }
    assert_eq!(serde_json::to_string(&live).unwrap(), serde_json::to_string(&restored).unwrap());
    // A snapshot whose parts disagree is refused, not trusted.
    let bad = json.replacen("\"open\":[", "\"open\":[999999,", 1);
    assert!(serde_json::from_str::<Correlator>(&bad).is_err());
}

#[test]
fn reconfigure_keeps_situations() {
    let mut c = Correlator::new(Config { by: vec!["team".into()], ..Config::default() });
    let s = situation_of(&c.observe(alert("checkout", 0, &[("service", "checkout"), ("team", "t")]))).unwrap();
    c.observe(alert("db", 1_000, &[("service", "db"), ("team", "t")]));
    assert_eq!(c.get(&s).unwrap().origin.as_deref(), Some("checkout"));
    let changes = c.reconfigure(Config { by: vec!["team".into()], topology: Some(shop()), ..Config::default() });
    assert_eq!(changes, vec![Change::OriginChanged { situation: s.clone(), from: Some("checkout".into()), to: "db".into() }]);
    // Still joins under the new config.
    assert_eq!(situation_of(&c.observe(svc("pay", 2_000, "payments"))), Some(s));
}

#[test]
fn ids_are_deterministic() {
    let run = || {
        let scenario = Scenario::generate(&ScenarioConfig::default_scenario(), 7);
        let mut c = Correlator::new(Config { topology: Some(scenario.topology.clone()), ..Config::default() });
        let mut out = Vec::new();
        for (i, a) in scenario.alerts.iter().enumerate() {
            out.extend(c.advance(scenario.arrives_at[i]));
            out.extend(c.observe(a.clone()));
        }
        out
    };
    let first = run();
    assert_eq!(first, run());
    let ids: Vec<&String> =
        first.iter().filter_map(|c| if let Change::Opened { situation, .. } = c { Some(situation) } else { None }).collect();
    assert!(ids.iter().all(|id| id.starts_with("sit-") && id.len() == 20));
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn metrics() {
    assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7]), 1.0);
    assert_eq!(purity(&[0, 0, 1, 1], &[1, 1, 1, 1]), 0.5);
    assert!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
    // A textbook value: sklearn's adjusted_rand_score([0,0,0,1,1,1], [0,0,1,1,2,2]) = 0.242424...
    assert!((adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]) - 0.242_424_242).abs() < 1e-6);
}

#[test]
fn scenario_is_deterministic_and_complete() {
    let a = Scenario::generate(&ScenarioConfig::default_scenario(), 3);
    let b = Scenario::generate(&ScenarioConfig::default_scenario(), 3);
    assert_eq!(a.alerts, b.alerts);
    assert_eq!(a.alerts.iter().filter(|x| x.firing).count(), 500);
    assert_eq!(a.fault_origins.len(), 20);
    for (f, &r) in a.fault_roots.iter().enumerate() {
        assert_eq!(a.truth[r], Some(f));
        assert_eq!(a.alerts[r].labels["service"], a.fault_origins[f]);
    }
    let q = evaluate(&a, Config::default());
    assert!(q.purity > 0.5 && q.alerts == 500, "{q:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Never panics; every firing alert lands in exactly one situation (stored, or counted as
    /// dropped), and every change names a situation that exists.
    #[test]
    fn never_panics_and_nothing_is_lost(
        ops in proptest::collection::vec((0u8..6, 0u8..12, -400_000i64..4_000_000, any::<bool>(), 0u8..4), 1..300),
        max_members in 1usize..5,
        max_open in 1usize..6,
    ) {
        let topology = Topology::from_edges(vec![("s1".into(), "s2".into()), ("s2".into(), "s3".into()), ("s3".into(), "s1".into()), ("s4".into(), "s2".into())]).unwrap();
        let config = Config { max_members, max_open, keep_closed: 1_000_000, topology: Some(topology), similarity: Some(0.5), window_ms: 60_000, max_span_ms: 300_000, ..Config::default() };
        let mut c = Correlator::new(config);
        let mut firing_new = 0u64;
        for (service, key, ts, firing, host) in ops {
            let mut a = alert(&format!("k{key}"), ts, &[("service", &format!("s{service}")), ("host", &format!("h{host}"))]);
            a.firing = firing;
            a.id = format!("k{key}");
            a.title = format!("thing {service} broke");
            for change in c.observe(a) {
                match &change {
                    Change::Opened { situation, .. } | Change::Joined { situation, reason: JoinReason::Label { .. } | JoinReason::Topology { .. } | JoinReason::Text { .. }, .. } | Change::Overflowed { situation, .. } => {
                        firing_new += 1;
                        prop_assert!(c.get(situation).is_some());
                    }
                    _ => {}
                }
            }
            c.advance(ts);
        }
        let stored: usize = c.situations().map(|s| s.members.len()).sum();
        let dropped: u64 = c.situations().map(|s| s.dropped_members).sum();
        prop_assert_eq!(stored as u64 + dropped, firing_new);
        let s = c.stats();
        prop_assert_eq!(s.alerts, s.opened + s.joined + s.rejoined + s.duplicates + s.overflowed + s.resolved + s.unmatched);
    }
}

/// #17's targets on the default scenario, on a seed used neither for choosing constants
/// (101–105) nor for the reported figures (1–5).
#[test]
fn default_scenario_meets_the_targets() {
    let scenario = Scenario::generate(&ScenarioConfig::default_scenario(), 11);
    let q = evaluate(&scenario, Config::default());
    assert!(q.purity >= 0.9 && q.origin_accuracy >= 0.8, "{q:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// A snapshot taken at any point, restored, answers every later call as the original does.
    #[test]
    fn restore_anywhere_behaves_identically(
        ops in proptest::collection::vec((0u8..6, 0u8..10, 0i64..2_000_000, any::<bool>()), 1..200),
        cut in 0usize..200,
    ) {
        let topology = Topology::from_edges(vec![("s1".into(), "s2".into()), ("s2".into(), "s3".into()), ("s4".into(), "s2".into())]).unwrap();
        let config = Config { max_members: 3, max_open: 4, keep_closed: 5, topology: Some(topology), similarity: Some(0.5), window_ms: 60_000, ..Config::default() };
        let mut live = Correlator::new(config);
        let mut restored: Option<Correlator> = None;
        for (i, (service, key, ts, firing)) in ops.into_iter().enumerate() {
            if i == cut {
                restored = Some(serde_json::from_str(&serde_json::to_string(&live).unwrap()).unwrap());
            }
            let mut a = alert(&format!("k{key}"), ts, &[("service", &format!("s{service}"))]);
            a.firing = firing;
            a.id = format!("k{key}");
            let expected = (live.observe(a.clone()), live.advance(ts));
            if let Some(r) = restored.as_mut() {
                prop_assert_eq!(&expected, &(r.observe(a), r.advance(ts)));
            }
        }
    }
}
