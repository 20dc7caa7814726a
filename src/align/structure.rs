//! Structural alignment: pairing the two runs' call streams by sequence alignment over call
//! signatures, so that an extra, missing or renumbered call leaves every other call paired,
//! and saying what changed structurally. The method, its cost and its limits are written up in
//! docs/alignment.md.
//!
//! msprobe names carry per-API counters (`Functional.linear.7.forward`): one extra call on the
//! device renumbers every later call of that API, and pairing by name then meets the wrong
//! calls. Here each dump is a stream of calls (places, in execution order), each call has a
//! signature (its API or module with the counter removed, and each tensor's role, index,
//! dtype class and shape) and the two streams are aligned as sequences:
//! 1. when name pairing already pairs every call one to one, in order, with the same API
//!    (the runs agree), it is kept as it is (the fast path);
//! 2. otherwise a Myers diff over signatures, bounded in its edit distance; past the bound, a
//!    diff over API names alone; past that too, exact-name anchors (longest increasing chain)
//!    with bounded diffs between them;
//! 3. a run of extra or missing calls inside a repeating stretch (identical layers) is moved to
//!    where the paired calls' recorded statistics agree best;
//! 4. calls left unpaired between two paired ones are paired by API name where they can be
//!    (same call, other shapes: padding, bucketing); the rest are extra or missing calls, and
//!    one device call standing for a run of reference calls is proposed as a `--fusion-map`.

use super::diff;
use super::{normalize, strip_counter, Alignment, MatchKind, Pair};
use crate::dump::{DType, Entry};
use serde::{Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

/// How the two call streams were paired.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlignMethod {
    /// The streams agree: every call paired one to one by name, in order.
    #[default]
    Names,
    /// Sequence alignment over call signatures (API, tensor roles, dtype classes, shapes).
    Signatures,
    /// Signatures differed beyond the bound: sequence alignment over API names alone.
    OpTypes,
    /// The streams differ beyond the bound: exact-name anchors with bounded alignments between
    /// them (approximate).
    Anchored,
}

/// Which side ran calls the other did not.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The device (candidate) ran calls the reference did not.
    Extra,
    /// The device skipped calls the reference ran.
    Missing,
}

/// A run of consecutive calls present on one side only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructuralChange {
    /// Extra (device only) or missing (reference only).
    pub kind: ChangeKind,
    /// The calls: the device's places for `extra`, the reference's for `missing`.
    pub calls: Vec<String>,
    /// How many calls of each API (counter removed), in order of first appearance.
    pub apis: Vec<(String, usize)>,
    /// The last paired reference call before the run (`null` at the start).
    pub after: Option<String>,
    /// The first paired reference call after the run (`null` at the end).
    pub before: Option<String>,
    /// Position in the reference's execution order: the first missing call's, or for extra
    /// calls the next paired reference call's (one past the last place at the end).
    pub order: usize,
    /// One sentence for humans.
    pub message: String,
}

/// What the structural alignment found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Structure {
    /// How the call streams were paired.
    pub method: AlignMethod,
    /// Calls in the reference.
    pub calls_reference: usize,
    /// Calls in the candidate.
    pub calls_candidate: usize,
    /// Calls paired.
    pub paired: usize,
    /// Paired calls whose names differ (counters renumbered by an extra or missing call).
    pub renumbered: usize,
    /// Paired calls whose signatures differ (other shapes, dtype classes or arguments).
    pub reshaped: usize,
    /// Runs of extra and missing calls, in execution order.
    pub changes: Vec<StructuralChange>,
    /// A proposed `--fusion-map` (device call -> the reference calls it replaces), for each
    /// place where one device call stands where the reference ran others and its first input
    /// and first output have the shapes of the first reference call's input and the last one's
    /// output (a fused kernel or a compiled region). For the user to confirm: the tensors meet
    /// only once the map is given.
    #[serde(default)]
    pub fusion_proposal: std::collections::BTreeMap<String, Vec<String>>,
}

impl Structure {
    /// The earliest structural change, if any.
    pub fn first_change(&self) -> Option<&StructuralChange> {
        self.changes.iter().min_by_key(|c| c.order)
    }

    /// Whether the first difference between the runs is structural: the earliest change when
    /// it comes at or before `numeric_first`, the execution order of the first numerical
    /// divergence (`None`: no numerical divergence). An extra call sits before the reference
    /// call it precedes, so a tie goes to the change.
    pub fn first_difference(&self, numeric_first: Option<usize>) -> Option<&StructuralChange> {
        self.first_change()
            .filter(|c| numeric_first.is_none_or(|o| c.order <= o))
    }
}

/// One call (place) of a stream: a run of consecutive entries.
struct Call<'a> {
    /// The place as the dump recorded it.
    place: &'a str,
    /// The place as its entries are named now: a mapping file or `--fuzzy` may have renamed
    /// them to the reference's place (then the first renamed entry's).
    named: &'a str,
    /// Its entries.
    entries: Range<usize>,
    /// The reference's execution order of the place.
    order: usize,
    /// Hash of the API or module with the counter removed.
    op: u64,
    /// Hash of `op` and each tensor's role, index, dtype class and shape.
    sig: u64,
}

/// The place an entry belongs to under its current name: its own place, or, for an entry a
/// mapping renamed, its new name without `.{role}.{index}`.
fn place_of(e: &Entry) -> &str {
    if e.name.starts_with(&*e.place) {
        return &e.place;
    }
    let suffix = format!(".{}.{}", e.role, e.index);
    e.name.strip_suffix(suffix.as_str()).unwrap_or(&e.name)
}

/// An entry's name within its call (`.input.0`), normalised.
fn suffix(e: &Entry) -> std::borrow::Cow<'_, str> {
    let s = &e.name[place_of(e).len()..];
    if s.contains(".input_args.") || s.contains(".input_kwargs.") {
        normalize(s).into()
    } else {
        s.into()
    }
}

/// The API or module of a place, counter removed (`Functional.linear.forward`).
pub fn api(place: &str) -> String {
    normalize(&strip_counter(place))
}

fn hash<T: Hash>(t: &T) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// fp16 and fp32 runs of one model agree on dtype classes, not dtypes.
fn dtype_class(d: Option<DType>) -> u8 {
    match d {
        None => 0,
        Some(d) if d.is_float() => 1,
        Some(DType::Bool) => 2,
        Some(_) => 3,
    }
}

/// Splits entries into calls (runs of one place).
fn calls(entries: &[Entry]) -> Vec<Call<'_>> {
    let mut out: Vec<Call> = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i < entries.len() && entries[i].place == entries[start].place {
            continue;
        }
        if start < entries.len() {
            let run = &entries[start..i];
            let named = run
                .iter()
                .map(place_of)
                .find(|p| **p != *entries[start].place)
                .unwrap_or(&entries[start].place);
            let a = api(named);
            let mut h = DefaultHasher::new();
            a.hash(&mut h);
            for e in run {
                suffix(e).hash(&mut h);
                dtype_class(e.dtype).hash(&mut h);
                e.shape.hash(&mut h);
            }
            out.push(Call {
                place: &entries[start].place,
                named,
                entries: start..i,
                order: entries[start].order,
                op: hash(&a),
                sig: h.finish(),
            });
        }
        start = i;
    }
    out
}

/// Most rounds a Myers diff may take on streams of `n` calls in all: its work is O(n·D) and
/// its memory O(D²), so D is capped at 2000 rounds and at 4·10⁸ / n.
fn bound(n: usize) -> usize {
    (400_000_000 / n.max(1)).clamp(64, 2000)
}

/// Pairs `reference` and `candidate` entries by structure (see the module documentation).
pub fn align(reference: &[Entry], candidate: &[Entry]) -> Alignment {
    // The name pairing and each side's call list are independent: built side by side (the
    // three took 0.17 s of one core on a 100k-call dump).
    let counted = |entries| {
        let c = calls(entries);
        let counters = c.iter().any(|c| strip_counter(c.named) != c.named);
        (c, counters)
    };
    let (by_name, ((rc, r_counters), (dc, d_counters))) = rayon::join(
        || super::align_entries(reference, candidate),
        || rayon::join(|| counted(reference), || counted(candidate)),
    );
    let counters = r_counters || d_counters;
    if let Some(p) = name_pairs(&by_name, reference, candidate, &rc, &dc) {
        let mut al = by_name;
        al.structure = summary(&rc, &dc, &p, AlignMethod::Names, reference, candidate);
        return al;
    }
    if !counters {
        // Without counters a name is the call's identity: keep the name pairing, and report
        // structure only when that pairing keeps the order.
        let mut al = by_name;
        if let Some(p) = monotone_place_pairs(&al, reference, candidate, &rc, &dc) {
            al.structure = summary(&rc, &dc, &p, AlignMethod::Names, reference, candidate);
        }
        return al;
    }
    let cost = |i: usize, j: usize| {
        stats_distance(
            &reference[rc[i].entries.clone()],
            &candidate[dc[j].entries.clone()],
        )
    };
    let cap = bound(rc.len() + dc.len());
    let (pairs, method) = sequence_pairs(&rc, &dc, &cost, cap);
    let mut al = Alignment::default();
    // Pairs a mapping file or `--fuzzy` made stand: they name the reference entry.
    let mut ref_used = vec![false; reference.len()];
    let mut used = vec![false; candidate.len()];
    for p in &by_name.pairs {
        let e = &candidate[p.candidate];
        if !e.name.starts_with(&*e.place) {
            (ref_used[p.reference], used[p.candidate]) = (true, true);
            al.pairs.push(*p);
        }
    }
    for &(i, j) in &pairs {
        let mut by_suffix: HashMap<std::borrow::Cow<str>, usize> = HashMap::new();
        for k in dc[j].entries.clone().filter(|&k| !used[k]) {
            by_suffix.entry(suffix(&candidate[k])).or_insert(k);
        }
        for k in rc[i].entries.clone() {
            if ref_used[k] {
                continue;
            }
            let Some(m) = by_suffix.remove(&suffix(&reference[k])) else {
                continue;
            };
            (ref_used[k], used[m]) = (true, true);
            let (rn, cn) = (&reference[k].name, &candidate[m].name);
            let kind = if rn == cn {
                MatchKind::Exact
            } else if normalize(rn) == normalize(cn) {
                MatchKind::Normalized
            } else {
                MatchKind::Structural
            };
            al.pairs.push(Pair {
                reference: k,
                candidate: m,
                kind,
            });
        }
    }
    al.pairs.sort_by_key(|p| p.reference);
    al.unmatched_reference = (0..reference.len()).filter(|&i| !ref_used[i]).collect();
    al.unmatched_candidate = (0..candidate.len()).filter(|&i| !used[i]).collect();
    al.structure = summary(&rc, &dc, &pairs, method, reference, candidate);
    al
}

/// Index of the call holding each entry.
fn call_index(calls: &[Call], n: usize) -> Vec<usize> {
    let mut out = vec![0; n];
    for (k, c) in calls.iter().enumerate() {
        out[c.entries.clone()].fill(k);
    }
    out
}

/// The call pairs a name pairing makes when it pairs calls one to one; `None` when an entry
/// pair links calls already linked elsewhere.
fn one_to_one(
    al: &Alignment,
    reference: &[Entry],
    candidate: &[Entry],
    rc: &[Call],
    dc: &[Call],
) -> Option<Vec<(usize, usize)>> {
    let (ri, di) = (
        call_index(rc, reference.len()),
        call_index(dc, candidate.len()),
    );
    let mut fwd = vec![usize::MAX; rc.len()];
    let mut back = vec![usize::MAX; dc.len()];
    for p in &al.pairs {
        let (i, j) = (ri[p.reference], di[p.candidate]);
        if (fwd[i] != usize::MAX && fwd[i] != j) || (back[j] != usize::MAX && back[j] != i) {
            return None;
        }
        fwd[i] = j;
        back[j] = i;
    }
    Some(
        fwd.iter()
            .enumerate()
            .filter(|(_, &j)| j != usize::MAX)
            .map(|(i, &j)| (i, j))
            .collect(),
    )
}

/// The name pairing's call pairs when the streams agree: every call paired, one to one, in
/// order, with the same API.
fn name_pairs(
    al: &Alignment,
    reference: &[Entry],
    candidate: &[Entry],
    rc: &[Call],
    dc: &[Call],
) -> Option<Vec<(usize, usize)>> {
    let p = one_to_one(al, reference, candidate, rc, dc)?;
    let agree = p.len() == rc.len()
        && p.len() == dc.len()
        && p.windows(2).all(|w| w[0].1 < w[1].1)
        && p.iter().all(|&(i, j)| rc[i].op == dc[j].op);
    agree.then_some(p)
}

/// The name pairing's call pairs when they are one to one and in order (some calls may be
/// unpaired).
fn monotone_place_pairs(
    al: &Alignment,
    reference: &[Entry],
    candidate: &[Entry],
    rc: &[Call],
    dc: &[Call],
) -> Option<Vec<(usize, usize)>> {
    let p = one_to_one(al, reference, candidate, rc, dc)?;
    p.windows(2).all(|w| w[0].1 < w[1].1).then_some(p)
}

/// Aligns the call streams (steps 2 to 4 of the module documentation).
fn sequence_pairs(
    rc: &[Call],
    dc: &[Call],
    cost: &dyn Fn(usize, usize) -> f64,
    cap: usize,
) -> (Vec<(usize, usize)>, AlignMethod) {
    let sig = |c: &[Call]| c.iter().map(|c| c.sig).collect::<Vec<u64>>();
    let op = |c: &[Call]| c.iter().map(|c| c.op).collect::<Vec<u64>>();
    let (a_sig, b_sig, a_op, b_op) = (sig(rc), sig(dc), op(rc), op(dc));
    let (mut pairs, method) = if let Some(p) = diff::myers(&a_sig, &b_sig, cap) {
        (p, AlignMethod::Signatures)
    } else if let Some(p) = diff::myers(&a_op, &b_op, cap) {
        (p, AlignMethod::OpTypes)
    } else {
        let names = |c: &[Call]| {
            c.iter()
                .map(|c| normalize(c.named))
                .collect::<Vec<String>>()
        };
        let (an, bn) = (names(rc), names(dc));
        let mut dev: HashMap<&str, usize> = HashMap::new();
        for (j, n) in bn.iter().enumerate() {
            dev.entry(n.as_str()).or_insert(j);
        }
        let candidates: Vec<(usize, usize)> = an
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let j = *dev.get(n.as_str())?;
                (a_op[i] == b_op[j]).then_some((i, j))
            })
            .collect();
        let anchors = monotone(candidates);
        let mut p = Vec::new();
        fill_gaps(&anchors, rc.len(), dc.len(), &mut p, |ra, rb| {
            diff::myers(&a_sig[ra.clone()], &b_sig[rb.clone()], cap)
                .or_else(|| diff::myers(&a_op[ra.clone()], &b_op[rb.clone()], cap))
                .unwrap_or_else(|| in_order(&a_op[ra], &b_op[rb]))
        });
        (p, AlignMethod::Anchored)
    };
    slide(
        &mut pairs,
        rc.len(),
        dc.len(),
        &|i, j| a_sig[i] == b_sig[j],
        cost,
    );
    // Step 4: calls of the same API left between two paired calls are the same call with
    // other shapes.
    let mut out = Vec::with_capacity(pairs.len());
    fill_gaps(&pairs, rc.len(), dc.len(), &mut out, |ra, rb| {
        diff::myers(&a_op[ra.clone()], &b_op[rb.clone()], cap)
            .unwrap_or_else(|| in_order(&a_op[ra], &b_op[rb]))
    });
    (out, method)
}

/// How unlike two calls' recorded statistics are: the sum over their tensors (taken in order:
/// the calls have the same signature) of |a - b| / (|a| + |b|) for the recorded norms, 0 where
/// nothing was recorded. The same call in fp32 and fp16 scores near 0, another call near 1.
fn stats_distance(a: &[Entry], b: &[Entry]) -> f64 {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some((x.stats?.norm()?, y.stats?.norm()?)))
        .map(|(x, y)| {
            if x == y {
                0.0
            } else if x.is_finite() && y.is_finite() {
                (x - y).abs() / (x.abs() + y.abs())
            } else {
                1.0
            }
        })
        .sum()
}

/// Most paired calls on each side of a run that [`slide`] may move it across (bounds its cost).
const SLIDE_WINDOW: usize = 2000;

/// Breaks ties between equally short alignments. A run of extra or missing calls inside a
/// stretch that repeats (identical decoder layers, decoding steps of one shape) can sit at any
/// of several places with the same number of pairs; the diff puts it last. Each run of calls
/// on one side only, between two stretches of paired calls, is moved to the place where the
/// paired calls' recorded statistics agree best (`cost`), keeping the diff's place on ties.
fn slide(
    pairs: &mut [(usize, usize)],
    n: usize,
    m: usize,
    eq: &dyn Fn(usize, usize) -> bool,
    cost: &dyn Fn(usize, usize) -> f64,
) {
    let diag =
        |p: &[(usize, usize)], k: usize| p[k].0 == p[k - 1].0 + 1 && p[k].1 == p[k - 1].1 + 1;
    for g0 in 0..=pairs.len() {
        // The gap before pairs[g0]: (di, dj) steps from the previous pair (or the start).
        let (pi, pj) = if g0 == 0 {
            (0, 0)
        } else {
            (pairs[g0 - 1].0 + 1, pairs[g0 - 1].1 + 1)
        };
        let (ni, nj) = pairs.get(g0).copied().unwrap_or((n, m));
        let (li, lj) = (ni - pi, nj - pj);
        if (li == 0) == (lj == 0) {
            continue; // no gap, or both sides have calls: not a pure run
        }
        // The stretches of paired calls around the gap: pairs[s..g0] and pairs[g0..e].
        let mut s = g0;
        while s > 0
            && g0 - s < SLIDE_WINDOW
            && eq(pairs[s - 1].0, pairs[s - 1].1)
            && (s == g0 || diag(pairs, s))
        {
            s -= 1;
        }
        let mut e = g0;
        while e < pairs.len()
            && e - g0 < SLIDE_WINDOW
            && eq(pairs[e].0, pairs[e].1)
            && (e == g0 || diag(pairs, e))
        {
            e += 1;
        }
        if s == e {
            continue;
        }
        // Place t of the region pairs (i0 + t, j0 + t) before the gap, shifted by the gap's
        // length after it; the gap may go before any place g where every pair is equal.
        let (i0, j0) = if s < g0 {
            pairs[s]
        } else {
            (pairs[s].0 - li, pairs[s].1 - lj)
        };
        let len = e - s;
        let at = |t: usize, after: bool| {
            if after {
                (i0 + t + li, j0 + t + lj)
            } else {
                (i0 + t, j0 + t)
            }
        };
        let fits = |(i, j): (usize, usize)| i < n && j < m && eq(i, j);
        let mut before_ok = vec![true; len + 1];
        let mut before_cost = vec![0.0; len + 1];
        for t in 0..len {
            let p = at(t, false);
            before_ok[t + 1] = before_ok[t] && fits(p);
            before_cost[t + 1] = before_cost[t] + if fits(p) { cost(p.0, p.1) } else { 0.0 };
        }
        let mut after_ok = vec![true; len + 1];
        let mut after_cost = vec![0.0; len + 1];
        for t in (0..len).rev() {
            let p = at(t, true);
            after_ok[t] = after_ok[t + 1] && fits(p);
            after_cost[t] = after_cost[t + 1] + if fits(p) { cost(p.0, p.1) } else { 0.0 };
        }
        let here = g0 - s;
        let total = |g: usize| before_cost[g] + after_cost[g];
        let mut best = here;
        for g in 0..=len {
            // Sums taken in another order differ in their last bits: only a clear gain moves.
            let gain = total(best) - total(g);
            if before_ok[g] && after_ok[g] && gain > 1e-9 * (1.0 + total(best)) {
                best = g;
            }
        }
        if best != here {
            for t in 0..len {
                pairs[s + t] = at(t, t >= best);
            }
        }
    }
}

/// Copies the increasing `pairs` into `out`, pairing each gap between two of them (and before
/// the first and after the last) with `inner`, whose pairs are relative to the gap.
fn fill_gaps(
    pairs: &[(usize, usize)],
    n: usize,
    m: usize,
    out: &mut Vec<(usize, usize)>,
    mut inner: impl FnMut(Range<usize>, Range<usize>) -> Vec<(usize, usize)>,
) {
    let (mut i0, mut j0) = (0, 0);
    for &(i, j) in pairs.iter().chain(std::iter::once(&(n, m))) {
        if i > i0 && j > j0 {
            out.extend(
                inner(i0..i, j0..j)
                    .into_iter()
                    .map(|(a, b)| (a + i0, b + j0)),
            );
        }
        if i < n {
            out.push((i, j));
        }
        (i0, j0) = (i + 1, j + 1);
    }
}

/// Pairs equal keys in order, per key (the k-th call of an API with the k-th), keeping an
/// increasing subset: the bounded last resort.
fn in_order(a: &[u64], b: &[u64]) -> Vec<(usize, usize)> {
    let mut queues: HashMap<u64, VecDeque<usize>> = HashMap::new();
    for (j, k) in b.iter().enumerate() {
        queues.entry(*k).or_default().push_back(j);
    }
    let p = a
        .iter()
        .enumerate()
        .filter_map(|(i, k)| Some((i, queues.get_mut(k)?.pop_front()?)))
        .collect();
    monotone(p)
}

/// The longest subset of `pairs` (increasing in the first index) increasing in both.
fn monotone(pairs: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let js: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    diff::longest_increasing(&js)
        .into_iter()
        .map(|k| pairs[k])
        .collect()
}

/// The display name of an API (`Functional.linear`, `Functional.linear.backward`).
fn api_label(place: &str) -> String {
    let a = api(place);
    a.strip_suffix(".forward").map(str::to_string).unwrap_or(a)
}

/// The structural findings of call pairs `pairs` (increasing in both).
fn summary(
    rc: &[Call],
    dc: &[Call],
    pairs: &[(usize, usize)],
    method: AlignMethod,
    reference: &[Entry],
    candidate: &[Entry],
) -> Structure {
    let mut s = Structure {
        method,
        calls_reference: rc.len(),
        calls_candidate: dc.len(),
        paired: pairs.len(),
        renumbered: pairs
            .iter()
            .filter(|&&(i, j)| normalize(rc[i].named) != normalize(dc[j].named))
            .count(),
        reshaped: pairs
            .iter()
            .filter(|&&(i, j)| rc[i].sig != dc[j].sig)
            .count(),
        changes: Vec::new(),
        fusion_proposal: Default::default(),
    };
    let end_order = rc.last().map_or(0, |c| c.order + 1);
    let mut prev: Option<(usize, usize)> = None;
    for next in pairs.iter().copied().map(Some).chain([None]) {
        let (i0, j0) = prev.map_or((0, 0), |(i, j)| (i + 1, j + 1));
        let (i1, j1) = next.unwrap_or((rc.len(), dc.len()));
        let after = prev.map(|(i, _)| rc[i].place.to_string());
        let before = next.map(|(i, _)| rc[i].place.to_string());
        if i1 > i0 {
            s.changes.push(change(
                ChangeKind::Missing,
                &rc[i0..i1],
                after.clone(),
                before.clone(),
                rc[i0].order,
            ));
        }
        if i1 > i0 && j1 == j0 + 1 {
            let (first, last) = (&rc[i0], &rc[i1 - 1]);
            let shape = |c: &Call, e: &[Entry], role: &str| {
                e[c.entries.clone()]
                    .iter()
                    .find(|x| suffix(x) == format!(".{role}.0"))
                    .and_then(|x| x.shape.clone())
            };
            let fits = |a: Option<Arc<[usize]>>, b: Option<Arc<[usize]>>| {
                a.zip(b)
                    .is_some_and(|(a, b)| super::shapes_compatible(&a, &b))
            };
            let fused = &dc[j0];
            if fits(
                shape(first, reference, "input"),
                shape(fused, candidate, "input"),
            ) && fits(
                shape(last, reference, "output"),
                shape(fused, candidate, "output"),
            ) {
                s.fusion_proposal.insert(
                    fused.place.to_string(),
                    rc[i0..i1].iter().map(|c| c.place.to_string()).collect(),
                );
            }
        }
        if j1 > j0 {
            let order = next.map_or(end_order, |(i, _)| rc[i].order);
            s.changes
                .push(change(ChangeKind::Extra, &dc[j0..j1], after, before, order));
        }
        prev = next;
    }
    s
}

fn change(
    kind: ChangeKind,
    calls: &[Call],
    after: Option<String>,
    before: Option<String>,
    order: usize,
) -> StructuralChange {
    let mut c = StructuralChange {
        kind,
        calls: calls.iter().map(|c| c.place.to_string()).collect(),
        apis: Vec::new(),
        message: String::new(),
        after,
        before,
        order,
    };
    c.describe();
    c
}

impl StructuralChange {
    /// Fills `apis` and `message` from the other fields.
    fn describe(&mut self) {
        let mut apis: Vec<(String, usize)> = Vec::new();
        for c in &self.calls {
            let l = api_label(c);
            match apis.iter_mut().find(|(a, _)| *a == l) {
                Some((_, n)) => *n += 1,
                None => apis.push((l, 1)),
            }
        }
        let n = self.calls.len();
        let extra = if self.kind == ChangeKind::Extra {
            "extra "
        } else {
            ""
        };
        let what = match apis.as_slice() {
            [(a, _)] => format!("{n} {extra}`{a}` call{}", if n == 1 { "" } else { "s" }),
            _ => {
                let list: Vec<String> = apis.iter().map(|(a, k)| format!("{k} `{a}`")).collect();
                format!("{n} {extra}calls ({})", list.join(", "))
            }
        };
        let named = match self.calls.as_slice() {
            [one] => format!(" ({one})"),
            [first, .., last] => format!(" ({first} .. {last})"),
            [] => String::new(),
        };
        let side = match self.kind {
            ChangeKind::Extra => "the device ran",
            ChangeKind::Missing => "the device skipped",
        };
        let at = match (&self.after, &self.before) {
            (Some(a), _) => format!("after `{a}`"),
            (None, Some(b)) => format!("before `{b}`"),
            (None, None) => "with nothing paired".to_string(),
        };
        self.apis = apis;
        self.message = format!("{side} {what}{named} {at}");
    }
}

impl Structure {
    /// Drops from the changes the calls that `covered` says are accounted for (a mapping
    /// file or `--fusion-map` paired their tensors after all), rewriting the messages.
    pub fn drop_covered(&mut self, covered: impl Fn(ChangeKind, &str) -> bool) {
        for c in &mut self.changes {
            let before = c.calls.len();
            let kind = c.kind;
            c.calls.retain(|p| !covered(kind, p));
            if c.calls.len() != before {
                c.describe();
            }
        }
        self.changes.retain(|c| !c.calls.is_empty());
        self.fusion_proposal
            .retain(|fused, _| !covered(ChangeKind::Extra, fused));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::{RecordedStats, Source};

    /// A call's entry: `{place}.{rest}` with a shape and a recorded norm.
    fn entry(place: &str, rest: &str, order: usize, shape: &[usize], norm: f64) -> Entry {
        Entry {
            name: format!("{place}.{rest}").into(),
            place: place.into(),
            role: crate::dump::Role::from_key(rest.split('.').next().unwrap()),
            index: rest.split_once('.').unwrap().1.into(),
            order,
            op_type: None,
            dtype: Some(DType::Float32),
            shape: Some(shape.into()),
            stats: Some(RecordedStats::new(None, None, None, Some(norm))),
            checksum: None,
            source: Source::Absent("test".into()),
        }
    }

    /// A stream of one-output calls, numbered per API as msprobe does: `(api, width, norm)`.
    fn stream(calls: &[(&str, usize, f64)]) -> Vec<Entry> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        calls
            .iter()
            .enumerate()
            .map(|(order, &(api, w, norm))| {
                let k = seen.entry(api).or_insert(0);
                *k += 1;
                let place = format!("Functional.{api}.{}.forward", *k - 1);
                entry(&place, "output.0", order, &[1, w], norm)
            })
            .collect()
    }

    fn paired_places(r: &[Entry], d: &[Entry], al: &Alignment) -> Vec<(String, String)> {
        al.pairs
            .iter()
            .map(|p| {
                (
                    r[p.reference].place.to_string(),
                    d[p.candidate].place.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn agreeing_streams_keep_the_name_pairing() {
        let r = stream(&[("linear", 8, 1.0), ("silu", 8, 2.0), ("linear", 4, 3.0)]);
        let al = align(&r, &r.clone());
        assert_eq!(al.structure.method, AlignMethod::Names);
        assert_eq!(al.pairs.len(), 3);
        assert!(al.structure.changes.is_empty());
    }

    #[test]
    fn an_extra_call_renumbers_nothing_that_is_paired() {
        let r = stream(&[("linear", 8, 1.0), ("silu", 8, 2.0), ("linear", 4, 3.0)]);
        let d = stream(&[
            ("linear", 8, 1.0),
            ("linear", 8, 9.0),
            ("silu", 8, 2.0),
            ("linear", 4, 3.0),
        ]);
        let al = align(&r, &d);
        assert_eq!(al.structure.method, AlignMethod::Signatures);
        assert_eq!(
            paired_places(&r, &d, &al),
            [
                ("Functional.linear.0.forward", "Functional.linear.0.forward"),
                ("Functional.silu.0.forward", "Functional.silu.0.forward"),
                ("Functional.linear.1.forward", "Functional.linear.2.forward"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(al.pairs[2].kind, MatchKind::Structural);
        assert_eq!(al.unmatched_candidate, vec![1]);
        let s = &al.structure;
        assert_eq!((s.paired, s.renumbered, s.changes.len()), (3, 1, 1));
        let c = &s.changes[0];
        assert_eq!(c.kind, ChangeKind::Extra);
        assert_eq!(c.calls, ["Functional.linear.1.forward"]);
        assert_eq!(c.after.as_deref(), Some("Functional.linear.0.forward"));
        assert_eq!(c.before.as_deref(), Some("Functional.silu.0.forward"));
        assert_eq!(c.order, 1);
        assert_eq!(
            c.message,
            "the device ran 1 extra `Functional.linear` call (Functional.linear.1.forward) \
             after `Functional.linear.0.forward`"
        );
        // The change comes before a numerical divergence at the call it precedes, not after
        // one earlier.
        assert_eq!(s.first_difference(Some(1)), Some(c));
        assert_eq!(s.first_difference(Some(0)), None);
        assert_eq!(s.first_difference(None), Some(c));
    }

    #[test]
    fn other_shapes_of_the_same_call_are_paired_not_inserted() {
        // A padded sequence: the silu's width differs, and an extra add sits before it.
        let r = stream(&[("linear", 8, 1.0), ("silu", 33, 2.0), ("linear", 4, 3.0)]);
        let d = stream(&[
            ("linear", 8, 1.0),
            ("add", 8, 5.0),
            ("silu", 48, 2.0),
            ("linear", 4, 3.0),
        ]);
        let al = align(&r, &d);
        assert_eq!(al.pairs.len(), 3);
        let s = &al.structure;
        assert_eq!((s.paired, s.reshaped, s.changes.len()), (3, 1, 1));
        assert_eq!(s.changes[0].calls, ["Functional.add.0.forward"]);
    }

    #[test]
    fn a_missing_run_goes_where_the_statistics_agree() {
        // Three identical blocks (a, b); the device skipped the middle one. Signatures allow
        // the run anywhere; the recorded norms say which.
        let block = |k: f64| [("a", 4, 10.0 + k), ("b", 4, 20.0 + k)];
        let r: Vec<_> = [block(0.0), block(1.0), block(2.0)].concat();
        let d: Vec<_> = [block(0.0), block(2.0)].concat();
        let (r, d) = (stream(&r), stream(&d));
        let al = align(&r, &d);
        let s = &al.structure;
        assert_eq!(s.changes.len(), 1);
        assert_eq!(
            s.changes[0].calls,
            ["Functional.a.1.forward", "Functional.b.1.forward"]
        );
        assert_eq!(
            s.changes[0].apis,
            [("Functional.a".into(), 1), ("Functional.b".into(), 1)]
        );
        assert!(s.changes[0]
            .message
            .starts_with("the device skipped 2 calls (1 `Functional.a`"));
        assert_eq!(
            paired_places(&r, &d, &al)[2],
            (
                "Functional.a.2.forward".into(),
                "Functional.a.1.forward".into()
            )
        );
        // Without statistics the diff's place stands: the last block.
        let strip = |v: &[Entry]| {
            let mut v = v.to_vec();
            v.iter_mut().for_each(|e| e.stats = None);
            v
        };
        let al = align(&strip(&r), &strip(&d));
        assert_eq!(al.structure.changes[0].calls[0], "Functional.a.2.forward");
    }

    #[test]
    fn the_bounded_fallbacks_pair_in_order() {
        assert_eq!(
            in_order(&[1, 2, 1, 3], &[1, 1, 3]),
            vec![(0, 0), (2, 1), (3, 2)]
        );
        let mut out = Vec::new();
        fill_gaps(&[(1, 2)], 4, 4, &mut out, |a, b| {
            assert!(a.len() == 1 && b.len() == 2 || a.len() == 2 && b.len() == 1);
            vec![(0, 0)]
        });
        assert_eq!(out, vec![(0, 0), (1, 2), (2, 3)]);
        assert!(bound(10) == 2000 && bound(100_000_000) == 64);
    }

    #[test]
    fn past_the_bound_anchors_on_exact_names() {
        // Every signature differs (other widths) and the streams differ in more places than a
        // bound of one round allows: the op-type diff, then the anchored fallback, still pair
        // the calls that correspond.
        let r = stream(&[("x", 1, 1.0), ("y", 1, 1.0), ("x", 1, 1.0), ("z", 1, 1.0)]);
        let d = stream(&[
            ("x", 2, 1.0),
            ("w", 2, 1.0),
            ("y", 2, 1.0),
            ("x", 2, 1.0),
            ("v", 2, 1.0),
            ("z", 2, 1.0),
        ]);
        let (rc, dc) = (calls(&r), calls(&d));
        let none = |_: usize, _: usize| 0.0;
        let (p, m) = sequence_pairs(&rc, &dc, &none, 2);
        assert_eq!(m, AlignMethod::OpTypes);
        assert_eq!(p, vec![(0, 0), (1, 2), (2, 3), (3, 5)]);
        let (p, m) = sequence_pairs(&rc, &dc, &none, 1);
        assert_eq!(m, AlignMethod::Anchored);
        assert_eq!(p, vec![(0, 0), (1, 2), (2, 3), (3, 5)]);
    }

    #[test]
    fn a_hundred_thousand_calls_with_a_few_extra_ones_align_within_the_bound() {
        // 2000 layers of 50 calls (widths vary within a layer), three extra calls on the
        // device at three places: every other call meets its counterpart.
        let apis = ["linear", "add", "mul", "silu", "matmul"];
        let layer = |l: usize| -> Vec<(&str, usize, f64)> {
            (0..50)
                .map(|k| (apis[k % 5], 8 + k, (l * 50 + k) as f64))
                .collect()
        };
        let r: Vec<_> = (0..2000).flat_map(layer).collect();
        let mut d = r.clone();
        for at in [70_000, 20_000, 5] {
            d.insert(at, ("add", 999, 0.5));
        }
        let (re, de) = (stream(&r), stream(&d));
        let al = align(&re, &de);
        let s = &al.structure;
        assert_eq!(s.method, AlignMethod::Signatures);
        assert_eq!((s.paired, s.changes.len()), (100_000, 3));
        assert!(s.changes.iter().all(|c| c.kind == ChangeKind::Extra));
        // Pairs meet the same recorded norm (the call's identity here).
        for p in &al.pairs {
            let norm = |e: &Entry| e.stats.unwrap().norm();
            assert_eq!(norm(&re[p.reference]), norm(&de[p.candidate]));
        }
    }

    #[test]
    fn dumps_without_counters_keep_names() {
        let mk = |names: &[&str]| -> Vec<Entry> {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| Entry {
                    name: (*n).into(),
                    ..entry(n, "output.0", i, &[2], 1.0)
                })
                .collect()
        };
        let r = mk(&["model.a", "model.b", "model.c"]);
        let d = mk(&["model.a", "model.x", "model.c"]);
        let al = align(&r, &d);
        assert_eq!(al.pairs.len(), 2);
        let kinds: Vec<ChangeKind> = al.structure.changes.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [ChangeKind::Missing, ChangeKind::Extra]);
    }
}
