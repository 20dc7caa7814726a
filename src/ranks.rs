//! Multi-rank runs: an msprobe dump root (or `stepN` folder) holding one `rankN` folder per
//! rank. Ranks are paired by rank id, never by position: a rank present on one side only is
//! reported as missing and the others are still compared. Paired ranks are compared in
//! parallel; the summary says which ranks diverge, and which diverge first.

use crate::compare::Comparison;
use crate::dump::msprobe::find_dump_jsons;
use crate::verdict::Overall;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `rankN` folders below `path`, by rank id, when `path` is a multi-rank msprobe root:
/// at least two `dump.json` files, each in a folder named `rank{N}`, all those folders side by
/// side under one parent (so `step0/rank0`, `step0/rank1`, but not two steps). `None` for
/// anything else (a single dump, or an ambiguous layout that `msprobe::open` reports).
pub fn find_ranks(path: &Path) -> Option<BTreeMap<u32, PathBuf>> {
    if !path.is_dir() || path.join("dump.json").is_file() {
        return None;
    }
    let jsons = find_dump_jsons(path, 4);
    if jsons.len() < 2 {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut parent: Option<&Path> = None;
    for j in &jsons {
        let dir = j.parent()?;
        let rank: u32 = dir
            .file_name()?
            .to_str()?
            .strip_prefix("rank")?
            .parse()
            .ok()?;
        let up = dir.parent()?;
        if parent.is_some_and(|p| p != up) {
            return None;
        }
        parent = Some(up);
        if out.insert(rank, dir.to_path_buf()).is_some() {
            return None;
        }
    }
    Some(out)
}

/// The folder of rank `rank` below the multi-rank root `root`.
pub fn rank_dir(root: &Path, rank: u32) -> anyhow::Result<PathBuf> {
    let ranks = find_ranks(root).ok_or_else(|| {
        anyhow::anyhow!(
            "{} is not a multi-rank dump (rankN folders)",
            root.display()
        )
    })?;
    ranks
        .get(&rank)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("{} has no rank{rank} folder", root.display()))
}

/// One rank's comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RankReport {
    /// Rank id (from the folder name `rank{N}`).
    pub rank: u32,
    /// That rank's report (the single-dump JSON report).
    pub report: Comparison,
    /// Reference tensors covered by fused device ops (`--fusion-map`), when any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fused_reference: Vec<String>,
}

/// Where one rank first diverges.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RankDivergence {
    /// Rank id.
    pub rank: u32,
    /// First divergent place.
    pub place: String,
    /// Its position in that rank's execution order.
    pub order: usize,
    /// Its relative L2 error.
    pub rel_l2_err: f64,
}

/// What the ranks show together.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RankSummary {
    /// Ranks compared (present on both sides).
    pub compared: Vec<u32>,
    /// Ranks whose run diverged, earliest divergence first (ties by rank id).
    pub diverged: Vec<RankDivergence>,
    /// Ranks that diverge at the earliest place of all (the ones to look at first).
    pub first_ranks: Vec<u32>,
    /// Ranks with no divergence beyond noise.
    pub clean: Vec<u32>,
    /// One sentence for humans.
    pub text: String,
}

/// A comparison of two multi-rank runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MultiRank {
    /// Per-rank reports, by rank id.
    pub ranks: Vec<RankReport>,
    /// Ranks present in the candidate only.
    pub missing_ranks_reference: Vec<u32>,
    /// Ranks present in the reference only.
    pub missing_ranks_candidate: Vec<u32>,
    /// Across ranks.
    pub summary: RankSummary,
}

impl MultiRank {
    /// True when some rank is present on one side only.
    pub fn has_missing(&self) -> bool {
        !self.missing_ranks_reference.is_empty() || !self.missing_ranks_candidate.is_empty()
    }
}

/// Pairs the ranks of two multi-rank roots by id and runs `each(rank, ref_dir, dev_dir)` (a
/// comparison and its fused reference tensors) on every rank present on both sides, in
/// parallel. Fails when either side is not a multi-rank
/// root, or when any rank's comparison fails (naming the rank).
pub fn compare_ranks<F>(reference: &Path, candidate: &Path, each: F) -> anyhow::Result<MultiRank>
where
    F: Fn(u32, &Path, &Path) -> anyhow::Result<(Comparison, Vec<String>)> + Sync,
{
    let side = |p: &Path, what: &str| {
        find_ranks(p).ok_or_else(|| {
            anyhow::anyhow!(
                "{what} {} is not a multi-rank dump (rankN folders) while the other side is: \
                 point both at a rank folder or both at the dump root",
                p.display()
            )
        })
    };
    let r = side(reference, "reference")?;
    let d = side(candidate, "candidate")?;
    let both: Vec<(u32, &PathBuf, &PathBuf)> = r
        .iter()
        .filter_map(|(k, rp)| d.get(k).map(|dp| (*k, rp, dp)))
        .collect();
    let ranks = both
        .par_iter()
        .map(|&(k, rp, dp)| {
            each(k, rp, dp)
                .map(|(report, fused_reference)| RankReport {
                    rank: k,
                    report,
                    fused_reference,
                })
                .map_err(|e| e.context(format!("rank {k}")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let missing_ranks_reference = d.keys().filter(|k| !r.contains_key(k)).copied().collect();
    let missing_ranks_candidate = r.keys().filter(|k| !d.contains_key(k)).copied().collect();
    let summary = summarize(&ranks);
    Ok(MultiRank {
        ranks,
        missing_ranks_reference,
        missing_ranks_candidate,
        summary,
    })
}

/// The summary across ranks.
pub fn summarize(ranks: &[RankReport]) -> RankSummary {
    let mut s = RankSummary {
        compared: ranks.iter().map(|r| r.rank).collect(),
        ..RankSummary::default()
    };
    for r in ranks {
        match &r.report.analysis.first_divergence {
            Some(f) if r.report.analysis.overall == Overall::Diverged => {
                s.diverged.push(RankDivergence {
                    rank: r.rank,
                    place: f.name.clone(),
                    order: f.order,
                    rel_l2_err: f.rel_l2_err,
                })
            }
            _ => s.clean.push(r.rank),
        }
    }
    s.diverged.sort_by_key(|d| (d.order, d.rank));
    if let Some(first) = s.diverged.first() {
        let o = first.order;
        s.first_ranks = s
            .diverged
            .iter()
            .filter(|d| d.order == o)
            .map(|d| d.rank)
            .collect();
    }
    s.text = match s.diverged.first() {
        None => format!(
            "no rank diverges beyond noise ({} rank(s) compared)",
            s.compared.len()
        ),
        Some(f) => format!(
            "{} of {} rank(s) diverge; first: rank(s) {} at {}",
            s.diverged.len(),
            s.compared.len(),
            join(&s.first_ranks),
            f.place
        ),
    };
    s
}

/// `0, 1, 3`.
pub fn join(ranks: &[u32]) -> String {
    ranks
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rank_folders_side_by_side_only() {
        let t = tempfile::tempdir().unwrap();
        for d in ["step0/rank0", "step0/rank3"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
            std::fs::write(t.path().join(d).join("dump.json"), "{}").unwrap();
        }
        let r = find_ranks(t.path()).unwrap();
        assert_eq!(r.keys().copied().collect::<Vec<_>>(), vec![0, 3]);
        // A second step makes it ambiguous.
        std::fs::create_dir_all(t.path().join("step1/rank0")).unwrap();
        std::fs::write(t.path().join("step1/rank0/dump.json"), "{}").unwrap();
        assert!(find_ranks(t.path()).is_none());
        assert!(find_ranks(&t.path().join("step0")).is_some());
        assert!(find_ranks(&t.path().join("step0/rank0")).is_none());
    }
}
