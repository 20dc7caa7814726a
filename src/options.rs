//! Command-line arguments turned into the library's typed options, in one place.

use crate::cli::{DumpArgs, MappingArgs, PartArgs, ReadArgs};
use anyhow::Context;
use driftscope::compare::CompareOptions;
use driftscope::dump::OpenOptions;
use driftscope::metrics::Histograms;
use driftscope::session::{MappingFiles, Options, RankSelection};
use driftscope::verdict::NoiseOptions;

/// The options of a command that opens a reference and a candidate.
pub fn of_dumps(a: &DumpArgs) -> anyhow::Result<Options> {
    Ok(Options {
        open: OpenOptions {
            layout: a.layout.clone(),
            ..open(&a.read)
        },
        compare: compare(&a.read)?,
        noise_run: a.noise.clone(),
        mapping: mapping(&a.mapping),
    })
}

/// The options of `report`: no `--noise`, no `--layout`.
pub fn of_report(read: &ReadArgs, m: &MappingArgs) -> anyhow::Result<Options> {
    Ok(Options {
        open: open(read),
        compare: compare(read)?,
        noise_run: None,
        mapping: mapping(m),
    })
}

/// Whether the pairs' error histograms are counted: only the reports that carry the pairs'
/// metrics whole show them (the JSON report and part files, which a merge turns into one);
/// the table, the CSVs, JUnit, Markdown and history do not. Without them the kernel does a
/// third less work.
pub fn histograms(json: Option<&std::path::Path>, parts: &PartArgs) -> Histograms {
    if json.is_some() || parts.part.is_some() {
        Histograms::Count
    } else {
        Histograms::Skip
    }
}

/// `--ranks` and `--shard` (its index from the scheduler's variables when not given).
pub fn rank_selection(a: &PartArgs) -> anyhow::Result<RankSelection> {
    Ok(RankSelection {
        ranks: a.ranks.as_ref().map(|r| r.0.clone()),
        shard: a
            .shard
            .map(|s| s.resolve(|k| std::env::var(k).ok()))
            .transpose()?,
        world_size: a.world_size,
    })
}

/// `--ranks`, `--shard`, `--part` or `--world-size` given: they apply to multi-rank runs only.
pub fn wants_ranks(a: &PartArgs) -> bool {
    a.ranks.is_some() || a.shard.is_some() || a.part.is_some() || a.world_size.is_some()
}

fn open(a: &ReadArgs) -> OpenOptions {
    OpenOptions {
        format: a.format,
        npy_dtype: a.npy_dtype,
        allow_symlinks: a.allow_symlinks,
        layout: None,
    }
}

fn compare(a: &ReadArgs) -> anyhow::Result<CompareOptions> {
    Ok(CompareOptions {
        filter: a
            .filter
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .context("--filter is not a valid regular expression")?,
        noise: NoiseOptions {
            fp32_matmul: a.fp32_matmul,
            ..NoiseOptions::default()
        },
        calibration: None,
        histograms: Histograms::Count,
    })
}

fn mapping(a: &MappingArgs) -> MappingFiles {
    MappingFiles {
        data_mapping: a.data_mapping.clone(),
        layer_mapping: a.layer_mapping.clone(),
        fuzzy: a.fuzzy,
        fusion_map: a.fusion_map.clone(),
    }
}
