//! The one DAG executor: the order in which a pipeline's stages run, the inputs each gets,
//! and what happens to a stage whose input produced nothing this tick — it does not run,
//! and produces nothing itself.
//!
//! A [`Tick`] is that executor: it hands out the stages that may run next with their
//! inputs, and takes back what each produced. `vigil replay`, `vigil eval` and `vigil test`
//! drive it synchronously with [`run`]; the engine drives the same `Tick` and adds what
//! only it needs around each stage: async sources, timeouts, retries, the ready stages
//! running concurrently, and the commits of what respond stages decided, awaited before
//! the tick counts as done.

use crate::data::Data;

/// The stages grouped by depth: a stage's inputs are all in earlier levels, so the stages
/// of one level may run concurrently. `inputs[i]` are stage `i`'s input stages, which come
/// before it (a plan's stages are in dependency order).
pub fn levels(inputs: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut level_of = Vec::with_capacity(inputs.len());
    for (i, ins) in inputs.iter().enumerate() {
        debug_assert!(ins.iter().all(|&j| j < i), "stages come after their inputs");
        level_of.push(ins.iter().map(|&j| level_of[j] + 1).max().unwrap_or(0));
    }
    let depth = level_of.iter().copied().max().map_or(0, |d| d + 1);
    let mut levels = vec![Vec::new(); depth];
    for (i, l) in level_of.iter().enumerate() {
        levels[*l].push(i);
    }
    levels
}

/// A stage's inputs from this tick's outputs, in slot order — or `None` when one of them
/// produced nothing (a stage that did not run), in which case the stage does not run.
pub fn gather(inputs: &[usize], outputs: &[Option<Data>]) -> Option<Vec<Data>> {
    inputs.iter().map(|&j| outputs[j].clone()).collect()
}

/// One tick being executed: which stages may run next, with their inputs, and what each
/// produced. The rule is the same for every caller: a stage runs once every input stage
/// produced something this tick; a stage whose input produced nothing does not run and
/// produces nothing itself; a stage that already has an output (a source's data, a test's
/// fixture) is not run again.
///
/// [`run`] drives it synchronously; the engine drives the same `Tick` and runs each batch
/// of [`Tick::ready`] stages concurrently, with timeouts and retries around each.
#[derive(Debug)]
pub struct Tick<'p> {
    inputs: &'p [Vec<usize>],
    levels: std::borrow::Cow<'p, [Vec<usize>]>,
    next: usize,
    outputs: Vec<Option<Data>>,
}

impl<'p> Tick<'p> {
    /// A tick over stages with these `inputs` (see [`levels`]), starting from `outputs`
    /// (what the tick was given, `None` elsewhere).
    pub fn new(inputs: &'p [Vec<usize>], outputs: Vec<Option<Data>>) -> Tick<'p> {
        Tick::with_levels(inputs, std::borrow::Cow::Owned(levels(inputs)), outputs)
    }

    /// [`Tick::new`] with the stages' [`levels`] computed once beforehand.
    pub fn with_levels(inputs: &'p [Vec<usize>], levels: std::borrow::Cow<'p, [Vec<usize>]>, outputs: Vec<Option<Data>>) -> Tick<'p> {
        debug_assert_eq!(inputs.len(), outputs.len());
        Tick { inputs, levels, next: 0, outputs }
    }

    /// The next stages to run, with their inputs in slot order: the runnable stages of the
    /// next level that has any. They depend only on stages before them, so they may run
    /// concurrently; report each one's output with [`Tick::complete`] before asking
    /// again. `None` when the tick is done.
    pub fn ready(&mut self) -> Option<Vec<(usize, Vec<Data>)>> {
        while self.next < self.levels.len() {
            let level = &self.levels[self.next];
            self.next += 1;
            let ready: Vec<(usize, Vec<Data>)> = level
                .iter()
                .filter(|&&i| self.outputs[i].is_none())
                .filter_map(|&i| gather(&self.inputs[i], &self.outputs).map(|ins| (i, ins)))
                .collect();
            if !ready.is_empty() {
                return Some(ready);
            }
        }
        None
    }

    /// Records what stage `i` produced (`None`: nothing, so the stages after it do not run).
    pub fn complete(&mut self, i: usize, output: Option<Data>) {
        self.outputs[i] = output;
    }

    /// What every stage produced so far.
    pub fn outputs(&self) -> &[Option<Data>] {
        &self.outputs
    }

    /// Ends the tick, returning every stage's output.
    pub fn into_outputs(self) -> Vec<Option<Data>> {
        self.outputs
    }
}

/// Runs one tick synchronously: a [`Tick`] over `outputs` (what the tick was given:
/// sources' data, a test's fixtures), each ready stage through `stage(i, inputs)`, in
/// order. `stage` may decline one (`Ok(None)`: not built, not needed).
///
/// # Errors
/// The first stage that fails, with its index; the stages after it do not run (the
/// outputs produced before it are kept).
pub fn run<E>(
    inputs: &[Vec<usize>],
    outputs: &mut Vec<Option<Data>>,
    mut stage: impl FnMut(usize, Vec<Data>) -> Result<Option<Data>, E>,
) -> Result<(), (usize, E)> {
    let mut tick = Tick::new(inputs, std::mem::take(outputs));
    let mut result = Ok(());
    'tick: while let Some(ready) = tick.ready() {
        for (i, ins) in ready {
            match stage(i, ins) {
                Ok(out) => tick.complete(i, out),
                Err(e) => {
                    result = Err((i, e));
                    break 'tick;
                }
            }
        }
    }
    *outputs = tick.into_outputs();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_group_stages_by_depth() {
        let inputs = vec![vec![], vec![0], vec![], vec![1, 2], vec![0]];
        assert_eq!(levels(&inputs), vec![vec![0, 2], vec![1, 4], vec![3]]);
    }

    #[test]
    fn a_stage_whose_input_produced_nothing_does_not_run() {
        let inputs = vec![vec![], vec![0], vec![1], vec![]];
        let mut outputs = vec![None; 4];
        outputs[3] = Some(Data::Incidents(Default::default()));
        let mut ran = Vec::new();
        // Stage 0 is declined: 1 and 2 after it do not run; 3 was given and is kept.
        run::<()>(&inputs, &mut outputs, |i, _| {
            ran.push(i);
            Ok(None)
        })
        .unwrap();
        assert_eq!(ran, [0]);
        assert!(outputs[3].is_some());
        // A failure stops the tick at that stage.
        let mut outputs = vec![None; 4];
        let err = run(&inputs, &mut outputs, |i, _| if i == 1 { Err("boom") } else { Ok(Some(Data::Incidents(Default::default()))) });
        assert_eq!(err.unwrap_err(), (1, "boom"));
        assert!(outputs[2].is_none());
    }

    #[test]
    fn a_tick_hands_out_one_level_at_a_time() {
        let some = || Some(Data::Incidents(Default::default()));
        let inputs = vec![vec![], vec![0], vec![], vec![1, 2], vec![0]];
        let mut tick = Tick::new(&inputs, vec![None; 5]);
        let ids = |r: Vec<(usize, Vec<Data>)>| r.into_iter().map(|(i, ins)| (i, ins.len())).collect::<Vec<_>>();
        assert_eq!(ids(tick.ready().unwrap()), [(0, 0), (2, 0)]);
        tick.complete(0, some());
        tick.complete(2, None);
        // 4 reads 0; 1 reads 0 too; 3 waits for 1 and 2 — and 2 produced nothing.
        assert_eq!(ids(tick.ready().unwrap()), [(1, 1), (4, 1)]);
        tick.complete(1, some());
        tick.complete(4, some());
        assert!(tick.ready().is_none(), "3's input 2 produced nothing: it does not run");
        let out = tick.into_outputs();
        assert_eq!(out.iter().map(Option::is_some).collect::<Vec<_>>(), [true, true, false, false, true]);
    }
}
