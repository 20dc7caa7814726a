//! The fast kernel for pairs whose dtypes are exact in f32 (f32, f16, bf16, mixed): elements
//! are decoded to f32 (exact; an f32 side whose bytes are 4-byte aligned is read in place),
//! widened to f64 in registers, and every metric is accumulated in
//! f64 lanes (so the per-element values are bit-identical to the scalar f64 path; only the
//! order of the sums differs, and the AVX2 loops' sums of squares use FMA). Histogram bins come
//! from exponent bits; the scalar code counts them in four interleaved u32 sub-histograms to
//! avoid store-to-load stalls on a repeated bin, the AVX2 loop in one joint (abs bin, rel bin)
//! histogram (one increment per element instead of two). A block that holds a NaN, an infinity
//! or a value beyond the common range goes to the scalar path.
//!
//! Compiled three times: generic (aarch64, where it auto-vectorizes to NEON, and CPUs without
//! AVX2 run it), with AVX2/FMA/F16C, and with AVX-512 F/BW on top (runtime detection, no global
//! `target-cpu`; `DRIFTSCOPE_KERNEL` caps the choice, see `Isa`). The AVX2 and AVX-512 code
//! make two passes over each block of 1024 elements (in L1): side statistics with the clean
//! check, then the error metrics (in one loop for both, a third of the AVX2 instructions went
//! to spilled registers). Each error loop also comes without histograms (`Histograms::Skip`,
//! `HIST = false`): no bins, no increments, and the `ref == 0` counts the joint histogram's last
//! column gave are counted in the loop. `tests` below checks every variant the CPU runs, in both
//! modes, against the scalar path, count for count.

use super::decode::decode_f32;
use super::{Accum, Histograms, PairContext, BLOCK, HIST_BINS, HIST_MIN_EXP};
use crate::dump::{DType, Tensor};

/// f64 lanes per accumulator.
const L: usize = 4;
/// Sub-histograms (interleaved counters).
const SUB: usize = 4;
/// Slots per sub-histogram: 64 bins, slot 64 = "no relative error", padded to a power of two
/// so that the index mask removes bounds checks.
const SLOTS: usize = 128;
/// Elements per iteration of the AVX2 loop.
#[cfg(target_arch = "x86_64")]
const W: usize = 8;
/// Elements per iteration of the AVX-512 loops.
#[cfg(target_arch = "x86_64")]
const W512: usize = 16;
/// Columns of the AVX2 loop's joint histogram: rel bins 0..64, column 64 = "no relative error".
const JCOLS: usize = HIST_BINS + 1;
/// Slots of the joint (abs bin, rel bin) histogram.
const JOINT: usize = HIST_BINS * JCOLS;
/// Interleaved copies of the joint histogram for long ranges (element `q` of an iteration
/// counts in copy `q % JOINT_TABLES`): f16/bf16 errors take few distinct values, and eight
/// increments of one slot in a row wait on each other through memory (store-to-load
/// forwarding, ~5 cycles each; a third of a bf16 pair's time).
const JOINT_TABLES: usize = 4;
/// Elements from which a range gets `JOINT_TABLES` copies; below, zeroing and folding the
/// copies would cost more than the stalls they save.
const JOINT_TABLES_FROM: usize = 16 * BLOCK;

struct Scratch {
    bin_abs: [u8; BLOCK],
    bin_rel: [u8; BLOCK],
    h_abs: [[u32; SLOTS]; SUB],
    h_rel: [[u32; SLOTS]; SUB],
    /// `JOINT_TABLES` copies of the joint histogram, one after the other; a call uses the
    /// first `tables`.
    joint: Vec<u32>,
    tables: usize,
    /// Decoded blocks of the two sides.
    buf_a: Vec<f32>,
    buf_b: Vec<f32>,
}

impl Scratch {
    fn new() -> Box<Scratch> {
        Box::new(Scratch {
            bin_abs: [0; BLOCK],
            bin_rel: [0; BLOCK],
            h_abs: [[0; SLOTS]; SUB],
            h_rel: [[0; SLOTS]; SUB],
            joint: vec![0; JOINT_TABLES * JOINT],
            tables: 1,
            buf_a: vec![0.0; BLOCK],
            buf_b: vec![0.0; BLOCK],
        })
    }
}

thread_local! {
    /// Each thread's scratch, reused by its calls: allocating and zeroing ~90 KiB per call
    /// was a tenth of the time of a 1024-element pair. Its counters are zero between calls
    /// (the folds zero what they add up); a call takes it out while it runs, so a call that
    /// panics leaves none behind.
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
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

/// The code that measures a pair: the best this CPU runs, or what `DRIFTSCOPE_KERNEL`
/// (`generic`, `avx2`, `avx512`) caps it to (to compare the variants on one machine, or to
/// keep a CPU that slows its clock for AVX-512 on AVX2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Isa {
    /// Plain Rust, auto-vectorized for the build's target (aarch64: NEON).
    Generic,
    /// AVX2, FMA and F16C: eight elements per iteration in four f64 lanes twice.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 F and BW on top of those: sixteen elements per iteration in eight f64 lanes
    /// twice, comparisons into mask registers.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// Every variant this CPU runs, in order (the tests check each against the scalar path).
    fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Generic];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                v.push(Isa::Avx2);
                if has!("avx512f") && has!("avx512bw") {
                    v.push(Isa::Avx512);
                }
            }
        }
        v
    }

    /// The variant `run` uses, chosen once per process.
    fn chosen() -> Isa {
        static CHOSEN: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let cap = std::env::var("DRIFTSCOPE_KERNEL").ok();
            let available = Isa::available();
            let best = *available.last().unwrap_or(&Isa::Generic);
            match cap.as_deref().map(str::trim) {
                Some("generic") => Isa::Generic,
                #[cfg(target_arch = "x86_64")]
                Some("avx2") => best.min(Isa::Avx2),
                _ => best,
            }
        })
    }
}

/// One call's work: elements `lo..hi` of a pair of f32-exact tensors, with or without the
/// histograms.
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    pub r: &'a Tensor,
    pub d: &'a Tensor,
    pub lo: usize,
    pub hi: usize,
    pub ctx: &'a PairContext,
    pub hist: Histograms,
}

/// Measures a job with the variant this process uses.
pub(super) fn run(job: Job) -> Accum {
    run_on(Isa::chosen(), job)
}

/// `run` with the given variant, which must be one of `Isa::available()`.
fn run_on(isa: Isa, job: Job) -> Accum {
    match isa {
        // SAFETY (both): `isa` comes from `Isa::available`, which detected the features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { run_avx512(job) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(job) },
        Isa::Generic => run_generic(job, Isa::Generic),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn run_avx2(job: Job) -> Accum {
    run_generic(job, Isa::Avx2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn run_avx512(job: Job) -> Accum {
    run_generic(job, Isa::Avx512)
}

#[inline(always)]
fn run_generic(job: Job, isa: Isa) -> Accum {
    let Job {
        r,
        d,
        lo,
        hi,
        ctx,
        hist,
    } = job;
    let mut acc = Accum::default();
    let mut s = SCRATCH.take().unwrap_or_else(Scratch::new);
    s.tables = if hi - lo >= JOINT_TABLES_FROM {
        JOINT_TABLES
    } else {
        1
    };
    // Decoded blocks (an f32 side is read in place when it is 4-byte aligned).
    let (mut buf_a, mut buf_b) = (std::mem::take(&mut s.buf_a), std::mem::take(&mut s.buf_b));
    let mut avx_n = 0u64;
    let (rs, ds) = (r.dtype.size(), d.dtype.size());
    let mut i = lo;
    while i < hi {
        let k = (hi - i).min(BLOCK);
        let ra = side(r.dtype, &r.data[i * rs..(i + k) * rs], &mut buf_a[..k], isa);
        let da = side(d.dtype, &d.data[i * ds..(i + k) * ds], &mut buf_b[..k], isa);
        // The next block's bytes, for the error loops to prefetch.
        let next = i + k..(i + k + BLOCK).min(hi);
        let ahead = [
            &r.data[next.start * rs..next.end * rs],
            &d.data[next.start * ds..next.end * ds],
        ];
        match block(&mut acc, &mut s, ra, da, ahead, i as u64, ctx, isa, hist) {
            Some(n) => avx_n += n,
            None => {
                let a: Vec<f64> = ra.iter().map(|&x| x as f64).collect();
                let b: Vec<f64> = da.iter().map(|&x| x as f64).collect();
                acc.add(&a, &b, i as u64, ctx);
            }
        }
        i += k;
    }
    for q in 0..SUB {
        for k in 0..HIST_BINS {
            acc.hist_abs[k] += s.h_abs[q][k] as u64;
            acc.hist_rel[k] += s.h_rel[q][k] as u64;
        }
    }
    // Slot 64 of `h_rel` ("no relative error") is counted through `n_rel`.
    s.h_abs = [[0; SLOTS]; SUB];
    s.h_rel = [[0; SLOTS]; SUB];
    if avx_n > 0 {
        let n = s.tables * JOINT;
        fold_joint(&mut acc, &mut s.joint[..n], avx_n);
    }
    (s.buf_a, s.buf_b) = (buf_a, buf_b);
    SCRATCH.set(Some(s));
    acc
}

/// One block of elements `ra`, `da` (as many on each side) starting at flat index `base`. `None` when the
/// block holds a NaN, an infinity or a value beyond the common range (nothing is then added:
/// the caller sends the block to the scalar path). Otherwise the number of elements whose
/// histogram counts, `n_rel` and `ref_zero_mismatch` are in `s.joint` (see `fold_joint`): those
/// of the SIMD loops when they count histograms, else none (the loops then count `n_rel` and
/// `ref_zero_mismatch` themselves). `ahead` is the raw bytes of the next block of each side,
/// which the SIMD error loops prefetch.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block(
    acc: &mut Accum,
    s: &mut Scratch,
    ra: &[f32],
    da: &[f32],
    ahead: [&[u8]; 2],
    base: u64,
    ctx: &PairContext,
    isa: Isa,
    hist: Histograms,
) -> Option<u64> {
    let k = ra.len();
    let da = &da[..k];
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ahead;
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
            mn_r[l] = min_earlier(mn_r[l], a);
            mx_r[l] = max_earlier(mx_r[l], a);
            mn_d[l] = min_earlier(mn_d[l], b);
            mx_d[l] = max_earlier(mx_d[l], b);
            mx_ae[l] = max_earlier(mx_ae[l], ae);
            fail[l] += (ae > atol + rtol * aa) as u64;
            // msprobe's convention: divide by f32 eps where the reference is 0.
            let nz = aa > 0.0;
            let rel_m = ae / if nz { aa } else { eps };
            w3[l] += (rel_m <= 1e-3) as u64;
            w5[l] += (rel_m <= 5e-3) as u64;
            let rel = if nz { rel_m } else { 0.0 };
            s_rel[l] += rel;
            n_rel[l] += nz as u64;
            mx_rel[l] = max_earlier(mx_rel[l], rel);
            zmis[l] += (!nz & (ae > 0.0)) as u64;
            ba[i] = bin_of(ae);
            br[i] = if nz { bin_of(rel) } else { HIST_BINS as u8 };
        }};
    }
    let lim = ctx.range_limit as f32; // exact: the limit is a largest finite f32/f16/bf16
    let mut i = 0;
    // Without histograms, the SIMD loops' elements where the reference is 0, and of those the
    // ones where the candidate is not.
    #[allow(unused_mut)]
    let mut refzero = [0u64; 2];
    // The SIMD passes of one variant: side statistics with the clean check, then the errors.
    // Direct calls (not function pointers), so that the side loop is inlined.
    #[cfg(target_arch = "x86_64")]
    macro_rules! simd {
        ($sides:ident, $errors:ident) => {{
            if !$sides(
                ra, da, lim, &mut s_r, &mut s_d, &mut s_r2, &mut s_d2, &mut mn_r, &mut mx_r,
                &mut mn_d, &mut mx_d,
            ) {
                return None;
            }
            let tables = match hist {
                Histograms::Count => s.tables,
                Histograms::Skip => 1,
            };
            let errors = match (hist, tables) {
                (Histograms::Skip, _) => $errors::<1, false>,
                (Histograms::Count, 1) => $errors::<1, true>,
                (Histograms::Count, _) => $errors::<JOINT_TABLES, true>,
            };
            errors(
                ra,
                da,
                ahead,
                ctx,
                &mut s.joint[..tables * JOINT],
                &mut refzero,
                &mut s_e2,
                &mut s_ae,
                &mut s_rel,
                &mut w3,
                &mut w5,
                &mut fail,
                &mut mx_ae,
                &mut mx_rel,
            )
        }};
    }
    // SAFETY: `isa` is `Avx512` only inside `run_avx512` and `Avx2` only inside `run_avx2`,
    // whose features were detected.
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => i = unsafe { simd!(avx512_sides, avx512_errors) },
        Isa::Avx2 => i = unsafe { simd!(avx2_sides, avx2_errors) },
        Isa::Generic => {}
    }
    if isa == Isa::Generic
        && !ra
            .iter()
            .zip(da)
            .fold(true, |c, (&a, &b)| c & (a.abs() < lim) & (b.abs() < lim))
    {
        return None;
    }
    let avx_done = i;
    let in_joint = match hist {
        Histograms::Count => avx_done as u64,
        Histograms::Skip => {
            acc.n_rel += avx_done as u64 - refzero[0];
            acc.ref_zero_mismatch += refzero[1];
            0
        }
    };
    while i < full {
        for l in 0..L {
            one!(i + l, l);
        }
        i += L;
    }
    let hist_from = avx_done;
    while i < k {
        one!(i, 0);
        i += 1;
    }
    // Histograms of the elements whose bins were stored: four interleaved sub-histograms.
    let (ba, br) = (&s.bin_abs[..k], &s.bin_rel[..k]);
    let mut i = if hist == Histograms::Count {
        hist_from
    } else {
        k
    };
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
    let fmax = |v: [f64; L]| v.into_iter().fold(0f64, max_earlier);
    let blk_max_abs = fmax(mx_ae);
    let blk_max_rel = fmax(mx_rel);
    if blk_max_abs > acc.max_abs {
        acc.max_abs = blk_max_abs;
        let i = first_hit(ra, da, |a, b| (b - a).abs() == blk_max_abs);
        acc.max_abs_at = base + i.unwrap_or(0) as u64;
    }
    if blk_max_rel > acc.max_rel {
        acc.max_rel = blk_max_rel;
        let i = first_hit(ra, da, |a, b| {
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
    let lo = |v: [f64; L], m: f64| v.into_iter().fold(m, min_earlier);
    let hi = |v: [f64; L], m: f64| v.into_iter().fold(m, max_earlier);
    acc.min_r = lo(mn_r, acc.min_r);
    acc.max_r = hi(mx_r, acc.max_r);
    acc.min_d = lo(mn_d, acc.min_d);
    acc.max_d = hi(mx_d, acc.max_d);
    Some(in_joint)
}

/// The first index where `hit(a, b)` holds (the values widened to f64): groups of 16 are
/// tested whole, without an early exit, so that the test is vectorized (with a division per
/// element for the relative error, a scalar search was a fifth of a 1024-element pair's time).
#[inline(always)]
fn first_hit(ra: &[f32], da: &[f32], hit: impl Fn(f64, f64) -> bool) -> Option<usize> {
    const G: usize = 16;
    let (ga, ta) = ra.as_chunks::<G>();
    let (gb, tb) = da[..ra.len()].as_chunks::<G>();
    let find = |a: &[f32], b: &[f32]| a.iter().zip(b).position(|(&x, &y)| hit(x as f64, y as f64));
    for (k, (a, b)) in ga.iter().zip(gb).enumerate() {
        if a.iter()
            .zip(b)
            .fold(false, |h, (&x, &y)| h | hit(x as f64, y as f64))
        {
            return find(a, b).map(|p| k * G + p);
        }
    }
    find(ta, tb).map(|p| ga.len() * G + p)
}

/// The `out.len()` elements of `bytes` as f32: the bytes themselves where they are f32 and
/// 4-byte aligned (a little-endian target), else decoded into `out`. In place, the two f32
/// sides of a block are not copied (a quarter of an instruction per element pair).
#[inline(always)]
fn side<'a>(dtype: DType, bytes: &'a [u8], out: &'a mut [f32], isa: Isa) -> &'a [f32] {
    if dtype == DType::Float32 && cfg!(target_endian = "little") {
        if let Ok(x) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            return x;
        }
    }
    decode(dtype, bytes, out, isa);
    out
}

/// Decodes `out.len()` elements of `dtype` (f32, f16 or bf16) to f32: f16 with F16C inside the
/// AVX2 function (`half`'s slice conversion detects the CPU's features on every call).
#[inline(always)]
fn decode(dtype: DType, bytes: &[u8], out: &mut [f32], isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Generic && dtype == DType::Float16 {
        // SAFETY: `isa` is only `Avx2` or `Avx512` inside `run_avx2` or `run_avx512`, whose
        // features (F16C among them) were detected.
        unsafe { decode_f16_f16c(&bytes[..out.len() * 2], out) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    decode_f32(dtype, bytes, out)
}

/// f16 to f32 with `vcvtph2ps`, eight per instruction (exact, as every f16 is an f32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_f16_f16c(b: &[u8], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = out.len();
    assert!(b.len() >= 2 * n);
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(b.as_ptr().add(2 * i) as *const __m128i);
        _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for (o, c) in out[i..].iter_mut().zip(b[2 * i..].chunks_exact(2)) {
        *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}

/// First AVX2 pass over a block: whether every element of both sides is finite and inside the
/// common range (`|x| < lim`), and, for elements `0..len / 8 * 8`, the sums, sums of squares
/// and extrema of each side (min/max in f32 on eight lanes, exact: the values are f32). Splitting
/// the side statistics from the error metrics (`avx2_errors`) keeps each loop's accumulators
/// and constants within the 16 vector registers: the single loop before spilled a third of its
/// instructions to the stack. Nothing is kept when the block is not clean.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx2_sides(
    ra: &[f32],
    da: &[f32],
    lim: f32,
    s_r: &mut [f64; L],
    s_d: &mut [f64; L],
    s_r2: &mut [f64; L],
    s_d2: &mut [f64; L],
    mn_r: &mut [f64; L],
    mx_r: &mut [f64; L],
    mn_d: &mut [f64; L],
    mx_d: &mut [f64; L],
) -> bool {
    use std::arch::x86_64::*;
    let k = ra.len().min(da.len());
    let full = k / W * W;
    let ld = |v: &[f64; L]| _mm256_loadu_pd(v.as_ptr());
    let (mut vs_r, mut vs_d, mut vs_r2, mut vs_d2) = (ld(s_r), ld(s_d), ld(s_r2), ld(s_d2));
    let mut vmn_r = _mm256_set1_ps(f32::INFINITY);
    let mut vmx_r = _mm256_set1_ps(f32::NEG_INFINITY);
    let (mut vmn_d, mut vmx_d) = (vmn_r, vmx_r);
    let mut i = 0;
    while i < full {
        let (pa, pd) = (ra.as_ptr().add(i), da.as_ptr().add(i));
        let (a8, b8) = (_mm256_loadu_ps(pa), _mm256_loadu_ps(pd));
        vmn_r = _mm256_min_ps(a8, vmn_r);
        vmx_r = _mm256_max_ps(a8, vmx_r);
        vmn_d = _mm256_min_ps(b8, vmn_d);
        vmx_d = _mm256_max_ps(b8, vmx_d);
        for off in [0, L] {
            let a = _mm256_cvtps_pd(_mm_loadu_ps(pa.add(off)));
            let b = _mm256_cvtps_pd(_mm_loadu_ps(pd.add(off)));
            vs_r = _mm256_add_pd(vs_r, a);
            vs_d = _mm256_add_pd(vs_d, b);
            vs_r2 = _mm256_fmadd_pd(a, a, vs_r2);
            vs_d2 = _mm256_fmadd_pd(b, b, vs_d2);
        }
        i += W;
    }
    // The block's extrema (exact and order-free), then the clean check.
    let lanes = |v: __m256| {
        let mut t = [0f32; W];
        _mm256_storeu_ps(t.as_mut_ptr(), v);
        t
    };
    let ext = [
        lanes(vmn_r).into_iter().fold(f32::INFINITY, min_earlier),
        lanes(vmx_r)
            .into_iter()
            .fold(f32::NEG_INFINITY, max_earlier),
        lanes(vmn_d).into_iter().fold(f32::INFINITY, min_earlier),
        lanes(vmx_d)
            .into_iter()
            .fold(f32::NEG_INFINITY, max_earlier),
    ];
    let mut sums = [[0f64; L]; 4];
    for (t, v) in sums.iter_mut().zip([vs_r, vs_d, vs_r2, vs_d2]) {
        _mm256_storeu_pd(t.as_mut_ptr(), v);
    }
    if !clean_block(ext, &sums, full, lim, &ra[full..k], &da[full..k]) {
        return false;
    }
    (*s_r, *s_d, *s_r2, *s_d2) = (sums[0], sums[1], sums[2], sums[3]);
    fold_extrema(ext, [mn_r, mx_r, mn_d, mx_d]);
    true
}

/// Whether a block whose SIMD part (elements `0..full`) has the f32 extrema `ext` (min and max
/// of the reference, then of the candidate) and the lane sums `sums` is clean: extrema inside
/// (-lim, lim), no sum NaN (`vminps`/`vmaxps` pass over a NaN element, returning the
/// accumulator, but the sums take it), and every element of the scalar tails `ta`, `tb` inside
/// (-lim, lim). Folds without early exits: predictable and vectorized.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn clean_block<const N: usize>(
    ext: [f32; 4],
    sums: &[[f64; N]; 4],
    full: usize,
    lim: f32,
    ta: &[f32],
    tb: &[f32],
) -> bool {
    let inside = |x: f32| x.abs() < lim;
    (full == 0 || ext.into_iter().fold(true, |c, x| c & inside(x)))
        & !sums.iter().flatten().fold(false, |n, x| n | x.is_nan())
        & ta.iter()
            .zip(tb)
            .fold(true, |c, (&a, &b)| c & inside(a) & inside(b))
}

/// A clean block's f32 extrema (`clean_block`'s `ext`) into lane 0 of the f64 lane extrema
/// `m` (min of the reference, max, then the candidate's), with the scalar path's comparison (a
/// tie keeps the earlier value). Lane 0 alone: the lanes are folded into one value in the end.
/// Once per block, not per SIMD lane: a branch per lane and block was a seventh of an fp16
/// `compare`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn fold_extrema(ext: [f32; 4], m: [&mut [f64; L]; 4]) {
    let [mn_r, mx_r, mn_d, mx_d] = m;
    let (x, y) = (ext[0] as f64, ext[2] as f64);
    mn_r[0] = min_earlier(mn_r[0], x);
    mn_d[0] = min_earlier(mn_d[0], y);
    let (x, y) = (ext[1] as f64, ext[3] as f64);
    mx_r[0] = max_earlier(mx_r[0], x);
    mx_d[0] = max_earlier(mx_d[0], y);
}

/// The smaller of the running value `m` and `x`, `m` on a tie: the scalar path's comparison,
/// which keeps the earlier of two equal values (of -0.0 and 0.0, the first seen).
#[inline(always)]
fn min_earlier<T: PartialOrd>(m: T, x: T) -> T {
    if x < m {
        x
    } else {
        m
    }
}

/// The larger of the running value `m` and `x`, `m` on a tie (as `min_earlier`).
#[inline(always)]
fn max_earlier<T: PartialOrd>(m: T, x: T) -> T {
    if x > m {
        x
    } else {
        m
    }
}

/// The constants of `avx2_errors`' loop, one 32-byte vector each; the f64 ones twice, one copy
/// per half of the loop (and the sign mask once more for `|a|`): a constant used twice per
/// iteration is loaded into a register (one instruction), one used once is a memory operand.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(32))]
struct Consts {
    absmask: [[f64; L]; 2],
    absmask_r: [[f64; L]; 2],
    zero: [[f64; L]; 2],
    negzero: [[f64; L]; 2],
    atol: [[f64; L]; 2],
    rtol: [[f64; L]; 2],
    eps: [[f64; L]; 2],
    t3: [[f64; L]; 2],
    t5: [[f64; L]; 2],
    bias: [u16; 16],
    one: [u16; 16],
    top: [u16; 16],
    joint: [u16; 16],
}

#[cfg(target_arch = "x86_64")]
impl Consts {
    fn new(ctx: &PairContext) -> Consts {
        // (bin_abs, bin_rel) word pairs times (65, 1): the joint slot (`vpmaddwd`).
        let mut joint = [1u16; 16];
        for w in joint.iter_mut().step_by(2) {
            *w = JCOLS as u16;
        }
        Consts {
            absmask: [[f64::from_bits(i64::MAX as u64); L]; 2],
            absmask_r: [[f64::from_bits(i64::MAX as u64); L]; 2],
            zero: [[0.0; L]; 2],
            negzero: [[-0.0; L]; 2],
            atol: [[ctx.atol; L]; 2],
            rtol: [[ctx.rtol; L]; 2],
            eps: [[f32::EPSILON as f64; L]; 2],
            t3: [[1e-3; L]; 2],
            t5: [[5e-3; L]; 2],
            bias: [(1023 + HIST_MIN_EXP - 1) as u16; 16],
            one: [1; 16],
            top: [HIST_BINS as u16 - 1; 16],
            joint,
        }
    }
}

/// Second AVX2 pass over a clean block: the error metrics of elements `0..len / 8 * 8`, eight
/// per iteration as two halves of four f64 lanes, with the same per-element operations as the
/// scalar `one!` (no FMA in anything that is compared or binned, so per-element values and
/// every count are bit-identical; the sum of squared errors uses FMA: `e * e` is rounded once
/// instead of twice). Per iteration:
/// - the two histogram bins of all eight elements at once, from the exponents of `ae` and `rel`
///   packed into one vector of 16-bit words (both are 0 or normal f64, never subnormal:
///   `|ae| >= 2^-149` and `rel >= 2^-149 / 2^128` when non-zero, so a zero exponent means a
///   zero value); `rel` is -0.0 where the reference is 0, its sign bit giving column 64;
/// - one increment per element in a joint (abs bin, rel bin) histogram instead of one in each:
///   `fold_joint` sums its rows and columns, and derives `n_rel` (column 64 is `ref == 0`) and
///   `ref_zero_mismatch` (column 64 outside row 0) from it.
///
/// With `HIST` false neither bins nor increments: `refzero` gets the elements with `ref == 0`
/// and, of those, with `ae > 0` (what `fold_joint` would have derived). `ahead` is the raw
/// bytes of both sides' next block, for `prefetch`. Returns the number of elements done (a
/// multiple of 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx2_errors<const TABLES: usize, const HIST: bool>(
    ra: &[f32],
    da: &[f32],
    ahead: [&[u8]; 2],
    ctx: &PairContext,
    joint: &mut [u32],
    refzero: &mut [u64; 2],
    s_e2: &mut [f64; L],
    s_ae: &mut [f64; L],
    s_rel: &mut [f64; L],
    w3: &mut [u64; L],
    w5: &mut [u64; L],
    fail: &mut [u64; L],
    mx_ae: &mut [f64; L],
    mx_rel: &mut [f64; L],
) -> usize {
    use std::arch::x86_64::*;
    assert_eq!(joint.len(), TABLES * JOINT);
    let full = ra.len().min(da.len()) / W * W;
    let ld = |v: &[f64; L]| _mm256_loadu_pd(v.as_ptr());
    let (mut vs_e2, mut vs_ae, mut vs_rel) = (ld(s_e2), ld(s_ae), ld(s_rel));
    let (mut vmx_ae, mut vmx_rel) = (ld(mx_ae), ld(mx_rel));
    // The three counts in one register, a 16-bit word each per 64-bit lane: w3 (word 0), w5
    // (word 1), allclose failures (word 2). A call measures one block, at most 1024 elements,
    // 256 per lane: no carry between the words.
    let mut vcnt = _mm256_setzero_si256();
    // The loop's constants, read through `black_box` so that the compiler cannot rebuild them
    // (`vbroadcastsd`, one instruction per use and iteration): they stay in memory and are
    // used as memory operands, which leaves the 16 vector registers to the accumulators (with
    // compile-time constants, five accumulators were spilled: a load and a store each per
    // iteration).
    let k = std::hint::black_box(Consts::new(ctx));
    let kd = |v: &[f64; L]| _mm256_load_pd(v.as_ptr());
    let kw = |v: &[u16; 16]| _mm256_load_si256(v.as_ptr() as *const __m256i);
    // High dwords of two vectors of four f64 (the element order does not matter to a histogram,
    // only that `ae` and `rel` are packed alike).
    let hi = |x: __m256d, y: __m256d| {
        _mm256_castps_si256(_mm256_shuffle_ps::<0xDD>(
            _mm256_castpd_ps(x),
            _mm256_castpd_ps(y),
        ))
    };
    let mut jj = [0u32; W];
    // Without histograms: per lane, elements with `ref == 0`, and of those `ae > 0`.
    let (mut vzero, mut vzmis) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut i = 0;
    while i < full {
        let (pa, pd) = (ra.as_ptr().add(i), da.as_ptr().add(i));
        prefetch(ahead, i);
        macro_rules! half {
            ($off:expr, $h:expr) => {{
                let a = _mm256_cvtps_pd(_mm_loadu_ps(pa.add($off)));
                let b = _mm256_cvtps_pd(_mm_loadu_ps(pd.add($off)));
                let e = _mm256_sub_pd(b, a);
                let ae = _mm256_and_pd(e, kd(&k.absmask[$h]));
                let aa = _mm256_and_pd(a, kd(&k.absmask_r[$h]));
                // `ae * ae` is `e * e`, and `e` is then dead (one register less).
                vs_e2 = _mm256_fmadd_pd(ae, ae, vs_e2);
                vs_ae = _mm256_add_pd(vs_ae, ae);
                vmx_ae = _mm256_max_pd(ae, vmx_ae);
                let thr = _mm256_add_pd(kd(&k.atol[$h]), _mm256_mul_pd(kd(&k.rtol[$h]), aa));
                let f = _mm256_cmp_pd::<_CMP_GT_OQ>(ae, thr);
                // msprobe's convention: divide by f32 eps where the reference is 0.
                let z = _mm256_cmp_pd::<_CMP_EQ_OQ>(aa, kd(&k.zero[$h]));
                let rel_m = _mm256_div_pd(ae, _mm256_blendv_pd(aa, kd(&k.eps[$h]), z));
                let c3 = _mm256_cmp_pd::<_CMP_LE_OQ>(rel_m, kd(&k.t3[$h]));
                let c5 = _mm256_cmp_pd::<_CMP_LE_OQ>(rel_m, kd(&k.t5[$h]));
                let (c3, c5, f) = (
                    _mm256_castpd_si256(c3),
                    _mm256_castpd_si256(c5),
                    _mm256_castpd_si256(f),
                );
                let c = _mm256_blend_epi16::<0b0010_0010>(c3, c5);
                vcnt = _mm256_sub_epi16(vcnt, _mm256_blend_epi16::<0b0100_0100>(c, f));
                // No relative error where the reference is 0: -0.0, which adds and compares
                // as 0 (`vmaxpd` keeps the accumulator, `s + -0.0 == s`) and whose sign bit
                // sends the element to the "no relative error" column below.
                let rel = _mm256_blendv_pd(rel_m, kd(&k.negzero[$h]), z);
                vs_rel = _mm256_add_pd(vs_rel, rel);
                vmx_rel = _mm256_max_pd(rel, vmx_rel);
                if !HIST {
                    // A true comparison is all ones, -1 per 64-bit lane.
                    vzero = _mm256_sub_epi64(vzero, _mm256_castpd_si256(z));
                    let moved = _mm256_cmp_pd::<_CMP_GT_OQ>(ae, kd(&k.zero[$h]));
                    vzmis = _mm256_sub_epi64(vzmis, _mm256_castpd_si256(_mm256_and_pd(z, moved)));
                }
                (ae, rel)
            }};
        }
        let (ae0, rel0) = half!(0, 0);
        let (ae1, rel1) = half!(L, 1);
        if !HIST {
            i += W;
            continue;
        }
        // Both bins of the eight elements in one vector of 16-bit words: per element a dword
        // whose low word is `sign|exponent` of `ae` and whose high word is that of `rel` (the
        // high words of their high dwords, shifted right by 4). Then, per word, in unsigned
        // saturating arithmetic: bin = min(max(E -sat 972, min(E, 1)), 63), plus 1 where the
        // sign is set (`rel` = -0.0: E = 2048 gives 63 + 1 = 64, the "no relative error"
        // column; every other word is below 2048).
        let x = _mm256_srli_epi16::<4>(_mm256_blend_epi16::<0b1010_1010>(
            _mm256_srli_epi32::<16>(hi(ae0, ae1)),
            hi(rel0, rel1),
        ));
        let b = _mm256_max_epu16(
            _mm256_subs_epu16(x, kw(&k.bias)),
            _mm256_min_epu16(x, kw(&k.one)),
        );
        let b = _mm256_add_epi16(_mm256_min_epu16(b, kw(&k.top)), _mm256_srli_epi16::<11>(x));
        // joint slot = b_abs * 65 + b_rel <= 63 * 65 + 64 < JOINT
        let j = _mm256_madd_epi16(b, kw(&k.joint));
        // The previous iteration's slots, then this one's stored for the next (as in
        // `avx512_errors`: the reloads do not wait on the vector store just made).
        if i > 0 {
            add_slots::<TABLES, _>(joint, &jj);
        }
        _mm256_storeu_si256(jj.as_mut_ptr() as *mut __m256i, j);
        i += W;
    }
    if HIST && full > 0 {
        add_slots::<TABLES, _>(joint, &jj);
    }
    let st = |v: &mut [f64; L], x: __m256d| _mm256_storeu_pd(v.as_mut_ptr(), x);
    st(s_e2, vs_e2);
    st(s_ae, vs_ae);
    st(s_rel, vs_rel);
    st(mx_ae, vmx_ae);
    st(mx_rel, vmx_rel);
    let mut t = [0u16; 4 * L];
    _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, vcnt);
    for l in 0..L {
        w3[l] += t[4 * l] as u64;
        w5[l] += t[4 * l + 1] as u64;
        fail[l] += t[4 * l + 2] as u64;
    }
    for (c, v) in refzero.iter_mut().zip([vzero, vzmis]) {
        let mut t = [0u64; L];
        _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, v);
        *c += t.iter().sum::<u64>();
    }
    full
}

/// `avx2_sides` on sixteen elements per iteration (AVX-512): two f64 accumulators per sum (one
/// per half), so each FMA chain is half as long, and the extrema in f32 on sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx512_sides(
    ra: &[f32],
    da: &[f32],
    lim: f32,
    s_r: &mut [f64; L],
    s_d: &mut [f64; L],
    s_r2: &mut [f64; L],
    s_d2: &mut [f64; L],
    mn_r: &mut [f64; L],
    mx_r: &mut [f64; L],
    mn_d: &mut [f64; L],
    mx_d: &mut [f64; L],
) -> bool {
    use std::arch::x86_64::*;
    let k = ra.len().min(da.len());
    let full = k / W512 * W512;
    let z = _mm512_setzero_pd();
    let (mut r0, mut r1, mut d0, mut d1) = (z, z, z, z);
    let (mut rr0, mut rr1, mut dd0, mut dd1) = (z, z, z, z);
    let mut vmn_r = _mm512_set1_ps(f32::INFINITY);
    let mut vmx_r = _mm512_set1_ps(f32::NEG_INFINITY);
    let (mut vmn_d, mut vmx_d) = (vmn_r, vmx_r);
    let mut i = 0;
    while i < full {
        let (pa, pd) = (ra.as_ptr().add(i), da.as_ptr().add(i));
        let (a16, b16) = (_mm512_loadu_ps(pa), _mm512_loadu_ps(pd));
        vmn_r = _mm512_min_ps(a16, vmn_r);
        vmx_r = _mm512_max_ps(a16, vmx_r);
        vmn_d = _mm512_min_ps(b16, vmn_d);
        vmx_d = _mm512_max_ps(b16, vmx_d);
        // Halves of the loaded vectors (reloading them as 256-bit vectors made the compiler
        // rebuild the upper halves element by element: 35 instructions per iteration, 23 now).
        let hi = |v: __m512| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let a = _mm512_cvtps_pd(_mm512_castps512_ps256(a16));
        let b = _mm512_cvtps_pd(_mm512_castps512_ps256(b16));
        r0 = _mm512_add_pd(r0, a);
        d0 = _mm512_add_pd(d0, b);
        rr0 = _mm512_fmadd_pd(a, a, rr0);
        dd0 = _mm512_fmadd_pd(b, b, dd0);
        let a = _mm512_cvtps_pd(hi(a16));
        let b = _mm512_cvtps_pd(hi(b16));
        r1 = _mm512_add_pd(r1, a);
        d1 = _mm512_add_pd(d1, b);
        rr1 = _mm512_fmadd_pd(a, a, rr1);
        dd1 = _mm512_fmadd_pd(b, b, dd1);
        i += W512;
    }
    // Clean as in `avx2_sides`; the extrema reduced in registers (exact and order-free).
    let ext = [
        _mm512_reduce_min_ps(vmn_r),
        _mm512_reduce_max_ps(vmx_r),
        _mm512_reduce_min_ps(vmn_d),
        _mm512_reduce_max_ps(vmx_d),
    ];
    let mut sums = [[0f64; 8]; 4];
    for (t, v) in sums
        .iter_mut()
        .zip([(r0, r1), (d0, d1), (rr0, rr1), (dd0, dd1)])
    {
        _mm512_storeu_pd(t.as_mut_ptr(), _mm512_add_pd(v.0, v.1));
    }
    if !clean_block(ext, &sums, full, lim, &ra[full..k], &da[full..k]) {
        return false;
    }
    for (acc, t) in [s_r, s_d, s_r2, s_d2].into_iter().zip(sums) {
        for l in 0..L {
            acc[l] += t[l] + t[l + L];
        }
    }
    fold_extrema(ext, [mn_r, mx_r, mn_d, mx_d]);
    true
}

/// `avx2_errors` on sixteen elements per iteration (AVX-512), as two halves of eight f64 lanes
/// with their own accumulators, and the same per-element operations (bit-identical values and
/// counts): comparisons go to mask registers, the three counts are masked adds to u64 lanes,
/// "reference is 0" is a masked blend. The two bins of all sixteen elements come from one
/// vector of 16-bit words, as in `avx2_errors` (same formula, same joint slots; `HIST`,
/// `refzero` and `ahead` as there). Returns the number of elements done (a multiple of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn avx512_errors<const TABLES: usize, const HIST: bool>(
    ra: &[f32],
    da: &[f32],
    ahead: [&[u8]; 2],
    ctx: &PairContext,
    joint: &mut [u32],
    refzero: &mut [u64; 2],
    s_e2: &mut [f64; L],
    s_ae: &mut [f64; L],
    s_rel: &mut [f64; L],
    w3: &mut [u64; L],
    w5: &mut [u64; L],
    fail: &mut [u64; L],
    mx_ae: &mut [f64; L],
    mx_rel: &mut [f64; L],
) -> usize {
    use std::arch::x86_64::*;
    assert_eq!(joint.len(), TABLES * JOINT);
    let full = ra.len().min(da.len()) / W512 * W512;
    let z = _mm512_setzero_pd();
    let (atol, rtol) = (_mm512_set1_pd(ctx.atol), _mm512_set1_pd(ctx.rtol));
    let eps = _mm512_set1_pd(f32::EPSILON as f64);
    let (t3, t5) = (_mm512_set1_pd(1e-3), _mm512_set1_pd(5e-3));
    let negzero = _mm512_set1_pd(-0.0);
    let one = _mm512_set1_epi64(1);
    let bias = _mm512_set1_epi16((1023 + HIST_MIN_EXP - 1) as i16);
    let one16 = _mm512_set1_epi16(1);
    let top = _mm512_set1_epi16(HIST_BINS as i16 - 1);
    // (bin_abs, bin_rel) word pairs times (65, 1): the joint slot (`vpmaddwd`).
    let jw = _mm512_set1_epi32(((1 << 16) | JCOLS) as i32);
    // The high dwords of two vectors of eight f64: dwords 1, 3, ..., 15 of each.
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (mut e2_0, mut e2_1, mut ae_0, mut ae_1) = (z, z, z, z);
    // One maximum for both halves (exact and order-free; a register less than two).
    let (mut rel_0, mut rel_1, mut mae, mut mrel) = (z, z, z, z);
    let (mut n3, mut n5, mut nf) = (
        _mm512_setzero_si512(),
        _mm512_setzero_si512(),
        _mm512_setzero_si512(),
    );
    let mut jj = [0u32; W512];
    // Without histograms: per lane, elements with `ref == 0`, and of those `ae > 0`.
    let (mut nzero, mut nzmis) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut i = 0;
    while i < full {
        let (pa, pd) = (ra.as_ptr().add(i), da.as_ptr().add(i));
        prefetch(ahead, i);
        macro_rules! half {
            ($off:expr, $e2:ident, $sae:ident, $srel:ident) => {{
                let a = _mm512_cvtps_pd(_mm256_loadu_ps(pa.add($off)));
                let b = _mm512_cvtps_pd(_mm256_loadu_ps(pd.add($off)));
                let ae = _mm512_abs_pd(_mm512_sub_pd(b, a));
                let aa = _mm512_abs_pd(a);
                $e2 = _mm512_fmadd_pd(ae, ae, $e2);
                $sae = _mm512_add_pd($sae, ae);
                mae = _mm512_max_pd(ae, mae);
                let thr = _mm512_add_pd(atol, _mm512_mul_pd(rtol, aa));
                nf = _mm512_mask_add_epi64(nf, _mm512_cmp_pd_mask::<_CMP_GT_OQ>(ae, thr), nf, one);
                // msprobe's convention: divide by f32 eps where the reference is 0.
                let zm = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(aa, z);
                let rel_m = _mm512_div_pd(ae, _mm512_mask_blend_pd(zm, aa, eps));
                n3 =
                    _mm512_mask_add_epi64(n3, _mm512_cmp_pd_mask::<_CMP_LE_OQ>(rel_m, t3), n3, one);
                n5 =
                    _mm512_mask_add_epi64(n5, _mm512_cmp_pd_mask::<_CMP_LE_OQ>(rel_m, t5), n5, one);
                // -0.0 where the reference is 0, as in `avx2_errors`.
                let rel = _mm512_mask_blend_pd(zm, rel_m, negzero);
                $srel = _mm512_add_pd($srel, rel);
                mrel = _mm512_max_pd(rel, mrel);
                if !HIST {
                    nzero = _mm512_mask_add_epi64(nzero, zm, nzero, one);
                    let moved = zm & _mm512_cmp_pd_mask::<_CMP_GT_OQ>(ae, z);
                    nzmis = _mm512_mask_add_epi64(nzmis, moved, nzmis, one);
                }
                (_mm512_castpd_si512(ae), _mm512_castpd_si512(rel))
            }};
        }
        let (ae0, rel0) = half!(0, e2_0, ae_0, rel_0);
        let (ae1, rel1) = half!(8, e2_1, ae_1, rel_1);
        if !HIST {
            i += W512;
            continue;
        }
        // Per element a dword: low word `sign|exponent|4 bits` of `ae`, high word that of
        // `rel`; then the bins as in `avx2_errors`.
        let hae = _mm512_permutex2var_epi32(ae0, odd, ae1);
        let hrel = _mm512_permutex2var_epi32(rel0, odd, rel1);
        let x = _mm512_srli_epi16::<4>(_mm512_mask_blend_epi16(
            0xAAAA_AAAA,
            _mm512_srli_epi32::<16>(hae),
            hrel,
        ));
        let b = _mm512_max_epu16(_mm512_subs_epu16(x, bias), _mm512_min_epu16(x, one16));
        let b = _mm512_add_epi16(_mm512_min_epu16(b, top), _mm512_srli_epi16::<11>(x));
        let j = _mm512_madd_epi16(b, jw);
        // The previous iteration's slots, then this one's stored for the next: the reloads
        // come an iteration after the vector store, not right behind it (a 4-byte load from
        // a 64-byte store still in the store buffer waits for it).
        if i > 0 {
            add_slots::<TABLES, _>(joint, &jj);
        }
        _mm512_storeu_si512(jj.as_mut_ptr() as *mut __m512i, j);
        i += W512;
    }
    if HIST && full > 0 {
        add_slots::<TABLES, _>(joint, &jj);
    }
    let lanes = |v: __m512d| {
        let mut t = [0f64; 8];
        _mm512_storeu_pd(t.as_mut_ptr(), v);
        t
    };
    for (acc, v) in [
        (s_e2, _mm512_add_pd(e2_0, e2_1)),
        (s_ae, _mm512_add_pd(ae_0, ae_1)),
        (s_rel, _mm512_add_pd(rel_0, rel_1)),
    ] {
        let t = lanes(v);
        for l in 0..L {
            acc[l] += t[l] + t[l + L];
        }
    }
    // The maxima reduced in registers into lane 0 (exact and order-free; no branch per lane).
    for (m, v) in [(mx_ae, mae), (mx_rel, mrel)] {
        let x = _mm512_reduce_max_pd(v);
        m[0] = max_earlier(m[0], x);
    }
    for (acc, v) in [(w3, n3), (w5, n5), (fail, nf)] {
        let mut t = [0u64; 8];
        _mm512_storeu_si512(t.as_mut_ptr() as *mut __m512i, v);
        for (q, x) in t.into_iter().enumerate() {
            acc[q % L] += x;
        }
    }
    for (c, v) in refzero.iter_mut().zip([nzero, nzmis]) {
        *c += _mm512_reduce_add_epi64(v) as u64;
    }
    full
}

/// Adds one to the joint-histogram slot of each element of an error loop's iteration, the
/// element at position `q` in copy `q % TABLES` of the table. A load per slot instead of a
/// `vpextrd` per slot into the general registers, which spilled the table's address.
///
/// # Safety
/// Every slot is below `JOINT` (the loops clamp both bins) and `joint` holds `TABLES` copies.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn add_slots<const TABLES: usize, const N: usize>(joint: &mut [u32], slots: &[u32; N]) {
    for q in 0..N {
        let x = std::ptr::read_volatile(slots.as_ptr().add(q));
        // SAFETY: x < JOINT and the copy is inside `joint` (the caller's contract).
        *joint.get_unchecked_mut(q % TABLES * JOINT + x as usize) += 1;
    }
}

/// Asks for the cache line at byte `4 i` from the start of each side's next block (`ahead`,
/// its raw bytes): called once per iteration of an error loop, it brings the next block (at
/// most 4 bytes an element) into the cache while this one's arithmetic runs, instead of the
/// next side pass waiting on memory for every line. Past the end of a shorter block (2-byte
/// elements, the last block of a range) it asks for the bytes after it, which costs nothing:
/// a prefetch reads nothing into the program, never faults, and is dropped for an address not
/// mapped.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(ahead: [&[u8]; 2], i: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for b in ahead {
        // SAFETY: a prefetch is a hint that never faults; `wrapping_add` makes no claim that
        // the address is inside `b`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(b.as_ptr().wrapping_add(4 * i) as *const i8) };
    }
}

/// Adds the joint (abs bin, rel bin) histogram of `n` elements of the AVX2 loop to `acc`:
/// row sums are the abs histogram, column sums the rel histogram; column 64 counts `ref == 0`
/// (no relative error), so it also gives `n_rel` and, outside row 0 (`ae > 0`), the
/// `ref_zero_mismatch` count. Leaves `joint` zero.
#[inline(always)]
fn fold_joint(acc: &mut Accum, joint: &mut [u32], n: u64) {
    // u32 sums (they vectorize): one call measures at most CHUNK = 2^20 elements.
    let (first, copies) = joint.split_at_mut(JOINT);
    for copy in copies.chunks_exact_mut(JOINT) {
        for (x, y) in first.iter_mut().zip(copy) {
            *x += std::mem::take(y);
        }
    }
    let mut col = [0u32; JCOLS];
    for (row, r) in first.chunks_exact_mut(JCOLS).enumerate() {
        if row > 0 {
            acc.ref_zero_mismatch += r[HIST_BINS] as u64;
        }
        let mut t = 0u32;
        for (c, x) in col.iter_mut().zip(r) {
            *c += *x;
            t += std::mem::take(x);
        }
        acc.hist_abs[row] += t as u64;
    }
    for (h, &c) in acc.hist_rel.iter_mut().zip(&col[..HIST_BINS]) {
        *h += c as u64;
    }
    acc.n_rel += n - col[HIST_BINS] as u64;
}

#[cfg(test)]
mod tests {
    //! The fast kernel (AVX2 where the CPU has it, and the generic code) against the scalar
    //! `Accum::add` path that every other dtype takes: every count, histogram bin, extremum and
    //! index must be identical; sums may differ in their last bits (summation order, FMA).
    use super::*;
    use crate::dump::{Bytes, DType, Dump, OpenOptions};
    use half::{bf16, f16};

    fn scalar(r: &Tensor, d: &Tensor, ctx: &PairContext) -> Accum {
        let mut acc = Accum::default();
        let (mut a, mut b) = ([0f64; BLOCK], [0f64; BLOCK]);
        let (rs, ds, n) = (r.dtype.size(), d.dtype.size(), r.numel());
        let mut i = 0;
        while i < n {
            let k = (n - i).min(BLOCK);
            super::super::decode::decode_f64(r.dtype, &r.data[i * rs..], &mut a[..k]);
            super::super::decode::decode_f64(d.dtype, &d.data[i * ds..], &mut b[..k]);
            acc.add(&a[..k], &b[..k], i as u64, ctx);
            i += k;
        }
        acc
    }

    fn close(f: f64, s: f64, scale: f64) -> bool {
        f == s || (f - s).abs() <= 1e-12 * scale
    }

    fn same(f: &Accum, s: &Accum, hist: Histograms, what: &str) {
        let counts = |a: &Accum| {
            [
                a.n,
                a.n_rel,
                a.within_1e3,
                a.within_5e3,
                a.allclose_fail,
                a.ref_zero_mismatch,
                a.nan_r,
                a.nan_d,
                a.inf_r,
                a.inf_d,
                a.masked,
                a.nonfinite_match,
                a.nonfinite_mismatch,
                a.overflow,
                a.saturated,
                a.first_mismatch_at,
                a.max_abs_at,
                a.max_rel_at,
            ]
        };
        assert_eq!(counts(f), counts(s), "counts, {what}");
        if hist == Histograms::Count {
            assert_eq!(f.hist_abs, s.hist_abs, "hist_abs, {what}");
            assert_eq!(f.hist_rel, s.hist_rel, "hist_rel, {what}");
        }
        let ext = |a: &Accum| [a.max_abs, a.max_rel, a.min_r, a.max_r, a.min_d, a.max_d];
        assert_eq!(ext(f), ext(s), "extrema, {what}");
        let n = s.n as f64;
        for (x, y, scale, name) in [
            (f.sum_r, s.sum_r, (n * s.sum_r2).sqrt(), "sum_r"),
            (f.sum_d, s.sum_d, (n * s.sum_d2).sqrt(), "sum_d"),
            (f.sum_r2, s.sum_r2, s.sum_r2, "sum_r2"),
            (f.sum_d2, s.sum_d2, s.sum_d2, "sum_d2"),
            (f.sum_e2, s.sum_e2, s.sum_e2, "sum_e2"),
            (f.sum_abs_e, s.sum_abs_e, s.sum_abs_e, "sum_abs_e"),
            (f.sum_rel, s.sum_rel, s.sum_rel, "sum_rel"),
        ] {
            assert!(close(x, y, scale), "{name}: {x} vs {y}, {what}");
        }
    }

    fn check(r: &Tensor, d: &Tensor, what: &str) {
        let ctx = PairContext::new(r.dtype, d.dtype);
        let s = scalar(r, d, &ctx);
        let n = r.numel();
        for hist in [Histograms::Count, Histograms::Skip] {
            let job = Job {
                r,
                d,
                lo: 0,
                hi: n,
                ctx: &ctx,
                hist,
            };
            same(&run(job), &s, hist, &format!("run, {hist:?}, {what}"));
            // Without histograms the loops count `n_rel` and `ref_zero_mismatch` themselves.
            for isa in Isa::available() {
                same(
                    &run_on(isa, job),
                    &s,
                    hist,
                    &format!("{isa:?}, {hist:?}, {what}"),
                );
            }
        }
    }

    fn tensor(dtype: DType, v: &[f32]) -> Tensor {
        let data: Vec<u8> = match dtype {
            DType::Float32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            DType::Float16 => v
                .iter()
                .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
                .collect(),
            DType::Bfloat16 => v
                .iter()
                .flat_map(|&x| bf16::from_f32(x).to_bits().to_le_bytes())
                .collect(),
            _ => unreachable!(),
        };
        Tensor {
            dtype,
            shape: vec![v.len()],
            data: Bytes::Owned(data),
        }
    }

    struct Rng(u64);
    impl Rng {
        fn u(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn f(&mut self) -> f64 {
            (self.u() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn pick(&mut self, n: u64) -> u64 {
            self.u() % n
        }
    }

    /// A candidate value for reference `a`: on or within a few ulps of the 1e-3 / 5e-3 ratio
    /// thresholds, of the allclose threshold, of the f32-eps rule for zeros, equal, random...
    fn candidate(g: &mut Rng, a: f32, rtol: f64, atol: f64) -> f32 {
        let aa = (a as f64).abs();
        let den = if aa > 0.0 { aa } else { f32::EPSILON as f64 };
        let sign = if g.pick(2) == 0 { 1.0 } else { -1.0 };
        let base = match g.pick(8) {
            0 => a as f64 + sign * 1e-3 * den,
            1 => a as f64 + sign * 5e-3 * den,
            2 => a as f64 + sign * (atol + rtol * aa),
            3 => a as f64,
            4 => a as f64 * (1.0 + sign * 1e-3 * g.f()),
            5 => -(a as f64),
            6 => sign * g.f() * 10f64.powi(g.pick(20) as i32 - 12),
            _ => a as f64 + sign * den * 2f64.powi(-(g.pick(60) as i32)),
        };
        let b = base as f32;
        // nudge by a few ulps either way
        let k = g.pick(7) as i32 - 3;
        let bits = b.to_bits() as i32;
        if b.is_finite() && b != 0.0 && g.pick(2) == 0 {
            f32::from_bits((bits + k) as u32)
        } else {
            b
        }
    }

    fn reference(g: &mut Rng, max_exp: i32, specials: bool) -> f32 {
        let sign = if g.pick(2) == 0 { 1.0 } else { -1.0 };
        match g.pick(if specials { 40 } else { 20 }) {
            0 => 0.0,
            1 => -0.0,
            2 => f32::from_bits(g.pick(1 << 23) as u32 + 1) * sign as f32, // subnormal
            3 => f32::MIN_POSITIVE * sign as f32,
            20 => f32::NAN,
            21 => f32::INFINITY * sign as f32,
            22 => f32::MAX * sign as f32,
            _ => (sign * g.f() * 2f64.powi(g.pick((max_exp + 40) as u64) as i32 - 40)) as f32,
        }
    }

    #[test]
    fn fast_path_matches_scalar_path_on_random_and_edge_values() {
        let mut g = Rng(0x9e37_79b9_7f4a_7c15);
        for &n in &[1usize, 7, 8, 9, 15, 1023, 1024, 1025, 3000, 20_000] {
            for round in 0..6 {
                let specials = round % 3 == 2;
                let pairs = [
                    (DType::Float32, DType::Float32, 60),
                    (DType::Float16, DType::Float16, 14),
                    (DType::Bfloat16, DType::Bfloat16, 60),
                    (DType::Float32, DType::Bfloat16, 60),
                    (DType::Float32, DType::Float16, 14),
                ];
                for (rt, dt, max_exp) in pairs {
                    let ctx = PairContext::new(rt, dt);
                    let r: Vec<f32> = (0..n)
                        .map(|_| reference(&mut g, max_exp, specials))
                        .collect();
                    // round the reference to its dtype first, so the candidate sits near the
                    // thresholds of the value actually compared
                    let rd = super::super::decode::exact_in_f32(rt);
                    assert!(rd);
                    let rt_t = tensor(rt, &r);
                    let mut rr = vec![0f32; n];
                    decode_f32(rt, &rt_t.data[..], &mut rr);
                    let d: Vec<f32> = rr
                        .iter()
                        .map(|&a| {
                            if specials && g.pick(50) == 0 {
                                [f32::NAN, f32::INFINITY, -f32::MAX][g.pick(3) as usize]
                            } else {
                                candidate(&mut g, a, ctx.rtol, ctx.atol)
                            }
                        })
                        .collect();
                    check(
                        &rt_t,
                        &tensor(dt, &d),
                        &format!("n={n} round={round} {rt:?}/{dt:?}"),
                    );
                }
            }
        }
    }

    /// A range of 69 blocks, as `measure` hands one chunk to the kernel, with NaN/Inf/`MAX`
    /// blocks among clean ones.
    #[test]
    fn fast_path_matches_scalar_path_on_long_ranges() {
        let n = 70_001;
        let mut g = Rng(0x2545_f491_4f6c_dd1d);
        for (rt, dt, max_exp) in [
            (DType::Float32, DType::Float32, 60),
            (DType::Float16, DType::Float16, 14),
            (DType::Bfloat16, DType::Bfloat16, 60),
            (DType::Float32, DType::Bfloat16, 60),
            (DType::Float32, DType::Float16, 14),
        ] {
            let ctx = PairContext::new(rt, dt);
            let special = |i: usize| (i / BLOCK) % 8 == 3;
            let r: Vec<f32> = (0..n)
                .map(|i| reference(&mut g, max_exp, special(i)))
                .collect();
            let rt_t = tensor(rt, &r);
            let mut rr = vec![0f32; n];
            decode_f32(rt, &rt_t.data[..], &mut rr);
            let d: Vec<f32> = rr
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    if special(i) && g.pick(50) == 0 {
                        [f32::NAN, f32::INFINITY, -f32::MAX][g.pick(3) as usize]
                    } else {
                        candidate(&mut g, a, ctx.rtol, ctx.atol)
                    }
                })
                .collect();
            check(&rt_t, &tensor(dt, &d), &format!("n={n} {rt:?}/{dt:?}"));
        }
    }

    /// Pairs on and one or two ulps around the ratio thresholds (`|e| / |r|` exactly 1e-3 or
    /// 5e-3: `r = 1000 · 2^k`, `d = 1001 · 2^k` or `1005 · 2^k`), around `t · eps` where the
    /// reference is ±0, subnormal on either side, relative errors far above and below the
    /// histogram's range (bins 1 and 63 on both sides of the joint histogram, and the
    /// "no relative error" column), with a NaN/inf block among them.
    #[test]
    fn fast_path_matches_scalar_path_on_threshold_and_extreme_pairs() {
        let ulps = |x: f32, k: i32| {
            if x == 0.0 || !x.is_finite() {
                x
            } else {
                f32::from_bits((x.to_bits() as i32 + k) as u32)
            }
        };
        let mut r = Vec::new();
        let mut d = Vec::new();
        let mut push = |a: f32, b: f32| {
            for (x, y) in [(a, b), (-a, -b), (a, -b)] {
                r.push(x);
                d.push(y);
            }
        };
        for k in (-149..=100).step_by(3) {
            let s = 2f32.powi(k);
            for (num, den) in [(1001.0, 1000.0), (1005.0, 1000.0), (2002.0, 2000.0)] {
                let (a, b) = (den * s, num * s);
                for u in -2..=2 {
                    push(a, ulps(b, u));
                    push(ulps(a, u), b);
                }
            }
            // the reference 0: msprobe's ratio divides by f32 eps
            let eps = f32::EPSILON as f64;
            for t in [1e-3, 5e-3] {
                let b = (t * eps) as f32;
                for u in -2..=2 {
                    push(0.0, ulps(b, u));
                    push(-0.0, ulps(b, u));
                }
            }
            push(0.0, s);
            push(-0.0, 0.0);
            push(s, 0.0);
            push(s, s);
            push(f32::from_bits(1), s); // relative error up to 2^249: bin 63
            push(s, ulps(s, 1)); // 2^-23 relative, tiny absolute errors: bin 1
            push(f32::from_bits(3), f32::from_bits(1));
        }
        let blocks = r.len().div_ceil(BLOCK);
        // one block with non-finite values, in the middle
        let mid = blocks / 2 * BLOCK;
        for (i, v) in [f32::NAN, f32::INFINITY, -f32::MAX].into_iter().enumerate() {
            d[mid + 5 * i] = v;
        }
        for (rt, dt) in [
            (DType::Float32, DType::Float32),
            (DType::Float32, DType::Bfloat16),
            (DType::Float32, DType::Float16),
        ] {
            check(
                &tensor(rt, &r),
                &tensor(dt, &d),
                &format!("{} threshold pairs {rt:?}/{dt:?}", r.len()),
            );
        }
    }

    /// f32 sides read in place (4-byte aligned) and decoded (mapped at an odd offset): the same
    /// counts either way, and the same as the scalar path.
    #[test]
    fn fast_path_matches_scalar_path_on_unaligned_f32_sides() {
        let mut g = Rng(0x51_7cc1_b727_220a);
        let n = 5000;
        let r: Vec<f32> = (0..n).map(|_| reference(&mut g, 60, false)).collect();
        let ctx = PairContext::new(DType::Float32, DType::Float32);
        let d: Vec<f32> = r
            .iter()
            .map(|&a| candidate(&mut g, a, ctx.rtol, ctx.atol))
            .collect();
        let at = |t: Tensor, off: usize| {
            let mut f = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut f, &vec![0u8; off]).unwrap();
            std::io::Write::write_all(&mut f, &t.data).unwrap();
            // SAFETY: a private temporary file nothing else writes to.
            let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
            Tensor {
                data: Bytes::Mapped {
                    map: std::sync::Arc::new(map),
                    start: off,
                    len: t.data.len(),
                },
                ..t
            }
        };
        for (ro, dof) in [(0, 0), (1, 0), (0, 3), (2, 1)] {
            let (rt, dt) = (
                at(tensor(DType::Float32, &r), ro),
                at(tensor(DType::Float32, &d), dof),
            );
            assert_eq!(side_in_place(&rt), ro == 0);
            check(&rt, &dt, &format!("offsets {ro}, {dof}"));
        }
    }

    fn side_in_place(t: &Tensor) -> bool {
        let mut out = [0f32; 4];
        let x = side(t.dtype, &t.data[..16], &mut out, Isa::Generic);
        std::ptr::eq(x.as_ptr().cast::<u8>(), t.data.as_ptr())
    }

    #[test]
    fn fast_path_matches_scalar_path_on_the_reference_dumps() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("reference_dumps/h200");
        let mut pairs = 0;
        for (model, runs) in [
            (
                "llama/msprobe",
                &["cpu_fp32_rerun", "cuda_tf32", "cuda_fp16", "cuda_bf16"][..],
            ),
            ("llama/plain", &["cuda_bf16"][..]),
            ("mobilenet/msprobe", &["cuda_fp16"][..]),
            ("mobilenet/plain", &["cuda_fp16"][..]),
        ] {
            let open = |run: &str| {
                let mut p = root.join(model).join(run);
                if model.ends_with("plain") {
                    p = p.join("activations.safetensors");
                }
                Dump::open(&p, &OpenOptions::default()).unwrap()
            };
            let r = open("cpu_fp32");
            for run in runs {
                let d = open(run);
                for e in &r.entries {
                    let Some(f) = d.entries.iter().find(|x| x.name == e.name) else {
                        continue;
                    };
                    let (Ok(a), Ok(b)) = (r.load(e), d.load(f)) else {
                        continue;
                    };
                    if a.numel() != b.numel()
                        || !super::super::decode::exact_in_f32(a.dtype)
                        || !super::super::decode::exact_in_f32(b.dtype)
                    {
                        continue;
                    }
                    check(&a, &b, &format!("{model} {run} {}", e.name));
                    pairs += 1;
                }
            }
        }
        assert!(pairs > 500, "only {pairs} pairs compared");
    }
}
