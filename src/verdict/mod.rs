//! Verdicts that know about precision, and the first place where a run really departs.
//!
//! A place (an API call or a module) *introduces* error when the error of its outputs exceeds
//! both what rounding in its precision can add and what it inherited, amplified by a bounded
//! factor. The method and its limits are written up in docs/divergence.md.

pub mod bisect;
pub mod calibrate;
pub mod noise;

use crate::compare::{Comparison, PairReport, Status};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// The first place where the candidate departs from the reference.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    /// The place: msprobe entry (`Functional.silu.1.forward`) or module path.
    pub name: String,
    /// The tensor judged divergent (`Functional.silu.1.forward.output.0`).
    pub tensor: String,
    /// Its role (`output`, or `input` for a tensor no earlier place produced).
    pub role: String,
    /// Operator or module class.
    pub op_type: Option<String>,
    /// Position of the place in execution order.
    pub order: usize,
    /// First stack line, when the dump has stack.json.
    pub stack: Option<String>,
    /// Why it is judged divergent.
    pub reason: String,
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
}

/// Error measure of a pair: relative L2 error, or the lower bound from recorded norms.
pub fn pair_err(p: &PairReport) -> Option<f64> {
    match p.status {
        Status::Compared => p.metrics.as_ref().map(|m| m.rel_l2_err),
        Status::Statistics => p.stats_diff.and_then(|s| s.norm_rel_diff),
        _ => None,
    }
}

/// Error rounding alone may cause for a pair (see `noise::expected_err`).
pub fn pair_expected(p: &PairReport, mode: Fp32Matmul) -> Option<f64> {
    let rms = p
        .metrics
        .as_ref()
        .filter(|m| m.compared > 0)
        .map(|m| m.ref_stats.norm / (m.compared as f64).sqrt());
    Some(noise::expected_err(
        p.dtype_ref?,
        p.dtype_dev?,
        p.op_type.as_deref(),
        mode,
        rms,
    ))
}

fn precision_of(p: &PairReport, mode: Fp32Matmul) -> &'static str {
    match (p.dtype_ref, p.dtype_dev) {
        (Some(a), Some(b)) => {
            noise::precision_name(noise::unit_roundoff(a, b, p.op_type.as_deref(), mode))
        }
        _ => "its",
    }
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

fn is_float_pair(p: &PairReport) -> bool {
    p.dtype_ref.is_none_or(|d| d.is_float()) && p.dtype_dev.is_none_or(|d| d.is_float())
}

fn has_mismatch(p: &PairReport) -> bool {
    p.metrics.as_ref().is_some_and(|m| m.nonfinite_mismatch > 0)
}

/// Roles whose tensors flow into a place.
pub fn is_input_role(role: &str) -> bool {
    matches!(role, "input" | "kwargs" | "parameters")
}

/// A fingerprint of a tensor's reference values (its recorded or measured statistics), used
/// to recognise an input as the output of an earlier place.
fn fingerprint(p: &PairReport) -> Option<(u64, u64, u64)> {
    let m = p.metrics.as_ref()?;
    let s = m.ref_stats;
    Some((s.norm.to_bits(), s.mean?.to_bits(), m.numel))
}

/// What the judge concluded about one place.
#[derive(Clone, Debug)]
pub struct PlaceJudgement {
    /// Verdict per pair, parallel to the pairs given.
    pub verdicts: Vec<Verdict>,
    /// Largest output error (None when no output could be measured).
    pub out_err: Option<f64>,
    /// Index (into the pairs given) of the worst output.
    pub worst: Option<usize>,
    /// Error inherited.
    pub inherited: f64,
    /// Error rounding may add (unit roundoff of the worst output's precision).
    pub expected: f64,
    /// The reason, when a pair diverged.
    pub reason: Option<(usize, String)>,
}

/// State carried along execution order while judging places.
#[derive(Default)]
pub struct Judge {
    opts: NoiseOptions,
    recent_out: Vec<f64>,
    produced: HashSet<(u64, u64, u64)>,
    /// Module places judged so far whose parent has not come yet (children complete before
    /// their parent), with their output error.
    open_modules: Vec<(String, f64)>,
    /// True once a place diverged: later elevated errors are `drift`.
    pub diverged_before: bool,
    /// Unit roundoff of the run's coarsest precision: the noise scale of statistics-only pairs,
    /// whose inputs' norm bounds say little about the inputs' true error.
    run_roundoff: f64,
    /// Observed clean error per tensor (`--noise`).
    calibration: Option<std::sync::Arc<calibrate::Calibration>>,
}

impl Judge {
    /// A judge with these options, for a run whose coarsest unit roundoff is `run_roundoff`,
    /// with an optional calibration run's observed errors.
    pub fn new(
        opts: &NoiseOptions,
        run_roundoff: f64,
        calibration: Option<std::sync::Arc<calibrate::Calibration>>,
    ) -> Self {
        Judge {
            opts: opts.clone(),
            run_roundoff,
            calibration,
            ..Default::default()
        }
    }

    /// Error inherited by a place without recorded inputs: the largest output error of the
    /// preceding `window` places.
    fn window_err(&self) -> f64 {
        self.recent_out.iter().copied().fold(0.0, f64::max)
    }

    /// Judges one place from its pairs, then remembers its outputs for the places after it.
    pub fn place(&mut self, pairs: &[&PairReport]) -> PlaceJudgement {
        let o = &self.opts;
        let inputs: Vec<usize> = (0..pairs.len())
            .filter(|&i| is_input_role(&pairs[i].role) && is_float_pair(pairs[i]))
            .collect();
        let mut outputs: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].role == "output")
            .collect();
        if outputs.is_empty() && inputs.is_empty() {
            outputs = (0..pairs.len()).collect();
        }
        let in_errs: Vec<f64> = inputs.iter().filter_map(|&i| pair_err(pairs[i])).collect();
        let mut inherited = if in_errs.is_empty() {
            self.window_err()
        } else {
            in_errs.iter().copied().fold(0.0, f64::max)
        };
        // A container module (Sequential, a decoder layer) inherits what its children did.
        let path = pairs
            .first()
            .and_then(|p| module_path(&p.place))
            .map(str::to_string);
        if let Some(path) = &path {
            let prefix = format!("{path}.");
            while let Some((child, e)) = self.open_modules.last() {
                if !child.starts_with(&prefix) && !path.is_empty() {
                    break;
                }
                inherited = inherited.max(*e);
                let _ = child;
                self.open_modules.pop();
            }
        }
        let inputs_mismatch = inputs.iter().any(|&i| has_mismatch(pairs[i]));
        let mut verdicts = vec![Verdict::Ok; pairs.len()];
        let mut reason = None;
        let mut out_err: Option<f64> = None;
        let mut worst = None;
        let mut expected = 0.0;
        for (i, p) in pairs.iter().enumerate() {
            let u = pair_expected(p, o.fp32_matmul).unwrap_or(noise::TF32_UNIT_ROUNDOFF);
            let is_out = outputs.contains(&i);
            let identical = p
                .metrics
                .as_ref()
                .is_some_and(|m| m.max_abs_err == 0.0 && m.nonfinite_mismatch == 0)
                || p.checksum_equal == Some(true);
            let err = pair_err(p);
            let v = if identical {
                Verdict::Identical
            } else if p.checksum_equal == Some(false) {
                Verdict::Changed
            } else if p.status == Status::ShapeMismatch || p.status == Status::Error {
                Verdict::Ok
            } else if has_mismatch(p) {
                if is_out && !inputs_mismatch && !self.diverged_before {
                    reason.get_or_insert((
                        i,
                        format!(
                            "NaN/Inf or fill values on one side only in {} element(s) (first at \
                             flat index {}), none in its inputs",
                            p.metrics.as_ref().unwrap().nonfinite_mismatch,
                            p.metrics
                                .as_ref()
                                .unwrap()
                                .first_nonfinite_mismatch_index
                                .unwrap_or(0)
                        ),
                    ));
                    Verdict::Diverged
                } else {
                    Verdict::Drift
                }
            } else if let Some(e) = err {
                let calibrated = self
                    .calibration
                    .as_ref()
                    .map_or(0.0, |c| c.allowance(&p.name));
                let noise = if p.status == Status::Statistics {
                    // Recorded statistics are float32 numbers with rounding of their own.
                    (o.stats_noise_factor * u.max(self.run_roundoff)).max(STATS_FLOOR)
                } else {
                    o.noise_factor * u
                }
                .max(calibrated);
                if is_out && is_float_pair(p) {
                    let allowed = noise.max(o.amplification * inherited);
                    if e > allowed {
                        reason.get_or_insert((
                            i,
                            format!(
                                "relative L2 error {e:.3e} is {:.0}x what {} rounding explains ({u:.2e}) \
                                 and {} the largest error it inherited ({inherited:.3e}); allowed {allowed:.3e}",
                                e / u,
                                precision_of(p, o.fp32_matmul),
                                if inherited > 0.0 {
                                    format!("{:.0}x", e / inherited)
                                } else {
                                    "far above".to_string()
                                }
                            ),
                        ));
                        Verdict::Diverged
                    } else if e > noise && self.diverged_before {
                        Verdict::Drift
                    } else {
                        Verdict::Ok
                    }
                } else if !is_out && is_float_pair(p) && e > noise {
                    // An input beyond noise that no earlier place produced: the data or the
                    // weights themselves differ.
                    let produced = fingerprint(p).is_some_and(|f| self.produced.contains(&f));
                    if !produced && !self.diverged_before && p.role == "parameters" {
                        reason.get_or_insert((
                            i,
                            format!(
                                "parameter differs by relative L2 error {e:.3e} ({:.0}x what {} \
                                 rounding explains): the weights themselves differ",
                                e / u,
                                precision_of(p, o.fp32_matmul)
                            ),
                        ));
                        Verdict::Diverged
                    } else if self.diverged_before {
                        Verdict::Drift
                    } else {
                        Verdict::Ok
                    }
                } else if is_out
                    && !is_float_pair(p)
                    && e > 0.0
                    && inherited == 0.0
                    && !self.diverged_before
                {
                    reason.get_or_insert((
                        i,
                        format!("integer/bool output differs (relative L2 error {e:.3e}) although its inputs are identical"),
                    ));
                    Verdict::Diverged
                } else {
                    Verdict::Ok
                }
            } else {
                Verdict::Ok
            };
            verdicts[i] = v;
            if is_out {
                if let Some(e) = err {
                    if out_err.is_none_or(|w| e > w) {
                        out_err = Some(e);
                        worst = Some(i);
                        expected = u;
                    }
                }
            }
        }
        if reason.is_some() {
            self.diverged_before = true;
        }
        for &i in &outputs {
            if let Some(f) = fingerprint(pairs[i]) {
                self.produced.insert(f);
            }
        }
        if let Some(path) = path {
            self.open_modules.push((path, out_err.unwrap_or(inherited)));
        }
        if let Some(e) = out_err {
            self.recent_out.push(e);
            if self.recent_out.len() > o.window.max(1) {
                self.recent_out.remove(0);
            }
        }
        PlaceJudgement {
            verdicts,
            out_err,
            worst,
            inherited,
            expected,
            reason,
        }
    }
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
    );
    let mut first = None;
    let mut ranked = Vec::new();
    for g in &groups {
        let refs: Vec<&PairReport> = g.iter().map(|&i| &c.pairs[i]).collect();
        let j = judge.place(&refs);
        if first.is_none() {
            if let Some((k, why)) = &j.reason {
                first = Some(divergence(&c.pairs[g[*k]], why, &j, &stacks));
            }
        }
        if let (Some(e), Some(w)) = (j.out_err, j.worst) {
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
    c.analysis = summarize(&c.pairs, first, ranked, read, "exhaustive");
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

/// Builds the divergence record for pair `p` of a place judged by `j`.
pub fn divergence(
    p: &PairReport,
    why: &str,
    j: &PlaceJudgement,
    stacks: &HashMap<String, String>,
) -> Divergence {
    Divergence {
        name: p.place.clone(),
        tensor: p.name.clone(),
        role: p.role.clone(),
        op_type: p.op_type.clone(),
        order: p.order,
        stack: stacks.get(&p.place).cloned(),
        reason: why.to_string(),
        rel_l2_err: pair_err(p).unwrap_or(f64::NAN),
        expected_err: j.expected,
        inherited_err: j.inherited,
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
    if let Some(f) = first.as_mut() {
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
            "fp32 (tf32/hf32 allowed for matrix products)".to_string()
        } else {
            d.name().to_string()
        }
    });
    let (overall, summary) = if let Some(f) = &first {
        (
            Overall::Diverged,
            format!("diverged: first at {} ({}): {}", f.name, f.tensor, f.reason),
        )
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
    }
}
