//! Log template mining: from raw log lines to templates with stable ids.
//!
//! A leaf module: it depends on nothing else in vigil (only `regex` and `memchr`), so any
//! layer may use it.
//!
//! **Input**: lines of text (bytes; invalid UTF-8 is the caller's to decode lossily). A
//! [`header::HeaderFormat`] such as `<Date> <Time> <Level> [<Process>] <Component>:
//! <Content>` splits each line's header from its message (`Content`); a line the format
//! does not match is mined whole.
//!
//! **Output**: for each message, the id of its template ([`miner::Outcome`]); the
//! templates themselves (`blk_<*> terminating`-style text, count, last match) from
//! [`miner::Miner::templates`]; and events ([`miner::Event`]): merges (one template
//! becoming an alias of another) and evictions.
//!
//! **The algorithm** ([`miner`], [`mask`]), online, one pass:
//!
//! 1. tokenise and mask the message ([`mask::Tokenizer`]): numbers, hex ids, ids mixing
//!    letters and digits, IPs, hosts and ports, paths, URLs, UUIDs, dates and times become
//!    `<*>`, and runs of variables with the punctuation and units between them collapse into
//!    one `<*>` (so `4042 bytes (3.94 KB)` and `4042 bytes` are the same token);
//! 2. look the token sequence up: first in a cache of exact token sequences, then among the
//!    templates of the same length whose first two tokens match (or are `<*>`) — a fixed
//!    depth prefix tree as in Drain; a template matches when every token is equal or the
//!    template has `<*>` there; the most specific one wins;
//! 3. no match: a new template. Templates that differ in exactly one word (not the first
//!    token) are merged into one with `<*>` there once [`miner::Config::merge_after`] (4)
//!    distinct words have been seen at that place — fewer are taken for an enumeration
//!    (`GET`/`POST`/`DELETE`, `user=root`/`user=guest`), more for a parameter (user names)
//!    — or as soon as another message had a value (`<*>`) there (`user 42`, `user alice`).
//!
//! **Invariants**: at most [`miner::Config::max_templates`] live templates (the least
//! recently matched eighth is evicted when a new one would exceed it, and counted); at most
//! [`miner::Config::max_tokens`] tokens per message (the rest is one `<*>`); time linear in
//! a message's length; memory O(templates × tokens). A template's id is a counter given at
//! creation and never reused; a merge keeps the oldest member's id and makes the others
//! aliases ([`miner::Miner::resolve`]).
//!
//! Accuracy on Loghub and speed: BENCHMARKS.md; the user's view: docs/logs.md.

pub mod ga;
pub mod header;
pub mod mask;
pub mod miner;
pub mod report;

pub use header::{FormatError, HeaderFormat};
pub use miner::{Config, Event, Miner, Outcome, Snapshot, Template, TemplateId};
