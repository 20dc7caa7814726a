//! The fast kernel for pairs whose dtypes are exact in f32 (f32, f16, bf16, mixed): elements
//! are decoded to f32 (exact), widened to f64 in registers, and every metric is accumulated in
//! f64 lanes (so the per-element values are bit-identical to the scalar f64 path; only the
//! order of the sums differs). Histogram bins come from exponent bits and are counted in four
//! interleaved u32 sub-histograms to avoid store-to-load stalls on a repeated bin. A block that
//! holds a NaN, an infinity or a value beyond the common range goes to the scalar path.
//!
//! Compiled twice: generic, and with AVX2/FMA/F16C enabled for CPUs that have them (runtime
//! detection, no global `target-cpu`, so the binary still builds and runs on aarch64).

use super::decode::decode_f32;
use super::{Accum, PairContext, BLOCK, HIST_BINS, HIST_MIN_EXP};
use crate::dump::Tensor;

/// f64 lanes per accumulator.
const L: usize = 4;
/// Sub-histograms (interleaved counters).
const SUB: usize = 4;
/// Slots per sub-histogram: 64 bins, slot 64 = "no relative error", padded to a power of two
/// so that the index mask removes bounds checks.
const SLOTS: usize = 128;

struct Scratch {
    a: [f32; BLOCK],
    b: [f32; BLOCK],
    bin_abs: [u8; BLOCK],
    bin_rel: [u8; BLOCK],
    h_abs: [[u32; SLOTS]; SUB],
    h_rel: [[u32; SLOTS]; SUB],
}

/// Histogram bin of a non-negative, non-NaN value (same as `hist_bin`, branch-free).
#[inline(always)]
fn bin_of(x: f64) -> u8 {
    let bits = x.to_bits();
    let e = (bits >> 52) as i64 - 1023 - HIST_MIN_EXP as i64 + 1;
    let b = e.clamp(1, HIST_BINS as i64 - 1) as u8;
    if bits == 0 {
        0
    } else {
        b
    }
}

/// Measures elements `lo..hi` of a pair of f32-exact tensors.
pub(super) fn run(r: &Tensor, d: &Tensor, lo: usize, hi: usize, ctx: &PairContext) -> Accum {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the features were detected on this CPU.
            return unsafe { run_avx2(r, d, lo, hi, ctx) };
        }
    }
    run_generic(r, d, lo, hi, ctx, false)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_avx2(r: &Tensor, d: &Tensor, lo: usize, hi: usize, ctx: &PairContext) -> Accum {
    run_generic(r, d, lo, hi, ctx, true)
}

#[inline(always)]
fn run_generic(
    r: &Tensor,
    d: &Tensor,
    lo: usize,
    hi: usize,
    ctx: &PairContext,
    avx2: bool,
) -> Accum {
    let mut acc = Accum::default();
    let mut s = Box::new(Scratch {
        a: [0.0; BLOCK],
        b: [0.0; BLOCK],
        bin_abs: [0; BLOCK],
        bin_rel: [0; BLOCK],
        h_abs: [[0; SLOTS]; SUB],
        h_rel: [[0; SLOTS]; SUB],
    });
    let (rs, ds) = (r.dtype.size(), d.dtype.size());
    let lim = ctx.range_limit as f32; // exact: the limit is a largest finite f32/f16/bf16
    let mut i = lo;
    while i < hi {
        let k = (hi - i).min(BLOCK);
        decode_f32(r.dtype, &r.data[i * rs..], &mut s.a[..k]);
        decode_f32(d.dtype, &d.data[i * ds..], &mut s.b[..k]);
        let clean = s.a[..k]
            .iter()
            .zip(&s.b[..k])
            .fold(true, |c, (&a, &b)| c & (a.abs() < lim) & (b.abs() < lim));
        if clean {
            block(&mut acc, &mut s, k, i as u64, ctx, avx2);
        } else {
            let a: Vec<f64> = s.a[..k].iter().map(|&x| x as f64).collect();
            let b: Vec<f64> = s.b[..k].iter().map(|&x| x as f64).collect();
            acc.add(&a, &b, i as u64, ctx);
        }
        i += k;
    }
    for q in 0..SUB {
        for k in 0..HIST_BINS {
            acc.hist_abs[k] += s.h_abs[q][k] as u64;
            acc.hist_rel[k] += s.h_rel[q][k] as u64;
        }
    }
    acc
}

/// One clean block of `k` elements of `s.a`, `s.b` starting at flat index `base`.
#[inline(always)]
fn block(acc: &mut Accum, s: &mut Scratch, k: usize, base: u64, ctx: &PairContext, avx2: bool) {
    let (ra, da) = (&s.a[..k], &s.b[..k]);
    let (atol, rtol) = (ctx.atol, ctx.rtol);
    let eps = f32::EPSILON as f64;
    let mut s_r = [0f64; L];
    let mut s_d = [0f64; L];
    let mut s_r2 = [0f64; L];
    let mut s_d2 = [0f64; L];
    let mut s_e2 = [0f64; L];
    let mut s_ae = [0f64; L];
    let mut s_rel = [0f64; L];
    let mut n_rel = [0u64; L];
    let mut w3 = [0u64; L];
    let mut w5 = [0u64; L];
    let mut fail = [0u64; L];
    let mut zmis = [0u64; L];
    let mut mn_r = [f64::INFINITY; L];
    let mut mx_r = [f64::NEG_INFINITY; L];
    let mut mn_d = [f64::INFINITY; L];
    let mut mx_d = [f64::NEG_INFINITY; L];
    let mut mx_ae = [0f64; L];
    let mut mx_rel = [0f64; L];
    let full = k / L * L;
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx2;
    let (ba, br) = (&mut s.bin_abs[..k], &mut s.bin_rel[..k]);
    macro_rules! one {
        ($i:expr, $l:expr) => {{
            let (i, l) = ($i, $l);
            let a = ra[i] as f64;
            let b = da[i] as f64;
            let e = b - a;
            let ae = e.abs();
            let aa = a.abs();
            s_r[l] += a;
            s_d[l] += b;
            s_r2[l] += a * a;
            s_d2[l] += b * b;
            s_e2[l] += e * e;
            s_ae[l] += ae;
            mn_r[l] = if a < mn_r[l] { a } else { mn_r[l] };
            mx_r[l] = if a > mx_r[l] { a } else { mx_r[l] };
            mn_d[l] = if b < mn_d[l] { b } else { mn_d[l] };
            mx_d[l] = if b > mx_d[l] { b } else { mx_d[l] };
            mx_ae[l] = if ae > mx_ae[l] { ae } else { mx_ae[l] };
            fail[l] += (ae > atol + rtol * aa) as u64;
            // msprobe's convention: divide by f32 eps where the reference is 0.
            let nz = aa > 0.0;
            let rel_m = ae / if nz { aa } else { eps };
            w3[l] += (rel_m <= 1e-3) as u64;
            w5[l] += (rel_m <= 5e-3) as u64;
            let rel = if nz { rel_m } else { 0.0 };
            s_rel[l] += rel;
            n_rel[l] += nz as u64;
            mx_rel[l] = if rel > mx_rel[l] { rel } else { mx_rel[l] };
            zmis[l] += (!nz & (ae > 0.0)) as u64;
            ba[i] = bin_of(ae);
            br[i] = if nz { bin_of(rel) } else { HIST_BINS as u8 };
        }};
    }
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is only true inside `run_avx2`, whose features were detected.
        i = unsafe {
            avx2_lanes(
                ra,
                da,
                full,
                ctx,
                &mut s.h_abs,
                &mut s.h_rel,
                &mut s_r,
                &mut s_d,
                &mut s_r2,
                &mut s_d2,
                &mut s_e2,
                &mut s_ae,
                &mut s_rel,
                &mut n_rel,
                &mut w3,
                &mut w5,
                &mut fail,
                &mut zmis,
                &mut mn_r,
                &mut mx_r,
                &mut mn_d,
                &mut mx_d,
                &mut mx_ae,
                &mut mx_rel,
            )
        };
    }
    while i < full {
        for l in 0..L {
            one!(i + l, l);
        }
        i += L;
    }
    let hist_from = if avx2 { full } else { 0 };
    while i < k {
        one!(i, 0);
        i += 1;
    }
    // Histograms of the elements whose bins were stored: four interleaved sub-histograms.
    let (ba, br) = (&s.bin_abs[..k], &s.bin_rel[..k]);
    let mut i = hist_from;
    while i + SUB <= k {
        for q in 0..SUB {
            s.h_abs[q][ba[i + q] as usize & (SLOTS - 1)] += 1;
            s.h_rel[q][br[i + q] as usize & (SLOTS - 1)] += 1;
        }
        i += SUB;
    }
    while i < k {
        s.h_abs[0][ba[i] as usize & (SLOTS - 1)] += 1;
        s.h_rel[0][br[i] as usize & (SLOTS - 1)] += 1;
        i += 1;
    }
    let sum = |v: [f64; L]| (v[0] + v[1]) + (v[2] + v[3]);
    let cnt = |v: [u64; L]| v.iter().sum::<u64>();
    let fmax = |v: [f64; L]| v.iter().fold(0f64, |m, &x| if x > m { x } else { m });
    let blk_max_abs = fmax(mx_ae);
    let blk_max_rel = fmax(mx_rel);
    if blk_max_abs > acc.max_abs {
        acc.max_abs = blk_max_abs;
        let i = ra
            .iter()
            .zip(da)
            .position(|(&a, &b)| (b as f64 - a as f64).abs() == blk_max_abs);
        acc.max_abs_at = base + i.unwrap_or(0) as u64;
    }
    if blk_max_rel > acc.max_rel {
        acc.max_rel = blk_max_rel;
        let i = ra.iter().zip(da).position(|(&a, &b)| {
            let (a, b) = (a as f64, b as f64);
            a != 0.0 && (b - a).abs() / a.abs() == blk_max_rel
        });
        acc.max_rel_at = base + i.unwrap_or(0) as u64;
    }
    acc.n += k as u64;
    acc.sum_r += sum(s_r);
    acc.sum_d += sum(s_d);
    acc.sum_r2 += sum(s_r2);
    acc.sum_d2 += sum(s_d2);
    acc.sum_e2 += sum(s_e2);
    acc.sum_abs_e += sum(s_ae);
    acc.sum_rel += sum(s_rel);
    acc.n_rel += cnt(n_rel);
    acc.within_1e3 += cnt(w3);
    acc.within_5e3 += cnt(w5);
    acc.allclose_fail += cnt(fail);
    acc.ref_zero_mismatch += cnt(zmis);
    let lo = |v: [f64; L], m: f64| v.iter().fold(m, |m, &x| if x < m { x } else { m });
    let hi = |v: [f64; L], m: f64| v.iter().fold(m, |m, &x| if x > m { x } else { m });
    acc.min_r = lo(mn_r, acc.min_r);
    acc.max_r = hi(mx_r, acc.max_r);
    acc.min_d = lo(mn_d, acc.min_d);
    acc.max_d = hi(mx_d, acc.max_d);
}

/// The lane loop of `block` with AVX2 intrinsics: elements `0..full` (a multiple of 4), the
/// same per-element operations as the scalar `one!` (no FMA, so bit-identical values), lane `l`
/// of every accumulator taking elements `4j + l`. Histogram counts go straight to the
/// sub-histograms. Returns `full`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx2_lanes(
    ra: &[f32],
    da: &[f32],
    full: usize,
    ctx: &PairContext,
    h_abs: &mut [[u32; SLOTS]; SUB],
    h_rel: &mut [[u32; SLOTS]; SUB],
    s_r: &mut [f64; L],
    s_d: &mut [f64; L],
    s_r2: &mut [f64; L],
    s_d2: &mut [f64; L],
    s_e2: &mut [f64; L],
    s_ae: &mut [f64; L],
    s_rel: &mut [f64; L],
    n_rel: &mut [u64; L],
    w3: &mut [u64; L],
    w5: &mut [u64; L],
    fail: &mut [u64; L],
    zmis: &mut [u64; L],
    mn_r: &mut [f64; L],
    mx_r: &mut [f64; L],
    mn_d: &mut [f64; L],
    mx_d: &mut [f64; L],
    mx_ae: &mut [f64; L],
    mx_rel: &mut [f64; L],
) -> usize {
    use std::arch::x86_64::*;
    assert!(full <= ra.len() && full <= da.len() && full % L == 0);
    let ld = |v: &[f64; L]| _mm256_loadu_pd(v.as_ptr());
    let ldi = |v: &[u64; L]| _mm256_loadu_si256(v.as_ptr() as *const __m256i);
    let (mut vs_r, mut vs_d, mut vs_r2, mut vs_d2) = (ld(s_r), ld(s_d), ld(s_r2), ld(s_d2));
    let (mut vs_e2, mut vs_ae, mut vs_rel) = (ld(s_e2), ld(s_ae), ld(s_rel));
    let (mut vmn_r, mut vmx_r, mut vmn_d, mut vmx_d) = (ld(mn_r), ld(mx_r), ld(mn_d), ld(mx_d));
    let (mut vmx_ae, mut vmx_rel) = (ld(mx_ae), ld(mx_rel));
    let (mut vn_rel, mut vw3, mut vw5) = (ldi(n_rel), ldi(w3), ldi(w5));
    let (mut vfail, mut vzmis) = (ldi(fail), ldi(zmis));
    let absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX));
    let zero = _mm256_setzero_pd();
    let atol = _mm256_set1_pd(ctx.atol);
    let rtol = _mm256_set1_pd(ctx.rtol);
    let eps = _mm256_set1_pd(f32::EPSILON as f64);
    let t3 = _mm256_set1_pd(1e-3);
    let t5 = _mm256_set1_pd(5e-3);
    // bin = clamp((bits >> 52) - 1023 - HIST_MIN_EXP + 1, 1, 63), 0 for +0.0 (32-bit lanes:
    // the shifted exponent fits the low dword of each 64-bit lane).
    let bias = _mm256_set1_epi32(1023 + HIST_MIN_EXP - 1);
    let one = _mm256_set1_epi32(1);
    let top = _mm256_set1_epi32(HIST_BINS as i32 - 1);
    let none = _mm256_set1_epi64x(HIST_BINS as i64);
    let bins = |x: __m256d| {
        let bits = _mm256_castpd_si256(x);
        let e = _mm256_sub_epi32(_mm256_srli_epi64(bits, 52), bias);
        let b = _mm256_min_epi32(_mm256_max_epi32(e, one), top);
        let z = _mm256_cmpeq_epi64(bits, _mm256_setzero_si256());
        _mm256_andnot_si256(z, b)
    };
    let mut ba = [0u32; 8];
    let mut br = [0u32; 8];
    let mut i = 0;
    while i < full {
        let a = _mm256_cvtps_pd(_mm_loadu_ps(ra.as_ptr().add(i)));
        let b = _mm256_cvtps_pd(_mm_loadu_ps(da.as_ptr().add(i)));
        let e = _mm256_sub_pd(b, a);
        let ae = _mm256_and_pd(e, absmask);
        let aa = _mm256_and_pd(a, absmask);
        vs_r = _mm256_add_pd(vs_r, a);
        vs_d = _mm256_add_pd(vs_d, b);
        vs_r2 = _mm256_add_pd(vs_r2, _mm256_mul_pd(a, a));
        vs_d2 = _mm256_add_pd(vs_d2, _mm256_mul_pd(b, b));
        vs_e2 = _mm256_add_pd(vs_e2, _mm256_mul_pd(e, e));
        vs_ae = _mm256_add_pd(vs_ae, ae);
        vmn_r = _mm256_min_pd(a, vmn_r);
        vmx_r = _mm256_max_pd(a, vmx_r);
        vmn_d = _mm256_min_pd(b, vmn_d);
        vmx_d = _mm256_max_pd(b, vmx_d);
        vmx_ae = _mm256_max_pd(ae, vmx_ae);
        let thr = _mm256_add_pd(atol, _mm256_mul_pd(rtol, aa));
        let f = _mm256_cmp_pd::<_CMP_GT_OQ>(ae, thr);
        vfail = _mm256_sub_epi64(vfail, _mm256_castpd_si256(f));
        let nz = _mm256_cmp_pd::<_CMP_GT_OQ>(aa, zero);
        let rel_m = _mm256_div_pd(ae, _mm256_blendv_pd(eps, aa, nz));
        let c3 = _mm256_cmp_pd::<_CMP_LE_OQ>(rel_m, t3);
        let c5 = _mm256_cmp_pd::<_CMP_LE_OQ>(rel_m, t5);
        vw3 = _mm256_sub_epi64(vw3, _mm256_castpd_si256(c3));
        vw5 = _mm256_sub_epi64(vw5, _mm256_castpd_si256(c5));
        let rel = _mm256_and_pd(rel_m, nz);
        vs_rel = _mm256_add_pd(vs_rel, rel);
        vn_rel = _mm256_sub_epi64(vn_rel, _mm256_castpd_si256(nz));
        vmx_rel = _mm256_max_pd(rel, vmx_rel);
        let zm = _mm256_andnot_pd(nz, _mm256_cmp_pd::<_CMP_GT_OQ>(ae, zero));
        vzmis = _mm256_sub_epi64(vzmis, _mm256_castpd_si256(zm));
        let bin_r = _mm256_blendv_epi8(none, bins(rel), _mm256_castpd_si256(nz));
        _mm256_storeu_si256(ba.as_mut_ptr() as *mut __m256i, bins(ae));
        _mm256_storeu_si256(br.as_mut_ptr() as *mut __m256i, bin_r);
        for q in 0..SUB {
            h_abs[q][ba[2 * q] as usize & (SLOTS - 1)] += 1;
            h_rel[q][br[2 * q] as usize & (SLOTS - 1)] += 1;
        }
        i += L;
    }
    let st = |v: &mut [f64; L], x: __m256d| _mm256_storeu_pd(v.as_mut_ptr(), x);
    let sti = |v: &mut [u64; L], x: __m256i| _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, x);
    st(s_r, vs_r);
    st(s_d, vs_d);
    st(s_r2, vs_r2);
    st(s_d2, vs_d2);
    st(s_e2, vs_e2);
    st(s_ae, vs_ae);
    st(s_rel, vs_rel);
    st(mn_r, vmn_r);
    st(mx_r, vmx_r);
    st(mn_d, vmn_d);
    st(mx_d, vmx_d);
    st(mx_ae, vmx_ae);
    st(mx_rel, vmx_rel);
    sti(n_rel, vn_rel);
    sti(w3, vw3);
    sti(w5, vw5);
    sti(fail, vfail);
    sti(zmis, vzmis);
    full
}
