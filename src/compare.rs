//! Comparing two dumps: align, load each pair (memory-mapped), measure it in one pass, in
//! parallel across pairs. The result is the data every report, plot and check is made from.

use crate::align::structure::ChangeKind;
use crate::align::{self, padding, shapes_compatible, MatchKind};
use crate::dump::{DType, Dump, Entry, Format, RecordedStats, Role, Source, Task};
use crate::metrics::{self, Metrics};
use crate::verdict::{Analysis, Verdict};
use rayon::prelude::*;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the JSON report schema (docs/report-schema.md).
pub const SCHEMA_VERSION: u32 = 1;

/// What could be compared for a pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Both tensors read and measured.
    Compared,
    /// Only recorded statistics compared (statistics task).
    Statistics,
    /// Only recorded checksums compared (md5 task).
    Checksum,
    /// Shapes differ beyond size-1 dimensions: not compared.
    ShapeMismatch,
    /// A tensor could not be read; `error` says why.
    Error,
}

/// Differences of recorded statistics (statistics task; also a free lower bound elsewhere).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsDiff {
    /// |max_dev - max_ref|.
    pub max_diff: Option<f64>,
    /// |min_dev - min_ref|.
    pub min_diff: Option<f64>,
    /// |mean_dev - mean_ref|.
    pub mean_diff: Option<f64>,
    /// |norm_dev - norm_ref| / norm_ref: a lower bound of the relative L2 error.
    pub norm_rel_diff: Option<f64>,
}

impl StatsDiff {
    /// The larger of |Δmax| and |Δmin|: a lower bound of the largest absolute error, the
    /// "max abs" of a statistics comparison.
    pub fn max_abs(&self) -> Option<f64> {
        match (self.max_diff, self.min_diff) {
            (Some(a), Some(b)) => Some(if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }),
            (a, b) => a.or(b),
        }
    }

    /// Differences of two recorded statistics.
    pub fn new(r: &RecordedStats, d: &RecordedStats) -> StatsDiff {
        let diff = |a: Option<f64>, b: Option<f64>| Some((b? - a?).abs());
        StatsDiff {
            max_diff: diff(r.max, d.max),
            min_diff: diff(r.min, d.min),
            mean_diff: diff(r.mean, d.mean),
            norm_rel_diff: match (r.norm, d.norm) {
                (Some(a), Some(b)) if a > 0.0 => Some((b - a).abs() / a),
                (Some(a), Some(b)) if a == 0.0 && b == 0.0 => Some(0.0),
                _ => None,
            },
        }
    }
}

/// One row of a comparison: a reference tensor and its candidate counterpart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairReport {
    /// Tensor name (`Functional.silu.1.forward.output.0`, or a module path).
    pub name: String,
    /// The candidate's own name for it, when it differs (normalised, mapped or fuzzy matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_dev: Option<String>,
    /// The call or module (`Functional.silu.1.forward`).
    pub place: String,
    /// What the tensor is to its place.
    pub role: Role,
    /// Index within the role.
    pub index: String,
    /// Execution order of the place in the reference.
    pub order: usize,
    /// Operator or module class.
    pub op_type: Option<String>,
    /// Reference dtype.
    pub dtype_ref: Option<DType>,
    /// Candidate dtype.
    pub dtype_dev: Option<DType>,
    /// Reference shape.
    pub shape_ref: Option<Vec<usize>>,
    /// Candidate shape.
    pub shape_dev: Option<Vec<usize>>,
    /// What was compared.
    pub status: Status,
    /// How the names were matched.
    pub matched_by: MatchKind,
    /// Tensor metrics (status `compared`).
    #[serde(flatten)]
    pub metrics: Option<Metrics>,
    /// Recorded-statistics differences (when both sides recorded statistics).
    pub stats_diff: Option<StatsDiff>,
    /// Statistics the reference dump recorded for this tensor (msprobe's `Max`, `Min`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_ref: Option<RecordedStats>,
    /// Statistics the candidate dump recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_dev: Option<RecordedStats>,
    /// Checksums equal (md5 task).
    pub checksum_equal: Option<bool>,
    /// When one shape contains the other: the metrics are the common region's, and this
    /// describes the padding (docs/alignment.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<crate::align::padding::Padding>,
    /// Why the pair could not be compared.
    pub error: Option<String>,
    /// Noise-aware verdict (see `verdict`).
    pub verdict: Option<Verdict>,
    /// Expected relative L2 error from rounding alone, for this pair's dtypes and op.
    pub expected_err: Option<f64>,
    /// Largest error among the place's inputs (or of the previous place): what it inherited.
    pub inherited_err: Option<f64>,
}

impl PairReport {
    /// A pair named `name` of `place` in `role`, compared exactly by name, with nothing
    /// measured yet.
    pub fn empty(name: &str, place: &str, role: Role) -> PairReport {
        PairReport {
            name: name.to_string(),
            name_dev: None,
            place: place.to_string(),
            role,
            index: "0".into(),
            order: 0,
            op_type: None,
            dtype_ref: None,
            dtype_dev: None,
            shape_ref: None,
            shape_dev: None,
            status: Status::Compared,
            matched_by: MatchKind::Exact,
            metrics: None,
            stats_diff: None,
            recorded_ref: None,
            recorded_dev: None,
            checksum_equal: None,
            padding: None,
            error: None,
            verdict: None,
            expected_err: None,
            inherited_err: None,
        }
    }
}

/// What is known about one side.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DumpSummary {
    /// Path the user gave.
    pub path: PathBuf,
    /// Layout.
    pub format: Format,
    /// What was recorded.
    pub task: Task,
    /// msprobe or native level.
    pub level: Option<String>,
    /// Tensors listed.
    pub entries: usize,
    /// Places (calls or modules) listed.
    pub places: usize,
}

impl DumpSummary {
    /// Summary of an opened dump.
    pub fn of(d: &Dump) -> Self {
        DumpSummary {
            path: d.path.clone(),
            format: d.format,
            task: d.task,
            level: d.level.clone(),
            entries: d.entries.len(),
            places: d.place_count(),
        }
    }
}

/// A whole comparison, serialised as the JSON report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// JSON schema version.
    pub schema_version: u32,
    /// driftscope version that made it.
    pub tool_version: String,
    /// The reference side.
    pub reference: DumpSummary,
    /// The candidate (device) side.
    pub candidate: DumpSummary,
    /// What was compared: tensors, statistics only, or checksums only.
    pub mode: Task,
    /// Pairs in execution order.
    pub pairs: Vec<PairReport>,
    /// Reference tensor names with no candidate counterpart.
    pub unmatched_reference: Vec<String>,
    /// Candidate tensor names with no reference counterpart.
    pub unmatched_candidate: Vec<String>,
    /// Extra and missing calls found by aligning the call streams (docs/alignment.md).
    #[serde(default)]
    pub structure: crate::align::structure::Structure,
    /// Noise-aware analysis: first divergence, ranking, overall verdict.
    pub analysis: Analysis,
    /// Reference tensors covered by fused device ops (`--fusion-map`): not unmatched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fused_reference: Vec<String>,
}

impl Comparison {
    /// Records which pairs `--data-mapping`, `--layer-mapping` or `--fuzzy` made (they were
    /// paired under the reference's name after [`crate::align::remap`] renamed the candidate's
    /// entries): their `matched_by` and the candidate's original name.
    pub fn mark_remapped(&mut self, m: &crate::align::Remap) {
        let by_ref: std::collections::HashMap<&str, (&str, MatchKind)> = m
            .mapped
            .iter()
            .map(|(d, r)| (r.as_str(), (d.as_str(), MatchKind::Mapped)))
            .chain(
                m.fuzzy
                    .iter()
                    .map(|(d, r)| (r.as_str(), (d.as_str(), MatchKind::Fuzzy))),
            )
            .collect();
        for p in &mut self.pairs {
            if let Some(&(dev, kind)) = by_ref.get(p.name.as_str()) {
                p.matched_by = kind;
                p.name_dev = Some(dev.to_string());
            }
        }
        // Device tensors `--layer-mapping` left unpaired get their own names back.
        let own: std::collections::HashMap<&str, &str> = m
            .unpaired
            .iter()
            .map(|(now, own)| (now.as_str(), own.as_str()))
            .collect();
        for n in &mut self.unmatched_candidate {
            if let Some(o) = own.get(n.as_str()) {
                *n = o.to_string();
            }
        }
        // Calls whose tensors the mappings paired or fused are not extra or missing.
        let within = |name: &str, place: &str| {
            name.len() > place.len()
                && name.starts_with(place)
                && name[place.len()..].starts_with('.')
        };
        let (pairs, fused) = (&self.pairs, &m.fused);
        self.structure.drop_covered(|kind, place| match kind {
            ChangeKind::Missing => {
                pairs.iter().any(|p| p.place == place) || fused.iter().any(|f| within(f, place))
            }
            ChangeKind::Extra => pairs
                .iter()
                .any(|p| within(p.name_dev.as_deref().unwrap_or(&p.name), place)),
        });
        // Reference tensors a fused device op covers are fused, not unmatched.
        if !m.fused.is_empty() {
            let f: std::collections::HashSet<&str> = m.fused.iter().map(String::as_str).collect();
            self.unmatched_reference.retain(|n| !f.contains(n.as_str()));
            self.fused_reference = m.fused.clone();
        }
    }
}

/// Options of a comparison.
#[derive(Clone, Debug, Default)]
pub struct CompareOptions {
    /// Only pairs whose name matches.
    pub filter: Option<Regex>,
    /// Noise-model options.
    pub noise: crate::verdict::NoiseOptions,
    /// Observed clean errors of a calibration run (`--noise`).
    pub calibration: Option<std::sync::Arc<crate::verdict::calibrate::Calibration>>,
}

/// Measures one pair of entries (loading both tensors).
pub fn measure_pair(r: &Dump, re: &Entry, d: &Dump, de: &Entry, kind: MatchKind) -> PairReport {
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
        ..PairReport::empty(&re.name, &re.place, re.role)
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
            p.shape_ref = Some(a.shape.clone());
            p.shape_dev = Some(b.shape.clone());
            if shapes_compatible(&a.shape, &b.shape) {
                let mut m = metrics::measure(&a, &b);
                if m.ref_zero_mismatch > 0 {
                    m.max_abs_at_ref_zero = Some(metrics::max_abs_at_ref_zero(&a, &b));
                }
                p.metrics = Some(m);
            } else if let Some((m, pad)) = padding::measure(&a, &b) {
                p.metrics = Some(m);
                p.padding = Some(pad);
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
            );
            progress();
            r
        })
        .collect();
    let unmatched_reference = al
        .unmatched_reference
        .iter()
        .map(|&i| reference.entries[i].name.clone())
        .filter(|n| keep(n))
        .collect();
    let unmatched_candidate = al
        .unmatched_candidate
        .iter()
        .map(|&i| candidate.entries[i].name.clone())
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
    };
    crate::verdict::judge(
        &mut c,
        &options.noise,
        options.calibration.clone(),
        reference.stacks.clone(),
    );
    c
}
