//! Times each compiler phase on a file: `cargo run --release --example phases FILE`.
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).expect("a file");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut sources = vigil::source::SourceMap::new();
    let id = sources.add(&path, None, vigil::source::Origin::User, text.as_str());
    let t = Instant::now();
    let scan = vigil::syntax::scan::scan(id, &text);
    eprintln!("scan   {:>8.1} ms ({} comments)", t.elapsed().as_secs_f64() * 1e3, scan.comments.len());
    let t = Instant::now();
    let pairs = vigil::syntax::parser::VigilParser::parse_file_for_bench(&text);
    eprintln!("pest   {:>8.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let _ = pairs;
    let t = Instant::now();
    let parsed = vigil::syntax::parse(id, &text);
    eprintln!("parse  {:>8.1} ms (scan+pest+lower)", t.elapsed().as_secs_f64() * 1e3);
    drop(parsed);
    let t = Instant::now();
    let out = vigil::compile(&[path.into()]).unwrap();
    eprintln!("total  {:>8.1} ms, {} diagnostics", t.elapsed().as_secs_f64() * 1e3, out.diagnostics.0.len());
}
