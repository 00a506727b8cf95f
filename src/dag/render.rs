//! Rendering a pipeline's DAG for people: Graphviz DOT and Mermaid flowcharts.

use std::fmt::Write;

use super::PipelinePlan;

fn label(p: &PipelinePlan, i: usize) -> String {
    let s = &p.stages[i];
    let name = s.key.0.strip_prefix(&format!("{}.", p.name)).unwrap_or(&s.key.0);
    match &s.via {
        Some(t) => format!("{name}\\n{} {t} ({}) → {}", s.kind, s.operator, s.output),
        None => format!("{name}\\n{} {} → {}", s.kind, s.operator, s.output),
    }
}

fn shape(kind: crate::syntax::ast::StageKind) -> (&'static str, &'static str) {
    use crate::syntax::ast::StageKind::*;
    // (dot shape, mermaid bracket style)
    match kind {
        Collect => ("invhouse", "[/"),
        Preprocess => ("box", "["),
        Train => ("box3d", "[["),
        Predict => ("ellipse", "(["),
        Respond => ("house", "{{"),
    }
}

/// The pipelines as one Graphviz DOT digraph, a cluster per pipeline.
pub fn to_dot(pipelines: &[PipelinePlan]) -> String {
    let mut s = String::from("digraph vigil {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
    for (pi, p) in pipelines.iter().enumerate() {
        let _ = writeln!(s, "  subgraph cluster_{pi} {{\n    label=\"pipeline {}\";", p.name);
        for i in 0..p.stages.len() {
            let _ = writeln!(
                s,
                "    \"{}\" [label=\"{}\", shape={}];",
                p.stages[i].key,
                label(p, i).replace('"', "\\\""),
                shape(p.stages[i].kind).0
            );
        }
        for e in p.graph.edge_indices() {
            let (a, b) = p.graph.edge_endpoints(e).expect("edge");
            let _ = writeln!(s, "    \"{}\" -> \"{}\" [label=\"{}\"];", p.stages[p.graph[a]].key, p.stages[p.graph[b]].key, p.graph[e]);
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// The pipelines as a Mermaid flowchart, a subgraph per pipeline.
pub fn to_mermaid(pipelines: &[PipelinePlan]) -> String {
    let mut s = String::from("flowchart LR\n");
    let id = |pi: usize, i: usize| format!("p{pi}s{i}");
    for (pi, p) in pipelines.iter().enumerate() {
        let _ = writeln!(s, "  subgraph p{pi}[\"pipeline {}\"]", p.name);
        for i in 0..p.stages.len() {
            let (open, close) = match shape(p.stages[i].kind).1 {
                "[/" => ("[/", "/]"),
                "[[" => ("[[", "]]"),
                "([" => ("([", "])"),
                "{{" => ("{{", "}}"),
                _ => ("[", "]"),
            };
            let text = label(p, i).replace("\\n", "<br/>").replace('"', "#quot;");
            let _ = writeln!(s, "    {}{open}\"{text}\"{close}", id(pi, i));
        }
        for e in p.graph.edge_indices() {
            let (a, b) = p.graph.edge_endpoints(e).expect("edge");
            let _ = writeln!(s, "    {} -->|{}| {}", id(pi, p.graph[a]), p.graph[e], id(pi, p.graph[b]));
        }
        s.push_str("  end\n");
    }
    s
}
