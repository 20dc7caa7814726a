//! Pairing the entries of two dumps: exact names first, then msprobe-aware names. O(n) with
//! hash maps, so 100k+ entries pair in milliseconds.

use crate::dump::{Dump, Entry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How two entries were paired.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// Same tensor name.
    Exact,
    /// Same name after msprobe-aware normalisation (MindSpore `Cell.` vs PyTorch `Module.`,
    /// `input_args`/`input`, case of the framework prefix).
    Normalized,
}

/// A reference entry and its candidate counterpart (indices into each dump's entries).
#[derive(Copy, Clone, Debug)]
pub struct Pair {
    /// Index into the reference dump's entries.
    pub reference: usize,
    /// Index into the candidate dump's entries.
    pub candidate: usize,
    /// How they were matched.
    pub kind: MatchKind,
}

/// The pairing of two dumps.
#[derive(Clone, Debug, Default)]
pub struct Alignment {
    /// Pairs in the reference's execution order.
    pub pairs: Vec<Pair>,
    /// Reference entries with no counterpart, in order.
    pub unmatched_reference: Vec<usize>,
    /// Candidate entries with no counterpart, in order.
    pub unmatched_candidate: Vec<usize>,
}

/// Name normalisation for the second matching round.
pub fn normalize(name: &str) -> String {
    let n = name
        .strip_prefix("Cell.")
        .map(|r| format!("Module.{r}"))
        .unwrap_or_else(|| name.to_string());
    n.replace(".input_args.", ".input.")
        .replace(".input_kwargs.", ".kwargs.")
        .replace("Mint.", "Torch.")
        .replace("MintFunctional.", "Functional.")
}

/// Pairs `reference` and `candidate` entries.
pub fn align(reference: &Dump, candidate: &Dump) -> Alignment {
    align_entries(&reference.entries, &candidate.entries)
}

/// Pairs two entry lists (see [`align`]).
pub fn align_entries(reference: &[Entry], candidate: &[Entry]) -> Alignment {
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(candidate.len());
    for (i, e) in candidate.iter().enumerate() {
        by_name.entry(e.name.as_str()).or_insert(i);
    }
    let mut used = vec![false; candidate.len()];
    let mut found: Vec<Option<(usize, MatchKind)>> = reference
        .iter()
        .map(|e| {
            by_name.get(e.name.as_str()).and_then(|&i| {
                (!used[i]).then(|| {
                    used[i] = true;
                    (i, MatchKind::Exact)
                })
            })
        })
        .collect();
    if found.iter().any(Option::is_none) {
        let mut by_norm: HashMap<String, usize> = HashMap::new();
        for (i, e) in candidate.iter().enumerate() {
            if !used[i] {
                by_norm.entry(normalize(&e.name)).or_insert(i);
            }
        }
        for (k, f) in found.iter_mut().enumerate() {
            if f.is_none() {
                if let Some(&i) = by_norm.get(&normalize(&reference[k].name)) {
                    if !used[i] {
                        used[i] = true;
                        *f = Some((i, MatchKind::Normalized));
                    }
                }
            }
        }
    }
    let mut out = Alignment::default();
    for (k, f) in found.into_iter().enumerate() {
        match f {
            Some((i, kind)) => out.pairs.push(Pair {
                reference: k,
                candidate: i,
                kind,
            }),
            None => out.unmatched_reference.push(k),
        }
    }
    out.unmatched_candidate = (0..candidate.len()).filter(|&i| !used[i]).collect();
    out
}

/// Shapes are comparable when they hold the same elements up to size-1 dimensions.
pub fn shapes_compatible(a: &[usize], b: &[usize]) -> bool {
    let sq = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    sq(a) == sq(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeezed_shapes() {
        assert!(shapes_compatible(&[1, 32, 64], &[32, 64]));
        assert!(shapes_compatible(&[], &[1]));
        assert!(!shapes_compatible(&[32, 64], &[64, 32]));
    }

    #[test]
    fn normalizes_mindspore_names() {
        assert_eq!(
            normalize("Cell.net.conv.Conv2d.forward.0.input.0"),
            "Module.net.conv.Conv2d.forward.0.input.0"
        );
    }
}
