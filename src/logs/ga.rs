//! Grouping accuracy on Loghub samples.

use std::collections::HashMap;

/// Grouping accuracy: `truth[i]` is line i's true event id (`None`: left out), `pred[i]`
/// its mined group. A group is correct when all its lines share one true id and it holds
/// every line with that id; GA = lines in correct groups / lines scored.
#[must_use]
pub fn grouping_accuracy<P: std::hash::Hash + Eq + Copy>(truth: &[Option<&str>], pred: &[P]) -> f64 {
    assert_eq!(truth.len(), pred.len());
    let mut true_count: HashMap<&str, usize> = HashMap::new();
    let mut groups: HashMap<P, (Option<&str>, bool, usize)> = HashMap::new();
    let mut total = 0;
    for (t, &p) in truth.iter().zip(pred) {
        let Some(t) = *t else { continue };
        total += 1;
        *true_count.entry(t).or_default() += 1;
        let g = groups.entry(p).or_insert((Some(t), true, 0));
        if g.0 != Some(t) {
            g.1 = false;
        }
        g.2 += 1;
    }
    if total == 0 {
        return 1.0;
    }
    let correct: usize = groups.values().filter(|(t, pure, n)| *pure && t.is_some_and(|t| true_count[t] == *n)).map(|g| g.2).sum();
    correct as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ga() {
        let t = [Some("a"), Some("a"), Some("b"), Some("b"), None];
        assert_eq!(grouping_accuracy(&t, &[1, 1, 2, 2, 3]), 1.0);
        assert_eq!(grouping_accuracy(&t, &[1, 1, 2, 3, 3]), 0.5);
        assert_eq!(grouping_accuracy(&t, &[1, 1, 1, 1, 1]), 0.0);
    }
}
