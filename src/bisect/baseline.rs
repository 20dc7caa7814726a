//! Baseline mode: the candidate against a known-good device run of the same model.
//!
//! Two questions at every place, in execution order. Against the reference: does the
//! candidate's error depart from the baseline run's error at the same tensor? And against the
//! baseline run directly: with inputs bit-identical to the baseline's, does the output differ
//! beyond the rounding of its dtype? Then the op itself changed (a new kernel, another
//! accumulation order), however little it adds to the error against the reference: that is the
//! nightly question. The first place where either holds is reported, with both numbers.

use crate::compare::{self, CompareOptions};
use crate::comparison::{Comparison, PairReport};
use crate::comparison::{DivergenceKind, Method, Overall, Verdict};
use crate::dump::{Dump, Role};
use crate::noise;
use crate::verdict::{divergence, pair_err, pair_expected, summarize, Finding, Ranked};
use std::collections::HashMap;

/// A place departs from the baseline when its error against the reference exceeds this many
/// times the baseline run's error at the same tensor (or the baseline's plus 16x rounding).
pub const BASELINE_FACTOR: f64 = 4.0;
/// With inputs identical to the baseline run's, an output that differs from the baseline's by
/// more than this many unit roundoffs of its dtype (relative L2) comes from a changed op. A
/// correctly rounded op fed the same inputs differs by at most about one unit roundoff (a
/// reduction in another order rounded once), usually by nothing.
pub const OP_CHANGED_FACTOR: f64 = 4.0;

/// True when every floating-point input of a place is bit-identical between the two device
/// runs (`direct` maps tensor names to the candidate-vs-baseline pairs).
fn inputs_identical(place: &[&PairReport], direct: &HashMap<&str, &PairReport>) -> Option<bool> {
    let mut any = false;
    for p in place.iter().filter(|p| p.role.is_input()) {
        let m = direct.get(&*p.name).and_then(|q| q.metrics.as_ref())?;
        any = true;
        if m.max_abs_err != 0.0 || m.nonfinite_mismatch != 0 {
            return Some(false);
        }
    }
    any.then_some(true)
}

/// The output of a place that departs most from the baseline run's, with its relative L2 error
/// against it and that error's allowance, when one exceeds the allowance.
fn changed_output<'a>(
    place: &[&'a PairReport],
    direct: &HashMap<&str, &PairReport>,
    mode: noise::Fp32Matmul,
) -> Option<(&'a PairReport, f64, f64)> {
    place
        .iter()
        .filter(|p| p.role == Role::Output)
        .filter_map(|p| {
            let q = direct.get(&*p.name)?;
            let e = pair_err(q)?;
            let allowed = OP_CHANGED_FACTOR * crate::verdict::pair_roundoff(q, mode)?;
            (e > allowed || crate::verdict::has_mismatch(q)).then_some((*p, e, allowed))
        })
        .max_by(|a, b| (a.1 / a.2).total_cmp(&(b.1 / b.2)))
}

/// Baseline mode: the first place where `d` departs from the known-good run `d0`, judged
/// against `r` and against `d0` directly.
pub fn run(r: &Dump, d: &Dump, d0: &Dump, opts: &CompareOptions) -> Comparison {
    let mut c = compare::compare(r, d, opts, &|| {});
    let c0 = compare::compare(r, d0, opts, &|| {});
    let cd = compare::compare(d0, d, opts, &|| {});
    let base: HashMap<&str, f64> = c0
        .pairs
        .iter()
        .filter_map(|p| Some((&*p.name, pair_err(p)?)))
        .collect();
    let direct: HashMap<&str, &PairReport> = cd.pairs.iter().map(|p| (&*p.name, p)).collect();
    let o = &opts.noise;
    let mut first = None;
    let mut ranked = Vec::new();
    // Without recorded inputs, a place's inputs are the previous place's outputs.
    let mut previous_identical = true;
    for g in &crate::verdict::places(&c.pairs) {
        let place: Vec<&PairReport> = g.iter().map(|&i| &c.pairs[i]).collect();
        let mut worst: Option<(&PairReport, f64, f64, f64)> = None;
        for p in place.iter().filter(|p| p.role == Role::Output) {
            let (Some(e), Some(u)) = (pair_err(p), pair_expected(p, o.fp32_matmul)) else {
                continue;
            };
            let e0 = base.get(&*p.name).copied().unwrap_or(0.0);
            let ratio = e / e0.max(u);
            if worst.is_none_or(|w| ratio > w.1) {
                worst = Some((p, ratio, e0, u));
            }
        }
        let same_inputs = inputs_identical(&place, &direct).unwrap_or(previous_identical);
        let changed = changed_output(&place, &direct, o.fp32_matmul).filter(|_| same_inputs);
        previous_identical = place.iter().filter(|p| p.role == Role::Output).all(|p| {
            direct
                .get(&*p.name)
                .is_some_and(|q| crate::verdict::bit_identical(q))
        });
        let Some((p, ratio, e0, u)) = worst else {
            continue;
        };
        let e = pair_err(p).unwrap_or(0.0);
        let allowed = (BASELINE_FACTOR * e0).max(e0 + o.noise_factor * u);
        let departs = e > allowed;
        ranked.push(Ranked {
            name: p.place.clone(),
            tensor: p.name.clone(),
            rel_l2_err: e,
            inherited_err: e0,
            expected_err: u,
            added: ratio,
            verdict: if departs || changed.is_some() {
                Verdict::Diverged
            } else {
                Verdict::Ok
            },
        });
        if first.is_some() {
            continue;
        }
        let finding = if let Some((q, e_direct, allowed_direct)) = changed {
            let e_ref = pair_err(q).unwrap_or(0.0);
            let e0_ref = base.get(&*q.name).copied().unwrap_or(0.0);
            Some((
                q,
                DivergenceKind::OpChanged,
                format!(
                    "the op changed: its inputs are bit-identical to the baseline run's, its \
                     output differs from the baseline's by relative L2 error {e_direct:.3e} \
                     ({:.0}x the {allowed_direct:.2e} that rounding allows); against the \
                     reference {e_ref:.3e} vs {e0_ref:.3e} in the baseline run",
                    e_direct / (allowed_direct / OP_CHANGED_FACTOR)
                ),
            ))
        } else if departs {
            Some((
                p,
                DivergenceKind::Introduced,
                format!(
                    "relative L2 error {e:.3e} against {e0:.3e} in the baseline run ({:.0}x; \
                     allowed {allowed:.3e})",
                    e / e0.max(f64::MIN_POSITIVE)
                ),
            ))
        } else {
            None
        };
        if let Some((q, kind, reason)) = finding {
            let f = Finding {
                index: 0,
                kind,
                reason,
                advice: None,
            };
            let e0 = base.get(&*q.name).copied().unwrap_or(0.0);
            first = Some(divergence(q, &f, u, e0, &r.stacks));
        }
    }
    // Pair verdicts relative to the baseline: departs / after departure / same as baseline.
    let first_order = first.as_ref().map(|f| f.order);
    for p in &mut c.pairs {
        let e = pair_err(p);
        let e0 = base.get(&*p.name).copied();
        p.inherited_err = e0;
        let is_first = first.as_ref().is_some_and(|f| *f.tensor == *p.name);
        p.verdict = Some(match (e, e0, first_order) {
            _ if is_first => Verdict::Diverged,
            (Some(0.0), _, _) => Verdict::Identical,
            (Some(e), Some(e0), Some(fo)) if p.order >= fo && e > BASELINE_FACTOR * e0 => {
                Verdict::Drift
            }
            _ => Verdict::Ok,
        });
    }
    let read = c.pairs.len() + c0.pairs.len() + cd.pairs.len();
    let mut a = summarize(
        &c.pairs,
        first,
        ranked,
        read,
        Method::Baseline,
        o.fp32_matmul,
    );
    a.tensors_total = read;
    if a.first_divergence.is_none() && a.overall != Overall::Identical {
        a.summary = "no departure from the baseline run beyond noise".into();
    }
    c.analysis = a;
    c
}
