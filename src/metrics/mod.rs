//! Per-pair metrics, computed in one pass over both tensors (formulas in docs/metrics.md).
//!
//! Elements are decoded block by block into f64 and accumulated in f64. Large tensors are split
//! into chunks measured in parallel (rayon); chunk accumulators merge exactly (sums, counts,
//! extrema, histograms) and in chunk order, so the result does not depend on the number of
//! threads, not even in the last bits of its sums.

/// Element decoding lives with the dtypes it decodes.
pub use crate::dump::decode;
mod fast;

use crate::dump::{DType, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Elements decoded per block (two stack buffers of this many f64).
const BLOCK: usize = 1024;
/// Elements per parallel chunk of one large tensor.
const CHUNK: usize = 1 << 20;
/// Histogram bins: bin 0 holds exact zeros, bin k >= 1 holds values in [2^(k-1+MIN_EXP), 2^(k+MIN_EXP)).
pub const HIST_BINS: usize = 64;
/// Binary exponent of the lower edge of histogram bin 1.
pub const HIST_MIN_EXP: i32 = -50;

/// What the kernel needs to know about a pair besides its bytes.
#[derive(Clone, Copy, Debug)]
pub struct PairContext {
    /// Magnitude at or beyond which both sides count as a fill/mask value or saturation: the
    /// smaller of the two dtypes' largest finite values.
    pub range_limit: f64,
    /// Magnitude at or beyond which a reference value is a fill value (`finfo.min` masks,
    /// -inf): the reference dtype's largest finite value. A finite reference value beyond the
    /// common range but below this is a real value the candidate's dtype cannot hold.
    pub fill_limit: f64,
    /// torch.testing default rtol for the coarser dtype.
    pub rtol: f64,
    /// torch.testing default atol for the coarser dtype.
    pub atol: f64,
}

impl PairContext {
    /// Context for a reference of `r` and a candidate of `d`.
    pub fn new(r: DType, d: DType) -> Self {
        let (rtol, atol) = DType::coarser(r, d).default_tolerances();
        // Fill values and saturation are a floating-point matter: an int8 -128 or a bool true
        // is an ordinary value.
        let float_max = |t: DType| {
            if t.is_float() {
                t.max_finite()
            } else {
                f64::INFINITY
            }
        };
        PairContext {
            range_limit: float_max(r).min(float_max(d)),
            fill_limit: float_max(r),
            rtol,
            atol,
        }
    }
}

/// Running sums for one pair; merge-able across chunks.
#[derive(Clone, Debug)]
pub struct Accum {
    n: u64,
    sum_r: f64,
    sum_d: f64,
    sum_r2: f64,
    sum_d2: f64,
    sum_e2: f64,
    sum_abs_e: f64,
    sum_rel: f64,
    n_rel: u64,
    max_abs: f64,
    max_abs_at: u64,
    max_rel: f64,
    max_rel_at: u64,
    min_r: f64,
    max_r: f64,
    min_d: f64,
    max_d: f64,
    within_1e3: u64,
    within_5e3: u64,
    allclose_fail: u64,
    ref_zero_mismatch: u64,
    nan_r: u64,
    nan_d: u64,
    inf_r: u64,
    inf_d: u64,
    masked: u64,
    nonfinite_match: u64,
    nonfinite_mismatch: u64,
    overflow: u64,
    saturated: u64,
    first_mismatch_at: u64,
    hist_abs: [u64; HIST_BINS],
    hist_rel: [u64; HIST_BINS],
}

impl Default for Accum {
    fn default() -> Self {
        Accum {
            n: 0,
            sum_r: 0.0,
            sum_d: 0.0,
            sum_r2: 0.0,
            sum_d2: 0.0,
            sum_e2: 0.0,
            sum_abs_e: 0.0,
            sum_rel: 0.0,
            n_rel: 0,
            max_abs: 0.0,
            max_abs_at: 0,
            max_rel: 0.0,
            max_rel_at: 0,
            min_r: f64::INFINITY,
            max_r: f64::NEG_INFINITY,
            min_d: f64::INFINITY,
            max_d: f64::NEG_INFINITY,
            within_1e3: 0,
            within_5e3: 0,
            allclose_fail: 0,
            ref_zero_mismatch: 0,
            nan_r: 0,
            nan_d: 0,
            inf_r: 0,
            inf_d: 0,
            masked: 0,
            nonfinite_match: 0,
            nonfinite_mismatch: 0,
            overflow: 0,
            saturated: 0,
            first_mismatch_at: u64::MAX,
            hist_abs: [0; HIST_BINS],
            hist_rel: [0; HIST_BINS],
        }
    }
}

/// Histogram bin of a non-negative value from its binary exponent (no logarithm needed).
#[inline]
pub fn hist_bin(x: f64) -> usize {
    if x == 0.0 {
        return 0;
    }
    let e = ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023; // subnormals land in bin 1
    (e - HIST_MIN_EXP + 1).clamp(1, HIST_BINS as i32 - 1) as usize
}

impl Accum {
    /// Adds elements `r[i]`, `d[i]` whose flat positions start at `base`.
    pub fn add(&mut self, r: &[f64], d: &[f64], base: u64, ctx: &PairContext) {
        let lim = ctx.range_limit;
        // Fast path when every element of the block is finite and inside the common range.
        let clean = r
            .iter()
            .zip(d)
            .all(|(&a, &b)| a.abs() < lim && b.abs() < lim);
        if clean {
            self.add_clean(r, d, base, ctx);
            return;
        }
        for (i, (&a, &b)) in r.iter().zip(d).enumerate() {
            let at = base + i as u64;
            let (an, bn) = (a.is_nan(), b.is_nan());
            self.nan_r += an as u64;
            self.nan_d += bn as u64;
            self.inf_r += a.is_infinite() as u64;
            self.inf_d += b.is_infinite() as u64;
            if an || bn {
                if an && bn {
                    self.nonfinite_match += 1;
                } else {
                    self.mismatch(at);
                }
                continue;
            }
            let (ab, bb) = (a.abs() >= lim, b.abs() >= lim);
            if ab || bb {
                // Fill values (-inf, the dtype's lowest) agree when both sides are beyond the
                // common range with the same sign and the reference holds its own fill value.
                // A real reference value the candidate's dtype cannot hold is not a mask: the
                // candidate overflowed (inf) or saturated (its largest finite value).
                let fill = a.is_infinite() || a.abs() >= ctx.fill_limit;
                // The candidate's own fill plus a finite offset (a logit added to fp16's -65504
                // rounds to -65472) is still a mask: at least half the common range, same sign.
                let masked_b = b.abs() >= lim / 2.0;
                if ab && masked_b && (a > 0.0) == (b > 0.0) && fill {
                    if a.is_infinite() && b.is_infinite() {
                        self.nonfinite_match += 1;
                    } else {
                        self.masked += 1;
                    }
                } else {
                    if a.is_finite() && b.is_infinite() {
                        self.overflow += 1;
                    } else if ab && bb && !fill && (a > 0.0) == (b > 0.0) {
                        self.saturated += 1;
                    }
                    self.mismatch(at);
                }
                continue;
            }
            self.add_clean(&r[i..=i], &d[i..=i], at, ctx);
        }
    }

    fn mismatch(&mut self, at: u64) {
        self.nonfinite_mismatch += 1;
        self.first_mismatch_at = self.first_mismatch_at.min(at);
    }

    #[inline]
    fn add_clean(&mut self, r: &[f64], d: &[f64], base: u64, ctx: &PairContext) {
        let (mut s_r, mut s_d, mut s_r2, mut s_d2, mut s_e2, mut s_ae, mut s_rel) =
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let (mut n_rel, mut w3, mut w5, mut fail, mut zmis) = (0u64, 0u64, 0u64, 0u64, 0u64);
        let (mut mn_r, mut mx_r, mut mn_d, mut mx_d) =
            (self.min_r, self.max_r, self.min_d, self.max_d);
        let mut blk_max_abs = 0.0f64;
        let mut blk_max_rel = 0.0f64;
        for (&a, &b) in r.iter().zip(d) {
            let e = b - a;
            let ae = e.abs();
            let aa = a.abs();
            s_r += a;
            s_d += b;
            s_r2 += a * a;
            s_d2 += b * b;
            s_e2 += e * e;
            s_ae += ae;
            mn_r = mn_r.min(a);
            mx_r = mx_r.max(a);
            mn_d = mn_d.min(b);
            mx_d = mx_d.max(b);
            blk_max_abs = blk_max_abs.max(ae);
            fail += (ae > ctx.atol + ctx.rtol * aa) as u64;
            // msprobe's convention for its ratios: divide by f32 eps where the reference is 0.
            let denom = if aa > 0.0 { aa } else { f32::EPSILON as f64 };
            let rel_m = ae / denom;
            w3 += (rel_m <= 1e-3) as u64;
            w5 += (rel_m <= 5e-3) as u64;
            if aa > 0.0 {
                let rel = ae / aa;
                s_rel += rel;
                n_rel += 1;
                blk_max_rel = blk_max_rel.max(rel);
                self.hist_rel[hist_bin(rel)] += 1;
            } else {
                zmis += (ae > 0.0) as u64;
            }
            self.hist_abs[hist_bin(ae)] += 1;
        }
        if blk_max_abs > self.max_abs {
            self.max_abs = blk_max_abs;
            let i = r
                .iter()
                .zip(d)
                .position(|(&a, &b)| (b - a).abs() == blk_max_abs);
            self.max_abs_at = base + i.unwrap_or(0) as u64;
        }
        if blk_max_rel > self.max_rel {
            self.max_rel = blk_max_rel;
            let i = r
                .iter()
                .zip(d)
                .position(|(&a, &b)| a != 0.0 && (b - a).abs() / a.abs() == blk_max_rel);
            self.max_rel_at = base + i.unwrap_or(0) as u64;
        }
        self.n += r.len() as u64;
        self.sum_r += s_r;
        self.sum_d += s_d;
        self.sum_r2 += s_r2;
        self.sum_d2 += s_d2;
        self.sum_e2 += s_e2;
        self.sum_abs_e += s_ae;
        self.sum_rel += s_rel;
        self.n_rel += n_rel;
        self.within_1e3 += w3;
        self.within_5e3 += w5;
        self.allclose_fail += fail;
        self.ref_zero_mismatch += zmis;
        self.min_r = mn_r;
        self.max_r = mx_r;
        self.min_d = mn_d;
        self.max_d = mx_d;
    }

    /// Combines two accumulators of disjoint element ranges.
    pub fn merge(mut self, o: Accum) -> Accum {
        self.n += o.n;
        self.sum_r += o.sum_r;
        self.sum_d += o.sum_d;
        self.sum_r2 += o.sum_r2;
        self.sum_d2 += o.sum_d2;
        self.sum_e2 += o.sum_e2;
        self.sum_abs_e += o.sum_abs_e;
        self.sum_rel += o.sum_rel;
        self.n_rel += o.n_rel;
        if o.max_abs > self.max_abs {
            self.max_abs = o.max_abs;
            self.max_abs_at = o.max_abs_at;
        }
        if o.max_rel > self.max_rel {
            self.max_rel = o.max_rel;
            self.max_rel_at = o.max_rel_at;
        }
        self.min_r = self.min_r.min(o.min_r);
        self.max_r = self.max_r.max(o.max_r);
        self.min_d = self.min_d.min(o.min_d);
        self.max_d = self.max_d.max(o.max_d);
        self.within_1e3 += o.within_1e3;
        self.within_5e3 += o.within_5e3;
        self.allclose_fail += o.allclose_fail;
        self.ref_zero_mismatch += o.ref_zero_mismatch;
        self.nan_r += o.nan_r;
        self.nan_d += o.nan_d;
        self.inf_r += o.inf_r;
        self.inf_d += o.inf_d;
        self.masked += o.masked;
        self.overflow += o.overflow;
        self.saturated += o.saturated;
        self.nonfinite_match += o.nonfinite_match;
        self.nonfinite_mismatch += o.nonfinite_mismatch;
        self.first_mismatch_at = self.first_mismatch_at.min(o.first_mismatch_at);
        for k in 0..HIST_BINS {
            self.hist_abs[k] += o.hist_abs[k];
            self.hist_rel[k] += o.hist_rel[k];
        }
        self
    }

    /// Final metrics for a pair of `numel` elements.
    pub fn finish(self, numel: u64) -> Metrics {
        let n = self.n;
        let nr = self.sum_r2.sqrt();
        let nd = self.sum_d2.sqrt();
        let ne = self.sum_e2.sqrt();
        let (cosine, one_minus_cos) = if nr == 0.0 && nd == 0.0 {
            (1.0, 0.0)
        } else if nr == 0.0 || nd == 0.0 {
            (0.0, 1.0)
        } else {
            // 1 - cos from the squared differences is well conditioned where 1 - (a.b)/(|a||b|)
            // loses every digit (docs/metrics.md).
            let omc = ((self.sum_e2 - (nr - nd) * (nr - nd)) / (2.0 * nr * nd)).clamp(0.0, 2.0);
            (1.0 - omc, omc)
        };
        let rel_l2 = if nr > 0.0 {
            ne / nr
        } else if ne == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        let ratio = |k: u64| if n > 0 { k as f64 / n as f64 } else { 1.0 };
        Metrics {
            numel,
            compared: n,
            cosine,
            one_minus_cosine: one_minus_cos,
            max_abs_err: self.max_abs,
            max_abs_err_index: self.max_abs_at,
            max_rel_err: self.max_rel,
            max_rel_err_index: self.max_rel_at,
            mean_abs_err: if n > 0 {
                self.sum_abs_e / n as f64
            } else {
                0.0
            },
            mean_rel_err: if self.n_rel > 0 {
                self.sum_rel / self.n_rel as f64
            } else {
                0.0
            },
            rel_l2_err: rel_l2,
            rmse: if n > 0 {
                (self.sum_e2 / n as f64).sqrt()
            } else {
                0.0
            },
            snr_db: if self.sum_e2 == 0.0 {
                f64::INFINITY
            } else if self.sum_r2 == 0.0 {
                f64::NEG_INFINITY
            } else {
                10.0 * (self.sum_r2 / self.sum_e2).log10()
            },
            one_thousandth_err_ratio: ratio(self.within_1e3),
            five_thousandths_err_ratio: ratio(self.within_5e3),
            allclose_fail: self.allclose_fail,
            ref_zero_mismatch: self.ref_zero_mismatch,
            nan_ref: self.nan_r,
            nan_dev: self.nan_d,
            inf_ref: self.inf_r,
            inf_dev: self.inf_d,
            masked: self.masked,
            nonfinite_match: self.nonfinite_match,
            nonfinite_mismatch: self.nonfinite_mismatch,
            overflow: self.overflow,
            saturated: self.saturated,
            first_nonfinite_mismatch_index: (self.first_mismatch_at != u64::MAX)
                .then_some(self.first_mismatch_at),
            ref_stats: SideStats::new(n, self.min_r, self.max_r, self.sum_r, nr),
            dev_stats: SideStats::new(n, self.min_d, self.max_d, self.sum_d, nd),
            hist_abs_err: self.hist_abs.to_vec(),
            hist_rel_err: self.hist_rel.to_vec(),
            max_abs_at_ref_zero: None,
        }
    }
}

/// Min, max, mean and L2 norm of one side over the compared elements.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct SideStats {
    /// Smallest compared element (null when none).
    pub min: Option<f64>,
    /// Largest compared element.
    pub max: Option<f64>,
    /// Mean of the compared elements.
    pub mean: Option<f64>,
    /// L2 norm of the compared elements.
    #[serde(deserialize_with = "nan_from_null")]
    pub norm: f64,
}

/// Reads a metric that JSON holds as `null` when it was not finite (JSON has no NaN or
/// infinity; serde_json writes them as `null`) back as NaN. Without it a report with one such
/// metric (the SNR of identical tensors is infinite) would not read back at all.
fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl SideStats {
    fn new(n: u64, min: f64, max: f64, sum: f64, norm: f64) -> Self {
        SideStats {
            min: (n > 0).then_some(min),
            max: (n > 0).then_some(max),
            mean: (n > 0).then(|| sum / n as f64),
            norm,
        }
    }
}

/// Every metric of one tensor pair (see docs/metrics.md for each formula).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Elements in each tensor.
    pub numel: u64,
    /// Elements entering the numeric metrics (finite on both sides, inside the common range).
    pub compared: u64,
    /// Cosine similarity.
    #[serde(deserialize_with = "nan_from_null")]
    pub cosine: f64,
    /// 1 - cosine, computed stably.
    #[serde(deserialize_with = "nan_from_null")]
    pub one_minus_cosine: f64,
    /// max |dev - ref|.
    #[serde(deserialize_with = "nan_from_null")]
    pub max_abs_err: f64,
    /// Flat index of the max abs error.
    pub max_abs_err_index: u64,
    /// max |dev - ref| / |ref| over ref != 0.
    #[serde(deserialize_with = "nan_from_null")]
    pub max_rel_err: f64,
    /// Flat index of the max rel error.
    pub max_rel_err_index: u64,
    /// mean |dev - ref|.
    #[serde(deserialize_with = "nan_from_null")]
    pub mean_abs_err: f64,
    /// mean |dev - ref| / |ref| over ref != 0.
    #[serde(deserialize_with = "nan_from_null")]
    pub mean_rel_err: f64,
    /// ||dev - ref|| / ||ref||.
    #[serde(deserialize_with = "nan_from_null")]
    pub rel_l2_err: f64,
    /// sqrt(mean (dev - ref)^2).
    #[serde(deserialize_with = "nan_from_null")]
    pub rmse: f64,
    /// 10 log10(||ref||^2 / ||dev - ref||^2).
    #[serde(deserialize_with = "nan_from_null")]
    pub snr_db: f64,
    /// Share of elements with msprobe relative error <= 1e-3.
    #[serde(deserialize_with = "nan_from_null")]
    pub one_thousandth_err_ratio: f64,
    /// Share of elements with msprobe relative error <= 5e-3.
    #[serde(deserialize_with = "nan_from_null")]
    pub five_thousandths_err_ratio: f64,
    /// Elements failing torch.testing's default rtol/atol for the coarser dtype.
    pub allclose_fail: u64,
    /// Elements where ref == 0 and dev != 0 (left out of relative errors).
    pub ref_zero_mismatch: u64,
    /// NaNs in the reference.
    pub nan_ref: u64,
    /// NaNs in the candidate.
    pub nan_dev: u64,
    /// Infinities in the reference.
    pub inf_ref: u64,
    /// Infinities in the candidate.
    pub inf_dev: u64,
    /// Fill/mask or saturated values beyond the common range on both sides, same sign.
    pub masked: u64,
    /// NaN on both sides, or the same infinity on both sides.
    pub nonfinite_match: u64,
    /// NaN, Inf or fill value on one side only (or of opposite signs): a divergence.
    pub nonfinite_mismatch: u64,
    /// Of those, candidate ±inf where the reference is finite: overflow.
    #[serde(default)]
    pub overflow: u64,
    /// Of those, candidate at its largest finite magnitude where the reference holds a real
    /// (non-fill) value beyond it: saturation.
    #[serde(default)]
    pub saturated: u64,
    /// Flat index of the first such mismatch.
    pub first_nonfinite_mismatch_index: Option<u64>,
    /// Reference side statistics.
    pub ref_stats: SideStats,
    /// Candidate side statistics.
    pub dev_stats: SideStats,
    /// Histogram of |dev - ref| (see `HIST_MIN_EXP`); empty (and not written) when measured
    /// with [`Histograms::Skip`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hist_abs_err: Vec<u64>,
    /// Histogram of |dev - ref| / |ref| over ref != 0; empty as `hist_abs_err`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hist_rel_err: Vec<u64>,
    /// Largest |dev| where ref == 0 (set by [`max_abs_at_ref_zero`] when `ref_zero_mismatch`
    /// is not 0): what msprobe's relative error divides by its epsilon there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs_at_ref_zero: Option<f64>,
}

/// Largest |dev| over the finite elements where ref == 0: one more pass, made only for pairs
/// whose `ref_zero_mismatch` is not 0.
pub fn max_abs_at_ref_zero(r: &Tensor, d: &Tensor) -> f64 {
    let n = r.numel().min(d.numel());
    let (rs, ds) = (r.dtype.size(), d.dtype.size());
    let run = |lo: usize, hi: usize| -> f64 {
        let mut a = [0f64; BLOCK];
        let mut b = [0f64; BLOCK];
        let mut m = 0f64;
        let mut i = lo;
        while i < hi {
            let k = (hi - i).min(BLOCK);
            decode::decode_f64(r.dtype, &r.data[i * rs..], &mut a[..k]);
            decode::decode_f64(d.dtype, &d.data[i * ds..], &mut b[..k]);
            for (&x, &y) in a[..k].iter().zip(&b[..k]) {
                if x == 0.0 && y.is_finite() {
                    m = m.max(y.abs());
                }
            }
            i += k;
        }
        m
    };
    (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| run(c * CHUNK, ((c + 1) * CHUNK).min(n)))
        .reduce(|| 0.0, f64::max)
}

/// Whether a measurement counts the two error histograms (`hist_abs_err`, `hist_rel_err`).
/// Only plots and reports that carry them need them (the JSON report, HTML, part files); the
/// verdicts, the table and the CSVs use the other counts. The two scattered increments per
/// element pair are about a third of the kernel's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Histograms {
    /// Count them (the default).
    #[default]
    Count,
    /// Leave them out: the metrics' histograms are empty; every other value is the same.
    Skip,
}

/// Measures one pair with its histograms. Both tensors must have the same number of elements.
pub fn measure(r: &Tensor, d: &Tensor) -> Metrics {
    measure_with(r, d, Histograms::Count)
}

/// [`measure`], with or without the histograms.
pub fn measure_with(r: &Tensor, d: &Tensor, histograms: Histograms) -> Metrics {
    let n = r.numel();
    debug_assert_eq!(n, d.numel());
    let ctx = PairContext::new(r.dtype, d.dtype);
    let fast = decode::exact_in_f32(r.dtype) && decode::exact_in_f32(d.dtype);
    let run = |lo: usize, hi: usize| -> Accum {
        if fast {
            let acc = fast::run(fast::Job {
                r,
                d,
                lo,
                hi,
                ctx: &ctx,
                hist: histograms,
            });
            release(r, lo, hi);
            release(d, lo, hi);
            return acc;
        }
        let mut acc = Accum::default();
        let mut a = [0f64; BLOCK];
        let mut b = [0f64; BLOCK];
        let (rs, ds) = (r.dtype.size(), d.dtype.size());
        let mut i = lo;
        while i < hi {
            let k = (hi - i).min(BLOCK);
            decode::decode_f64(r.dtype, &r.data[i * rs..], &mut a[..k]);
            decode::decode_f64(d.dtype, &d.data[i * ds..], &mut b[..k]);
            acc.add(&a[..k], &b[..k], i as u64, &ctx);
            i += k;
        }
        acc
    };
    let acc = if n <= CHUNK {
        run(0, n)
    } else {
        // Merged in chunk order, not by `reduce`: its tree follows the work stealing, and float
        // sums merged in another order differ in their last bits from one run to the next.
        let chunks: Vec<Accum> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| run(c * CHUNK, ((c + 1) * CHUNK).min(n)))
            .collect();
        chunks.into_iter().fold(Accum::default(), Accum::merge)
    };
    let mut m = acc.finish(n as u64);
    if histograms == Histograms::Skip {
        // The blocks that took the scalar path (non-finite values) counted theirs anyway.
        m.hist_abs_err = Vec::new();
        m.hist_rel_err = Vec::new();
    }
    m
}

/// Drops the mapped pages of elements `lo..hi` of `t` from this process's page tables once
/// they are measured (they stay in the page cache), so that resident memory stays O(chunk)
/// instead of growing with every mapped byte read. Only whole pages inside the range are
/// released; a no-op for owned bytes and small ranges.
fn release(t: &Tensor, lo: usize, hi: usize) {
    #[cfg(unix)]
    if let crate::dump::Bytes::Mapped { map, start, .. } = &t.data {
        // Ranges aligned to 64 KiB are page-aligned whatever the page size up to that (4 KiB on
        // x86-64, 16 or 64 KiB on aarch64 hosts such as Ascend's).
        const PAGE: usize = 64 * 1024;
        if hi - lo < CHUNK / 2 {
            return;
        }
        let size = t.dtype.size();
        let a = (start + lo * size).div_ceil(PAGE) * PAGE;
        let b = (start + hi * size) / PAGE * PAGE;
        if b > a {
            // SAFETY: the map is read-only and shared with the file; dropping its pages only
            // makes a later access fault them in again from the page cache.
            let _ =
                unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::Bytes;

    fn tensor(dtype: DType, bytes: Vec<u8>) -> Tensor {
        let n = bytes.len() / dtype.size();
        Tensor {
            dtype,
            shape: vec![n],
            data: Bytes::Owned(bytes),
        }
    }

    /// A tensor of several chunks measures to the same bits whatever the number of threads:
    /// the chunks' float sums are merged in one order (a `reduce` merged them along the tree
    /// of the work stealing, and reports differed in their last digits from run to run).
    #[test]
    fn chunked_measurement_does_not_depend_on_the_threads() {
        let n = 6 * CHUNK + 12_345;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Magnitudes over six decades, so that the sums round.
            ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 10f64.powi((x % 6) as i32)
        };
        let (mut rb, mut db) = (Vec::with_capacity(4 * n), Vec::with_capacity(4 * n));
        for _ in 0..n {
            let a = next() as f32;
            rb.extend_from_slice(&a.to_le_bytes());
            db.extend_from_slice(&((a as f64 * (1.0 + 1e-3 * next())) as f32).to_le_bytes());
        }
        let (r, d) = (tensor(DType::Float32, rb), tensor(DType::Float32, db));
        let runs: Vec<String> = [1, 2, 3, 5, 2, 3]
            .into_iter()
            .map(|threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                format!("{:?}", pool.install(|| measure(&r, &d)))
            })
            .collect();
        assert!(runs.iter().all(|m| *m == runs[0]), "{runs:#?}");
    }

    #[test]
    fn integer_and_bool_extremes_are_ordinary_values() {
        let m = measure(
            &tensor(DType::Bool, vec![1, 1, 0]),
            &tensor(DType::Bool, vec![1, 0, 0]),
        );
        assert_eq!((m.masked, m.nonfinite_mismatch, m.compared), (0, 0, 3));
        assert_eq!(m.max_abs_err, 1.0);
        let m = measure(
            &tensor(DType::Int8, vec![0x80, 0x7f]),
            &tensor(DType::Int8, vec![0x80, 0x7f]),
        );
        assert_eq!((m.masked, m.compared, m.max_abs_err), (0, 2, 0.0));
    }

    #[test]
    fn fill_values_of_different_floats_are_masked() {
        let r: Vec<u8> = [f32::MIN, 1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let d: Vec<u8> = [half::f16::MIN, half::f16::ONE]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let m = measure(&tensor(DType::Float32, r), &tensor(DType::Float16, d));
        assert_eq!((m.masked, m.compared, m.max_abs_err), (1, 1, 0.0));
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn f16s(v: &[f32]) -> Vec<u8> {
        v.iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect()
    }

    #[test]
    fn real_values_beyond_the_candidates_range_are_overflow_or_saturation_not_masks() {
        // 1e5 does not fit float16: inf on the device is overflow, 65504 saturation; the
        // reference's own lowest value against -inf stays a mask, and so does -inf.
        let r = f32s(&[1e5, 1e5, f32::MIN, f32::NEG_INFINITY, 2.0, 3.0]);
        let d = f16s(&[
            f32::INFINITY,
            65504.0,
            f32::NEG_INFINITY,
            -65504.0,
            2.0,
            f32::INFINITY,
        ]);
        let m = measure(&tensor(DType::Float32, r), &tensor(DType::Float16, d));
        assert_eq!(m.masked, 2);
        assert_eq!((m.overflow, m.saturated), (2, 1));
        assert_eq!(m.nonfinite_mismatch, 3);
        assert_eq!(m.compared, 1);
    }
}
