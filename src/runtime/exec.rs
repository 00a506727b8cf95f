//! The one DAG executor: the order in which a pipeline's stages run, the inputs each gets,
//! and what happens to a stage whose input produced nothing this tick — it does not run,
//! and produces nothing itself.
//!
//! `vigil replay`, `vigil eval` and `vigil test` run a tick with [`run`] as is. The engine
//! walks the same [`levels`] with the same rule ([`gather`]) and adds what only it needs:
//! async sources, timeouts, retries, the stages of a level running concurrently, and the
//! commits of what respond stages decided, awaited before the tick counts as done.

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

/// Runs one tick: every stage in order, through `stage(i, inputs)`, over `outputs` that
/// already hold what the tick was given (sources' data, a test's fixtures). A stage with
/// an output already is not run again; one whose input produced nothing is skipped;
/// `stage` may decline one (`Ok(None)`: not built, not needed).
///
/// # Errors
/// The first stage that fails, with its index; the stages after it do not run.
pub fn run<E>(
    inputs: &[Vec<usize>],
    outputs: &mut [Option<Data>],
    mut stage: impl FnMut(usize, Vec<Data>) -> Result<Option<Data>, E>,
) -> Result<(), (usize, E)> {
    for i in 0..inputs.len() {
        if outputs[i].is_some() {
            continue;
        }
        let Some(ins) = gather(&inputs[i], outputs) else { continue };
        outputs[i] = stage(i, ins).map_err(|e| (i, e))?;
    }
    Ok(())
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
}
