//! The runtime: what a stage is when it runs, and the one DAG executor.
//!
//! - [`ops`]: the built-in operators' implementations. Collect stages are [`Source`]s
//!   (async, with a cursor); the others are [`Operator`]s (synchronous, streaming: state
//!   carried across ticks, and a point is scored only from state built from earlier
//!   points).
//! - [`exec`]: the executor — which stages of a tick run next, with which inputs — that
//!   the engine ([`crate::engine`]), `vigil replay` ([`crate::replay`]), `vigil eval` and
//!   `vigil test` all drive.
//! - [`history`]: a stage's recent inputs, replayed into the stage that replaces it when
//!   a reload rebuilds it (so that it starts warm).
//! - [`metrics`]: the counters and gauges `/metrics` serves; [`recent`] the recent scores
//!   the console charts; [`cardinality`] the series limits; [`state`] the engine's store
//!   seams (cursors, runs).
//!
//! Invariants: a failing stage fails its tick, never the engine; no input data panics an
//! operator — bad records are skipped, counted ([`OpCtx::skip`]) and logged.

pub mod cardinality;
pub mod exec;
pub mod history;
pub mod metrics;
pub mod ops;
pub mod recent;
pub mod state;

use crate::data::{Data, Timestamp};

/// Why a stage failed a tick.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A source could not be reached or answered badly (retried per the stage options).
    #[error("{0}")]
    Io(String),
    /// The stage's input or configuration cannot be processed.
    #[error("{0}")]
    Invalid(String),
    /// The stage did not finish within its timeout.
    #[error("timed out after {0} ms")]
    Timeout(u64),
}

/// What an operator sees of the tick it runs in.
#[derive(Debug, Default)]
pub struct OpCtx {
    /// The tick's time (wall clock, or the data's time in a replay).
    pub now: Timestamp,
    /// Records skipped in this tick, by reason: counted in `/metrics` and logged.
    pub skipped: Vec<(&'static str, u64)>,
    /// Rows a source could not read at all (a rotated file that is gone), by reason:
    /// `vigil_source_lost_rows_total` and a warning.
    pub lost: Vec<(&'static str, u64)>,
    /// Series the stage's guard forgot this tick (idle): the stages downstream forget them
    /// too.
    pub expired: Vec<crate::data::SeriesId>,
    /// Things the stage counted besides its items (log templates created, merged,
    /// evicted), by event: `vigil_stage_events_total`.
    pub counted: Vec<(&'static str, u64)>,
    /// Whether the tick reads a backlog a first start found (set by file sources, passed
    /// down to the other stages by the engine).
    pub backlog: Backlog,
}

/// Whether a tick reads what a file held before the engine first started reading it
/// (`start_at: "beginning"` on a new state): respond stages record what it shows but
/// hold their notifications until it is read, then notify only the incidents still open.
/// Ordered: a tick with one source still reading its backlog is `Reading`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Backlog {
    /// Live data.
    #[default]
    None,
    /// The tick that reads the end of the backlog.
    LastTick,
    /// More backlog to read on later ticks.
    Reading,
}

impl OpCtx {
    pub fn new(now: Timestamp) -> OpCtx {
        OpCtx { now, skipped: Vec::new(), lost: Vec::new(), expired: Vec::new(), counted: Vec::new(), backlog: Backlog::None }
    }

    /// Counts a skipped record (a malformed row, a NaN, an out-of-order sample).
    pub fn skip(&mut self, reason: &'static str) {
        self.skip_n(reason, 1);
    }

    /// Counts `n` skipped records.
    pub fn skip_n(&mut self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.skipped.push((reason, n)),
        }
    }

    /// Counts `n` occurrences of an event (see [`OpCtx::counted`]).
    pub fn count(&mut self, event: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match self.counted.iter_mut().find(|(r, _)| *r == event) {
            Some((_, c)) => *c += n,
            None => self.counted.push((event, n)),
        }
    }

    /// Counts rows lost before they could be read.
    pub fn lose(&mut self, reason: &'static str, n: u64) {
        match self.lost.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.lost.push((reason, n)),
        }
    }

    /// How many records were skipped, for any reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
}

/// A streaming operator: preprocess, predict, respond.
pub trait Operator: Send {
    /// Processes one tick's inputs (one per input slot, in slot order) and returns the
    /// stage's output for the tick. State carried across ticks lives in `self`.
    ///
    /// # Errors
    /// When the input cannot be processed at all; bad records are skipped instead.
    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError>;

    /// Drops what is kept for these series (idle, or beyond the stage's `max_series`):
    /// see [`cardinality`]. Stateless operators keep the default.
    fn forget(&mut self, _ids: &[crate::data::SeriesId]) {}

    /// State to persist across restarts and to carry over when a reload rebuilds the
    /// stage, as text (the engine keeps it in the store's `cursors` table under the
    /// stage's key, saved after every successful tick in which it changed). Most
    /// operators keep none: their state is rebuilt from the data.
    fn snapshot(&mut self) -> Option<String> {
        None
    }

    /// Resumes from a [`Operator::snapshot`]. A snapshot it cannot read is ignored
    /// (logged) and the operator starts afresh.
    fn restore(&mut self, _snapshot: &str) {}

    /// Records what `process` decided that must outlive the tick — a respond stage's
    /// incident changes, notifications and audit records — or `None` when there is
    /// nothing to record. Every executor awaits it right after a successful `process`;
    /// an error fails the tick (the engine retries the commit first, and saves no cursor
    /// of a failed tick), and the operator keeps what it could not record, to record it
    /// with the next tick's: nothing is lost, nothing is recorded twice.
    fn commit(&mut self) -> Option<BoxFuture<'_, Result<(), OpError>>> {
        None
    }
}

/// Processes one tick's inputs and records what the operator decided (see
/// [`Operator::commit`]), for executors outside the engine (`vigil test`, benches):
/// their responder has no store, so the commit completes at once.
///
/// # Errors
/// What `process` or the commit returns; a commit that would have to wait (a responder
/// with a store, outside an async runtime) is an error rather than a block.
pub fn process_now(op: &mut dyn Operator, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
    use futures_util::FutureExt;
    let out = op.process(inputs, ctx)?;
    if let Some(fut) = op.commit() {
        fut.now_or_never().unwrap_or_else(|| Err(OpError::Invalid("this stage records to a store: run it in the engine".into())))?;
    }
    Ok(out)
}

pub use crate::persist::BoxFuture;

/// A collect operator: brings in what is new since its cursor.
pub trait Source: Send {
    /// Fetches what is new. Cancellation (dropping the future) leaves the cursor where it
    /// was, so nothing is lost: the next tick fetches the same data again.
    fn collect<'a>(&'a mut self, ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>>;

    /// The position to resume from after a restart, if the source has one.
    fn cursor(&self) -> Option<String> {
        None
    }

    /// Resumes from a cursor saved by [`Source::cursor`]. A cursor it cannot read is
    /// ignored (logged) and the source starts afresh.
    fn restore(&mut self, _cursor: &str) {}

    /// Drops what is kept for these series (see [`Operator::forget`]).
    fn forget(&mut self, _ids: &[crate::data::SeriesId]) {}
}

/// A stage's implementation.
pub enum Step {
    Source(Box<dyn Source>),
    Op(Box<dyn Operator>),
}

impl Step {
    /// The state to persist: a source's cursor or an operator's snapshot.
    pub fn saved_state(&mut self) -> Option<String> {
        match self {
            Step::Source(s) => s.cursor(),
            Step::Op(o) => o.snapshot(),
        }
    }

    /// Resumes from [`Step::saved_state`].
    pub fn restore_state(&mut self, state: &str) {
        match self {
            Step::Source(s) => s.restore(state),
            Step::Op(o) => o.restore(state),
        }
    }

    /// Forgets these series (see [`Operator::forget`]).
    pub fn forget(&mut self, ids: &[crate::data::SeriesId]) {
        if ids.is_empty() {
            return;
        }
        match self {
            Step::Source(s) => s.forget(ids),
            Step::Op(o) => o.forget(ids),
        }
    }
}
