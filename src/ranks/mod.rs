//! Multi-rank runs: an msprobe dump root (or `stepN` folder) holding one `rankN` folder per
//! rank. Ranks are paired by rank id, never by position: a rank present on one side only is
//! reported as missing and the others are still compared. Paired ranks are compared in
//! parallel; the summary says which ranks diverge, which diverge first, and, where a
//! collective spread the error, which ranks' inputs carried it (docs/divergence.md).

pub mod check;

use crate::compare::Comparison;
use crate::dump::msprobe::find_dump_jsons;
use crate::dump::Role;
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
    find_rank_folders(path, 2)
}

/// [`find_ranks`] with at least `min` rank folders: 1 where the run is known to be multi-rank
/// (`--world-size`: a node may hold one rank of it).
pub fn find_rank_folders(path: &Path, min: usize) -> Option<BTreeMap<u32, PathBuf>> {
    if !path.is_dir() || path.join("dump.json").is_file() {
        return None;
    }
    let jsons = find_dump_jsons(path, 4);
    if jsons.len() < min.max(1) {
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
    let ranks = find_rank_folders(root, 1).ok_or_else(|| {
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

impl RankReport {
    /// A pair could not be read or compared (shapes that do not fit), or nothing paired: the
    /// run exits 2 for this rank.
    pub fn is_broken(&self) -> bool {
        use crate::compare::Status;
        self.report.pairs.is_empty()
            || self
                .report
                .pairs
                .iter()
                .any(|p| matches!(p.status, Status::Error | Status::ShapeMismatch))
    }
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
    /// Role of the tensor judged divergent there (an input role: the error arrived in the
    /// place's inputs with no earlier place of this rank to explain it).
    pub role: Role,
}

impl RankDivergence {
    /// Where `r` first diverges, when its run diverged.
    pub fn of(r: &RankReport) -> Option<RankDivergence> {
        let a = &r.report.analysis;
        let f = a.first_divergence.as_ref()?;
        (a.overall == Overall::Diverged).then(|| RankDivergence {
            rank: r.rank,
            place: f.name.clone(),
            order: f.order,
            rel_l2_err: f.rel_l2_err,
            role: f.role,
        })
    }
}

/// A collective that turned clean local inputs into a divergent output: the ranks whose
/// inputs carried the error into it, and the ranks that only received it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CollectiveSpread {
    /// The collective call (`Distributed.all_reduce.0.forward`).
    pub place: String,
    /// Ranks whose inputs to it diverge: where the error came from.
    pub carried_by: Vec<u32>,
    /// Ranks whose inputs to it are clean and whose output diverges.
    pub received_by: Vec<u32>,
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
    /// When the earliest divergent place is a collective (msprobe `Distributed.*`) that some
    /// ranks enter with divergent inputs and others leave with only a divergent output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collective: Option<CollectiveSpread>,
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

/// The rank folders of both sides of a multi-rank run.
#[derive(Clone, Debug)]
pub struct RankPlan {
    /// The reference root.
    pub reference_root: PathBuf,
    /// The candidate root.
    pub candidate_root: PathBuf,
    /// Reference rank folders, by rank id.
    pub reference: BTreeMap<u32, PathBuf>,
    /// Candidate rank folders, by rank id.
    pub candidate: BTreeMap<u32, PathBuf>,
    /// The run's size when declared (`--world-size`): ranks `0..N` on both sides, of which
    /// this machine holds those in `reference` and `candidate` (node-local disks).
    pub world_size: Option<u32>,
}

impl RankPlan {
    /// The ranks of two multi-rank roots. Fails when either side is not a multi-rank root.
    pub fn of(reference: &Path, candidate: &Path) -> anyhow::Result<RankPlan> {
        let side = |p: &Path, what: &str| {
            find_ranks(p).ok_or_else(|| {
                anyhow::anyhow!(
                    "{what} {} is not a multi-rank dump (rankN folders) while the other side \
                     is: point both at a rank folder or both at the dump root",
                    p.display()
                )
            })
        };
        Ok(RankPlan {
            reference_root: reference.to_path_buf(),
            candidate_root: candidate.to_path_buf(),
            reference: side(reference, "reference")?,
            candidate: side(candidate, "candidate")?,
            world_size: None,
        })
    }

    /// This machine's share of a run of `world_size` ranks on each side: the `rankN` folders
    /// under the two roots (one or more), each below `world_size`.
    pub fn local(reference: &Path, candidate: &Path, world_size: u32) -> anyhow::Result<RankPlan> {
        let side = |p: &Path, what: &str| -> anyhow::Result<BTreeMap<u32, PathBuf>> {
            let found = find_rank_folders(p, 1).ok_or_else(|| {
                anyhow::anyhow!(
                    "{what} {} holds no rankN folder with a dump.json on this machine",
                    p.display()
                )
            })?;
            if let Some((k, dir)) = found.iter().find(|(k, _)| **k >= world_size) {
                anyhow::bail!(
                    "{} is rank {k}, beyond --world-size {world_size} (ranks 0-{})",
                    dir.display(),
                    world_size.saturating_sub(1)
                );
            }
            Ok(found)
        };
        Ok(RankPlan {
            reference_root: reference.to_path_buf(),
            candidate_root: candidate.to_path_buf(),
            reference: side(reference, "reference")?,
            candidate: side(candidate, "candidate")?,
            world_size: Some(world_size),
        })
    }

    /// Ranks of the reference side of the run (`0..N` when the size was declared).
    pub fn reference_ranks(&self) -> Vec<u32> {
        match self.world_size {
            Some(n) => (0..n).collect(),
            None => self.reference.keys().copied().collect(),
        }
    }

    /// Ranks of the candidate side of the run.
    pub fn candidate_ranks(&self) -> Vec<u32> {
        match self.world_size {
            Some(n) => (0..n).collect(),
            None => self.candidate.keys().copied().collect(),
        }
    }

    /// Every rank of the run (on either side), ascending.
    pub fn all(&self) -> Vec<u32> {
        let mut v = self.reference_ranks();
        v.extend(self.candidate_ranks());
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The ranks whose folders this machine holds (on either side), ascending.
    pub fn local_ranks(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .reference
            .keys()
            .chain(self.candidate.keys())
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// With a declared size, every rank of `ranks` must be here on both sides: a rank this
    /// machine does not hold is another machine's to compare, not a missing rank.
    pub fn require_local(&self, ranks: &[u32]) -> anyhow::Result<()> {
        if self.world_size.is_none() {
            return Ok(());
        }
        for (what, root, side) in [
            ("reference", &self.reference_root, &self.reference),
            ("candidate", &self.candidate_root, &self.candidate),
        ] {
            let absent: Vec<u32> = ranks
                .iter()
                .filter(|k| !side.contains_key(k))
                .copied()
                .collect();
            if !absent.is_empty() {
                anyhow::bail!(
                    "rank(s) {} have no folder under the {what} root {} on this machine: with \
                     --world-size, compare each rank where its folders are (--ranks, or no \
                     --ranks/--shard for the ranks found here)",
                    join(&absent),
                    root.display()
                );
            }
        }
        Ok(())
    }

    /// Runs `each(rank, ref_dir, dev_dir)` (a comparison and its fused reference tensors) on
    /// every rank of `only` present on both sides, in parallel; ranks of `only` present on one
    /// side are reported missing. Fails when any rank's comparison fails (naming the rank).
    pub fn compare<F>(&self, only: &[u32], each: F) -> anyhow::Result<MultiRank>
    where
        F: Fn(u32, &Path, &Path) -> anyhow::Result<(Comparison, Vec<String>)> + Sync,
    {
        let (r, d) = (&self.reference, &self.candidate);
        let both: Vec<(u32, &PathBuf, &PathBuf)> = only
            .iter()
            .filter_map(|k| Some((*k, r.get(k)?, d.get(k)?)))
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
        let only_in = |a: &BTreeMap<u32, PathBuf>, b: &BTreeMap<u32, PathBuf>| {
            only.iter()
                .filter(|k| a.contains_key(k) && !b.contains_key(k))
                .copied()
                .collect()
        };
        let summary = summarize(&ranks);
        Ok(MultiRank {
            ranks,
            missing_ranks_reference: only_in(d, r),
            missing_ranks_candidate: only_in(r, d),
            summary,
        })
    }
}

/// The summary across ranks.
pub fn summarize(ranks: &[RankReport]) -> RankSummary {
    summarize_divergences(
        ranks.iter().map(|r| r.rank).collect(),
        ranks.iter().filter_map(RankDivergence::of).collect(),
    )
}

/// The summary across the `compared` ranks, of which `diverged` diverged (any order).
pub fn summarize_divergences(compared: Vec<u32>, mut diverged: Vec<RankDivergence>) -> RankSummary {
    diverged.sort_by_key(|d| (d.order, d.rank));
    let bad: std::collections::BTreeSet<u32> = diverged.iter().map(|d| d.rank).collect();
    let clean = compared
        .iter()
        .filter(|k| !bad.contains(k))
        .copied()
        .collect();
    let mut s = RankSummary {
        compared,
        diverged,
        clean,
        ..RankSummary::default()
    };
    if let Some(first) = s.diverged.first() {
        let o = first.order;
        s.first_ranks = s
            .diverged
            .iter()
            .filter(|d| d.order == o)
            .map(|d| d.rank)
            .collect();
    }
    s.collective = collective_spread(&s.diverged);
    s.text = match s.diverged.first() {
        None => format!(
            "no rank diverges beyond noise ({} rank(s) compared)",
            s.compared.len()
        ),
        Some(f) => format!(
            "{} of {} rank(s) diverge; first: rank(s) {} at {}{}",
            s.diverged.len(),
            s.compared.len(),
            join(&s.first_ranks),
            f.place,
            match &s.collective {
                Some(c) => format!(
                    "; the collective spread it: the inputs of rank(s) {} carried the error",
                    join(&c.carried_by)
                ),
                None => String::new(),
            }
        ),
    };
    s
}

/// Rule (docs/divergence.md, "Across ranks"): when the earliest divergent place is a
/// collective, the ranks that first diverge at that same call split into those whose inputs
/// diverge there (they carried the error in) and those whose inputs are clean and whose output
/// diverges (they received it). Named only when both groups are there.
fn collective_spread(diverged: &[RankDivergence]) -> Option<CollectiveSpread> {
    let place = &diverged.first()?.place;
    if !place.starts_with("Distributed.") {
        return None;
    }
    let at: Vec<&RankDivergence> = diverged.iter().filter(|d| &d.place == place).collect();
    let mut carried_by: Vec<u32> = at
        .iter()
        .filter(|d| d.role.is_input())
        .map(|d| d.rank)
        .collect();
    let mut received_by: Vec<u32> = at
        .iter()
        .filter(|d| !d.role.is_input())
        .map(|d| d.rank)
        .collect();
    if carried_by.is_empty() || received_by.is_empty() {
        return None;
    }
    carried_by.sort_unstable();
    received_by.sort_unstable();
    Some(CollectiveSpread {
        place: place.clone(),
        carried_by,
        received_by,
    })
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
