//! Text similarity of alert titles: Jaccard similarity of word-token sets.
//!
//! A title is lowercased and split into words at every character that is not a letter or a
//! digit; each run of digits becomes `#` (so `p99 latency 812 ms on host-12` and `p95
//! latency 40 ms on host-3` share every token). At most [`MAX_TOKENS`] distinct tokens of the
//! first 1 024 characters count, kept as sorted 64-bit hashes. Similarity is
//! |A ∩ B| / |A ∪ B|: 1 for the same words, 0.5 when half the distinct words are shared.

/// Distinct tokens of one title that count.
pub const MAX_TOKENS: usize = 16;
/// Characters of one title that are read.
const MAX_CHARS: usize = 1024;

/// The title's token set: sorted, distinct FNV-1a hashes of the masked words.
pub fn tokens(title: &str) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<u64>| {
        if !word.is_empty() {
            let h = super::fnv(&[word.as_bytes()]);
            if !out.contains(&h) && out.len() < MAX_TOKENS {
                out.push(h);
            }
            word.clear();
        }
    };
    for c in title.chars().take(MAX_CHARS) {
        if c.is_ascii_digit() {
            if !word.ends_with('#') {
                word.push('#');
            }
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out.sort_unstable();
    out
}

/// Jaccard similarity of two sorted, distinct token sets; 0 when both are empty.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    if union == 0 {
        0.0
    } else {
        both as f64 / union as f64
    }
}
