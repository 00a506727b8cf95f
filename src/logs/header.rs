//! Header formats: `<Date> <Time> <Level> [<Process>] <Component>: <Content>`.
//!
//! A format is literal text and `<Field>` placeholders; `(...)?` around a part makes it
//! optional. It compiles, as the logpai benchmark does, to an anchored regex: literal text
//! escaped, every run of spaces `\s+` (ASCII whitespace), every field a non-greedy `.*?`
//! except `Content`, which is greedy `.*`. A hand-written matcher tries the regex's most
//! preferred choice at every step without backtracking; when it succeeds its answer is
//! the regex's answer, and when it fails the regex decides (so the result is always the
//! regex's, and matching stays linear in the line's length).

use regex::Regex;
use std::fmt;

/// A header format that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad header format: {}", self.0)
    }
}

impl std::error::Error for FormatError {}

#[derive(Debug, Clone)]
enum Elem {
    /// Literal text split into parts: `None` is a run of whitespace (`\s+`).
    Lit(Vec<Option<Vec<u8>>>),
    Field {
        index: usize,
        greedy: bool,
    },
    Opt(Vec<Elem>),
}

/// A compiled header format.
#[derive(Debug, Clone)]
pub struct HeaderFormat {
    source: String,
    fields: Vec<String>,
    content: usize,
    elems: Vec<Elem>,
    regex: Regex,
}

/// The byte ranges of one line's fields, indexed like [`HeaderFormat::fields`].
pub type Spans = Vec<Option<(usize, usize)>>;

const CONTENT: &str = "Content";

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl HeaderFormat {
    /// Compiles a format.
    ///
    /// # Errors
    /// An unclosed `<`, an empty or non-identifier field name, a field twice, no
    /// `<Content>` field, two fields with no literal between them inside an optional
    /// group, or an unbalanced `(...)?`.
    pub fn new(format: &str) -> Result<Self, FormatError> {
        let mut fields = Vec::new();
        let mut pos = 0;
        let chars: Vec<char> = format.chars().collect();
        let elems = parse_seq(&chars, &mut pos, &mut fields, 0)?;
        if pos != chars.len() {
            return Err(FormatError(format!("unexpected `{}` at character {}", chars[pos], pos + 1)));
        }
        let content = fields
            .iter()
            .position(|f| f == CONTENT)
            .ok_or_else(|| FormatError("no <Content> field: the message to mine must be named <Content>".into()))?;
        let mut elems = elems;
        mark_greedy(&mut elems, content);
        let mut re = String::from("(?s)^");
        regex_of(&elems, &fields, &mut re);
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| FormatError(format!("does not compile: {e}")))?;
        Ok(Self { source: format.to_string(), fields, content, elems, regex })
    }

    /// The format as written.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Field names in order of appearance.
    #[must_use]
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The index of `Content` in [`HeaderFormat::fields`] (and in [`Spans`]).
    #[must_use]
    pub fn content_index(&self) -> usize {
        self.content
    }

    /// The regex the format compiles to (the specification of a match).
    #[must_use]
    pub fn regex(&self) -> &str {
        self.regex.as_str()
    }

    /// The content of a line: `Some(range)` when the header matches, `None` otherwise.
    #[must_use]
    pub fn content(&self, line: &str) -> Option<(usize, usize)> {
        let mut spans: Spans = vec![None; self.fields.len()];
        if self.parse_into(line, &mut spans) {
            spans[self.content]
        } else {
            None
        }
    }

    /// Fills `spans` (one per field) for `line`; returns whether the header matched.
    pub fn parse_into(&self, line: &str, spans: &mut Spans) -> bool {
        spans.clear();
        spans.resize(self.fields.len(), None);
        let b = line.as_bytes();
        if let Some(end) = fast(&self.elems, b, 0, spans) {
            if end == b.len() {
                return true;
            }
        }
        spans.iter_mut().for_each(|s| *s = None);
        match self.regex.captures(line) {
            Some(c) => {
                for (i, name) in self.fields.iter().enumerate() {
                    spans[i] = c.name(name).map(|m| (m.start(), m.end()));
                }
                true
            }
            None => false,
        }
    }
}

fn parse_seq(chars: &[char], pos: &mut usize, fields: &mut Vec<String>, depth: usize) -> Result<Vec<Elem>, FormatError> {
    let mut elems = Vec::new();
    let mut lit = String::new();
    let flush = |lit: &mut String, elems: &mut Vec<Elem>| {
        if !lit.is_empty() {
            elems.push(Elem::Lit(split_lit(lit)));
            lit.clear();
        }
    };
    while *pos < chars.len() {
        let c = chars[*pos];
        if c == '<' {
            let start = *pos;
            let close = chars[start..].iter().position(|&c| c == '>').map(|i| start + i);
            let Some(close) = close else {
                return Err(FormatError(format!("`<` at character {} is never closed by `>`", start + 1)));
            };
            let name: String = chars[start + 1..close].iter().collect();
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(FormatError(format!("field name `<{name}>` must be letters, digits and `_`, not starting with a digit")));
            }
            if fields.contains(&name) {
                return Err(FormatError(format!("field `<{name}>` appears twice")));
            }
            flush(&mut lit, &mut elems);
            if matches!(elems.last(), Some(Elem::Field { .. })) && depth > 0 {
                return Err(FormatError(format!("field `<{name}>` follows another field with no text between them")));
            }
            elems.push(Elem::Field { index: fields.len(), greedy: false });
            fields.push(name);
            *pos = close + 1;
        } else if c == '(' && has_opt_close(chars, *pos) {
            flush(&mut lit, &mut elems);
            *pos += 1;
            let inner = parse_seq(chars, pos, fields, depth + 1)?;
            // parse_seq stops at the matching `)`; it is followed by `?`.
            *pos += 2;
            elems.push(Elem::Opt(inner));
        } else if c == ')' && depth > 0 && chars.get(*pos + 1) == Some(&'?') {
            flush(&mut lit, &mut elems);
            return Ok(elems);
        } else {
            lit.push(c);
            *pos += 1;
        }
    }
    if depth > 0 {
        return Err(FormatError("`(` of an optional group is never closed by `)?`".into()));
    }
    flush(&mut lit, &mut elems);
    Ok(elems)
}

/// Whether the `(` at `open` starts an optional group: a `)?` closes it at the same
/// nesting level of such groups.
fn has_opt_close(chars: &[char], open: usize) -> bool {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        if chars[i] == '(' {
            depth += 1;
        } else if chars[i] == ')' && chars.get(i + 1) == Some(&'?') {
            depth -= 1;
            if depth == 0 {
                return true;
            }
        }
        i += 1;
    }
    false
}

fn split_lit(lit: &str) -> Vec<Option<Vec<u8>>> {
    let mut parts: Vec<Option<Vec<u8>>> = Vec::new();
    for &b in lit.as_bytes() {
        if b == b' ' {
            if !matches!(parts.last(), Some(None)) {
                parts.push(None);
            }
        } else if let Some(Some(v)) = parts.last_mut() {
            v.push(b);
        } else {
            parts.push(Some(vec![b]));
        }
    }
    parts
}

fn mark_greedy(elems: &mut [Elem], content: usize) {
    for e in elems {
        match e {
            Elem::Field { index, greedy } => *greedy = *index == content,
            Elem::Opt(inner) => mark_greedy(inner, content),
            Elem::Lit(_) => {}
        }
    }
}

fn regex_of(elems: &[Elem], fields: &[String], out: &mut String) {
    for e in elems {
        match e {
            Elem::Lit(parts) => {
                for p in parts {
                    match p {
                        None => out.push_str(r"[\t\n\x0B\x0C\r ]+"),
                        Some(bytes) => out.push_str(&regex::escape(std::str::from_utf8(bytes).unwrap_or(""))),
                    }
                }
            }
            Elem::Field { index, greedy } => {
                out.push_str(&format!("(?P<{}>.*{})", fields[*index], if *greedy { "" } else { "?" }));
            }
            Elem::Opt(inner) => {
                out.push_str("(?:");
                regex_of(inner, fields, out);
                out.push_str(")?");
            }
        }
    }
}

/// Length of the literal's match at `at`, if it matches there.
fn lit_at(parts: &[Option<Vec<u8>>], b: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    for p in parts {
        match p {
            None => {
                let s = i;
                while i < b.len() && is_ws(b[i]) {
                    i += 1;
                }
                if i == s {
                    return None;
                }
            }
            Some(bytes) => {
                if b.len() - i < bytes.len() || &b[i..i + bytes.len()] != bytes.as_slice() {
                    return None;
                }
                i += bytes.len();
            }
        }
    }
    Some(i - at)
}

/// First position ≥ `from` where the literal matches.
fn find_lit(parts: &[Option<Vec<u8>>], b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        if at > b.len() {
            return None;
        }
        let cand = match &parts[0] {
            Some(bytes) => at + memchr::memmem::find(&b[at..], bytes)?,
            None => at + b[at..].iter().position(|&c| is_ws(c))?,
        };
        if lit_at(parts, b, cand).is_some() {
            return Some(cand);
        }
        at = cand + 1;
    }
}

/// Last position ≥ `from` where the literal matches (a greedy field's first choice).
fn rfind_lit(parts: &[Option<Vec<u8>>], b: &[u8], from: usize) -> Option<usize> {
    (from..=b.len()).rev().find(|&c| lit_at(parts, b, c).is_some())
}

/// Whether a failed fast match of an optional group proves no match of it exists: the
/// group is literal text, then at most one field, then optionally literal text.
fn opt_is_simple(inner: &[Elem]) -> bool {
    matches!(inner, [Elem::Lit(_)] | [Elem::Lit(_), Elem::Field { .. }] | [Elem::Lit(_), Elem::Field { .. }, Elem::Lit(_)])
}

/// The regex's most preferred path, without backtracking. Returns the end offset.
fn fast(elems: &[Elem], b: &[u8], mut i: usize, spans: &mut Spans) -> Option<usize> {
    let mut k = 0;
    while k < elems.len() {
        match &elems[k] {
            Elem::Lit(parts) => i += lit_at(parts, b, i)?,
            Elem::Opt(inner) => {
                let mut trial = spans.clone();
                if let Some(end) = fast(inner, b, i, &mut trial) {
                    // The regex prefers taking the group.
                    *spans = trial;
                    i = end;
                } else if !opt_is_simple(inner) {
                    return None;
                }
            }
            Elem::Field { index, greedy } => {
                let end = match elems.get(k + 1) {
                    // Last: `$` forces the rest of the line, greedy or not.
                    None => b.len(),
                    Some(Elem::Lit(parts)) => {
                        if *greedy {
                            rfind_lit(parts, b, i)?
                        } else {
                            find_lit(parts, b, i)?
                        }
                    }
                    // An optional group starting with literal text, then literal text: the
                    // field ends where the first of the two literals first matches (no
                    // shorter field can succeed).
                    Some(Elem::Opt(inner)) if !*greedy => match (inner.first(), elems.get(k + 2)) {
                        (Some(Elem::Lit(a)), Some(Elem::Lit(c))) => match (find_lit(a, b, i), find_lit(c, b, i)) {
                            (Some(x), Some(y)) => x.min(y),
                            (Some(x), None) | (None, Some(x)) => x,
                            (None, None) => return None,
                        },
                        _ => return None,
                    },
                    // Two fields in a row: a non-greedy one takes nothing (the regex's first
                    // choice); anything else is left to the regex.
                    Some(Elem::Field { .. }) if !*greedy => i,
                    Some(_) => return None,
                };
                spans[*index] = Some((i, end));
                i = end;
            }
        }
        k += 1;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content<'a>(f: &HeaderFormat, l: &'a str) -> Option<&'a str> {
        f.content(l).map(|(s, e)| &l[s..e])
    }

    #[test]
    fn formats() {
        let f = HeaderFormat::new("<Date> <Time> <Level> [<Process>] <Component>: <Content>").unwrap();
        assert_eq!(content(&f, "2015-10-18 18:01:47,978 INFO [main] a.b.C: Created x: y"), Some("Created x: y"));
        let f = HeaderFormat::new("<Time>|<Component>|<Pid>|<Content>").unwrap();
        assert_eq!(content(&f, "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579"), Some("onStandStepChanged 3579"));
        let f = HeaderFormat::new("<Month> <Date> <Time> <Level> <Component>([<PID>])?: <Content>").unwrap();
        assert_eq!(content(&f, "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown"), Some("check pass; user unknown"));
        assert_eq!(content(&f, "Jun 14 15:16:01 combo kernel: Linux version 2"), Some("Linux version 2"));
        let f = HeaderFormat::new("[<Time>] <Program> - <Content>").unwrap();
        assert_eq!(content(&f, "[10.30 16:49:06] chrome.exe - a - b"), Some("a - b"));
        assert_eq!(content(&f, "garbage"), None);
        let f = HeaderFormat::new("<Date> <Time> - <Level>  [<Node>:<Component>@<Id>] - <Content>").unwrap();
        assert_eq!(
            content(&f, "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200"),
            Some("Notification time out: 3200")
        );
    }

    #[test]
    fn errors() {
        assert!(HeaderFormat::new("<Date> <Time>").is_err());
        assert!(HeaderFormat::new("<Date <Content>").is_err());
        assert!(HeaderFormat::new("<Content> <Content>").is_err());
        assert!(HeaderFormat::new("<> <Content>").is_err());
        let r = HeaderFormat::new("(<A> <Content>");
        assert!(r.is_ok(), "{r:?}"); // a literal `(`
    }

    #[test]
    fn fast_path_agrees_with_regex_on_random_lines() {
        let fmts = [
            "<Date> <Time> <Level> [<Process>] <Component>: <Content>",
            "<Month> <Date> <Time> <Level> <Component>([<PID>])?: <Content>",
            "<Date> <Time> - <Level>  [<Node>:<Component>@<Id>] - <Content>",
            "<Time>|<Component>|<Pid>|<Content>",
            "[<Time>] <Program> - <Content>",
            "<A>(: <B>)? <Content> [<C>]",
        ];
        let alphabet = [" ", "  ", "a", "b1", "[", "]", ":", ": ", "|", "-", " - ", "(", ")", "@", "\t", "é"];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for f in fmts {
            let f = HeaderFormat::new(f).unwrap();
            let re = Regex::new(f.regex()).unwrap();
            let mut spans = Vec::new();
            for _ in 0..3000 {
                let mut line = String::new();
                for _ in 0..(x % 24) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    line.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
                }
                x = x.wrapping_add(1);
                let ok = f.parse_into(&line, &mut spans);
                let c = re.captures(&line);
                assert_eq!(ok, c.is_some(), "{} on {line:?}", f.source());
                if let Some(c) = c {
                    for (i, n) in f.fields().iter().enumerate() {
                        assert_eq!(spans[i], c.name(n).map(|m| (m.start(), m.end())), "{} on {line:?}", f.source());
                    }
                }
            }
        }
    }

    #[test]
    fn fast_path_agrees_with_regex() {
        let fmts = ["<A> <B>: <Content>", "<A>([<P>])?: <Content>", "[<T>] <P> - <Content>", "<A>|<B>|<Content>"];
        let lines = [
            "a b: c",
            "a b c: d: e",
            "x[1]: y",
            "x: y",
            "x[1]]: y",
            "[a b] c - d",
            "[a] b] c - - d",
            "a|b|c|d",
            "||",
            "a  b:  c",
            "",
            ":",
            "a b:",
        ];
        for f in fmts {
            let f = HeaderFormat::new(f).unwrap();
            for l in lines {
                let mut spans = Vec::new();
                let ok = f.parse_into(l, &mut spans);
                let re = Regex::new(f.regex()).unwrap();
                let c = re.captures(l);
                assert_eq!(ok, c.is_some(), "{} on {l:?}", f.source());
                if let Some(c) = c {
                    for (i, n) in f.fields().iter().enumerate() {
                        assert_eq!(spans[i], c.name(n).map(|m| (m.start(), m.end())), "{} on {l:?} field {n}", f.source());
                    }
                }
            }
        }
    }
}
