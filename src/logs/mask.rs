//! Tokenising and masking one message, in one pass over its bytes (no regex per line).
//!
//! A message is split on ASCII whitespace into words. A whole word (without the brackets,
//! quotes and punctuation around it) is a variable when it is a URL (`scheme://…`), a path
//! (two `/` or `\` or more, starting with `/`, `./`, `~/` or a drive letter), made of hex
//! digits and `: . -` with at least one digit (IPv4, IPv6, MAC, UUID, dates, times,
//! `10.251.73.220:50010`), a host name (dotted `[A-Za-z0-9-]` labels, the last one 2–6
//! lower-case letters: `zummit.com`) or `name:port`.
//!
//! Other words are split further at `= , ; : ( ) [ ] { } < > "` (and at a `'` that starts
//! or ends the word, a `.` that ends it) into *pieces*; a piece is checked like a whole
//! word, then its runs of letters and digits are read in order:
//!
//! - a run without digits is kept (`user`, `blk_`);
//! - the first run with a digit masks the rest of the piece: all of it when the run is a
//!   number (with a sign that follows no letter or digit, `blk_-69…`, and decimals,
//!   `3.94`), six hex digits or more (`a692162415ae`), `0x…`, or letters and digits
//!   interleaved twice (`75DGDAM1`); after its letters otherwise (`node-12` → `node-<*>`,
//!   `alt0` → `alt<*>`, `attempt_1445_0020_m_0` → `attempt_<*>`).
//!
//! A piece longer than [`LONG_PIECE`] bytes is masked whole (data, not words).
//!
//! A piece with letters left is a [`Kind::Word`]; a piece with only masks and punctuation
//! a [`Kind::Var`]; punctuation alone a [`Kind::Punct`]. Then *runs collapse*, so that a
//! value of a varying number of words is one `<*>`: a `Var` takes the punctuation between
//! it and the previous `Var` (not `*`, which marks a missing value, as in
//! `( 3534 **** 3497 )`), the opening brackets and month, weekday and time-zone names just
//! before it (`Tue Jul 26 05:47:42 2005`), and the units (`3.94 KB`, `12 ms`, `5 bytes`),
//! date words and as many closing brackets as it opened just after it; ` ()` and ` ""`
//! are an empty value; and a run of equal masked words (`blk_<*> blk_<*> blk_<*>`, a list
//! of ids) is one token.

/// The hash of every `<*>` token.
pub const VAR_HASH: u64 = 0x9e37_79b9_7f4a_7c15;
/// Pieces longer than this many bytes are masked whole.
pub const LONG_PIECE: usize = 256;

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// Text with letters (possibly with masked parts, `blk_<*>`).
    Word,
    /// A variable: `<*>`.
    Var,
    /// Punctuation only.
    Punct,
}

/// One token of a message: a byte range of it, the hash of its masked form, its kind,
/// and whether whitespace precedes it.
#[derive(Clone, Copy, Debug)]
pub struct Token {
    pub start: u32,
    pub end: u32,
    pub hash: u64,
    pub kind: Kind,
    pub space: bool,
    flags: u8,
    opens: u8,
}

const F_UNIT: u8 = 1;
const F_DATE: u8 = 2;
const F_COLLAPSE: u8 = 4;
const F_MASKED: u8 = 8;

const K: u64 = 0x517c_c1b7_2722_0a95;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h.rotate_left(5) ^ v).wrapping_mul(K)
}

/// Where masked text goes: a hash, or a display string.
trait Sink {
    fn byte(&mut self, b: u8);
    fn var(&mut self);
}

struct Hasher(u64);
impl Sink for Hasher {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.0 = mix(self.0, u64::from(b));
    }
    #[inline]
    fn var(&mut self) {
        self.0 = mix(self.0, 0x100);
    }
}

struct Text<'a>(&'a mut Vec<u8>);
impl Sink for Text<'_> {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }
    fn var(&mut self) {
        self.0.extend_from_slice(b"<*>");
    }
}

#[inline]
fn is_ws(b: u8) -> bool {
    KIND[b as usize] & K_WS != 0
}

#[inline]
fn is_wordish(b: u8) -> bool {
    KIND[b as usize] & K_WORD != 0
}

#[inline]
fn is_delim(b: u8) -> bool {
    KIND[b as usize] & K_DELIM != 0
}

const K_WS: u8 = 1;
const K_WORD: u8 = 2;
const K_DELIM: u8 = 4;

/// Byte classes: ASCII whitespace; letters, digits and non-ASCII bytes; delimiters.
static KIND: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            K_WS
        } else if b.is_ascii_alphanumeric() || b >= 0x80 {
            K_WORD
        } else if matches!(b, b'=' | b',' | b';' | b':' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'<' | b'>' | b'"') {
            K_DELIM
        } else {
            0
        };
        c += 1;
    }
    t
};

/// Masks one piece into `sink`; returns (has letters left, has a mask).
fn mask_piece<S: Sink>(b: &[u8], sink: &mut S) -> (bool, bool) {
    if b.len() > LONG_PIECE {
        sink.var();
        return (false, true);
    }
    let n = b.len();
    let mut letters = false;
    let mut i = 0;
    while i < n {
        let c = b[i];
        if !is_wordish(c) {
            // A sign that follows no letter or digit belongs to the number after it.
            if (c == b'-' || c == b'+') && i + 1 < n && b[i + 1].is_ascii_digit() && (i == 0 || !is_wordish(b[i - 1])) {
                i += 1;
                continue;
            }
            sink.byte(c);
            i += 1;
            continue;
        }
        let mut j = i;
        let (mut digits, mut nonhex, mut digit_runs, mut prev_digit) = (0usize, false, 0usize, false);
        while j < n && is_wordish(b[j]) {
            let d = b[j].is_ascii_digit();
            if d {
                digits += 1;
                if !prev_digit {
                    digit_runs += 1;
                }
            } else if !b[j].is_ascii_hexdigit() {
                nonhex = true;
            }
            prev_digit = d;
            j += 1;
        }
        let run = &b[i..j];
        if digits == 0 {
            run.iter().for_each(|&c| sink.byte(c));
            letters = true;
        } else if digits == run.len()
            || (!nonhex && run.len() >= 6)
            || digit_runs >= 2
            || (run.len() > 2 && run[0] == b'0' && (run[1] | 0x20) == b'x')
        {
            // A number, a hex id, an id: masked with the rest of the piece.
            sink.var();
            return (letters, true);
        } else {
            // Letters then digits: the letters are kept, the rest of the piece masked.
            let k = run.iter().position(u8::is_ascii_digit).unwrap_or(run.len());
            run[..k].iter().for_each(|&c| sink.byte(c));
            letters |= k > 0;
            sink.var();
            return (letters, true);
        }
        i = j;
    }
    (letters, false)
}

/// Whether a whole word is a value: URL, path, hex-and-separators with a digit, hostname.
fn whole_word_var(w: &[u8]) -> bool {
    let n = w.len();
    // One branch-free pass for what the rules need.
    let (mut any, mut all, mut slashes) = (0u8, 0xffu8, 0usize);
    for &c in w {
        let k = CLASS[c as usize];
        any |= k;
        all &= k;
        slashes += usize::from(k & C_SLASH != 0);
    }
    // Every rule needs a digit, `.`, `:`, `/` or `\\`: most words have none.
    if n == 0 || any & (C_DIGIT | C_DOT | C_COLON | C_SLASH) == 0 {
        return false;
    }
    // URLs.
    if any & C_COLON != 0 && memchr::memchr_iter(b':', w).any(|i| w[i + 1..].starts_with(b"//")) {
        return true;
    }
    // Paths.
    if slashes >= 2
        && n > 2
        && (w[0] == b'/'
            || ((w[0] == b'.' || w[0] == b'~') && w[1] == b'/')
            || (w[0].is_ascii_alphabetic() && w[1] == b':' && w[2] == b'\\'))
    {
        return true;
    }
    // Hex digits and `: . -` with at least one digit and one separator.
    if all & C_HEXSEP != 0 && any & C_DIGIT != 0 && any & C_SEP != 0 {
        return true;
    }
    all & C_HOST != 0 && any & (C_DOT | C_COLON) != 0 && is_hostname(w)
}

const C_DIGIT: u8 = 1;
const C_HEXSEP: u8 = 2;
const C_HOST: u8 = 4;
const C_DOT: u8 = 8;
const C_COLON: u8 = 16;
const C_SLASH: u8 = 32;
const C_SEP: u8 = 64;

/// Byte classes for [`whole_word_var`].
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut k = 0;
        if b.is_ascii_digit() {
            k |= C_DIGIT | C_HEXSEP | C_HOST;
        } else if b.is_ascii_hexdigit() {
            k |= C_HEXSEP | C_HOST;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            k |= C_HOST;
        } else if b == b'.' {
            k |= C_DOT | C_SEP | C_HEXSEP | C_HOST;
        } else if b == b':' {
            k |= C_COLON | C_SEP | C_HEXSEP | C_HOST;
        } else if b == b'-' {
            k |= C_SEP | C_HEXSEP | C_HOST;
        } else if b == b'/' || b == b'\\' {
            k |= C_SLASH;
        }
        t[c] = k;
        c += 1;
    }
    t
};

/// Dotted labels (`[A-Za-z0-9-]`), at least two, the last 2–6 lowercase letters; or such a
/// name (or any `[A-Za-z0-9._-]` name) with a `:port`.
fn is_hostname(w: &[u8]) -> bool {
    if let Some(colon) = w.iter().rposition(|&c| c == b':') {
        let port = &w[colon + 1..];
        let host = &w[..colon];
        return !port.is_empty()
            && port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && !host.is_empty()
            && host.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'));
    }
    let mut labels = 0;
    for label in w.split(|&c| c == b'.') {
        if label.is_empty() || label.len() > 63 || !label.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-') {
            return false;
        }
        labels += 1;
    }
    if labels < 2 {
        return false;
    }
    let last = w.rsplit(|&c| c == b'.').next().unwrap_or(b"");
    (2..=6).contains(&last.len()) && last.iter().all(u8::is_ascii_lowercase)
}

fn is_unit(w: &[u8]) -> bool {
    matches!(
        w,
        b"B" | b"b"
            | b"KB"
            | b"kB"
            | b"MB"
            | b"GB"
            | b"TB"
            | b"KiB"
            | b"MiB"
            | b"GiB"
            | b"TiB"
            | b"byte"
            | b"bytes"
            | b"ms"
            | b"us"
            | b"ns"
            | b"s"
            | b"sec"
            | b"secs"
            | b"second"
            | b"seconds"
            | b"min"
            | b"mins"
            | b"minute"
            | b"minutes"
            | b"h"
            | b"hr"
            | b"hrs"
            | b"hour"
            | b"hours"
            | b"%"
    )
}

fn is_date_word(w: &[u8]) -> bool {
    matches!(
        w,
        b"Jan"
            | b"Feb"
            | b"Mar"
            | b"Apr"
            | b"May"
            | b"Jun"
            | b"Jul"
            | b"Aug"
            | b"Sep"
            | b"Oct"
            | b"Nov"
            | b"Dec"
            | b"Mon"
            | b"Tue"
            | b"Wed"
            | b"Thu"
            | b"Fri"
            | b"Sat"
            | b"Sun"
            | b"UTC"
            | b"GMT"
            | b"EDT"
            | b"EST"
            | b"PDT"
            | b"PST"
            | b"CET"
            | b"CEST"
            | b"AM"
            | b"PM"
    )
}

/// Splits and masks messages. Reusable; holds no per-message state.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// At most this many tokens are kept; the rest of a longer message is one `<*>`.
    pub max_tokens: usize,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self { max_tokens: 256 }
    }
}

impl Tokenizer {
    /// Tokenises `msg` into `out` (cleared first).
    pub fn tokenize(&self, msg: &[u8], out: &mut Vec<Token>) {
        out.clear();
        let n = msg.len();
        let mut i = 0;
        let max = self.max_tokens.max(2);
        while i < n {
            let ws_start = i;
            while i < n && is_ws(msg[i]) {
                i += 1;
            }
            if i >= n {
                break;
            }
            let mut space = i > ws_start;
            if out.len() >= max - 1 {
                // The rest of the message is one value.
                push(msg, out, Token { start: i as u32, end: n as u32, hash: VAR_HASH, kind: Kind::Var, space, flags: 0, opens: 0 });
                return;
            }
            let ws = i;
            while i < n && !is_ws(msg[i]) {
                i += 1;
            }
            let w = &msg[ws..i];
            let (lead, trail) = trim(w);
            if whole_word_var(&w[lead..w.len() - trail]) {
                // The brackets and punctuation around it are tokens of their own (the
                // variable takes them by the usual rules).
                let (cs, ce) = (ws + lead, i - trail);
                for p in (ws..cs).chain(std::iter::once(usize::MAX)).chain(ce..i) {
                    let t = if p == usize::MAX {
                        Token { start: cs as u32, end: ce as u32, hash: VAR_HASH, kind: Kind::Var, space, flags: 0, opens: 0 }
                    } else {
                        Token {
                            start: p as u32,
                            end: p as u32 + 1,
                            hash: mix(0x1234, u64::from(msg[p])),
                            kind: Kind::Punct,
                            space,
                            flags: F_COLLAPSE,
                            opens: 0,
                        }
                    };
                    push(msg, out, t);
                    space = false;
                }
                continue;
            }
            // Pieces.
            let mut p = ws;
            while p < i {
                let c = msg[p];
                let end_delim = (c == b'\'' && (p == ws || p + 1 == i)) || (c == b'.' && p + 1 == i && p > ws && is_wordish(msg[p - 1]));
                if is_delim(c) || end_delim {
                    let h = mix(0x1234, u64::from(c));
                    let flags = if c == b'*' { 0 } else { F_COLLAPSE };
                    push(msg, out, Token { start: p as u32, end: p as u32 + 1, hash: h, kind: Kind::Punct, space, flags, opens: 0 });
                    space = false;
                    p += 1;
                    continue;
                }
                let q0 = p;
                while p < i
                    && !is_delim(msg[p])
                    && !(msg[p] == b'\'' && p + 1 == i)
                    && !(msg[p] == b'.' && p + 1 == i && p > q0 && is_wordish(msg[p - 1]))
                {
                    p += 1;
                }
                let piece = &msg[q0..p];
                let mut h = Hasher(0x5555);
                // (A piece that is the whole word was looked at above.)
                let whole = q0 == ws && p == i;
                let (letters, masked) = if !whole && whole_word_var(piece) { (false, true) } else { mask_piece(piece, &mut h) };
                let kind = if letters {
                    Kind::Word
                } else if masked {
                    Kind::Var
                } else {
                    Kind::Punct
                };
                let mut flags = 0;
                match kind {
                    Kind::Word => {
                        if masked {
                            flags |= F_MASKED;
                        }
                        if is_unit(piece) {
                            flags |= F_UNIT;
                        }
                        if is_date_word(piece) {
                            flags |= F_DATE;
                        }
                    }
                    Kind::Punct => {
                        if !piece.contains(&b'*') {
                            flags |= F_COLLAPSE;
                        }
                    }
                    Kind::Var => {}
                }
                let hash = if kind == Kind::Var { VAR_HASH } else { h.0 };
                push(msg, out, Token { start: q0 as u32, end: p as u32, hash, kind, space, flags, opens: 0 });
                space = false;
            }
        }
    }

    /// The display text of a token of `msg`: `<*>` for a variable, the masked text of a
    /// word, the punctuation itself.
    #[must_use]
    pub fn text(msg: &[u8], t: &Token) -> String {
        match t.kind {
            Kind::Var => "<*>".to_string(),
            Kind::Punct => String::from_utf8_lossy(&msg[t.start as usize..t.end as usize]).into_owned(),
            Kind::Word => {
                let mut v = Vec::new();
                mask_piece(&msg[t.start as usize..t.end as usize], &mut Text(&mut v));
                String::from_utf8_lossy(&v).into_owned()
            }
        }
    }
}

/// How many of the word's first and last bytes are brackets, quotes or punctuation around
/// it: leading `([{<"'`, trailing `)]}>"',;:.`.
fn trim(w: &[u8]) -> (usize, usize) {
    let lead = w.iter().take_while(|&&c| matches!(c, b'(' | b'[' | b'{' | b'<' | b'"' | b'\'')).count();
    let trail =
        w[lead..].iter().rev().take_while(|&&c| matches!(c, b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b',' | b';' | b':' | b'.')).count();
    (lead, trail)
}

fn is_opener(b: u8) -> bool {
    matches!(b, b'(' | b'[' | b'{' | b'<' | b'"' | b'\'')
}

fn closes(b: u8) -> bool {
    matches!(b, b')' | b']' | b'}' | b'>' | b'"' | b'\'')
}

/// Appends a token, collapsing runs around variables: `<*> , <*>` is one `<*>`; a `<*>`
/// takes the opening brackets and date words just before it, and the units, date words
/// and closing brackets (as many as it opened) just after it.
#[inline]
fn push(msg: &[u8], out: &mut Vec<Token>, t: Token) {
    match t.kind {
        Kind::Var => {
            // How far back the run reaches: collapsible punctuation and date words, then
            // a variable (merge with it) or not (take only openers and date words).
            let mut j = out.len();
            while j > 0 {
                let x = &out[j - 1];
                let ok = match x.kind {
                    Kind::Punct => x.flags & F_COLLAPSE != 0,
                    Kind::Word => x.flags & F_DATE != 0,
                    Kind::Var => false,
                };
                if !ok {
                    break;
                }
                j -= 1;
            }
            let mut opens = t.opens;
            let from = if j > 0 && out[j - 1].kind == Kind::Var {
                opens = opens.saturating_add(out[j - 1].opens);
                j - 1
            } else {
                let mut k = out.len();
                while k > j {
                    let x = &out[k - 1];
                    let ok = x.kind == Kind::Word || (x.end - x.start == 1 && is_opener(msg[x.start as usize]));
                    if !ok {
                        break;
                    }
                    k -= 1;
                }
                k
            };
            for x in &out[from..] {
                if x.kind == Kind::Punct && x.end - x.start == 1 && is_opener(msg[x.start as usize]) {
                    opens = opens.saturating_add(1);
                }
            }
            let (start, space) = out.get(from).map_or((t.start, t.space), |x| (x.start, x.space));
            out.truncate(from);
            out.push(Token { start, end: t.end, hash: VAR_HASH, kind: Kind::Var, space, flags: 0, opens });
        }
        Kind::Punct if t.end - t.start == 1 && closes(msg[t.start as usize]) => {
            if let Some(last) = out.last_mut() {
                if last.kind == Kind::Var && last.opens > 0 {
                    last.end = t.end;
                    last.opens -= 1;
                    return;
                }
                // ` ()`, ` ""`: an empty value.
                if last.kind == Kind::Punct
                    && last.space
                    && last.end == t.start
                    && last.end - last.start == 1
                    && is_opener(msg[last.start as usize])
                {
                    let (start, space) = (last.start, last.space);
                    out.pop();
                    push(msg, out, Token { start, end: t.end, hash: VAR_HASH, kind: Kind::Var, space, flags: 0, opens: 0 });
                    return;
                }
            }
            out.push(t);
        }
        // A list of ids of one kind (`blk_<*> blk_<*> blk_<*>`) is one token.
        Kind::Word if t.flags & F_MASKED != 0 && out.last().is_some_and(|l| l.kind == Kind::Word && l.hash == t.hash) => {
            if let Some(last) = out.last_mut() {
                last.end = t.end;
            }
        }
        Kind::Word if t.flags & (F_UNIT | F_DATE) != 0 => {
            if let Some(last) = out.last_mut() {
                if last.kind == Kind::Var {
                    last.end = t.end;
                    return;
                }
            }
            out.push(t);
        }
        _ => out.push(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(s: &str) -> String {
        let mut v = Vec::new();
        Tokenizer::default().tokenize(s.as_bytes(), &mut v);
        v.iter().map(|t| format!("{}{}", if t.space { " " } else { "" }, Tokenizer::text(s.as_bytes(), t))).collect::<String>()
    }

    #[test]
    fn masks() {
        assert_eq!(
            show("PacketResponder 1 for block blk_-6952295868487656571 terminating"),
            "PacketResponder <*> for block blk_<*> terminating"
        );
        assert_eq!(show("10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864"), "<*> is added to blk_<*> size <*>");
        assert_eq!(
            show("close, 474 bytes sent, 4042 bytes (3.94 KB) received, lifetime <1 sec"),
            "close, <*> sent, <*> received, lifetime <*>"
        );
        assert_eq!(show("connection from 1.2.3.4 () at Tue Jul 26 05:47:42 2005"), "connection from <*> at <*>");
        assert_eq!(show("Fan speeds ( 3534 3534 3375 **** 3497 3479 )"), "Fan speeds <*> **** <*> )");
        assert_eq!(show("interface alt0"), "interface alt<*>");
        assert_eq!(show("rhost=zummit.com  user=root"), "rhost=<*> user=root");
    }
}
