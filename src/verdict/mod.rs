//! Verdicts that know about precision, and the first place where a run really departs.
//!
//! A place (an API call or a module) *introduces* error when the error of its outputs exceeds
//! both what rounding in its precision can add and what it inherited, amplified by a bounded
//! factor. The method and its limits are written up in docs/divergence.md.

pub mod calibrate;
pub mod judge;
pub mod signal;

pub use crate::comparison::{
    Analysis, Divergence, DivergenceKind, Method, Overall, Ranked, Verdict,
};
use crate::comparison::{Comparison, PairReport, Status};
use std::collections::{BTreeMap, HashMap};

pub use crate::noise::{self, Fp32Matmul, NoiseOptions};
pub use judge::{Finding, Judge, PlaceJudgement};

/// Smallest relative norm difference a statistics-only comparison trusts: msprobe records
/// `Norm` as a float32 computed over the whole tensor, off by ~sqrt(n) * 2^-24 by itself.
pub const STATS_FLOOR: f64 = 1e-5;

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

/// Error measure of a pair: relative L2 error, or the lower bound from recorded norms.
pub fn pair_err(p: &PairReport) -> Option<f64> {
    match p.status {
        Status::Compared => p.metrics.as_ref().map(|m| m.rel_l2_err),
        // A NaN difference of recorded norms (both infinite: a mask with -inf) says nothing.
        Status::Statistics => p
            .stats_diff
            .and_then(|s| s.norm_rel_diff())
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
        // A place's pairs mostly come one after the other: no hashing for those.
        if let Some(last) = out.last_mut() {
            if *pairs[last[0]].place == *p.place {
                last.push(i);
                continue;
            }
        }
        match index.get(&*p.place) {
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
    let mut ranked = Vec::with_capacity(groups.len()); // at most one per place
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
    drop(groups); // summarize's sort is the peak of a large run's memory
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
        Method::Exhaustive,
        opts.fp32_matmul,
    );
    if let Some(cal) = calibration {
        let (margin, closest) =
            calibrate::margin(&c.pairs, &cal, opts.noise_factor, opts.amplification);
        c.analysis.calibration = Some(crate::comparison::CalibrationSummary {
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
        name: p.place.to_string(),
        tensor: p.name.to_string(),
        role: p.role,
        op_type: p.op_type.as_deref().map(str::to_string),
        order: p.order,
        stack: stacks.get(&*p.place).cloned(),
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
    method: Method,
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
            .find(|r| *r.name == *f.name)
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
        (Overall::Diverged, crate::comparison::diverged_summary(f))
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
        method,
        calibration: None,
        replayed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_the_fp32_matmul_reading_in_force() {
        let p = crate::comparison::PairReport {
            dtype_ref: Some(crate::dump::DType::Float32),
            dtype_dev: Some(crate::dump::DType::Float32),
            status: Status::Compared,
            verdict: Some(Verdict::Ok),
            ..crate::comparison::PairReport::empty("x", "x", crate::dump::Role::Output)
        };
        let precision = |mode| {
            summarize(
                std::slice::from_ref(&p),
                None,
                vec![],
                1,
                Method::Exhaustive,
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
