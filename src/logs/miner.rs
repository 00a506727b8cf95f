//! The online template miner: a prefix tree of templates by length and first tokens,
//! exact matching modulo `<*>`, and merges of templates that differ in one word.

use super::mask::{Kind, Token, Tokenizer, VAR_HASH};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A template's id: a counter assigned when the template is created, kept through merges
/// (a merged group keeps its oldest member's id; the others become aliases of it).
pub type TemplateId = u64;

/// Hashes `u64` keys (already hashes or counters) with one multiplication.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
}
type Map<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Tunables. [`Config::default`] is the one configuration measured on Loghub.
#[derive(Debug, Clone)]
pub struct Config {
    /// Live templates at most; when a new one would exceed it, the least recently matched
    /// eighth are evicted in one sweep.
    pub max_templates: usize,
    /// Tokens considered per message; the rest of a longer message is one `<*>`.
    pub max_tokens: usize,
    /// Templates that differ in one word only are merged, that word becoming `<*>`, once
    /// this many distinct words have been seen there.
    pub merge_after: usize,
    /// Extra masks: every non-empty match is a variable (replaced by `0` before
    /// tokenising, so it masks like a number).
    pub masks: Vec<regex::Regex>,
}

impl Default for Config {
    fn default() -> Self {
        Self { max_templates: 10_000, max_tokens: 256, merge_after: 4, masks: Vec::new() }
    }
}

/// A mined template.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: TemplateId,
    hashes: Vec<u64>,
    kinds: Vec<Kind>,
    texts: Vec<Box<str>>,
    spaces: Vec<bool>,
    /// Messages matched (including those of templates merged into this one).
    pub count: u64,
    /// The message number (1-based) that last matched it.
    pub last_seen: u64,
    version: u32,
    words: usize,
    vars: usize,
}

impl Template {
    /// The template's text: the tokens of its first message, masked, `<*>` for variables.
    #[must_use]
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, t) in self.texts.iter().enumerate() {
            if i > 0 && self.spaces[i] {
                s.push(' ');
            }
            s.push_str(t);
        }
        s
    }

    fn matches(&self, toks: &[Token]) -> bool {
        self.hashes.len() == toks.len() && self.hashes.iter().zip(&self.kinds).zip(toks).all(|((&h, &k), t)| k == Kind::Var || h == t.hash)
    }

    fn bucket_key(&self) -> u64 {
        bucket_key(self.hashes.len(), self.hashes.first().copied(), self.hashes.get(1).copied())
    }

    fn pos_sum(&self) -> u64 {
        self.hashes.iter().enumerate().fold(0u64, |acc, (p, &h)| acc.wrapping_add(pos_hash(p, h)))
    }
}

fn bucket_key(len: usize, a: Option<u64>, b: Option<u64>) -> u64 {
    let mut h = IdHasher::default();
    h.write_u64(len as u64 ^ a.unwrap_or(1).rotate_left(17) ^ b.unwrap_or(2).rotate_left(41));
    h.finish()
}

fn pos_hash(p: usize, h: u64) -> u64 {
    let x = (h ^ (p as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 31)
}

/// Replaces every non-empty match of each mask by `0`, mask after mask.
fn apply_masks(masks: &[regex::Regex], msg: &str) -> String {
    let mut cur = msg.to_string();
    for re in masks {
        let mut out = String::with_capacity(cur.len());
        let mut last = 0;
        for m in re.find_iter(&cur) {
            if m.start() == m.end() {
                continue;
            }
            out.push_str(&cur[last..m.start()]);
            out.push('0');
            last = m.end();
        }
        out.push_str(&cur[last..]);
        cur = out;
    }
    cur
}

const WILD: u64 = 0x7777_7777_7777_7777;

/// The version of [`Snapshot`]'s layout.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// A miner's persisted state ([`Miner::snapshot`], [`Miner::restore`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub next_id: TemplateId,
    pub lines: u64,
    pub evictions: u64,
    pub templates: Vec<SavedTemplate>,
    /// `(alias, id)`: ids merged into another.
    pub aliases: Vec<(TemplateId, TemplateId)>,
}

/// One template of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedTemplate {
    pub id: TemplateId,
    pub hashes: Vec<u64>,
    pub kinds: Vec<Kind>,
    pub texts: Vec<String>,
    pub spaces: Vec<bool>,
    pub count: u64,
    pub last_seen: u64,
}

/// What happened besides a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `from` was merged into `into`; `from` is now an alias of `into`.
    Merged { from: TemplateId, into: TemplateId },
    /// A template was evicted by the cap.
    Evicted { id: TemplateId, template: String, count: u64 },
}

/// The outcome of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The template the message belongs to now.
    pub id: TemplateId,
    /// Whether the message created it.
    pub new: bool,
}

/// An online template miner; the algorithm is described in [the module docs](super).
pub struct Miner {
    cfg: Config,
    tok: Tokenizer,
    buf: Vec<Token>,
    templates: Map<TemplateId, Template>,
    aliases: Map<TemplateId, TemplateId>,
    buckets: Map<u64, Vec<TemplateId>>,
    skeletons: Map<u64, Vec<(TemplateId, u32, u32)>>,
    cache: Map<u64, TemplateId>,
    next_id: TemplateId,
    lines: u64,
    evictions: u64,
    events: Vec<Event>,
}

impl Default for Miner {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Miner {
    #[must_use]
    pub fn new(cfg: Config) -> Self {
        let tok = Tokenizer { max_tokens: cfg.max_tokens };
        Self {
            cfg,
            tok,
            buf: Vec::new(),
            templates: Map::default(),
            aliases: Map::default(),
            buckets: Map::default(),
            skeletons: Map::default(),
            cache: Map::default(),
            next_id: 1,
            lines: 0,
            evictions: 0,
            events: Vec::new(),
        }
    }

    /// Messages ingested.
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Templates evicted by the cap so far.
    #[must_use]
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Live templates.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.templates.values()
    }

    /// Number of live templates.
    #[must_use]
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// A live template by id (aliases resolved).
    #[must_use]
    pub fn get(&self, id: TemplateId) -> Option<&Template> {
        self.templates.get(&self.resolve(id))
    }

    /// The id `id` stands for now: itself, or the template it was merged into.
    #[must_use]
    pub fn resolve(&self, mut id: TemplateId) -> TemplateId {
        while let Some(&to) = self.aliases.get(&id) {
            id = to;
        }
        id
    }

    /// Merges and evictions since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The miner's state, to persist: the live templates (with their token hashes, which
    /// are the same in every process), the aliases, the next id and the counters. The
    /// prefix tree and merge index are rebuilt by [`Miner::restore`]; the cache of exact
    /// token sequences starts empty.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let mut templates: Vec<SavedTemplate> = self
            .templates
            .values()
            .map(|t| SavedTemplate {
                id: t.id,
                hashes: t.hashes.clone(),
                kinds: t.kinds.clone(),
                texts: t.texts.iter().map(|x| x.to_string()).collect(),
                spaces: t.spaces.clone(),
                count: t.count,
                last_seen: t.last_seen,
            })
            .collect();
        templates.sort_by_key(|t| t.id);
        let mut aliases: Vec<(TemplateId, TemplateId)> = self.aliases.iter().map(|(&a, &b)| (a, b)).collect();
        aliases.sort_unstable();
        Snapshot { format: SNAPSHOT_FORMAT, next_id: self.next_id, lines: self.lines, evictions: self.evictions, templates, aliases }
    }

    /// A miner with `cfg` resuming from a [`Snapshot`]: the same ids for the same
    /// templates. Templates beyond `cfg.max_templates` (a smaller cap than when it was
    /// saved) are dropped, least recently matched first.
    ///
    /// # Errors
    /// A snapshot of another format, or one whose columns disagree.
    pub fn restore(cfg: Config, snap: Snapshot) -> Result<Miner, String> {
        if snap.format != SNAPSHOT_FORMAT {
            return Err(format!("template snapshot format {} (this version reads {SNAPSHOT_FORMAT})", snap.format));
        }
        let mut m = Miner::new(cfg);
        m.next_id = snap.next_id.max(1);
        m.lines = snap.lines;
        m.evictions = snap.evictions;
        let mut saved = snap.templates;
        if saved.len() > m.cfg.max_templates {
            saved.sort_by_key(|t| std::cmp::Reverse(t.last_seen));
            saved.truncate(m.cfg.max_templates);
            saved.sort_by_key(|t| t.id);
        }
        for s in saved {
            let n = s.hashes.len();
            if s.kinds.len() != n || s.texts.len() != n || s.spaces.len() != n || s.id >= m.next_id {
                return Err(format!("template {} of the snapshot is inconsistent", s.id));
            }
            let t = Template {
                id: s.id,
                words: s.kinds.iter().filter(|&&k| k == Kind::Word).count(),
                vars: s.kinds.iter().filter(|&&k| k == Kind::Var).count(),
                hashes: s.hashes,
                kinds: s.kinds,
                texts: s.texts.into_iter().map(String::into_boxed_str).collect(),
                spaces: s.spaces,
                count: s.count,
                last_seen: s.last_seen,
                version: 0,
            };
            m.buckets.entry(t.bucket_key()).or_default().push(t.id);
            m.templates.insert(t.id, t);
        }
        for (a, b) in snap.aliases {
            m.aliases.insert(a, b);
        }
        // The merge index: every live template's skeletons, as when it was last changed.
        // A group that would merge now merged when it formed, so nothing merges here.
        let mut ids: Vec<TemplateId> = m.templates.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let _ = m.register(id);
        }
        m.events.clear();
        Ok(m)
    }

    /// Mines one message and returns, besides its outcome, the message's text at each
    /// `<*>` of its template (the text after the masks ran: a user mask's match reads `0`).
    pub fn ingest_with_params(&mut self, msg: &str) -> (Outcome, Vec<String>) {
        let masked;
        let bytes = if self.cfg.masks.is_empty() {
            msg.as_bytes()
        } else {
            masked = apply_masks(&self.cfg.masks, msg);
            masked.as_bytes()
        };
        let out = self.ingest_raw(bytes);
        let mut params = Vec::new();
        if let Some(t) = self.templates.get(&out.id) {
            if t.kinds.len() == self.buf.len() {
                for (k, tok) in t.kinds.iter().zip(&self.buf) {
                    if *k == Kind::Var {
                        let (s, e) = (tok.start as usize, (tok.end as usize).min(bytes.len()));
                        params.push(String::from_utf8_lossy(&bytes[s.min(e)..e]).into_owned());
                    }
                }
            }
        }
        (out, params)
    }

    /// Mines one message.
    pub fn ingest(&mut self, msg: &str) -> Outcome {
        self.ingest_bytes(msg.as_bytes())
    }

    /// Mines one message given as bytes (need not be UTF-8).
    pub fn ingest_bytes(&mut self, msg: &[u8]) -> Outcome {
        if !self.cfg.masks.is_empty() {
            let masked = apply_masks(&self.cfg.masks, &String::from_utf8_lossy(msg));
            return self.ingest_raw(masked.as_bytes());
        }
        self.ingest_raw(msg)
    }

    fn ingest_raw(&mut self, msg: &[u8]) -> Outcome {
        self.lines += 1;
        let mut buf = std::mem::take(&mut self.buf);
        self.tok.tokenize(msg, &mut buf);
        let out = self.place(msg, &buf);
        self.buf = buf;
        out
    }

    fn touch(&mut self, id: TemplateId) -> bool {
        if let Some(t) = self.templates.get_mut(&id) {
            t.count += 1;
            t.last_seen = self.lines;
            true
        } else {
            false
        }
    }

    fn place(&mut self, msg: &[u8], toks: &[Token]) -> Outcome {
        let full = toks.iter().fold(toks.len() as u64, |h, t| (h.rotate_left(5) ^ t.hash).wrapping_mul(0x517c_c1b7_2722_0a95));
        if let Some(&id) = self.cache.get(&full) {
            let id = self.resolve(id);
            if self.touch(id) {
                return Outcome { id, new: false };
            }
        }
        if let Some(id) = self.search(toks) {
            self.touch(id);
            self.insert_cache(full, id);
            return Outcome { id, new: false };
        }
        let id = self.create(msg, toks);
        self.insert_cache(full, id);
        let id = self.resolve(id);
        Outcome { id, new: true }
    }

    fn insert_cache(&mut self, key: u64, id: TemplateId) {
        if self.cache.len() >= (4 * self.cfg.max_templates).max(1 << 16) {
            self.cache.clear();
        }
        self.cache.insert(key, id);
    }

    fn search(&self, toks: &[Token]) -> Option<TemplateId> {
        let n = toks.len();
        let a = toks.first().map(|t| t.hash);
        let b = toks.get(1).map(|t| t.hash);
        let aa = [a, a.map(|_| VAR_HASH)];
        let bb = [b, b.map(|_| VAR_HASH)];
        let mut best: Option<(usize, TemplateId)> = None;
        for (i, &x) in aa.iter().enumerate() {
            if i == 1 && x == a {
                continue;
            }
            for (j, &y) in bb.iter().enumerate() {
                if j == 1 && y == b {
                    continue;
                }
                let Some(ids) = self.buckets.get(&bucket_key(n, x, y)) else { continue };
                for id in ids {
                    let t = &self.templates[id];
                    if t.matches(toks) && best.is_none_or(|(v, bid)| (t.vars, t.id) < (v, bid)) {
                        best = Some((t.vars, t.id));
                    }
                }
            }
        }
        best.map(|(_, id)| id)
    }

    fn create(&mut self, msg: &[u8], toks: &[Token]) -> TemplateId {
        if self.templates.len() >= self.cfg.max_templates {
            self.sweep();
        }
        let id = self.next_id;
        self.next_id += 1;
        let t = Template {
            id,
            hashes: toks.iter().map(|t| t.hash).collect(),
            kinds: toks.iter().map(|t| t.kind).collect(),
            texts: toks.iter().map(|t| Tokenizer::text(msg, t).into_boxed_str()).collect(),
            spaces: toks.iter().map(|t| t.space).collect(),
            count: 1,
            last_seen: self.lines,
            version: 0,
            words: toks.iter().filter(|t| t.kind == Kind::Word).count(),
            vars: toks.iter().filter(|t| t.kind == Kind::Var).count(),
        };
        self.buckets.entry(t.bucket_key()).or_default().push(id);
        self.templates.insert(id, t);
        let mut work = vec![id];
        while let Some(id) = work.pop() {
            if let Some((members, p)) = self.register(id) {
                let into = self.merge(&members, p);
                work.push(into);
            }
        }
        id
    }

    /// Adds a template's one-word-wildcard skeletons; returns a group to merge, if one
    /// reached `merge_after` distinct members.
    fn register(&mut self, id: TemplateId) -> Option<(Vec<TemplateId>, usize)> {
        let t = self.templates.get(&id)?;
        let sum = t.pos_sum();
        let len = t.hashes.len() as u64;
        let version = t.version;
        // Word places (when a word would be left) and `<*>` places (when a word is left).
        let positions: Vec<(usize, u64)> = t
            .kinds
            .iter()
            .enumerate()
            .filter(|&(p, &k)| p > 0 && ((k == Kind::Word && t.words >= 2) || (k == Kind::Var && t.words >= 1)))
            .map(|(p, _)| (p, t.hashes[p]))
            .collect();
        let mut found = None;
        for (p, h) in positions {
            let skel = sum.wrapping_sub(pos_hash(p, h)).wrapping_add(pos_hash(p, WILD)) ^ len.wrapping_mul(0xff51_afd7_ed55_8ccd);
            let group = self.skeletons.entry(skel).or_default();
            group.push((id, version, p as u32));
            if found.is_none() {
                let templates = &self.templates;
                group.retain(|(m, v, _)| templates.get(m).is_some_and(|t| t.version == *v));
                let vars = group.iter().filter(|(m, _, _)| templates[m].kinds[p] == Kind::Var).count();
                let words = group.len() - vars;
                // Enough distinct words, or a word where another message had a value.
                if words >= self.cfg.merge_after || (vars > 0 && words > 0) {
                    found = Some((group.iter().map(|g| g.0).collect::<Vec<_>>(), p));
                }
            }
        }
        found
    }

    fn remove_from_bucket(&mut self, id: TemplateId, key: u64) {
        if let Some(v) = self.buckets.get_mut(&key) {
            v.retain(|&x| x != id);
            if v.is_empty() {
                self.buckets.remove(&key);
            }
        }
    }

    fn merge(&mut self, members: &[TemplateId], p: usize) -> TemplateId {
        let into = *members.iter().min().expect("a group has members");
        let mut count = 0;
        let mut last = 0;
        for &m in members {
            if m == into {
                continue;
            }
            if let Some(t) = self.templates.remove(&m) {
                let key = t.bucket_key();
                self.remove_from_bucket(m, key);
                count += t.count;
                last = last.max(t.last_seen);
                self.aliases.insert(m, into);
                self.events.push(Event::Merged { from: m, into });
            }
        }
        let t = self.templates.get_mut(&into).expect("live");
        let old_key = t.bucket_key();
        t.count += count;
        t.last_seen = t.last_seen.max(last);
        if t.kinds[p] == Kind::Word {
            t.hashes[p] = VAR_HASH;
            t.kinds[p] = Kind::Var;
            t.texts[p] = "<*>".into();
            t.words -= 1;
            t.vars += 1;
        }
        t.version += 1;
        let new_key = t.bucket_key();
        if new_key != old_key {
            self.remove_from_bucket(into, old_key);
            self.buckets.entry(new_key).or_default().push(into);
        }
        // A template of the same shape may exist already (made by a message with a value
        // there, `user 42` beside `user alice`): one template, the oldest id.
        let t = &self.templates[&into];
        let same: Vec<TemplateId> = self.buckets[&new_key]
            .iter()
            .copied()
            .filter(|&o| o != into && self.templates.get(&o).is_some_and(|x| x.hashes == t.hashes && x.kinds == t.kinds))
            .collect();
        if same.is_empty() {
            return into;
        }
        let keep = same.iter().copied().chain([into]).min().expect("not empty");
        let (mut count, mut last) = (0, 0);
        for o in same.into_iter().chain([into]).filter(|&o| o != keep) {
            if let Some(x) = self.templates.remove(&o) {
                self.remove_from_bucket(o, new_key);
                count += x.count;
                last = last.max(x.last_seen);
                self.aliases.insert(o, keep);
                self.events.push(Event::Merged { from: o, into: keep });
            }
        }
        let t = self.templates.get_mut(&keep).expect("live");
        t.count += count;
        t.last_seen = t.last_seen.max(last);
        t.version += 1;
        keep
    }

    /// Evicts the least recently matched eighth of the templates.
    fn sweep(&mut self) {
        let n = self.templates.len();
        let keep = self.cfg.max_templates.saturating_sub((self.cfg.max_templates / 8).max(1));
        if n <= keep {
            return;
        }
        let mut by_age: Vec<(u64, TemplateId)> = self.templates.values().map(|t| (t.last_seen, t.id)).collect();
        by_age.select_nth_unstable(n - keep - 1);
        for &(_, id) in &by_age[..n - keep] {
            if let Some(t) = self.templates.remove(&id) {
                let key = t.bucket_key();
                self.remove_from_bucket(id, key);
                self.evictions += 1;
                self.events.push(Event::Evicted { id, template: t.text(), count: t.count });
            }
        }
        self.cache.clear();
        let templates = &self.templates;
        self.skeletons.retain(|_, g| {
            g.retain(|(m, v, _)| templates.get(m).is_some_and(|t| t.version == *v));
            !g.is_empty()
        });
        // Aliases of evicted templates are forgotten.
        let live: Vec<(TemplateId, TemplateId)> = self.aliases.iter().map(|(&a, _)| (a, self.resolve(a))).collect();
        for (a, root) in live {
            if !self.templates.contains_key(&root) {
                self.aliases.remove(&a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_merges() {
        let mut m = Miner::default();
        let a = m.ingest("PacketResponder 1 for block blk_-12 terminating").id;
        let b = m.ingest("PacketResponder 2 for block blk_34 terminating").id;
        assert_eq!(a, b);
        let ids: Vec<_> =
            ["alice", "bob", "carol", "dave", "erin"].iter().map(|u| m.ingest(&format!("session closed for user {u}")).id).collect();
        let r: Vec<_> = ids.iter().map(|&i| m.resolve(i)).collect();
        assert!(r.iter().all(|&x| x == r[0]), "{r:?}");
        assert_eq!(m.get(r[0]).unwrap().text(), "session closed for user <*>");
        assert_eq!(m.get(r[0]).unwrap().count, 5);
        let g = m.ingest("VM Paused now").id;
        let h = m.ingest("VM Resumed now").id;
        assert_ne!(m.resolve(g), m.resolve(h));
    }

    #[test]
    fn a_word_where_a_value_was_is_a_parameter() {
        let mut m = Miner::default();
        let a = m.ingest("login by user alice").id;
        let v = m.ingest("login by user 42");
        assert_eq!(v, Outcome { id: a, new: true });
        assert_eq!(m.take_events(), vec![Event::Merged { from: a + 1, into: a }]);
        assert_eq!(m.ingest("login by user bob").id, a);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(a).unwrap().count, 3);
        assert_eq!(m.get(a).unwrap().text(), "login by user <*>");
        // Not at the first token.
        let x = m.ingest("alpha beta gamma").id;
        let y = m.ingest("7 beta gamma").id;
        assert_ne!(x, y);
    }

    #[test]
    fn user_masks() {
        let cfg = Config { masks: vec![regex::Regex::new(r"job-[a-z]+").unwrap(), regex::Regex::new(r"x*").unwrap()], ..Config::default() };
        let mut m = Miner::new(cfg);
        let a = m.ingest("started job-alpha on host").id;
        let b = m.ingest("started job-beta on host").id;
        assert_eq!(a, b);
        assert_eq!(m.get(a).unwrap().text(), "started <*> on host");
    }

    #[test]
    fn huge_inputs_are_linear() {
        let mut m = Miner::default();
        let big = "x".repeat(10 << 20);
        let t = std::time::Instant::now();
        m.ingest(&big);
        let many: String = (0..10_000).map(|i| format!("w{} ", i % 7)).collect();
        m.ingest(&many);
        let spaces = " a".repeat(5 << 20);
        m.ingest(&spaces);
        assert!(t.elapsed().as_secs_f64() < 5.0);
        assert!(m.templates().all(|t| t.hashes.len() <= 256));
    }

    #[test]
    fn a_restored_miner_keeps_ids_and_merges_on() {
        let mut m = Miner::default();
        let lines = ["session closed for user alice", "session closed for user bob", "disk /dev/sda1 is 91% full", "login by user 7"];
        let ids: Vec<_> = lines.iter().map(|l| m.ingest(l).id).collect();
        let json = serde_json::to_string(&m.snapshot()).unwrap();
        let mut r = Miner::restore(Config::default(), serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(r.snapshot(), m.snapshot());
        for (l, id) in lines.iter().zip(&ids) {
            assert_eq!(r.ingest(l), Outcome { id: *id, new: false });
            assert_eq!(m.ingest(l).id, *id);
        }
        // Merges go on where they were: carol and dave make four users in both.
        for u in ["carol", "dave"] {
            let line = format!("session closed for user {u}");
            assert_eq!(r.ingest(&line).id, m.ingest(&line).id);
        }
        assert_eq!(r.get(ids[0]).unwrap().text(), "session closed for user <*>");
        assert_eq!(r.ingest("brand new message here"), m.ingest("brand new message here"));
        let (o, params) = r.ingest_with_params("disk /dev/sdb2 is 12% full");
        assert_eq!(o.id, ids[2]);
        assert_eq!(params, vec!["/dev/sdb2".to_string(), "12%".to_string()]);
    }

    #[test]
    fn cap_holds() {
        let mut m = Miner::new(Config { max_templates: 1000, ..Config::default() });
        let mut x: u64 = 1;
        let mut word = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (0..8).map(|i| (b'a' + ((x >> (i * 5)) % 26) as u8) as char).collect::<String>()
        };
        for _ in 0..100_000 {
            let line = format!("{} {} {}", word(), word(), word());
            m.ingest(&line);
            assert!(m.len() <= 1000);
        }
        assert!(m.evictions() > 90_000, "{}", m.evictions());
    }
}
