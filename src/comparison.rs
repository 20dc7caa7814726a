//! The plain data of a comparison: pairs and their measurements, the dumps' summaries, and
//! the analysis the verdicts write. `compare` fills the pairs, `verdict` judges them into the
//! [`Analysis`], `bisect` reuses both; reports, plots and the nightly job read them. This
//! module depends on nothing above the readers, aligner and metrics, so none of those rooms
//! depends on another through it. Serialised, a [`Comparison`] is the JSON report
//! (docs/report-schema.md).

use crate::align::structure::ChangeKind;
use crate::align::MatchKind;
use crate::dump::{DType, Dump, Format, OptionalQuad, RecordedStats, Role, Task};
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
/// JSON: `{"max_diff", "min_diff", "mean_diff", "norm_rel_diff"}`, null when absent.
#[derive(Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(from = "DiffFields", into = "DiffFields")]
pub struct StatsDiff(OptionalQuad);

/// The JSON form of [`StatsDiff`].
#[derive(Clone, Copy, Serialize, Deserialize)]
struct DiffFields {
    max_diff: Option<f64>,
    min_diff: Option<f64>,
    mean_diff: Option<f64>,
    norm_rel_diff: Option<f64>,
}

impl From<DiffFields> for StatsDiff {
    fn from(d: DiffFields) -> Self {
        StatsDiff(OptionalQuad::new([
            d.max_diff,
            d.min_diff,
            d.mean_diff,
            d.norm_rel_diff,
        ]))
    }
}

impl From<StatsDiff> for DiffFields {
    fn from(d: StatsDiff) -> Self {
        DiffFields {
            max_diff: d.max_diff(),
            min_diff: d.min_diff(),
            mean_diff: d.mean_diff(),
            norm_rel_diff: d.norm_rel_diff(),
        }
    }
}

impl std::fmt::Debug for StatsDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsDiff")
            .field("max_diff", &self.max_diff())
            .field("min_diff", &self.min_diff())
            .field("mean_diff", &self.mean_diff())
            .field("norm_rel_diff", &self.norm_rel_diff())
            .finish()
    }
}

impl StatsDiff {
    /// |max_dev - max_ref|.
    pub fn max_diff(&self) -> Option<f64> {
        self.0.get(0)
    }

    /// |min_dev - min_ref|.
    pub fn min_diff(&self) -> Option<f64> {
        self.0.get(1)
    }

    /// |mean_dev - mean_ref|.
    pub fn mean_diff(&self) -> Option<f64> {
        self.0.get(2)
    }

    /// |norm_dev - norm_ref| / norm_ref: a lower bound of the relative L2 error.
    pub fn norm_rel_diff(&self) -> Option<f64> {
        self.0.get(3)
    }

    /// The larger of |Δmax| and |Δmin|: a lower bound of the largest absolute error, the
    /// "max abs" of a statistics comparison.
    pub fn max_abs(&self) -> Option<f64> {
        match (self.max_diff(), self.min_diff()) {
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
        StatsDiff(OptionalQuad::new([
            diff(r.max(), d.max()),
            diff(r.min(), d.min()),
            diff(r.mean(), d.mean()),
            match (r.norm(), d.norm()) {
                (Some(a), Some(b)) if a > 0.0 => Some((b - a).abs() / a),
                (Some(a), Some(b)) if a == 0.0 && b == 0.0 => Some(0.0),
                _ => None,
            },
        ]))
    }
}

/// One row of a comparison: a reference tensor and its candidate counterpart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairReport {
    /// Tensor name (`Functional.silu.1.forward.output.0`, or a module path).
    pub name: Arc<str>,
    /// The candidate's own name for it, when it differs (normalised, mapped or fuzzy matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_dev: Option<Arc<str>>,
    /// The call or module (`Functional.silu.1.forward`).
    pub place: Arc<str>,
    /// What the tensor is to its place.
    pub role: Role,
    /// Index within the role.
    pub index: Arc<str>,
    /// Execution order of the place in the reference.
    pub order: usize,
    /// Operator or module class.
    pub op_type: Option<Arc<str>>,
    /// Reference dtype.
    pub dtype_ref: Option<DType>,
    /// Candidate dtype.
    pub dtype_dev: Option<DType>,
    /// Reference shape.
    pub shape_ref: Option<Arc<[usize]>>,
    /// Candidate shape.
    pub shape_dev: Option<Arc<[usize]>>,
    /// What was compared.
    pub status: Status,
    /// How the names were matched.
    pub matched_by: MatchKind,
    /// Tensor metrics (status `compared`).
    #[serde(flatten)]
    pub metrics: Option<Box<Metrics>>,
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
    pub padding: Option<Box<crate::align::padding::Padding>>,
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
    pub fn empty(name: impl Into<Arc<str>>, place: impl Into<Arc<str>>, role: Role) -> PairReport {
        PairReport {
            name: name.into(),
            name_dev: None,
            place: place.into(),
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
    /// `bisect --replay`: suspects recomputed in float64 from each side's own inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<crate::replay::ReplayReport>,
}

impl Comparison {
    /// Why this comparison must not be read as a result, if it must not: pairs that could not
    /// be read, shapes that do not fit, or nothing paired at all. Commands exit 2 on it.
    pub fn input_problem(&self) -> Option<String> {
        let errs: Vec<_> = self
            .pairs
            .iter()
            .filter(|p| p.status == Status::Error)
            .collect();
        let shapes: Vec<_> = self
            .pairs
            .iter()
            .filter(|p| p.status == Status::ShapeMismatch)
            .collect();
        if let Some(p) = errs.first() {
            Some(format!(
                "{} pair(s) could not be read; first: {}",
                errs.len(),
                p.error.as_deref().unwrap_or("")
            ))
        } else if let Some(p) = shapes.first() {
            Some(format!(
                "{} pair(s) have shapes that do not fit; first: {} ({:?} vs {:?})",
                shapes.len(),
                p.name,
                p.shape_ref.as_deref().unwrap_or_default(),
                p.shape_dev.as_deref().unwrap_or_default()
            ))
        } else if self.pairs.is_empty() {
            Some(format!(
                "nothing could be compared: no tensor of {} pairs with one of {}",
                self.reference.path.display(),
                self.candidate.path.display()
            ))
        } else {
            None
        }
    }

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
            if let Some(&(dev, kind)) = by_ref.get(&*p.name) {
                p.matched_by = kind;
                p.name_dev = Some(dev.into());
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
                pairs.iter().any(|p| &*p.place == place) || fused.iter().any(|f| within(f, place))
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

/// Verdict of one pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Bit-identical (or checksums equal).
    Identical,
    /// Error within what rounding and the inherited error explain.
    Ok,
    /// Error beyond rounding noise, inherited from an earlier divergence.
    Drift,
    /// The checksum differs (md5 task: nothing more can be said).
    Changed,
    /// Error introduced here beyond noise, or NaN/Inf on one side only.
    Diverged,
}

impl Verdict {
    /// Lower-case name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Identical => "identical",
            Verdict::Ok => "ok",
            Verdict::Drift => "drift",
            Verdict::Changed => "changed",
            Verdict::Diverged => "diverged",
        }
    }
}

/// Verdict of a whole run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every compared pair is bit-identical.
    Identical,
    /// No place introduces error beyond the expected noise.
    #[default]
    WithinNoise,
    /// Some place introduces error beyond noise (`first_divergence`).
    Diverged,
    /// Checksums differ (md5 task).
    Changed,
    /// Nothing could be compared.
    Empty,
}

impl Overall {
    /// Name as the JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Overall::Identical => "identical",
            Overall::WithinNoise => "within_noise",
            Overall::Diverged => "diverged",
            Overall::Changed => "changed",
            Overall::Empty => "empty",
        }
    }
}

/// What kind of departure a divergence is: where its error comes from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// This place adds error beyond its rounding and beyond the amplified inherited error.
    Introduced,
    /// Magnitudes below the candidate dtype's normal range: flushed to zero or imprecise.
    Underflow,
    /// ±inf on the candidate where the reference is finite.
    Overflow,
    /// Clamped at the candidate dtype's largest value.
    Saturation,
    /// NaN, Inf or fill values on one side only.
    NonFinite,
    /// Uncorrelated values at a similar norm: a layout or pairing mistake.
    Scrambled,
    /// All zeros, constant, or uncorrelated on one side only.
    SignalLost,
    /// The run's own inputs differ: the runs are not comparable.
    InputsDiffer,
    /// A place's parameters (weights, biases) differ.
    WeightsDiffer,
    /// Error enters through an input that no earlier place explains.
    UnexplainedInput,
    /// Integer or bool outputs differ although the inputs are identical.
    IntegerMismatch,
    /// The op's own error (float64 recomputation from its recorded inputs) is beyond what
    /// correct rounding gives.
    OwnError,
    /// Baseline mode: the same inputs as the baseline run, a different output: the op changed.
    OpChanged,
    /// The runs' call streams differ: the device ran extra calls or skipped some (dynamic
    /// control flow, a compiled region), and no number departs before that.
    ControlFlow,
    /// A place reads the padding of a padded input (a bucketed or fixed-shape device run)
    /// whose common region agrees with the reference, and its result departs: the padding
    /// leaks into it.
    PaddingLeak,
}

impl DivergenceKind {
    /// Name as written in reports.
    pub fn name(self) -> &'static str {
        match self {
            DivergenceKind::Introduced => "introduced",
            DivergenceKind::Underflow => "underflow",
            DivergenceKind::Overflow => "overflow",
            DivergenceKind::Saturation => "saturation",
            DivergenceKind::NonFinite => "non_finite",
            DivergenceKind::Scrambled => "scrambled",
            DivergenceKind::SignalLost => "signal_lost",
            DivergenceKind::InputsDiffer => "inputs_differ",
            DivergenceKind::WeightsDiffer => "weights_differ",
            DivergenceKind::UnexplainedInput => "unexplained_input",
            DivergenceKind::IntegerMismatch => "integer_mismatch",
            DivergenceKind::OwnError => "own_error",
            DivergenceKind::OpChanged => "op_changed",
            DivergenceKind::ControlFlow => "control_flow",
            DivergenceKind::PaddingLeak => "padding_leak",
        }
    }

    /// True for the kinds of lost signal (underflow, overflow, saturation, non-finite values,
    /// scrambled, signal lost).
    pub fn is_loss(self) -> bool {
        matches!(
            self,
            DivergenceKind::Underflow
                | DivergenceKind::Overflow
                | DivergenceKind::Saturation
                | DivergenceKind::NonFinite
                | DivergenceKind::Scrambled
                | DivergenceKind::SignalLost
        )
    }

    /// What a user can do about it, when there is something specific to say.
    pub fn advice(self) -> Option<&'static str> {
        match self {
            DivergenceKind::Underflow => Some(
                "keep this block in float32 or bfloat16 (bfloat16 has float32's range), or scale \
                 its activations up (loss scaling, a larger init)",
            ),
            DivergenceKind::Overflow | DivergenceKind::Saturation => Some(
                "keep this op in float32 or bfloat16, or rescale its inputs (subtract the max \
                 before exp, scale attention scores)",
            ),
            DivergenceKind::NonFinite => {
                Some("look for an overflow or a 0/0 in this op (run it in float32 to check)")
            }
            DivergenceKind::Scrambled => Some(
                "check the tensor's layout (--layout, e.g. NC1HWC0 or FRACTAL_NZ) and the pairing \
                 (a mapping file, --fuzzy)",
            ),
            DivergenceKind::SignalLost => {
                Some("run this op in float32 to see whether precision or the op itself is at fault")
            }
            DivergenceKind::InputsDiffer => {
                Some("compare runs fed the same inputs (same data, seed and preprocessing)")
            }
            DivergenceKind::WeightsDiffer => {
                Some("load the same checkpoint on both sides; check dtype casts of the weights")
            }
            DivergenceKind::ControlFlow => Some(
                "check the branch or loop that decides these calls (inputs, shapes, flags), or \
                 give the fusion map that `structure.fusion_proposal` proposes",
            ),
            DivergenceKind::PaddingLeak => Some(
                "mask the padding where this op reads it (an attention mask over padded keys, a \
                 length-aware mean or norm), or fill it with the op's neutral value (-inf before \
                 a softmax, 0 before a sum)",
            ),
            DivergenceKind::OwnError => Some(
                "run this op in float32 on the device, or check its kernel's accumulation dtype \
                 and algorithm (`driftscope replay DEV --at PLACE` shows the numbers)",
            ),
            _ => None,
        }
    }
}

/// The first place where the candidate departs from the reference.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    /// What kind of departure it is.
    pub kind: DivergenceKind,
    /// The place: msprobe entry (`Functional.silu.1.forward`) or module path.
    pub name: String,
    /// The tensor judged divergent (`Functional.silu.1.forward.output.0`).
    pub tensor: String,
    /// Its role (`output`, or an input role for an input no earlier place explains).
    pub role: Role,
    /// Operator or module class.
    pub op_type: Option<String>,
    /// Position of the place in execution order.
    pub order: usize,
    /// First stack line, when the dump has stack.json.
    pub stack: Option<String>,
    /// Why it is judged divergent.
    pub reason: String,
    /// What to do about it, when there is something specific to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// Its relative L2 error (or NaN/Inf mismatch count in `reason`).
    pub rel_l2_err: f64,
    /// Error rounding alone may add here (unit roundoff of its precision).
    pub expected_err: f64,
    /// Largest error among its inputs, or of the preceding places.
    pub inherited_err: f64,
    /// Robust z-score of its log error ratio (error / max(inherited, rounding)) among all
    /// places judged.
    pub z_score: Option<f64>,
    /// One-sided p-value of that z-score under a normal model of the other places' ratios.
    pub p_value: Option<f64>,
}

/// A place ranked by how much error it adds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Ranked {
    /// Place name.
    pub name: Arc<str>,
    /// Tensor with the largest error at the place.
    pub tensor: Arc<str>,
    /// Its relative L2 error.
    pub rel_l2_err: f64,
    /// Error it inherited.
    pub inherited_err: f64,
    /// Error rounding may add there.
    pub expected_err: f64,
    /// rel_l2_err / max(inherited_err, expected_err): how much it multiplies the error.
    pub added: f64,
    /// Verdict of the place.
    pub verdict: Verdict,
}

/// How a comparison's places were judged (JSON: the quoted names).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Every place, in execution order.
    #[default]
    #[serde(rename = "exhaustive")]
    Exhaustive,
    /// A binary search over the places, reading few tensors.
    #[serde(rename = "bisect")]
    Bisect,
    /// A binary search, then every place before its answer: the search saw the run's error
    /// rise without finding where (docs/divergence.md).
    #[serde(rename = "bisect, then scan")]
    BisectThenScan,
    /// The device run against a known-good device run.
    #[serde(rename = "baseline")]
    Baseline,
}

impl Method {
    /// The name the report and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Exhaustive => "exhaustive",
            Method::Bisect => "bisect",
            Method::BisectThenScan => "bisect, then scan",
            Method::Baseline => "baseline",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Result of judging a comparison.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct Analysis {
    /// Run verdict.
    pub overall: Overall,
    /// One sentence for humans.
    pub summary: String,
    /// First divergent place, `null` when none.
    pub first_divergence: Option<Divergence>,
    /// Places ranked by the error they add (largest first, at most 10).
    pub ranked: Vec<Ranked>,
    /// Coarsest precision seen (`fp16/tf32`, `bf16`, ...), for "within the noise of ...".
    pub precision: Option<String>,
    /// Tensor pairs read to reach the verdict.
    pub tensors_read: usize,
    /// Tensor pairs available.
    pub tensors_total: usize,
    /// Pairs per verdict, in verdict order (a stable JSON key order).
    pub counts: BTreeMap<Verdict, usize>,
    /// Pairs that could not be compared (unreadable, shape mismatch).
    pub errors: usize,
    /// How the places were judged.
    pub method: Method,
    /// What the `--noise` calibration run showed, when one was given.
    pub calibration: Option<CalibrationSummary>,
    /// Calls recomputed in float64 to judge their own error (msprobe API-level dumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<usize>,
}

impl Analysis {
    /// Makes `f` the first divergence: the run diverged there.
    pub fn set_first_divergence(&mut self, f: Divergence) {
        self.overall = Overall::Diverged;
        self.summary = diverged_summary(&f);
        self.first_divergence = Some(f);
    }
}

/// The one-line summary of a run that diverged at `f`.
pub(crate) fn diverged_summary(f: &Divergence) -> String {
    format!(
        "diverged ({}): first at {} ({}): {}",
        f.kind.name(),
        f.name,
        f.tensor,
        f.reason
    )
}

/// What the calibration run showed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CalibrationSummary {
    /// The calibration run.
    pub path: PathBuf,
    /// Tensors with a calibrated error.
    pub tensors: usize,
    /// Smallest allowance / error over the outputs judged within noise: how far the closest
    /// place is from being flagged (> 1: clean by that factor).
    pub margin: Option<f64>,
    /// The place with that smallest margin.
    pub closest: Option<String>,
}
