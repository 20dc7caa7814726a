//! First-divergence search.
//!
//! "Has the run diverged by place i" is close to monotone along execution order, because error
//! propagates. `run` binary-searches that predicate on the places' output errors, reading one
//! place's outputs per step (recorded statistics narrow the range first, for free: the relative
//! difference of two norms bounds the relative L2 error from below). It then judges the
//! neighbourhood of the boundary place by place, inputs included, so the place that
//! *introduced* the error is named rather than the first one past a threshold, and so a short
//! non-monotone stretch cannot fool it. `--exhaustive` judges every place instead.

use crate::align::{self, Alignment};
use crate::compare::{self, CompareOptions};
use crate::comparison::{Comparison, DumpSummary, Method, PairReport, Status};
use crate::dump::{Dump, Role, Task};
use crate::verdict::{
    divergence, noise, pair_err, pair_expected, signal, summarize, Judge, NoiseOptions, Ranked,
    Verdict,
};

pub mod baseline;
use std::collections::HashMap;

/// Places judged before the boundary, to warm the judge's inherited-error window.
const LOOKBEHIND: usize = 8;
/// Places judged after the boundary (the introducing place can only be at or before it, but an
/// output-less boundary place may hand its verdict to the next).
const LOOKAHEAD: usize = 2;

/// Lazily measured pairs of two dumps, grouped by place.
struct Lazy<'a> {
    r: &'a Dump,
    d: &'a Dump,
    al: Alignment,
    /// Alignment pair indices of each place, in execution order.
    places: Vec<Vec<usize>>,
    cache: HashMap<usize, PairReport>,
    /// The filter, calibration and histogram choice of the comparison.
    opts: &'a CompareOptions,
}

impl<'a> Lazy<'a> {
    fn new(r: &'a Dump, d: &'a Dump, opts: &'a CompareOptions) -> Self {
        let al = align::align(r, d);
        let mut places: Vec<Vec<usize>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, p) in al.pairs.iter().enumerate() {
            let e = &r.entries[p.reference];
            if opts.filter.as_ref().is_some_and(|f| !f.is_match(&e.name)) {
                continue;
            }
            match index.get(&*e.place) {
                Some(&k) => places[k].push(i),
                None => {
                    index.insert(&e.place, places.len());
                    places.push(vec![i]);
                }
            }
        }
        Lazy {
            r,
            d,
            al,
            places,
            cache: HashMap::new(),
            opts,
        }
    }

    fn pair(&mut self, i: usize) -> &PairReport {
        let (r, d, p, h) = (self.r, self.d, self.al.pairs[i], self.opts.histograms);
        self.cache.entry(i).or_insert_with(|| {
            compare::measure_pair(
                r,
                &r.entries[p.reference],
                d,
                &d.entries[p.candidate],
                p.kind,
                h,
            )
        })
    }

    /// Pairs of place `k`: outputs only, or everything.
    fn place(&mut self, k: usize, all_roles: bool) -> Vec<PairReport> {
        let idx: Vec<usize> = self.places[k]
            .iter()
            .copied()
            .filter(|&i| {
                all_roles || {
                    let role = &self.r.entries[self.al.pairs[i].reference].role;
                    *role == Role::Output
                        || !self.places[k].iter().any(|&j| {
                            self.r.entries[self.al.pairs[j].reference].role == Role::Output
                        })
                }
            })
            .collect();
        idx.into_iter().map(|i| self.pair(i).clone()).collect()
    }

    /// Largest ratio, over the place's outputs, of the error's lower bound from recorded
    /// statistics to the rounding its precision explains, without reading any tensor.
    fn stats_level(&self, k: usize, u_run: f64, mode: noise::Fp32Matmul) -> Option<f64> {
        self.places[k]
            .iter()
            .filter_map(|&i| {
                let p = self.al.pairs[i];
                let (a, b) = (&self.r.entries[p.reference], &self.d.entries[p.candidate]);
                if a.role != Role::Output || !a.dtype?.is_float() || !b.dtype?.is_float() {
                    return None;
                }
                let (sa, sb) = (a.stats.as_ref()?, b.stats.as_ref()?);
                let lb = compare::StatsDiff::new(sa, sb).norm_rel_diff()?;
                let n = crate::dump::checked_numel(a.shape.as_ref()?)?;
                let rms = sa.norm().filter(|_| n > 0).map(|nr| nr / (n as f64).sqrt());
                let u = noise::expected_err(a.dtype?, b.dtype?, a.op_type.as_deref(), mode, rms);
                Some(lb / u.max(u_run))
            })
            .reduce(f64::max)
    }

    fn into_comparison(self, analysis: crate::verdict::Analysis, mode: Task) -> Comparison {
        let mut keys: Vec<usize> = self.cache.keys().copied().collect();
        keys.sort_unstable();
        let mut cache = self.cache;
        let pairs: Vec<PairReport> = keys.into_iter().filter_map(|k| cache.remove(&k)).collect();
        let keep = |n: &str| self.opts.filter.as_ref().is_none_or(|f| f.is_match(n));
        Comparison {
            schema_version: compare::SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            reference: DumpSummary::of(self.r),
            candidate: DumpSummary::of(self.d),
            mode,
            pairs,
            unmatched_reference: self
                .al
                .unmatched_reference
                .iter()
                .map(|&i| self.r.entries[i].name.to_string())
                .filter(|n| keep(n))
                .collect(),
            unmatched_candidate: self
                .al
                .unmatched_candidate
                .iter()
                .map(|&i| self.d.entries[i].name.to_string())
                .filter(|n| keep(n))
                .collect(),
            structure: self.al.structure,
            analysis,
            fused_reference: Vec::new(),
            replay: None,
        }
    }
}

/// A place's error is "elevated" when it exceeds this many times what rounding at the run's
/// coarsest precision explains (clean runs of the reference models peak near 3).
pub const ELEVATED: f64 = 8.0;
/// Places judged silently before a window, so inherited-error windows are warm.
const WARMUP: usize = 6;

/// Unit roundoff of the run's coarsest precision (from the dumps' recorded dtypes).
/// True when some floating-point pair has a finer precision than the run's coarsest (an fp32
/// elementwise op in a run whose matmuls may be TF32): an error far beyond its own rounding can
/// stay below the elevation line drawn at the coarsest precision, so the search cannot clear
/// the run by itself.
fn finer_pairs_hidden(
    r: &Dump,
    d: &Dump,
    al: &Alignment,
    u_run: f64,
    mode: noise::Fp32Matmul,
) -> bool {
    al.pairs.iter().any(|p| {
        let (a, b) = (&r.entries[p.reference], &d.entries[p.candidate]);
        match (a.dtype, b.dtype) {
            (Some(x), Some(y)) if x.is_float() && y.is_float() => {
                noise::unit_roundoff(x, y, a.op_type.as_deref(), mode) < u_run
            }
            _ => false,
        }
    })
}

fn run_unit_roundoff(r: &Dump, d: &Dump, al: &Alignment, mode: noise::Fp32Matmul) -> f64 {
    let triples = al.pairs.iter().filter_map(|p| {
        let (a, b) = (&r.entries[p.reference], &d.entries[p.candidate]);
        Some((a.dtype?, b.dtype?, a.op_type.as_deref()))
    });
    noise::coarsest_roundoff(triples, mode).max(f64::MIN_POSITIVE)
}

/// P(k) of the search: some output of the place is elevated, or NaN/Inf appear on one side.
/// Lost signal counts as elevated whatever its size, and tiny tensors are judged by the
/// rounding of their normal range: underflow is not an excuse.
fn elevated(p: &PairReport, u_run: f64, opts: &NoiseOptions) -> bool {
    if p.metrics.as_ref().is_some_and(|m| m.nonfinite_mismatch > 0) || signal::loss(p).is_some() {
        return true;
    }
    let (Some(e), Some(u)) = (
        pair_err(p),
        crate::verdict::pair_roundoff(p, opts.fp32_matmul),
    ) else {
        return false;
    };
    crate::verdict::is_float_pair(p) && e > ELEVATED * u_run.max(u)
}

/// Outcome of judging a stretch of places.
enum Window {
    /// A place in the window introduces error.
    Found(Box<crate::verdict::Divergence>),
    /// Nothing in the window, but a place in its warm-up does: look further back.
    Earlier,
    /// Nothing introduces error here.
    Clean,
}

fn judge_window(
    lz: &mut Lazy,
    start: usize,
    end: usize,
    o: &NoiseOptions,
    u_run: f64,
    verdicts: &mut HashMap<String, (Verdict, f64)>,
    ranked: &mut Vec<Ranked>,
) -> Window {
    let mut judge = Judge::new(
        o,
        u_run,
        lz.opts.calibration.clone(),
        lz.r.format.is_execution_ordered(),
    );
    for k in start.saturating_sub(WARMUP)..end {
        let pairs = lz.place(k, true);
        let refs: Vec<&PairReport> = pairs.iter().collect();
        let j = judge.place(&refs);
        if k < start {
            if j.finding.is_some() {
                return Window::Earlier;
            }
            continue;
        }
        for (p, v) in pairs.iter().zip(&j.verdicts) {
            verdicts.insert(p.name.to_string(), (*v, j.inherited));
        }
        // Error added is a floating-point measure (an integer output's ratio is meaningless).
        let float = |w: &usize| crate::verdict::is_float_pair(&pairs[*w]);
        if let (Some(e), Some(w)) = (j.out_err, j.worst.filter(float)) {
            ranked.push(Ranked {
                name: pairs[w].place.clone(),
                tensor: pairs[w].name.clone(),
                rel_l2_err: e,
                inherited_err: j.inherited,
                expected_err: j.expected,
                added: e / j.inherited.max(j.expected).max(f64::MIN_POSITIVE),
                verdict: j.verdicts.iter().copied().max().unwrap_or(Verdict::Ok),
            });
        }
        if let Some(f) = &j.finding {
            let d = divergence(&pairs[f.index], f, j.expected, j.inherited, &lz.r.stacks);
            return Window::Found(Box::new(d));
        }
    }
    Window::Clean
}

/// Finds the first divergence of `d` against `r` (or against the baseline run `d0`).
pub fn run(
    r: &Dump,
    d: &Dump,
    d0: Option<&Dump>,
    opts: &CompareOptions,
    exhaustive: bool,
) -> anyhow::Result<Comparison> {
    if let Some(d0) = d0 {
        return Ok(baseline::run(r, d, d0, opts));
    }
    if exhaustive {
        let mut c = compare::compare(r, d, opts, &|| {});
        c.analysis.method = Method::Exhaustive;
        return Ok(c);
    }
    let mut lz = Lazy::new(r, d, opts);
    let n = lz.places.len();
    let o = &opts.noise;
    let u_run = run_unit_roundoff(r, d, &lz.al, o.fp32_matmul);
    // Recorded statistics can prove P(k) for free: |norm_d - norm_r| / norm_r <= rel L2 error.
    let mut hi = n;
    for k in 0..n {
        if lz
            .stats_level(k, u_run, o.fp32_matmul)
            .is_some_and(|l| l > ELEVATED)
        {
            hi = k;
            break;
        }
    }
    let mut lo: isize = -1;
    while hi as isize - lo > 1 {
        let mid = ((lo + hi as isize) / 2) as usize;
        if lz.place(mid, false).iter().any(|p| elevated(p, u_run, o)) {
            hi = mid;
        } else {
            lo = mid as isize;
        }
    }
    // The error may have been introduced at or before the boundary: judge its neighbourhood,
    // widening backwards while nothing there introduces it. If nothing before the boundary
    // does, the elevation was clean accumulation: judge the rest in order.
    let mut verdicts = HashMap::new();
    let mut ranked = Vec::new();
    let mut first = None;
    let mut method = Method::Bisect;
    if hi < n {
        let mut start = hi.saturating_sub(LOOKBEHIND);
        let mut end = (hi + LOOKAHEAD + 1).min(n);
        let scanned_to = end;
        loop {
            match judge_window(&mut lz, start, end, o, u_run, &mut verdicts, &mut ranked) {
                Window::Found(f) => {
                    first = Some(*f);
                    break;
                }
                Window::Earlier | Window::Clean if start > 0 => {
                    end = start;
                    start = start.saturating_sub(4 * LOOKBEHIND);
                }
                _ => break,
            }
        }
        if first.is_none() && scanned_to < n {
            method = Method::BisectThenScan;
            if let Window::Found(f) =
                judge_window(&mut lz, scanned_to, n, o, u_run, &mut verdicts, &mut ranked)
            {
                first = Some(*f);
            }
        }
    }
    // Nothing found, but finer-precision pairs could hide a fault below the search's line:
    // judge the whole run in order rather than call it clean.
    if first.is_none() && finer_pairs_hidden(r, d, &lz.al, u_run, o.fp32_matmul) {
        method = Method::BisectThenScan;
        verdicts.clear();
        ranked.clear();
        if let Window::Found(f) = judge_window(&mut lz, 0, n, o, u_run, &mut verdicts, &mut ranked)
        {
            first = Some(*f);
        }
    }
    let read = lz
        .cache
        .values()
        .filter(|p| p.status == Status::Compared)
        .count();
    let total = lz.places.iter().map(Vec::len).sum();
    for p in lz.cache.values_mut() {
        p.expected_err = pair_expected(p, o.fp32_matmul);
        match verdicts.get(&*p.name) {
            Some(&(v, inherited)) => {
                p.verdict = Some(v);
                p.inherited_err = Some(inherited);
            }
            None => {
                // Read by the search only: below the elevation line, so within noise.
                p.verdict = Some(if crate::verdict::bit_identical(p) {
                    Verdict::Identical
                } else {
                    Verdict::Ok
                });
            }
        }
    }
    let mut pairs: Vec<PairReport> = lz.cache.values().cloned().collect();
    pairs.sort_by_key(|p| p.order);
    let mut analysis = summarize(&pairs, first, ranked, read, method, o.fp32_matmul);
    analysis.tensors_total = total;
    if let Some(cal) = &lz.opts.calibration {
        let (margin, closest) =
            crate::verdict::calibrate::margin(&pairs, cal, o.noise_factor, o.amplification);
        analysis.calibration = Some(crate::comparison::CalibrationSummary {
            path: cal.path.clone(),
            tensors: cal.errors.len(),
            margin,
            closest,
        });
    }
    let mode = compare::mode_of(r, d);
    Ok(lz.into_comparison(analysis, mode))
}
