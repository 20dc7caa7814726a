//! Comparing two dumps: align, load each pair (memory-mapped), measure it in one pass, in
//! parallel across pairs. The result is the data every report, plot and check is made from.

use crate::align::{self, padding, shapes_compatible, MatchKind};
use crate::comparison::Analysis;
use crate::dump::{Dump, Entry, RecordedStats, Source, Task};
use crate::metrics::{self, Histograms};
use rayon::prelude::*;
use regex::Regex;

pub use crate::comparison::{
    Comparison, DumpSummary, PairReport, StatsDiff, Status, SCHEMA_VERSION,
};

/// Options of a comparison.
#[derive(Clone, Debug, Default)]
pub struct CompareOptions {
    /// Only pairs whose name matches.
    pub filter: Option<Regex>,
    /// Noise-model options.
    pub noise: crate::verdict::NoiseOptions,
    /// Observed clean errors of a calibration run (`--noise`).
    pub calibration: Option<std::sync::Arc<crate::verdict::calibrate::Calibration>>,
    /// Whether the pairs' metrics carry their error histograms (a report that plots them
    /// needs them; verdicts do not).
    pub histograms: Histograms,
}

/// Measures one pair of entries (loading both tensors).
pub fn measure_pair(
    r: &Dump,
    re: &Entry,
    d: &Dump,
    de: &Entry,
    kind: MatchKind,
    histograms: Histograms,
) -> PairReport {
    let mut p = PairReport {
        name_dev: (de.name != re.name).then(|| de.name.clone()),
        index: re.index.clone(),
        order: re.order,
        op_type: re.op_type.clone().or_else(|| de.op_type.clone()),
        dtype_ref: re.dtype,
        dtype_dev: de.dtype,
        shape_ref: re.shape.clone(),
        shape_dev: de.shape.clone(),
        matched_by: kind,
        stats_diff: match (&re.stats, &de.stats) {
            (Some(a), Some(b)) => Some(StatsDiff::new(a, b)),
            _ => None,
        },
        recorded_ref: re.stats.filter(RecordedStats::any),
        recorded_dev: de.stats.filter(RecordedStats::any),
        ..PairReport::empty(re.name.clone(), re.place.clone(), re.role)
    };
    if let (Some(a), Some(b)) = (&re.shape, &de.shape) {
        if !shapes_compatible(a, b) && !padding::fits(a, b) {
            p.status = Status::ShapeMismatch;
            return p;
        }
    }
    let absent = |e: &Entry| matches!(e.source, Source::Absent(_));
    if absent(re) || absent(de) {
        // A padded pair needs its tensors: recorded statistics cover the padding too.
        if let (Some(a), Some(b)) = (&re.shape, &de.shape) {
            if !shapes_compatible(a, b) {
                p.status = Status::ShapeMismatch;
                return p;
            }
        }
        if let (Some(a), Some(b)) = (&re.checksum, &de.checksum) {
            p.status = Status::Checksum;
            p.checksum_equal = Some(a.eq_ignore_ascii_case(b));
        } else if p.stats_diff.is_some() {
            p.status = Status::Statistics;
        } else {
            p.status = Status::Error;
            p.error = Some(match (&re.source, &de.source) {
                (Source::Absent(w), _) => format!("reference tensor not saved: {w}"),
                (_, Source::Absent(w)) => format!("candidate tensor not saved: {w}"),
                _ => unreachable!(),
            });
        }
        return p;
    }
    // The reference's shape is the logical shape of a candidate `.npy` in an NPU layout.
    let loaded = r
        .load(re)
        .and_then(|a| d.load_as(de, Some(&a.shape)).map(|b| (a, b)));
    match loaded {
        Err(e) => {
            p.status = Status::Error;
            p.error = Some(e.to_string());
        }
        Ok((a, b)) => {
            p.dtype_ref = Some(a.dtype);
            p.dtype_dev = Some(b.dtype);
            p.shape_ref = Some(a.shape.as_slice().into());
            p.shape_dev = Some(b.shape.as_slice().into());
            if shapes_compatible(&a.shape, &b.shape) {
                let mut m = metrics::measure_with(&a, &b, histograms);
                if m.ref_zero_mismatch > 0 {
                    m.max_abs_at_ref_zero = Some(metrics::max_abs_at_ref_zero(&a, &b));
                }
                p.metrics = Some(Box::new(m));
            } else if let Some((m, pad)) = padding::measure(&a, &b, histograms) {
                p.metrics = Some(Box::new(m));
                p.padding = Some(Box::new(pad));
            } else {
                p.status = Status::ShapeMismatch;
            }
        }
    }
    p
}

/// What a comparison of two dumps can compare: tensors only when both hold them.
pub fn mode_of(reference: &Dump, candidate: &Dump) -> Task {
    match (reference.task, candidate.task) {
        (Task::Tensor, Task::Tensor) => Task::Tensor,
        (Task::Md5, _) | (_, Task::Md5) => Task::Md5,
        _ => Task::Statistics,
    }
}

/// Compares two dumps: every pair is read and measured, then judged by the noise model.
/// `progress` is called once per finished pair.
pub fn compare(
    reference: &Dump,
    candidate: &Dump,
    options: &CompareOptions,
    progress: &(dyn Fn() + Sync),
) -> Comparison {
    let mut al = align::align(reference, candidate);
    let keep = |name: &str| options.filter.as_ref().is_none_or(|f| f.is_match(name));
    // Filter first, then map an indexed list: rayon writes the rows straight into the result
    // instead of collecting per-thread pieces into a list and concatenating them (which held
    // every row twice and copied it once).
    let kept: Vec<_> = al
        .pairs
        .iter()
        .filter(|p| keep(&reference.entries[p.reference].name))
        .collect();
    let pairs: Vec<PairReport> = kept
        .par_iter()
        .map(|p| {
            let r = measure_pair(
                reference,
                &reference.entries[p.reference],
                candidate,
                &candidate.entries[p.candidate],
                p.kind,
                options.histograms,
            );
            progress();
            r
        })
        .collect();
    // The alignment's pair list is done with: judging is the peak of a large run's memory.
    drop(kept);
    al.pairs = Vec::new();
    let unmatched_reference = al
        .unmatched_reference
        .iter()
        .map(|&i| reference.entries[i].name.to_string())
        .filter(|n| keep(n))
        .collect();
    let unmatched_candidate = al
        .unmatched_candidate
        .iter()
        .map(|&i| candidate.entries[i].name.to_string())
        .filter(|n| keep(n))
        .collect();
    let mode = mode_of(reference, candidate);
    let mut c = Comparison {
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        reference: DumpSummary::of(reference),
        candidate: DumpSummary::of(candidate),
        mode,
        pairs,
        unmatched_reference,
        unmatched_candidate,
        structure: std::mem::take(&mut al.structure),
        analysis: Analysis::default(),
        fused_reference: Vec::new(),
        replay: None,
    };
    crate::verdict::judge(
        &mut c,
        &options.noise,
        options.calibration.clone(),
        reference.stacks.clone(),
    );
    c
}
