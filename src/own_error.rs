//! An op's own error, judged tightly: where a dump records each call's inputs (msprobe API
//! level), the suspects of a judged comparison are recomputed in float64 from the device's own
//! recorded inputs ([`crate::replay`]). A correctly computed result rounded once to the output
//! dtype has an RMS relative error of about u/√3; an op whose own error is far beyond that is
//! wrong on the device, however much error it also inherited (docs/divergence.md).

use crate::compare::{Comparison, PairReport};
use crate::dump::{Dump, Role};
use crate::replay::{self, ReplayVerdict, Side};
use crate::verdict::{self, Divergence, DivergenceKind, Verdict};

/// A place is a suspect when its output error is at least this many times what it inherited
/// (or its rounding): the error grew there.
pub const SUSPECT_RATIO: f64 = 2.0;
/// At most this many suspects are replayed, earliest first.
pub const MAX_SUSPECTS: usize = 256;
/// Own error allowed, in unit roundoffs of the output's precision (with the subnormal term of
/// the noise model). Clean calls of the fault corpus stay below 2 (docs/divergence.md).
pub const OWN_FACTOR: f64 = 6.0;

/// What the own-error check did.
#[derive(Clone, Debug, Default)]
pub struct OwnErrorCheck {
    /// Places replayed.
    pub replayed: usize,
    /// The earliest place whose own error is beyond its allowance, when any.
    pub found: Option<String>,
}

/// Places whose worst output error is at least `SUSPECT_RATIO` times its inherited error (or
/// its rounding), before the first divergence, in execution order.
fn suspects(c: &Comparison) -> Vec<String> {
    let before = c.analysis.first_divergence.as_ref().map(|f| f.order);
    let mut out: Vec<String> = Vec::new();
    for g in verdict::places(&c.pairs) {
        let p0 = &c.pairs[g[0]];
        if before.is_some_and(|o| p0.order > o) {
            break;
        }
        let grows = g.iter().map(|&i| &c.pairs[i]).any(|p: &PairReport| {
            let (Some(e), Some(x)) = (verdict::pair_err(p), p.expected_err) else {
                return false;
            };
            p.role == Role::Output && e > SUSPECT_RATIO * p.inherited_err.unwrap_or(0.0).max(x)
        });
        if grows {
            out.push(p0.place.clone());
            if out.len() == MAX_SUSPECTS {
                break;
            }
        }
    }
    out
}

/// Replays the suspects of `c` (reference `r`, device `d`) and, when one's own error on the
/// device is beyond `OWN_FACTOR` units of its output's rounding while the reference's own
/// replay agrees with the recomputation, makes the earliest such place the first divergence
/// (kind `own_error`). Dumps without recorded calls (module level, plain layouts) are left
/// as they are.
pub fn apply(c: &mut Comparison, r: &Dump, d: &Dump) -> OwnErrorCheck {
    let mut check = OwnErrorCheck::default();
    let (Ok(ds), Ok(rs)) = (Side::new(d), Side::new(r)) else {
        return check;
    };
    let places = suspects(c);
    for place in &places {
        let rep = replay::replay_call(&ds, Some(&rs), place);
        if !rep.replayed {
            continue;
        }
        check.replayed += 1;
        let (Some(own), Some(allow)) = (rep.device_own_rel_l2, rep.allowance) else {
            continue;
        };
        // The replay's allowance is 16 x the expected rounding error of the output.
        let expected = allow / replay::NOISE_FACTOR;
        if own <= OWN_FACTOR * expected || rep.verdict == ReplayVerdict::Inconclusive {
            continue;
        }
        let ref_own = rep.reference_own_rel_l2;
        let Some(i) = c
            .pairs
            .iter()
            .position(|p| p.place == *place && p.role == Role::Output)
        else {
            continue;
        };
        let p = &mut c.pairs[i];
        let old = p.verdict.replace(Verdict::Diverged);
        let counts = &mut c.analysis.counts;
        if let Some(n) = old.and_then(|v| counts.get_mut(&v)) {
            *n -= 1;
        }
        *counts.entry(Verdict::Diverged).or_insert(0) += 1;
        let reason = format!(
            "the op's own error is {own:.3e}, {:.0}x what correct rounding to {} gives \
             ({expected:.2e}): recomputed in float64 from the device's own recorded inputs{}; \
             its output error against the reference is {:.3e}, of which {:.3e} was inherited",
            own / expected,
            rep.dtype.as_deref().unwrap_or("its dtype"),
            ref_own
                .map(|x| format!(" (the reference's own error: {x:.1e})"))
                .unwrap_or_default(),
            verdict::pair_err(p).unwrap_or(f64::NAN),
            p.inherited_err.unwrap_or(0.0),
        );
        let f = Divergence {
            kind: DivergenceKind::OwnError,
            name: p.place.clone(),
            tensor: p.name.clone(),
            role: p.role,
            op_type: p.op_type.clone(),
            order: p.order,
            stack: r.stacks.get(&p.place).cloned(),
            reason,
            advice: DivergenceKind::OwnError.advice().map(str::to_string),
            rel_l2_err: verdict::pair_err(p).unwrap_or(f64::NAN),
            expected_err: expected,
            inherited_err: p.inherited_err.unwrap_or(0.0),
            z_score: None,
            p_value: None,
        };
        c.analysis.set_first_divergence(f);
        check.found = Some(place.clone());
        break;
    }
    c.analysis.replayed = Some(check.replayed);
    check
}
