//! The judge: walks the places of a run in execution order and gives every error a source.
//!
//! Error at a place is the rounding of that place, error it inherited from an actual upstream
//! place, or a source: the run's own inputs, parameters that differ, or the place itself.
//! Each rule below is one function with its own tests; `Judge::place` applies them in order
//! (docs/divergence.md lists them).

use super::signal::{self, Loss};
use super::{
    bit_identical, calibrate, has_mismatch, is_float_pair, module_path, noise, pair_err,
    pair_expected, pair_roundoff, precision_of, ref_rms, DivergenceKind, NoiseOptions, Verdict,
    STATS_FLOOR,
};
use crate::comparison::{PairReport, Status};
use crate::dump::Role;
use std::collections::HashMap;
use std::sync::Arc;

/// A fingerprint of a tensor's reference values (its measured statistics), used to recognise
/// an input as the output of an earlier place.
type Fingerprint = (u64, u64, u64);

fn fingerprint(p: &PairReport) -> Option<Fingerprint> {
    let m = p.metrics.as_ref()?;
    let s = m.ref_stats;
    Some((s.norm.to_bits(), s.mean?.to_bits(), m.numel))
}

/// Why a place diverged.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// Index (into the place's pairs) of the tensor that shows it.
    pub index: usize,
    /// What kind of departure it is.
    pub kind: DivergenceKind,
    /// One sentence with the numbers.
    pub reason: String,
    /// What to do about it, when there is something specific.
    pub advice: Option<&'static str>,
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
    /// Why the place diverged, when it did.
    pub finding: Option<Finding>,
}

/// Where an input's error comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum InputSource {
    /// Within what rounding explains.
    Rounding,
    /// The output of an earlier place (or the error of earlier places, through ops the dump
    /// does not record).
    Upstream,
    /// Nothing upstream explains it: the input is where the error enters the run.
    Source(DivergenceKind, String),
}

/// Ops whose inputs after the first are weights (parameters passed as arguments at API level).
const WEIGHTED_OPS: &[&str] = &[
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "embedding",
    "layer_norm",
    "group_norm",
    "batch_norm",
    "instance_norm",
    "rms_norm",
    "npu_rms_norm",
    "prelu",
];

/// True when an input is a weight or bias rather than data: a module's parameter, a keyword
/// `weight`/`bias`, or an argument after the first of an op that takes its weights as
/// arguments (`Functional.linear.3.forward.input.1`).
pub fn is_weight(p: &PairReport) -> bool {
    let op = p.op_type.as_deref().unwrap_or("").to_ascii_lowercase();
    match p.role {
        Role::Parameters => true,
        Role::Kwargs => matches!(&*p.index, "weight" | "bias"),
        Role::Input => {
            p.index.split('.').next() != Some("0") && WEIGHTED_OPS.contains(&op.as_str())
        }
        _ => false,
    }
}

/// What the judge knows of the places before the current one.
#[derive(Default)]
pub struct Upstream {
    /// Reference fingerprint of every output so far, with its error.
    produced: HashMap<Fingerprint, f64>,
    /// Largest output error so far; `None` before the first output.
    max_err: Option<f64>,
    /// True once an output had NaN/Inf/fill values on one side only.
    nonfinite: bool,
}

impl Upstream {
    fn record(&mut self, p: &PairReport) {
        let Some(e) = pair_err(p) else { return };
        if let Some(f) = fingerprint(p) {
            let slot = self.produced.entry(f).or_insert(e);
            *slot = slot.max(e);
        }
        self.max_err = Some(self.max_err.map_or(e, |m| m.max(e)));
        self.nonfinite |= has_mismatch(p);
    }
}

/// Rule: where the error of input `p` comes from. `noise` is its rounding allowance and
/// `amplification` the factor by which a well-conditioned op may grow inherited error.
pub fn input_source(p: &PairReport, up: &Upstream, noise: f64, amplification: f64) -> InputSource {
    let Some(e) = pair_err(p) else {
        return InputSource::Rounding;
    };
    let lost = signal::loss(p);
    if has_mismatch(p) {
        if up.nonfinite {
            return InputSource::Upstream;
        }
    } else if e <= noise && lost.is_none() {
        return InputSource::Rounding;
    }
    // The output of an earlier place, unchanged on its way here.
    if let Some(&e_prod) = fingerprint(p).and_then(|f| up.produced.get(&f)) {
        if e <= 2.0 * e_prod + noise {
            return InputSource::Upstream;
        }
    }
    let what = match lost {
        Some(l) => signal::describe(p, l),
        None => format!("relative L2 error {e:.3e}"),
    };
    let kind_or = |k: DivergenceKind| lost.map_or(k, DivergenceKind::from);
    if is_weight(p) {
        return InputSource::Source(
            kind_or(DivergenceKind::WeightsDiffer),
            format!("the weights themselves differ: {} {what}", p.name),
        );
    }
    match up.max_err {
        None => InputSource::Source(
            kind_or(DivergenceKind::InputsDiffer),
            format!(
                "the runs are not comparable: inputs differ ({} {what}, before any place ran)",
                p.name
            ),
        ),
        Some(m) if e <= amplification * m && lost.is_none() => InputSource::Upstream,
        Some(m) => InputSource::Source(
            kind_or(DivergenceKind::UnexplainedInput),
            format!(
                "error enters through an input that no earlier place explains: {} {what}, while \
                 the largest error of any earlier output is {m:.3e}",
                p.name
            ),
        ),
    }
}

/// Rule: an output with NaN/Inf/fill values on one side only, none in its inputs.
pub fn nonfinite_output(p: &PairReport) -> Option<(DivergenceKind, String)> {
    if !has_mismatch(p) {
        return None;
    }
    let loss = signal::loss(p).unwrap_or(Loss::NonFinite);
    Some((
        loss.into(),
        format!("{}, none in its inputs", signal::describe(p, loss)),
    ))
}

/// Rule: an output whose signal is lost (all zeros, constant, uncorrelated) is never within
/// noise, whatever the noise model allows.
pub fn lost_output(p: &PairReport, inherited: f64) -> Option<(DivergenceKind, String)> {
    let loss = signal::loss(p)?;
    Some((
        loss.into(),
        format!(
            "{} (largest error among its inputs {inherited:.3e})",
            signal::describe(p, loss)
        ),
    ))
}

/// Rule: error beyond what rounding in the normal range explains, at a tensor whose magnitudes
/// lie below the candidate dtype's normal range: the range loss starts to matter here.
pub fn underflow_output(p: &PairReport, e: f64, u: f64, noise_factor: f64) -> Option<String> {
    (signal::below_normal_range(p) && e > noise_factor * u).then(|| {
        format!(
            "relative L2 error {e:.3e} is {:.0}x what {} rounding explains in its normal range \
             ({u:.2e}); {}",
            e / u,
            p.dtype_dev.map_or("its", crate::dump::DType::name),
            signal::describe(p, Loss::Underflow)
        )
    })
}

/// Rule: error beyond both its own rounding allowance and the amplified inherited error.
pub fn introduced_output(
    p: &PairReport,
    e: f64,
    allowed: f64,
    u: f64,
    inherited: f64,
    mode: noise::Fp32Matmul,
) -> Option<String> {
    (e > allowed).then(|| {
        format!(
            "relative L2 error {e:.3e} is {:.0}x what {} rounding explains ({u:.2e}) and {} the \
             largest error it inherited ({inherited:.3e}); allowed {allowed:.3e}",
            e / u,
            precision_of(p, mode),
            if inherited > 0.0 {
                format!("{:.0}x", e / inherited)
            } else {
                "far above".to_string()
            }
        )
    })
}

/// Rule: **padding that leaks**. An output finding at a place that reads a padded input (one
/// side's shape contains the other's; the pair compared on the common region) whose common
/// region is not itself a source: the op was given the right data where both runs have data,
/// and its result departs, so it reads the padding (a softmax or mean over the padded axis).
/// Non-finite values on one side leak only from padding that holds them. Range losses
/// (underflow, overflow, saturation) and integer mismatches are the dtype's and stay as they
/// are. `verdicts` are the place's input verdicts so far (a source input is `diverged`).
pub fn padding_leak(
    pairs: &[&PairReport],
    inputs: &[usize],
    verdicts: &[Verdict],
    f: &Finding,
) -> Option<(DivergenceKind, String)> {
    let nonfinite = match f.kind {
        DivergenceKind::Introduced | DivergenceKind::Scrambled | DivergenceKind::SignalLost => {
            false
        }
        DivergenceKind::NonFinite => true,
        _ => return None,
    };
    let (p, pad) = inputs.iter().find_map(|&i| {
        let p = pairs[i];
        let pad = p.padding.as_ref().filter(|pd| {
            pd.elements > 0
                && p.status == Status::Compared
                && verdicts[i] != Verdict::Diverged
                && (!nonfinite || !pd.max_abs.is_finite())
        })?;
        Some((p, pad))
    })?;
    let (side, big) = match pad.padded {
        crate::align::padding::Side::Candidate => ("candidate", &p.shape_dev),
        crate::align::padding::Side::Reference => ("reference", &p.shape_ref),
    };
    Some((
        DivergenceKind::PaddingLeak,
        format!(
            "it reads the padding of {} (the {side}'s {:?} pads {:?} by {:?}: {} of {} padding \
             elements non-zero, max |x| {:.4e}), whose common region agrees with the reference, \
             and its output departs: {}",
            p.name,
            big.as_deref().unwrap_or_default(),
            pad.common,
            pad.pad,
            pad.nonzero,
            pad.elements,
            pad.max_abs,
            f.reason
        ),
    ))
}

/// Additions and subtractions (msprobe and ATen spellings).
const ADDITIVE_OPS: &[&str] = &[
    "add", "sub", "rsub", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__",
];

/// Condition number of a place for output `out`: how much it may legitimately amplify the
/// relative error of its inputs. An addition or subtraction with cancellation amplifies it by
/// (Σ |inputs|) / |output|, measured here with the reference's RMS values; every other op
/// counts as well-conditioned (1), its allowance being the amplification factor itself.
pub fn condition(pairs: &[&PairReport], out: &PairReport) -> f64 {
    let op = out.op_type.as_deref().unwrap_or("").to_ascii_lowercase();
    if !ADDITIVE_OPS.contains(&op.as_str()) {
        return 1.0;
    }
    let sum: f64 = pairs
        .iter()
        .filter(|p| p.role.is_input() && is_float_pair(p))
        .filter_map(|p| ref_rms(p))
        .sum();
    match ref_rms(out) {
        Some(r) if r > 0.0 => (sum / r).max(1.0),
        _ => 1.0,
    }
}

/// State carried along execution order while judging places.
#[derive(Default)]
pub struct Judge {
    opts: NoiseOptions,
    /// Output errors of the last `window` places (for places without recorded inputs).
    recent_out: Vec<f64>,
    upstream: Upstream,
    /// Module places judged so far whose parent has not come yet (children complete before
    /// their parent), with their output error.
    open_modules: Vec<(String, f64)>,
    /// True once a place diverged: later elevated errors are `drift`.
    pub diverged_before: bool,
    /// Unit roundoff of the run's coarsest precision: the noise scale of statistics-only pairs,
    /// whose inputs' norm bounds say little about the inputs' true error.
    run_roundoff: f64,
    /// Observed clean error per tensor (`--noise`).
    calibration: Option<Arc<calibrate::Calibration>>,
    /// False when the dump's order says nothing about data flow (a folder of unrelated
    /// arrays): nothing is inherited from the places before.
    ordered: bool,
}

impl Judge {
    /// A judge with these options, for a run whose coarsest unit roundoff is `run_roundoff`,
    /// with an optional calibration run's observed errors. `ordered` says whether the dump's
    /// order is execution order.
    pub fn new(
        opts: &NoiseOptions,
        run_roundoff: f64,
        calibration: Option<Arc<calibrate::Calibration>>,
        ordered: bool,
    ) -> Self {
        Judge {
            opts: opts.clone(),
            run_roundoff,
            calibration,
            ordered,
            ..Default::default()
        }
    }

    /// Error inherited by a place without recorded inputs: the largest output error of the
    /// preceding `window` places (none in an unordered dump).
    fn window_err(&self) -> f64 {
        if !self.ordered {
            return 0.0;
        }
        self.recent_out.iter().copied().fold(0.0, f64::max)
    }

    /// Rounding allowance of pair `p` with unit roundoff `u`.
    fn noise(&self, p: &PairReport, u: f64) -> f64 {
        let o = &self.opts;
        let calibrated = self
            .calibration
            .as_ref()
            .map_or(0.0, |c| c.allowance(&p.name));
        if p.status == Status::Statistics {
            // Recorded statistics are float32 numbers with rounding of their own.
            (o.stats_noise_factor * u.max(self.run_roundoff)).max(STATS_FLOOR)
        } else {
            o.noise_factor * u
        }
        .max(calibrated)
    }

    /// Judges one place from its pairs, then remembers its outputs for the places after it.
    pub fn place(&mut self, pairs: &[&PairReport]) -> PlaceJudgement {
        let o = self.opts.clone();
        // Integer inputs count too: token ids that differ are a source like any other.
        let inputs: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].role.is_input())
            .collect();
        let mut outputs: Vec<usize> = (0..pairs.len())
            .filter(|&i| pairs[i].role == Role::Output)
            .collect();
        if outputs.is_empty() && inputs.is_empty() {
            outputs = (0..pairs.len()).collect();
        }
        let u_of =
            |p: &PairReport| pair_expected(p, o.fp32_matmul).unwrap_or(noise::TF32_UNIT_ROUNDOFF);
        let mut verdicts = vec![Verdict::Ok; pairs.len()];
        let mut finding: Option<Finding> = None;
        let found = |finding: &mut Option<Finding>, i, (kind, reason): (DivergenceKind, String)| {
            let advice = kind.advice();
            finding.get_or_insert(Finding {
                index: i,
                kind,
                reason,
                advice,
            });
        };

        // Inputs: what they carry, and from where.
        let mut inherited: f64 = 0.0;
        let mut any_input_err = false;
        for &i in &inputs {
            let p = pairs[i];
            let Some(e) = pair_err(p) else { continue };
            any_input_err = true;
            let noise = self.noise(p, u_of(p));
            match input_source(p, &self.upstream, noise, o.amplification) {
                InputSource::Source(kind, reason) if !self.diverged_before => {
                    verdicts[i] = Verdict::Diverged;
                    // Of several sources at one place, a lost signal says the most (token ids
                    // and weights both scrambled: "scrambled", not "inputs differ").
                    if finding
                        .as_ref()
                        .is_some_and(|f| kind.is_loss() && !f.kind.is_loss())
                    {
                        finding = None;
                    }
                    found(&mut finding, i, (kind, reason));
                    // The source is reported; the outputs are judged against it.
                    inherited = inherited.max(e);
                }
                InputSource::Source(..) | InputSource::Upstream => {
                    inherited = inherited.max(e);
                    if has_mismatch(p) || (e > noise && self.diverged_before) {
                        verdicts[i] = Verdict::Drift;
                    }
                }
                InputSource::Rounding => inherited = inherited.max(e),
            }
        }
        if !any_input_err {
            inherited = self.window_err();
        }
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
                self.open_modules.pop();
            }
        }
        let inputs_mismatch = inputs.iter().any(|&i| has_mismatch(pairs[i]));

        // Outputs.
        let mut out_err: Option<f64> = None;
        let mut worst = None;
        let mut expected = 0.0;
        for &i in &outputs {
            let p = pairs[i];
            let u = u_of(p);
            let err = pair_err(p);
            let identical = bit_identical(p) || p.checksum_equal == Some(true);
            let new = !self.diverged_before;
            verdicts[i] = if identical {
                Verdict::Identical
            } else if p.checksum_equal == Some(false) {
                Verdict::Changed
            } else if matches!(p.status, Status::ShapeMismatch | Status::Error) {
                Verdict::Ok
            } else if let Some(f) = nonfinite_output(p).filter(|_| !inputs_mismatch) {
                if new {
                    found(&mut finding, i, f);
                    Verdict::Diverged
                } else {
                    Verdict::Drift
                }
            } else if has_mismatch(p) {
                Verdict::Drift
            } else if let Some(e) = err.filter(|_| is_float_pair(p)) {
                let noise = self.noise(p, u);
                let allowed = noise.max(o.amplification * condition(pairs, p) * inherited);
                // The normal-range rounding of the pair, without the subnormal term.
                let u_normal = pair_roundoff(p, o.fp32_matmul).unwrap_or(u);
                let rule = lost_output(p, inherited)
                    .or_else(|| {
                        underflow_output(p, e, u_normal, o.noise_factor)
                            .map(|r| (DivergenceKind::Underflow, r))
                    })
                    .or_else(|| {
                        introduced_output(p, e, allowed, u, inherited, o.fp32_matmul)
                            .map(|r| (DivergenceKind::Introduced, r))
                    });
                match rule {
                    // Introduced error is a divergence even after an earlier one; lost signal
                    // and range loss downstream of a divergence are its drift.
                    Some(f) if f.0 == DivergenceKind::Introduced || new => {
                        if new {
                            found(&mut finding, i, f);
                        }
                        Verdict::Diverged
                    }
                    Some(_) => Verdict::Drift,
                    None if e > noise && self.diverged_before => Verdict::Drift,
                    None => Verdict::Ok,
                }
            } else if let Some(e) = err.filter(|&e| e > 0.0 && inherited == 0.0 && new) {
                found(
                    &mut finding,
                    i,
                    (
                        DivergenceKind::IntegerMismatch,
                        format!(
                            "integer/bool output differs (relative L2 error {e:.3e}) although its \
                             inputs are identical"
                        ),
                    ),
                );
                Verdict::Diverged
            } else {
                Verdict::Ok
            };
            if let Some(e) = err {
                if out_err.is_none_or(|w| e > w) {
                    out_err = Some(e);
                    worst = Some(i);
                    expected = u;
                }
            }
        }
        // Inputs judged fine, and pairs that are neither inputs nor outputs (gradients, other
        // roles), are identical when bit-equal.
        for i in 0..pairs.len() {
            let judged_fine = inputs.contains(&i) && verdicts[i] == Verdict::Ok;
            let unjudged = !inputs.contains(&i) && !outputs.contains(&i);
            if (judged_fine || unjudged) && bit_identical(pairs[i]) {
                verdicts[i] = Verdict::Identical;
            }
        }
        if let Some(f) = finding.as_mut().filter(|f| outputs.contains(&f.index)) {
            if let Some((kind, reason)) = padding_leak(pairs, &inputs, &verdicts, f) {
                *f = Finding {
                    index: f.index,
                    kind,
                    reason,
                    advice: kind.advice(),
                };
            }
        }
        if finding.is_some() {
            self.diverged_before = true;
        }
        for &i in &outputs {
            self.upstream.record(pairs[i]);
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
            finding,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each rule on synthetic pairs measured by the real kernel, one case per branch.
    use super::*;
    use crate::dump::{Bytes, DType, Tensor};

    fn tensor(dtype: DType, v: &[f32]) -> Tensor {
        let data: Vec<u8> = match dtype {
            DType::Float16 => v
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            DType::Int64 => v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        Tensor {
            dtype,
            shape: vec![v.len()],
            data: Bytes::Owned(data),
        }
    }

    /// A measured pair: `place.role.index`, reference in float32 (int64 for int64 devices).
    fn pair(
        place: &str,
        role: Role,
        index: &str,
        op: &str,
        r: &[f32],
        d: &[f32],
        dt: DType,
    ) -> PairReport {
        let rt = if dt == DType::Int64 {
            DType::Int64
        } else {
            DType::Float32
        };
        let (a, b) = (tensor(rt, r), tensor(dt, d));
        PairReport {
            index: index.into(),
            op_type: Some(op.into()),
            dtype_ref: Some(rt),
            dtype_dev: Some(dt),
            shape_ref: Some(a.shape.as_slice().into()),
            shape_dev: Some(b.shape.as_slice().into()),
            metrics: Some(Box::new(crate::metrics::measure(&a, &b))),
            ..PairReport::empty(format!("{place}.{role}.{index}"), place, role)
        }
    }

    /// `n` pseudo-random values in [-scale, scale] (a fixed LCG).
    fn ramp(n: usize, scale: f32) -> Vec<f32> {
        let mut s = 12345u32;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                scale * ((s >> 8) as f32 / (1 << 23) as f32 - 1.0)
            })
            .collect()
    }

    /// The same values in another order (a stride permutation, as a layout mistake moves them).
    fn scramble(v: &[f32]) -> Vec<f32> {
        (0..v.len()).map(|i| v[(i * 7) % v.len()]).collect()
    }

    fn scaled(v: &[f32], s: f32) -> Vec<f32> {
        v.iter().map(|x| x * s).collect()
    }

    const F16: DType = DType::Float16;
    const U16: f64 = 1.0 / 2048.0;

    #[test]
    fn input_sources() {
        let x = ramp(64, 1.0);
        let mut produced = Upstream::default();
        let out = pair("A", Role::Output, "0", "linear", &x, &scaled(&x, 1.01), F16);
        produced.record(&out);
        let none = Upstream::default();
        let mut small = Upstream::default();
        small.record(&pair("A", Role::Output, "0", "linear", &x, &x, F16));
        let noise = 16.0 * U16;
        let y = ramp(64, 3.0);
        // (case, input, upstream, expected source kind or None for rounding/upstream)
        let cases: Vec<(&str, PairReport, &Upstream, Option<DivergenceKind>)> = vec![
            (
                "within rounding",
                pair("B", Role::Input, "0", "silu", &x, &x, F16),
                &none,
                None,
            ),
            (
                "the unchanged output of an earlier place",
                pair("B", Role::Input, "0", "silu", &x, &scaled(&x, 1.01), F16),
                &produced,
                None,
            ),
            (
                "an earlier output changed on its way",
                pair("B", Role::Input, "0", "silu", &x, &scaled(&x, 1.5), F16),
                &produced,
                Some(DivergenceKind::UnexplainedInput),
            ),
            (
                "a model input before any place ran",
                pair("B", Role::Input, "0", "silu", &y, &scaled(&y, 2.0), F16),
                &none,
                Some(DivergenceKind::InputsDiffer),
            ),
            (
                "integer model inputs",
                pair(
                    "B",
                    Role::Input,
                    "0",
                    "embedding",
                    &[1.0, 2.0, 3.0],
                    &[2.0, 4.0, 6.0],
                    DType::Int64,
                ),
                &none,
                Some(DivergenceKind::InputsDiffer),
            ),
            (
                "a weight at API level",
                pair("B", Role::Input, "1", "linear", &y, &scaled(&y, 1.01), F16),
                &small,
                Some(DivergenceKind::WeightsDiffer),
            ),
            (
                "a module parameter",
                pair(
                    "B",
                    Role::Parameters,
                    "weight",
                    "Conv2d",
                    &y,
                    &scaled(&y, 1.01),
                    F16,
                ),
                &small,
                Some(DivergenceKind::WeightsDiffer),
            ),
            (
                "data through unrecorded ops, within amplification",
                pair("B", Role::Input, "0", "silu", &y, &scaled(&y, 1.01), F16),
                &produced,
                None,
            ),
            (
                "data no earlier error explains",
                pair("B", Role::Input, "0", "silu", &y, &scaled(&y, 1.01), F16),
                &small,
                Some(DivergenceKind::UnexplainedInput),
            ),
            (
                "scrambled data",
                pair("B", Role::Input, "0", "silu", &y, &scramble(&y), F16),
                &produced,
                Some(DivergenceKind::Scrambled),
            ),
        ];
        for (case, p, up, want) in cases {
            let got = match input_source(&p, up, noise, 16.0) {
                InputSource::Source(k, _) => Some(k),
                _ => None,
            };
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn output_rules() {
        let x = ramp(64, 1.0);
        let tiny = ramp(64, 1e-6);
        let mut inf = x.clone();
        inf[5] = f32::INFINITY;
        let zeros = vec![0.0; 64];
        // (case, pair, inherited, expected kind)
        let cases: Vec<(&str, PairReport, f64, Option<DivergenceKind>)> = vec![
            (
                "rounding only",
                pair("P", Role::Output, "0", "silu", &x, &x, F16),
                0.0,
                None,
            ),
            (
                "beyond noise and inherited",
                pair("P", Role::Output, "0", "silu", &x, &scaled(&x, 1.03), F16),
                1e-4,
                Some(DivergenceKind::Introduced),
            ),
            (
                "beyond noise, explained by inherited",
                pair("P", Role::Output, "0", "silu", &x, &scaled(&x, 1.03), F16),
                1e-2,
                None,
            ),
            (
                "overflow",
                pair("P", Role::Output, "0", "mul", &x, &inf, F16),
                0.0,
                Some(DivergenceKind::Overflow),
            ),
            (
                "all zeros, normal range",
                pair("P", Role::Output, "0", "silu", &x, &zeros, F16),
                1.0,
                Some(DivergenceKind::SignalLost),
            ),
            (
                "all zeros below the normal range",
                pair("P", Role::Output, "0", "conv2d", &tiny, &zeros, F16),
                1.0,
                Some(DivergenceKind::Underflow),
            ),
            (
                "scrambled",
                pair("P", Role::Output, "0", "silu", &x, &scramble(&x), F16),
                1.0,
                Some(DivergenceKind::Scrambled),
            ),
            (
                "subnormal rounding, beyond the normal allowance",
                pair("P", Role::Output, "0", "conv2d", &tiny, &tiny, F16),
                0.0,
                Some(DivergenceKind::Underflow),
            ),
            (
                "integer output with identical inputs",
                pair(
                    "P",
                    Role::Output,
                    "0",
                    "argmax",
                    &[1.0, 2.0],
                    &[1.0, 3.0],
                    DType::Int64,
                ),
                0.0,
                Some(DivergenceKind::IntegerMismatch),
            ),
        ];
        for (case, p, inherited, want) in cases {
            let mut j = Judge::new(&NoiseOptions::default(), U16, None, true);
            j.recent_out.push(inherited);
            let got = j.place(&[&p]).finding.map(|f| f.kind);
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn lost_signal_after_a_divergence_is_drift_and_unordered_dumps_inherit_nothing() {
        let x = ramp(64, 1.0);
        let bad = pair("A", Role::Output, "0", "silu", &x, &scaled(&x, 1.5), F16);
        let zeros = pair("B", Role::Output, "0", "silu", &x, &[0.0; 64], F16);
        let mut j = Judge::new(&NoiseOptions::default(), U16, None, true);
        assert!(j.place(&[&bad]).finding.is_some());
        let after = j.place(&[&zeros]);
        assert!(after.finding.is_none());
        assert_eq!(after.verdicts, vec![Verdict::Drift]);
        // In name order only, the second array does not inherit the first's error.
        let slight = pair(
            "C",
            Role::Output,
            "0",
            "silu",
            &x,
            &scaled(&x, 1.003),
            DType::Float32,
        );
        let mut j = Judge::new(&NoiseOptions::default(), U16, None, false);
        j.place(&[&bad]);
        j.diverged_before = false;
        let c = j.place(&[&slight]);
        assert_eq!(c.inherited, 0.0);
        assert_eq!(c.finding.map(|f| f.kind), Some(DivergenceKind::Introduced));
    }

    /// A softmax input padded on the candidate from [2, 4] to [2, 6] (`fill` in the padding),
    /// with its common region equal to the reference's.
    fn padded_input(fill: f32) -> PairReport {
        let r = [0.5f32, -1.0, 2.0, 0.25, 1.0, 0.0, -0.5, 1.5];
        let mut d = Vec::new();
        for row in r.chunks(4) {
            d.extend_from_slice(row);
            d.extend_from_slice(&[fill, fill]);
        }
        let t = |v: &[f32], shape: &[usize]| Tensor {
            shape: shape.to_vec(),
            ..tensor(DType::Float32, v)
        };
        let (a, b) = (t(&r, &[2, 4]), t(&d, &[2, 6]));
        let (m, pad) =
            crate::align::padding::measure(&a, &b, crate::metrics::Histograms::Count).unwrap();
        PairReport {
            index: "0".into(),
            op_type: Some("softmax".into()),
            dtype_ref: Some(DType::Float32),
            dtype_dev: Some(DType::Float32),
            shape_ref: Some(a.shape.as_slice().into()),
            shape_dev: Some(b.shape.as_slice().into()),
            metrics: Some(Box::new(m)),
            padding: Some(Box::new(pad)),
            ..PairReport::empty("S.input.0", "S", Role::Input)
        }
    }

    #[test]
    fn padding_that_leaks() {
        let x = ramp(8, 1.0);
        let out = |d: &[f32]| pair("S", Role::Output, "0", "softmax", &x, d, DType::Float32);
        let kind = |pairs: &[&PairReport]| {
            let mut j = Judge::new(&NoiseOptions::default(), U16, None, true);
            j.place(pairs).finding.map(|f| f.kind)
        };
        let padded = padded_input(3.0);
        let plain = pair("S", Role::Input, "0", "softmax", &x, &x, DType::Float32);
        let (departs, agrees) = (out(&scaled(&x, 0.8)), out(&x));
        // Read padding and a departing output: the leak, not introduced error.
        assert_eq!(
            kind(&[&padded, &departs]),
            Some(DivergenceKind::PaddingLeak)
        );
        // Padding that no output shows is nothing; without padding the output introduced it.
        assert_eq!(kind(&[&padded, &agrees]), None);
        assert_eq!(kind(&[&plain, &departs]), Some(DivergenceKind::Introduced));
        // NaN on the candidate's output leaks only from padding holding non-finite values.
        let mut nan = x.clone();
        nan[2] = f32::NAN;
        assert_eq!(
            kind(&[&padded, &out(&nan)]),
            Some(DivergenceKind::NonFinite)
        );
        assert_eq!(
            kind(&[&padded_input(f32::NAN), &out(&nan)]),
            Some(DivergenceKind::PaddingLeak)
        );
        // A padded input whose common region differs is a source of its own.
        let mut wrong = padded_input(0.0);
        wrong.metrics.as_mut().unwrap().rel_l2_err = 0.5;
        assert_ne!(kind(&[&wrong, &departs]), Some(DivergenceKind::PaddingLeak));
    }
}
