//! An op's own error, judged tightly: where a dump records each call's inputs (msprobe API
//! level), the suspects of a judged comparison are recomputed in float64 from the device's own
//! recorded inputs ([`crate::replay`]). A correctly computed result rounded once to the output
//! dtype has an RMS relative error of about u/√3; an op whose own error is far beyond that is
//! wrong on the device, however much error it also inherited (docs/divergence.md).

use crate::comparison::{Comparison, PairReport};
use crate::dump::{Dump, Format, Role, Task};
use crate::replay::{self, ReplayVerdict, Side};
use crate::verdict::{self, DivergenceKind, Verdict};
use std::collections::HashSet;

/// At most this many suspects are replayed: the places whose output error grew most over what
/// they inherited (or their rounding), up to the first divergence.
pub const MAX_SUSPECTS: usize = 256;
/// Own error allowed, in unit roundoffs of the output's precision (with the subnormal term of
/// the noise model). The tuned clean runs stay below 0.96 (docs/divergence.md).
pub const OWN_FACTOR: f64 = 2.0;

/// What the own-error check did.
#[derive(Clone, Debug, Default)]
pub struct OwnErrorCheck {
    /// Places replayed.
    pub replayed: usize,
    /// The earliest place whose own error is beyond its allowance, when any.
    pub found: Option<String>,
}

/// The places up to the first divergence (all of them when there is none) whose output error
/// grew most over what they inherited (or their rounding), at most `MAX_SUSPECTS`, in
/// execution order.
fn suspects(c: &Comparison) -> Vec<String> {
    let before = c.analysis.first_divergence.as_ref().map(|f| f.order);
    let mut ranked: Vec<(f64, usize, String)> = Vec::new();
    for g in verdict::places(&c.pairs) {
        let p0 = &c.pairs[g[0]];
        if before.is_some_and(|o| p0.order > o) {
            break;
        }
        let growth = g
            .iter()
            .map(|&i| &c.pairs[i])
            .filter(|p: &&PairReport| p.role == Role::Output)
            .filter_map(|p| {
                let (e, x) = (verdict::pair_err(p)?, p.expected_err?);
                Some(e / p.inherited_err.unwrap_or(0.0).max(x).max(f64::MIN_POSITIVE))
            })
            .reduce(f64::max);
        if let Some(r) = growth {
            ranked.push((r, p0.order, p0.place.to_string()));
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.truncate(MAX_SUSPECTS);
    ranked.sort_by_key(|x| x.1);
    ranked.into_iter().map(|x| x.2).collect()
}

/// The places of `places` where the device dump `d` holds an input tensor (a positional or
/// keyword argument), in the same order.
fn with_device_inputs(d: &Dump, places: Vec<String>) -> Vec<String> {
    let wanted: HashSet<&str> = places.iter().map(String::as_str).collect();
    let with_input: HashSet<&str> = d
        .entries
        .iter()
        .filter(|e| matches!(e.role, Role::Input | Role::Kwargs) && wanted.contains(&*e.place))
        .map(|e| &*e.place)
        .collect();
    places
        .iter()
        .filter(|p| with_input.contains(p.as_str()))
        .cloned()
        .collect()
}

/// True when [`Side::new`] can prepare `x` for replay: an msprobe dump with a `dump.json`.
fn replayable_layout(x: &Dump) -> bool {
    x.format == Format::Msprobe && x.root.join("dump.json").is_file()
}

/// Replays the suspects of `c` (reference `r`, device `d`) and, when one's own error on the
/// device is beyond `OWN_FACTOR` units of its output's rounding while the reference's own
/// replay agrees with the recomputation, makes the earliest such place the first divergence
/// (kind `own_error`). Dumps without recorded calls (module level, plain layouts) are left
/// as they are.
pub fn apply(c: &mut Comparison, r: &Dump, d: &Dump) -> OwnErrorCheck {
    let mut check = OwnErrorCheck::default();
    if d.task != Task::Tensor && [r, d].iter().all(|x| replayable_layout(x)) {
        // A statistics or md5 task saved no tensor files: no call of it can be recomputed, so
        // its records (a tree of the whole dump.json: ~5.6 KiB an entry, both sides) are not read.
        c.analysis.replayed = Some(0);
        return check;
    }
    // A call is recomputed from its recorded input tensors: a suspect without one on the
    // device cannot be replayed, and when no suspect has one, the records (a second read of
    // both dump.json files) are not read.
    let places = with_device_inputs(d, suspects(c));
    if places.is_empty() {
        c.analysis.replayed = Some(0);
        return check;
    }
    let (ds, rs) = rayon::join(
        || Side::for_places(d, &places),
        || Side::for_places(r, &places),
    );
    let (Ok(ds), Ok(rs)) = (ds, rs) else {
        return check;
    };
    for place in &places {
        let rep = replay::replay_call(&ds, Some(&rs), place);
        if !rep.replayed {
            continue;
        }
        check.replayed += 1;
        let (Some(own), Some(allow)) = (rep.device_own_rel_l2, rep.allowance) else {
            continue;
        };
        // The replay's allowance is 16 x the expected rounding error of the output. Where the
        // reference computed the op at the same precision, its own error shows what the op's
        // algorithm does there (a long fp32 reduction): the device may do as much.
        let expected = allow / replay::NOISE_FACTOR;
        let floor = expected.max(rep.reference_own_rel_l2.unwrap_or(0.0));
        if own <= OWN_FACTOR * floor || rep.verdict == ReplayVerdict::Inconclusive {
            confirm_leak(c, place, own, floor);
            continue;
        }
        let ref_own = rep.reference_own_rel_l2;
        let Some(i) = c
            .pairs
            .iter()
            .position(|p| *p.place == **place && p.role == Role::Output)
        else {
            continue;
        };
        // A finding the rules made at this very place (a source, lost signal) says more; a
        // padding leak does not: an op wrong on its own inputs is wrong whatever it reads.
        if c.analysis.first_divergence.as_ref().is_some_and(|f| {
            f.name == *place
                && !matches!(
                    f.kind,
                    DivergenceKind::Introduced | DivergenceKind::PaddingLeak
                )
        }) {
            break;
        }
        let p = &mut c.pairs[i];
        let old = p.verdict.replace(Verdict::Diverged);
        let counts = &mut c.analysis.counts;
        if let Some(n) = old.and_then(|v| counts.get_mut(&v)) {
            *n -= 1;
        }
        *counts.entry(Verdict::Diverged).or_insert(0) += 1;
        let reason = format!(
            "the op's own error is {own:.3e}, {:.0}x what correct rounding to {} gives \
             ({floor:.2e}): recomputed in float64 from the device's own recorded inputs{}; \
             its output error against the reference is {:.3e}, of which {:.3e} was inherited",
            own / floor,
            rep.dtype.as_deref().unwrap_or("its dtype"),
            ref_own
                .map(|x| format!(" (the reference's own error: {x:.1e})"))
                .unwrap_or_default(),
            verdict::pair_err(p).unwrap_or(f64::NAN),
            p.inherited_err.unwrap_or(0.0),
        );
        let kind = DivergenceKind::OwnError;
        let finding = verdict::Finding {
            index: i,
            kind,
            reason,
            advice: kind.advice(),
        };
        let inherited = p.inherited_err.unwrap_or(0.0);
        let f = verdict::divergence(p, &finding, floor, inherited, &r.stacks);
        c.analysis.set_first_divergence(f);
        check.found = Some(place.clone());
        break;
    }
    c.analysis.replayed = Some(check.replayed);
    check
}

/// A padding leak named at `place` whose replay from the device's own (padded) inputs shows
/// the op computing correctly: the op is right, what it read is not. The reason says so.
fn confirm_leak(c: &mut Comparison, place: &str, own: f64, floor: f64) {
    let Some(mut f) = c
        .analysis
        .first_divergence
        .clone()
        .filter(|f| f.name == place && f.kind == DivergenceKind::PaddingLeak)
    else {
        return;
    };
    f.reason.push_str(&format!(
        "; recomputed in float64 from the device's own recorded (padded) inputs, its own error \
         is {own:.2e} ({:.1}x correct rounding): the op computes correctly what it reads",
        own / floor
    ));
    c.analysis.set_first_divergence(f);
}
