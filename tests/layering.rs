//! The module layering written at the top of `src/lib.rs` holds: no module imports one
//! listed above it (a later layer). Code under `#[cfg(test)]` may reach higher (a unit
//! test may use the real store); comments and doc links do not count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, lowest first, as `src/lib.rs` lists them in its ```text block after the
/// line `Layers, lowest first`: one line per layer, `N. module module …`.
fn layers() -> Vec<Vec<String>> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let start = lib.find("Layers, lowest first").expect("src/lib.rs lists its layers");
    let block = &lib[start..];
    let open = block.find("```text").expect("a ```text block of layers");
    let body = &block[open + 7..];
    let body = &body[..body.find("```").expect("the layers block ends")];
    body.lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, rest) = l.split_once(". ").unwrap_or_else(|| panic!("a layer line reads `N. module …`: {l}"));
            assert!(n.parse::<u32>().is_ok(), "{l}");
            rest.split(|c: char| c.is_whitespace() || c == ',').filter(|m| !m.is_empty()).map(str::to_owned).collect()
        })
        .collect()
}

/// The imports `src/lib.rs` lists as still going up (`a -> b: why`), after the line
/// `Imports that still go up`.
fn known_upward() -> Vec<(String, String)> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let Some(start) = lib.find("Imports that still go up") else { return Vec::new() };
    let block = &lib[start..];
    let open = block.find("```text").expect("a ```text block of imports");
    let body = &block[open + 7..];
    let body = &body[..body.find("```").expect("the block ends")];
    body.lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let edge = l.split(':').next().unwrap();
            let (a, b) = edge.split_once("->").unwrap_or_else(|| panic!("an upward import reads `a -> b: why`: {l}"));
            (a.trim().to_owned(), b.trim().to_owned())
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` items.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let l = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        let t = l.trim();
        if skip_depth.is_none() && t.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = l.matches('{').count() as i32;
        let closes = l.matches('}').count() as i32;
        if pending_test && skip_depth.is_none() {
            if t.ends_with(';') && opens == 0 {
                // `#[cfg(test)] use …;` or `mod x;`
                pending_test = false;
                continue;
            }
            if opens > 0 {
                skip_depth = Some(depth);
                pending_test = false;
            } else {
                continue;
            }
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The top-level modules a piece of code names through `crate::`.
fn imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            // `crate::{a, b::c}`: the first segment of each path.
            for part in group[..end].split(',') {
                let name: String = part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_imports_one_above_it() {
    let layers = layers();
    let rank: BTreeMap<&str, usize> = layers.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |m| (m.as_str(), i))).collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let known = known_upward();
    let mut seen_known = std::collections::BTreeSet::new();
    let mut violations = Vec::new();
    let mut unlisted = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&mine) = rank.get(top.as_str()) else {
            unlisted.push(top);
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for m in imports(&code(&text)) {
            if m == top {
                continue;
            }
            match rank.get(m.as_str()) {
                Some(&theirs) if theirs > mine => {
                    if known.iter().any(|(a, b)| *a == top && *b == m) {
                        seen_known.insert((top.clone(), m.clone()));
                    } else {
                        violations.push(format!("{} (layer {}) imports `{m}` (layer {})", rel.display(), mine + 1, theirs + 1));
                    }
                }
                Some(_) => {}
                None => unlisted.push(m),
            }
        }
    }
    unlisted.sort();
    unlisted.dedup();
    assert!(unlisted.is_empty(), "modules missing from the layers in src/lib.rs: {unlisted:?}");
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "{} imports go up the layers:\n{}", violations.len(), violations.join("\n"));
    let gone: Vec<String> = known.iter().filter(|e| !seen_known.contains(*e)).map(|(a, b)| format!("{a} -> {b}")).collect();
    assert!(gone.is_empty(), "these upward imports are gone: strike them off the list in src/lib.rs: {gone:?}");
}

#[test]
fn the_scanner_sees_imports_and_skips_comments_and_tests() {
    let text = "use crate::data::X;\n// crate::server in a comment\n/// [`crate::store`]\nfn f() { crate::time::now_ms(); }\n\
                use crate::{respond::A, learn};\n#[cfg(test)]\nmod tests {\n    use crate::store::S;\n    fn g() {}\n}\nfn h() { crate::value::x(); }\n";
    assert_eq!(imports(&code(text)), ["data", "time", "respond", "learn", "value"]);
}
