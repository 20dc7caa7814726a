//! Verdicts that know about precision, and the first place where a run really departs.
//!
//! A place (an API call or a module) *introduces* error when the error of its outputs exceeds
//! both what rounding in its precision can add and what it inherited, amplified by a bounded
//! factor. The method and its limits are written up in docs/divergence.md.

pub mod baseline;
pub mod bisect;
pub mod calibrate;
pub mod judge;
pub mod noise;
pub mod signal;

use crate::compare::{Comparison, PairReport, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

pub use judge::{Finding, Judge, PlaceJudgement};
pub use noise::{Fp32Matmul, NoiseOptions};

/// Smallest relative norm difference a statistics-only comparison trusts: msprobe records
/// `Norm` as a float32 computed over the whole tensor, off by ~sqrt(n) * 2^-24 by itself.
pub const STATS_FLOOR: f64 = 1e-5;

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
        use signal::Loss;
        match self {
            DivergenceKind::Underflow => Some(signal::advice(Loss::Underflow)),
            DivergenceKind::Overflow => Some(signal::advice(Loss::Overflow)),
            DivergenceKind::Saturation => Some(signal::advice(Loss::Saturation)),
            DivergenceKind::NonFinite => Some(signal::advice(Loss::NonFinite)),
            DivergenceKind::Scrambled => Some(signal::advice(Loss::Scrambled)),
            DivergenceKind::SignalLost => Some(signal::advice(Loss::Lost)),
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

impl From<signal::Loss> for DivergenceKind {
    fn from(l: signal::Loss) -> Self {
        match l {
            signal::Loss::Underflow => DivergenceKind::Underflow,
            signal::Loss::Overflow => DivergenceKind::Overflow,
            signal::Loss::Saturation => DivergenceKind::Saturation,
            signal::Loss::NonFinite => DivergenceKind::NonFinite,
            signal::Loss::Scrambled => DivergenceKind::Scrambled,
            signal::Loss::Lost => DivergenceKind::SignalLost,
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
    pub role: crate::dump::Role,
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
    pub name: String,
    /// Tensor with the largest error at the place.
    pub tensor: String,
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
    /// Method used (`exhaustive`, `bisect`, `baseline`).
    pub method: String,
    /// What the `--noise` calibration run showed, when one was given.
    pub calibration: Option<calibrate::CalibrationSummary>,
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

fn diverged_summary(f: &Divergence) -> String {
    format!(
        "diverged ({}): first at {} ({}): {}",
        f.kind.name(),
        f.name,
        f.tensor,
        f.reason
    )
}

/// Error measure of a pair: relative L2 error, or the lower bound from recorded norms.
pub fn pair_err(p: &PairReport) -> Option<f64> {
    match p.status {
        Status::Compared => p.metrics.as_ref().map(|m| m.rel_l2_err),
        // A NaN difference of recorded norms (both infinite: a mask with -inf) says nothing.
        Status::Statistics => p
            .stats_diff
            .and_then(|s| s.norm_rel_diff)
            .filter(|e| !e.is_nan()),
        _ => None,
    }
}

/// RMS of the reference's compared elements, when any were compared.
pub fn ref_rms(p: &PairReport) -> Option<f64> {
    let m = p.metrics.as_ref().filter(|m| m.compared > 0)?;
    Some(m.ref_stats.norm / (m.compared as f64).sqrt())
}

/// Unit roundoff of a pair's precision in its normal range (`noise::unit_roundoff`).
pub fn pair_roundoff(p: &PairReport, mode: Fp32Matmul) -> Option<f64> {
    Some(noise::unit_roundoff(
        p.dtype_ref?,
        p.dtype_dev?,
        p.op_type.as_deref(),
        mode,
    ))
}

/// Error rounding alone may cause for a pair (see `noise::expected_err`).
pub fn pair_expected(p: &PairReport, mode: Fp32Matmul) -> Option<f64> {
    Some(noise::expected_err(
        p.dtype_ref?,
        p.dtype_dev?,
        p.op_type.as_deref(),
        mode,
        ref_rms(p),
    ))
}

pub(crate) fn precision_of(p: &PairReport, mode: Fp32Matmul) -> &'static str {
    pair_roundoff(p, mode).map_or("its", noise::precision_name)
}

/// Module path of a module-level place (`Module.features.5.block.Sequential.forward.0` ->
/// `features.5.block`; a plain module path is its own), `None` for API-level calls.
pub fn module_path(place: &str) -> Option<&str> {
    const API_PREFIXES: &[&str] = &[
        "Functional.",
        "Tensor.",
        "Torch.",
        "NPU.",
        "VF.",
        "Aten.",
        "Distributed.",
        "MindSpeed.",
        "Triton.",
        "Mint.",
        "MintFunctional.",
        "Primitive.",
        "Jit.",
    ];
    if let Some(rest) = place
        .strip_prefix("Module.")
        .or_else(|| place.strip_prefix("Cell."))
    {
        // {path}.{Class}.{forward|backward}.{call}
        let mut it = rest.rsplitn(4, '.');
        let (_call, _dir, _class) = (it.next(), it.next(), it.next());
        return it.next();
    }
    if API_PREFIXES.iter().any(|p| place.starts_with(p)) {
        return None;
    }
    Some(place)
}

pub(crate) fn is_float_pair(p: &PairReport) -> bool {
    p.dtype_ref.is_none_or(|d| d.is_float()) && p.dtype_dev.is_none_or(|d| d.is_float())
}

/// True when a measured pair is bit-identical (no element differs, no NaN/Inf mismatch).
pub(crate) fn bit_identical(p: &PairReport) -> bool {
    p.metrics
        .as_ref()
        .is_some_and(|m| m.max_abs_err == 0.0 && m.nonfinite_mismatch == 0)
}

pub(crate) fn has_mismatch(p: &PairReport) -> bool {
    p.metrics.as_ref().is_some_and(|m| m.nonfinite_mismatch > 0)
}

/// Groups pair indices by place, in order of first appearance (pairs are in execution order).
pub fn places(pairs: &[PairReport]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, p) in pairs.iter().enumerate() {
        match index.get(p.place.as_str()) {
            Some(&k) => out[k].push(i),
            None => {
                index.insert(&p.place, out.len());
                out.push(vec![i]);
            }
        }
    }
    out
}

/// Unit roundoff of the coarsest precision among the pairs.
pub fn run_roundoff(pairs: &[PairReport], mode: Fp32Matmul) -> f64 {
    noise::coarsest_roundoff(
        pairs
            .iter()
            .filter_map(|p| Some((p.dtype_ref?, p.dtype_dev?, p.op_type.as_deref()))),
        mode,
    )
}

/// Judges every place of a comparison in execution order (the exhaustive method).
pub fn judge(
    c: &mut Comparison,
    opts: &NoiseOptions,
    calibration: Option<std::sync::Arc<calibrate::Calibration>>,
    stacks: HashMap<String, String>,
) {
    let groups = places(&c.pairs);
    let mut judge = Judge::new(
        opts,
        run_roundoff(&c.pairs, opts.fp32_matmul),
        calibration.clone(),
        c.reference.format.is_execution_ordered(),
    );
    let mut first = None;
    let mut ranked = Vec::new();
    for g in &groups {
        let refs: Vec<&PairReport> = g.iter().map(|&i| &c.pairs[i]).collect();
        let j = judge.place(&refs);
        if first.is_none() {
            if let Some(f) = &j.finding {
                let p = &c.pairs[g[f.index]];
                first = Some(divergence(p, f, j.expected, j.inherited, &stacks));
            }
        }
        // Error added is a floating-point measure: an integer output's ratio to its zero
        // rounding is meaningless (it printed 1e308).
        let float = |w: &usize| is_float_pair(&c.pairs[g[*w]]);
        if let (Some(e), Some(w)) = (j.out_err, j.worst.filter(float)) {
            let verdict = j.verdicts.iter().copied().max().unwrap_or(Verdict::Ok);
            ranked.push(Ranked {
                name: c.pairs[g[w]].place.clone(),
                tensor: c.pairs[g[w]].name.clone(),
                rel_l2_err: e,
                inherited_err: j.inherited,
                expected_err: j.expected,
                added: e / j.inherited.max(j.expected).max(f64::MIN_POSITIVE),
                verdict,
            });
        }
        for (k, &i) in g.iter().enumerate() {
            let p = &mut c.pairs[i];
            p.verdict = Some(j.verdicts[k]);
            p.inherited_err = Some(j.inherited);
            p.expected_err = pair_expected(p, opts.fp32_matmul);
        }
    }
    let read = c
        .pairs
        .iter()
        .filter(|p| p.status == Status::Compared)
        .count();
    c.analysis = summarize(
        &c.pairs,
        first,
        ranked,
        read,
        "exhaustive",
        opts.fp32_matmul,
    );
    if let Some(cal) = calibration {
        let (margin, closest) =
            calibrate::margin(&c.pairs, &cal, opts.noise_factor, opts.amplification);
        c.analysis.calibration = Some(calibrate::CalibrationSummary {
            path: cal.path.clone(),
            tensors: cal.errors.len(),
            margin,
            closest,
        });
    }
}

/// Builds the divergence record for pair `p` from finding `f`, with the rounding its precision
/// explains there (`expected`) and the error it inherited.
pub fn divergence(
    p: &PairReport,
    f: &Finding,
    expected: f64,
    inherited: f64,
    stacks: &HashMap<String, String>,
) -> Divergence {
    Divergence {
        kind: f.kind,
        name: p.place.clone(),
        tensor: p.name.clone(),
        role: p.role,
        op_type: p.op_type.clone(),
        order: p.order,
        stack: stacks.get(&p.place).cloned(),
        reason: f.reason.clone(),
        advice: f.advice.map(str::to_string),
        rel_l2_err: pair_err(p).unwrap_or(f64::NAN),
        expected_err: expected,
        inherited_err: inherited,
        z_score: None,
        p_value: None,
    }
}

/// The analysis record from judged pairs.
pub fn summarize(
    pairs: &[PairReport],
    mut first: Option<Divergence>,
    mut ranked: Vec<Ranked>,
    tensors_read: usize,
    method: &str,
    mode: Fp32Matmul,
) -> Analysis {
    let mut counts = BTreeMap::new();
    for p in pairs {
        if let Some(v) = p.verdict {
            *counts.entry(v).or_insert(0) += 1;
        }
    }
    let errors = pairs
        .iter()
        .filter(|p| matches!(p.status, Status::Error | Status::ShapeMismatch))
        .count();
    // The outlier test measures how far a place's error ratio stands out: evidence for
    // introduced error, meaningless for a source or lost signal.
    if let Some(f) = first
        .as_mut()
        .filter(|f| f.kind == DivergenceKind::Introduced)
    {
        let logs: Vec<f64> = ranked
            .iter()
            .filter(|r| r.added > 0.0 && r.added.is_finite())
            .map(|r| r.added.ln())
            .collect();
        let x = ranked
            .iter()
            .find(|r| r.name == f.name)
            .map(|r| r.added.ln());
        if let Some((z, p)) = x.and_then(|x| calibrate::outlier_test(&logs, x)) {
            f.z_score = Some(z);
            f.p_value = Some(p);
        }
    }
    ranked.sort_by(|a, b| b.added.total_cmp(&a.added));
    ranked.truncate(10);
    let coarsest = pairs
        .iter()
        .filter(|p| p.status == Status::Compared)
        .filter_map(|p| Some(crate::dump::DType::coarser(p.dtype_ref?, p.dtype_dev?)))
        .filter(|d| d.is_float())
        .max_by(|a, b| a.unit_roundoff().total_cmp(&b.unit_roundoff()));
    let measured = pairs.iter().filter(|p| p.verdict.is_some()).count();
    let identical = counts.get(&Verdict::Identical).copied().unwrap_or(0);
    let changed = counts.get(&Verdict::Changed).copied().unwrap_or(0);
    let precision = coarsest.map(|d| {
        if d == crate::dump::DType::Float32 {
            match mode {
                Fp32Matmul::Auto => "fp32 (tf32/hf32 allowed for matrix products)",
                Fp32Matmul::Tf32 => "fp32 (tf32/hf32 for every op)",
                Fp32Matmul::Ieee => "fp32",
            }
            .to_string()
        } else {
            d.name().to_string()
        }
    });
    let (overall, summary) = if let Some(f) = &first {
        (Overall::Diverged, diverged_summary(f))
    } else if measured == 0 {
        (Overall::Empty, "nothing could be compared".to_string())
    } else if changed > 0 {
        (
            Overall::Changed,
            format!("{changed} checksum(s) differ; the dumps hold no tensors to say more"),
        )
    } else if identical == measured {
        (
            Overall::Identical,
            format!("identical: all {measured} compared pairs are bit-identical"),
        )
    } else {
        (
            Overall::WithinNoise,
            format!(
                "no divergence: every place's error is within the expected noise of {}",
                precision.as_deref().unwrap_or("its dtypes")
            ),
        )
    };
    Analysis {
        overall,
        summary,
        first_divergence: first,
        ranked,
        precision,
        tensors_read,
        tensors_total: pairs.len(),
        counts,
        errors,
        method: method.to_string(),
        calibration: None,
        replayed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_fp32_matmul_reading_in_force() {
        let p = crate::compare::PairReport {
            dtype_ref: Some(crate::dump::DType::Float32),
            dtype_dev: Some(crate::dump::DType::Float32),
            status: Status::Compared,
            verdict: Some(Verdict::Ok),
            ..crate::compare::PairReport::empty("x", "x", crate::dump::Role::Output)
        };
        let precision = |mode| {
            summarize(
                std::slice::from_ref(&p),
                None,
                vec![],
                1,
                "exhaustive",
                mode,
            )
            .precision
        };
        assert_eq!(precision(Fp32Matmul::Ieee).as_deref(), Some("fp32"));
        assert_eq!(
            precision(Fp32Matmul::Auto).as_deref(),
            Some("fp32 (tf32/hf32 allowed for matrix products)")
        );
    }
}
