//! The comparison pipeline on opened dumps, as the commands run it: measure every pair, judge
//! it, then judge the suspects by their own error where the dumps record each call's inputs.
//! Library users get what `driftscope compare` and `bisect` compute from these.

use crate::align::Remap;
use crate::compare::{self, CompareOptions, Comparison};
use crate::dump::{Dump, Role};
use crate::own_error;
use crate::verdict::{bisect, Divergence, DivergenceKind};

/// `driftscope compare`: every pair of `r` and `d` measured and judged; `remap` is what the
/// mapping options paired or fused ([`crate::align::remap`], default when none were given).
/// `progress` is called once per measured pair.
pub fn compare(
    r: &Dump,
    d: &Dump,
    opts: &CompareOptions,
    remap: &Remap,
    progress: &(dyn Fn() + Sync),
) -> Comparison {
    let mut c = compare::compare(r, d, opts, progress);
    own_error::apply(&mut c, r, d);
    c.mark_remapped(remap);
    structural_first(&mut c);
    c
}

/// `driftscope bisect`: the first divergence of `d` against `r` (or against the known-good
/// run `d0`), reading few tensors unless `exhaustive`.
pub fn bisect(
    r: &Dump,
    d: &Dump,
    d0: Option<&Dump>,
    opts: &CompareOptions,
    remap: &Remap,
    exhaustive: bool,
) -> anyhow::Result<Comparison> {
    let mut c = bisect::run(r, d, d0, opts, exhaustive)?;
    if d0.is_none() {
        own_error::apply(&mut c, r, d);
    }
    c.mark_remapped(remap);
    structural_first(&mut c);
    Ok(c)
}

/// A run whose numbers never depart but whose call streams differ is not clean: the first
/// structural change becomes the first divergence (kind `control_flow`). Where a number does
/// depart, that stays the first divergence and the structural changes are listed beside it
/// (`structure.changes`; `check` fails on them too).
fn structural_first(c: &mut Comparison) {
    if c.analysis.first_divergence.is_some() {
        return;
    }
    let Some(ch) = c.structure.first_difference(None) else {
        return;
    };
    let call = ch.calls.first().cloned().unwrap_or_default();
    let f = Divergence {
        kind: DivergenceKind::ControlFlow,
        name: call.clone(),
        tensor: call,
        role: Role::Other,
        op_type: ch.apis.first().map(|a| a.0.clone()),
        order: ch.order,
        stack: None,
        reason: ch.message.clone(),
        advice: DivergenceKind::ControlFlow.advice().map(str::to_string),
        rel_l2_err: 0.0,
        expected_err: 0.0,
        inherited_err: 0.0,
        z_score: None,
        p_value: None,
    };
    c.analysis.set_first_divergence(f);
}
