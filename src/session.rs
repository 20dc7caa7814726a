//! The comparison pipeline on opened dumps, as the commands run it: measure every pair, judge
//! it, then judge the suspects by their own error where the dumps record each call's inputs.
//! Library users get what `driftscope compare` and `bisect` compute from these.

use crate::compare::{self, CompareOptions, Comparison};
use crate::dump::Dump;
use crate::own_error;
use crate::verdict::bisect;

/// `driftscope compare`: every pair of `r` and `d` measured and judged. `progress` is called
/// once per measured pair.
pub fn compare(
    r: &Dump,
    d: &Dump,
    opts: &CompareOptions,
    progress: &(dyn Fn() + Sync),
) -> Comparison {
    let mut c = compare::compare(r, d, opts, progress);
    own_error::apply(&mut c, r, d);
    c
}

/// `driftscope bisect`: the first divergence of `d` against `r` (or against the known-good
/// run `d0`), reading few tensors unless `exhaustive`.
pub fn bisect(
    r: &Dump,
    d: &Dump,
    d0: Option<&Dump>,
    opts: &CompareOptions,
    exhaustive: bool,
) -> anyhow::Result<Comparison> {
    let mut c = bisect::run(r, d, d0, opts, exhaustive)?;
    if d0.is_none() {
        own_error::apply(&mut c, r, d);
    }
    Ok(c)
}
