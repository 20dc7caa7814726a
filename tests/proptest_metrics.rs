//! Property tests of the metric kernel (`metrics::measure`) against a plain float64 reference
//! written here, on random tensors of every dtype and mixed dtype pairs, with NaN, ±Inf, ±0,
//! subnormals, values at and beyond each dtype's range, huge and tiny magnitudes.
//!
//! The reference implements the rules of src/metrics/mod.rs (docs/metrics.md):
//! - NaN on both sides: `nonfinite_match`, excluded from the numeric metrics;
//! - NaN on one side only: `nonfinite_mismatch` (first index recorded);
//! - the reference holding a fill value (infinite, or at or beyond its own dtype's largest
//!   finite value, so beyond the smaller floating dtype's largest finite value) and the
//!   candidate of the same sign at least half that value: `masked` (the same infinity on both sides: `nonfinite_match`); one side
//!   only, opposite signs, or a real reference value: `nonfinite_mismatch`, of which a
//!   candidate infinity against a finite reference is `overflow` and a real reference value
//!   beyond the candidate's range against its clamped value is `saturated`;
//! - every other element is compared; relative errors skip elements whose reference is 0
//!   (counted in `ref_zero_mismatch` when the candidate is not 0).

use driftscope::dump::{Bytes, DType, Tensor};
use driftscope::metrics::{measure, Metrics};
use proptest::prelude::*;

// ---- an independent decoder ------------------------------------------------------------------

fn f16_bits(h: u16) -> f64 {
    let s = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = ((h >> 10) & 0x1f) as i32;
    let m = (h & 0x3ff) as f64;
    s * match e {
        0 => m * 2f64.powi(-24),
        31 if m == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
    }
}

fn fp8_bits(b: u8, e4m3: bool) -> f64 {
    let s = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let (eb, mb, bias) = if e4m3 { (4, 3, 7) } else { (5, 2, 15) };
    let e = ((b >> mb) & ((1 << eb) - 1)) as i32;
    let m = (b & ((1 << mb) - 1)) as f64;
    let mmax = (1 << mb) as f64;
    let emax = (1 << eb) - 1;
    s * if e4m3 && e == emax && m == mmax - 1.0 {
        f64::NAN
    } else if !e4m3 && e == emax {
        if m == 0.0 {
            f64::INFINITY
        } else {
            f64::NAN
        }
    } else if e == 0 {
        m / mmax * 2f64.powi(1 - bias)
    } else {
        (1.0 + m / mmax) * 2f64.powi(e - bias)
    }
}

fn decode(dt: DType, b: &[u8]) -> Vec<f64> {
    b.chunks_exact(dt.size())
        .map(|c| match dt {
            DType::Float64 => f64::from_le_bytes(c.try_into().unwrap()),
            DType::Float32 => f32::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::Float16 => f16_bits(u16::from_le_bytes([c[0], c[1]])),
            DType::Bfloat16 => {
                f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64
            }
            DType::Float8E4m3fn => fp8_bits(c[0], true),
            DType::Float8E5m2 => fp8_bits(c[0], false),
            DType::Int64 => i64::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::Int32 => i32::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::Int16 => i16::from_le_bytes(c.try_into().unwrap()) as f64,
            DType::Int8 => c[0] as i8 as f64,
            DType::Uint8 => c[0] as f64,
            DType::Bool => (c[0] != 0) as u8 as f64,
        })
        .collect()
}

/// Nearest representable value of `dt` (generation only).
fn encode(dt: DType, v: f64) -> Vec<u8> {
    match dt {
        DType::Float64 => v.to_le_bytes().to_vec(),
        DType::Float32 => (v as f32).to_le_bytes().to_vec(),
        DType::Float16 => half::f16::from_f64(v).to_le_bytes().to_vec(),
        DType::Bfloat16 => half::bf16::from_f64(v).to_le_bytes().to_vec(),
        DType::Float8E4m3fn | DType::Float8E5m2 => {
            let e4 = dt == DType::Float8E4m3fn;
            let best = (0..=255u8)
                .filter(|&b| !fp8_bits(b, e4).is_nan() || v.is_nan())
                .min_by(|&x, &y| {
                    let (dx, dy) = ((fp8_bits(x, e4) - v).abs(), (fp8_bits(y, e4) - v).abs());
                    dx.partial_cmp(&dy).unwrap_or(std::cmp::Ordering::Equal)
                })
                .unwrap();
            vec![best]
        }
        DType::Int64 => (v as i64).to_le_bytes().to_vec(),
        DType::Int32 => (v as i32).to_le_bytes().to_vec(),
        DType::Int16 => (v as i16).to_le_bytes().to_vec(),
        DType::Int8 => (v as i8).to_le_bytes().to_vec(),
        DType::Uint8 => vec![v as u8],
        DType::Bool => vec![(v != 0.0) as u8],
    }
}

// ---- the float64 reference -------------------------------------------------------------------

#[derive(Debug, Default)]
struct Ref {
    compared: u64,
    nan_r: u64,
    nan_d: u64,
    inf_r: u64,
    inf_d: u64,
    masked: u64,
    overflow: u64,
    saturated: u64,
    nf_match: u64,
    nf_mismatch: u64,
    first_mismatch: Option<u64>,
    zero_mismatch: u64,
    allclose_fail: u64,
    within_1e3: u64,
    within_5e3: u64,
    max_abs: f64,
    max_abs_at: Option<u64>,
    max_rel: f64,
    max_rel_at: Option<u64>,
    n_rel: u64,
    sum_abs: f64,
    sum_rel: f64,
    sum_e2: f64,
    sum_r2: f64,
    sum_d2: f64,
    dot: f64,
    sum_r: f64,
    min_r: f64,
    max_r: f64,
    min_d: f64,
    max_d: f64,
    well_scaled: bool,
}

fn reference(rt: DType, r: &[f64], dt: DType, d: &[f64]) -> Ref {
    // Only floating-point dtypes have fill values; an integer's extremes are ordinary values.
    let fmax = |t: DType| {
        if t.is_float() {
            t.max_finite()
        } else {
            f64::INFINITY
        }
    };
    let lim = fmax(rt).min(fmax(dt));
    let (rtol, atol) = DType::coarser(rt, dt).default_tolerances();
    let mut o = Ref {
        min_r: f64::INFINITY,
        max_r: f64::NEG_INFINITY,
        min_d: f64::INFINITY,
        max_d: f64::NEG_INFINITY,
        well_scaled: true,
        ..Ref::default()
    };
    for (i, (&a, &b)) in r.iter().zip(d).enumerate() {
        let i = i as u64;
        o.nan_r += a.is_nan() as u64;
        o.nan_d += b.is_nan() as u64;
        o.inf_r += a.is_infinite() as u64;
        o.inf_d += b.is_infinite() as u64;
        let mismatch = |o: &mut Ref| {
            o.nf_mismatch += 1;
            o.first_mismatch.get_or_insert(i);
        };
        if a.is_nan() || b.is_nan() {
            if a.is_nan() && b.is_nan() {
                o.nf_match += 1;
            } else {
                mismatch(&mut o);
            }
            continue;
        }
        let (oa, ob) = (a.abs() >= lim, b.abs() >= lim);
        if oa || ob {
            let fill = a.is_infinite() || a.abs() >= fmax(rt);
            let same_sign = a.signum() == b.signum();
            if oa && b.abs() >= lim / 2.0 && same_sign && fill {
                if a.is_infinite() && b.is_infinite() {
                    o.nf_match += 1;
                } else {
                    o.masked += 1;
                }
            } else {
                if a.is_finite() && b.is_infinite() {
                    o.overflow += 1;
                } else if oa && ob && same_sign {
                    o.saturated += 1;
                }
                mismatch(&mut o);
            }
            continue;
        }
        o.compared += 1;
        for x in [a, b] {
            if x != 0.0 && !(1e-100..=1e100).contains(&x.abs()) {
                o.well_scaled = false;
            }
        }
        let ae = (b - a).abs();
        if ae > o.max_abs {
            o.max_abs = ae;
            o.max_abs_at = Some(i);
        }
        o.sum_abs += ae;
        o.sum_e2 += (b - a) * (b - a);
        o.sum_r2 += a * a;
        o.sum_d2 += b * b;
        o.dot += a * b;
        o.sum_r += a;
        o.min_r = o.min_r.min(a);
        o.max_r = o.max_r.max(a);
        o.min_d = o.min_d.min(b);
        o.max_d = o.max_d.max(b);
        o.allclose_fail += (ae > atol + rtol * a.abs()) as u64;
        let m = ae
            / if a != 0.0 {
                a.abs()
            } else {
                f32::EPSILON as f64
            };
        o.within_1e3 += (m <= 1e-3) as u64;
        o.within_5e3 += (m <= 5e-3) as u64;
        if a != 0.0 {
            let rel = ae / a.abs();
            o.n_rel += 1;
            o.sum_rel += rel;
            if rel > o.max_rel {
                o.max_rel = rel;
                o.max_rel_at = Some(i);
            }
        } else if b != 0.0 {
            o.zero_mismatch += 1;
        }
    }
    o
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol * a.abs().max(b.abs()).max(1e-300)
}

fn check(rt: DType, rb: &[u8], dt: DType, db: &[u8]) -> Result<(), TestCaseError> {
    let tr = Tensor {
        dtype: rt,
        shape: vec![rb.len() / rt.size()],
        data: Bytes::Owned(rb.to_vec()),
    };
    let td = Tensor {
        dtype: dt,
        shape: vec![db.len() / dt.size()],
        data: Bytes::Owned(db.to_vec()),
    };
    let m: Metrics = measure(&tr, &td);
    let (r, d) = (decode(rt, rb), decode(dt, db));
    let o = reference(rt, &r, dt, &d);
    let ctx = format!("{rt}/{dt} r={r:?} d={d:?}");
    prop_assert_eq!(m.numel, r.len() as u64, "{}", ctx);
    prop_assert_eq!(m.compared, o.compared, "{}", ctx);
    prop_assert_eq!(m.nan_ref, o.nan_r, "{}", ctx);
    prop_assert_eq!(m.nan_dev, o.nan_d, "{}", ctx);
    prop_assert_eq!(m.inf_ref, o.inf_r, "{}", ctx);
    prop_assert_eq!(m.inf_dev, o.inf_d, "{}", ctx);
    prop_assert_eq!(m.masked, o.masked, "{}", ctx);
    prop_assert_eq!(m.overflow, o.overflow, "{}", ctx);
    prop_assert_eq!(m.saturated, o.saturated, "{}", ctx);
    prop_assert_eq!(m.nonfinite_match, o.nf_match, "{}", ctx);
    prop_assert_eq!(m.nonfinite_mismatch, o.nf_mismatch, "{}", ctx);
    prop_assert_eq!(
        m.first_nonfinite_mismatch_index,
        o.first_mismatch,
        "{}",
        ctx
    );
    prop_assert_eq!(m.ref_zero_mismatch, o.zero_mismatch, "{}", ctx);
    prop_assert_eq!(m.allclose_fail, o.allclose_fail, "{}", ctx);
    prop_assert_eq!(m.max_abs_err, o.max_abs, "{}", ctx);
    prop_assert_eq!(m.max_rel_err, o.max_rel, "{}", ctx);
    if let Some(at) = o.max_abs_at {
        prop_assert_eq!(m.max_abs_err_index, at, "{}", ctx);
    }
    if let Some(at) = o.max_rel_at {
        prop_assert_eq!(m.max_rel_err_index, at, "{}", ctx);
    }
    let n = o.compared.max(1) as f64;
    if o.compared > 0 {
        prop_assert_eq!(
            m.one_thousandth_err_ratio,
            o.within_1e3 as f64 / n,
            "{}",
            ctx
        );
        prop_assert_eq!(
            m.five_thousandths_err_ratio,
            o.within_5e3 as f64 / n,
            "{}",
            ctx
        );
        prop_assert_eq!(m.ref_stats.min, Some(o.min_r), "{}", ctx);
        prop_assert_eq!(m.ref_stats.max, Some(o.max_r), "{}", ctx);
        prop_assert_eq!(m.dev_stats.min, Some(o.min_d), "{}", ctx);
        prop_assert_eq!(m.dev_stats.max, Some(o.max_d), "{}", ctx);
    } else {
        prop_assert_eq!(m.ref_stats.min, None, "{}", ctx);
    }
    prop_assert_eq!(m.hist_abs_err.iter().sum::<u64>(), o.compared, "{}", ctx);
    prop_assert_eq!(m.hist_rel_err.iter().sum::<u64>(), o.n_rel, "{}", ctx);
    if o.well_scaled {
        // Sums: the kernel adds block-wise, the reference element by element.
        let t = 1e-9;
        prop_assert!(close(m.mean_abs_err, o.sum_abs / n, t), "mean_abs {ctx}");
        let mean_rel = if o.n_rel > 0 {
            o.sum_rel / o.n_rel as f64
        } else {
            0.0
        };
        prop_assert!(close(m.mean_rel_err, mean_rel, t), "mean_rel {ctx}");
        prop_assert!(close(m.rmse, (o.sum_e2 / n).sqrt(), t), "rmse {ctx}");
        let (nr, nd) = (o.sum_r2.sqrt(), o.sum_d2.sqrt());
        let rel_l2 = if nr > 0.0 {
            o.sum_e2.sqrt() / nr
        } else if o.sum_e2 == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        prop_assert!(close(m.rel_l2_err, rel_l2, t), "rel_l2 {ctx}");
        prop_assert!(close(m.ref_stats.norm, nr, t), "norm {ctx}");
        if o.compared > 0 {
            prop_assert!(
                close(m.ref_stats.mean.unwrap(), o.sum_r / n, 1e-9)
                    || (m.ref_stats.mean.unwrap() - o.sum_r / n).abs() <= 1e-12 * o.sum_r2.sqrt(),
                "mean {ctx}"
            );
        }
        let cos = if nr == 0.0 && nd == 0.0 {
            1.0
        } else if nr == 0.0 || nd == 0.0 {
            0.0
        } else {
            o.dot / (nr * nd)
        };
        // The kernel's stable 1 - cos = (|e|^2 - (|r| - |d|)^2) / (2 |r| |d|) carries a rounding
        // error of about n eps (|r| + |d|)^2 / (2 |r| |d|): tiny near cos = 1 (what matters
        // for drift), larger when the two norms differ by orders of magnitude.
        let cond = if nr > 0.0 && nd > 0.0 {
            (nr + nd) * (nr + nd) / (2.0 * nr * nd)
        } else {
            1.0
        };
        let tol = 1e-9 + 8.0 * n * f64::EPSILON * cond;
        prop_assert!(
            (m.cosine - cos).abs() <= tol,
            "cosine {} vs {cos} (tol {tol}) {ctx}",
            m.cosine
        );
        prop_assert!((0.0..=2.0).contains(&m.one_minus_cosine), "{ctx}");
    }
    Ok(())
}

// ---- generators --------------------------------------------------------------------------

fn dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

/// A value drawn to hit the edges: specials, subnormals of every float width, each dtype's
/// largest finite value, huge and tiny magnitudes, small integers, raw random bits.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -10.0f64..10.0,
        2 => (-20i32..20).prop_map(|i| i as f64),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => prop::sample::select(vec![
            65504.0, -65504.0, 448.0, -448.0, 57344.0, -57344.0, f32::MAX as f64,
            -(f32::MAX as f64), 3.3895313892515355e38, f64::MAX, -f64::MAX, 127.0, -128.0,
            255.0, 32767.0, -32768.0, 1.0,
        ]),
        1 => prop::sample::select(vec![
            5.960464477539063e-8, 1e-6, 1e-40, 9.2e-41, 1.4e-45, 0.0019531, 1.52587890625e-5,
            f64::MIN_POSITIVE / 4.0, 5e-324,
        ]),
        1 => (-300i32..300).prop_map(|e| 1.2345 * 10f64.powi(e)),
        1 => any::<u64>().prop_map(f64::from_bits),
    ]
}

/// A pair of tensors: the candidate is mostly the reference slightly perturbed (so errors are
/// small as in real dumps), sometimes an unrelated value.
fn pair(rt: DType, dt: DType, max: usize) -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop::collection::vec(
        (
            value(),
            prop_oneof![3 => (-1e-2f64..1e-2).prop_map(Some), 1 => Just(None)],
            value(),
        ),
        0..max,
    )
    .prop_map(move |v| {
        let (mut rb, mut db) = (Vec::new(), Vec::new());
        for (a, eps, other) in v {
            let ra = encode(rt, a);
            let av = decode(rt, &ra)[0];
            rb.extend(ra);
            db.extend(encode(dt, eps.map_or(other, |e| av * (1.0 + e))));
        }
        (rb, db)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn same_dtype_pairs_match_the_reference(
        (dt, (r, d)) in dtype().prop_flat_map(|dt| (Just(dt), pair(dt, dt, 300)))
    ) {
        check(dt, &r, dt, &d)?;
    }

    #[test]
    fn mixed_dtype_pairs_match_the_reference(
        (rt, dt, (r, d)) in (dtype(), dtype()).prop_flat_map(|(a, b)| (Just(a), Just(b), pair(a, b, 300)))
    ) {
        check(rt, &r, dt, &d)?;
    }

    #[test]
    fn raw_bit_patterns_match_the_reference(
        (rt, dt, n) in (dtype(), dtype(), 0usize..200),
        seed in prop::collection::vec(any::<u8>(), 1600..1601),
        seed2 in prop::collection::vec(any::<u8>(), 1600..1601),
    ) {
        check(rt, &seed[..n * rt.size()], dt, &seed2[..n * dt.size()])?;
    }
}

#[test]
fn blocks_and_parallel_chunks_match_the_reference() {
    // Crosses the 1024-element block and the 2^20-element parallel chunk boundaries, with
    // specials placed at and around them.
    let n = (1 << 21) + 3000;
    let mut r = Vec::with_capacity(n * 4);
    let mut d = Vec::with_capacity(n * 4);
    let mut x = 0x2545F4914F6CDD1Du64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = (x >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0;
        let (a, b) = match i {
            1023 | 1048575 => (f32::NAN as f64, 1.0),
            1024 | 1048576 => (f64::NAN, f64::NAN),
            2047 => (f64::NEG_INFINITY, f64::NEG_INFINITY),
            1048577 => (-1e39, -3e39),
            _ if i % 7 == 0 => (0.0, 1e-7),
            _ => (a, a * (1.0 + 1e-6)),
        };
        r.extend((a as f32).to_le_bytes());
        d.extend((b as f32).to_le_bytes());
    }
    check(DType::Float32, &r, DType::Float32, &d).unwrap();
}

#[test]
fn the_rules_on_hand_picked_pairs() {
    let f16 = |v: &[f64]| {
        v.iter()
            .flat_map(|&x| encode(DType::Float16, x))
            .collect::<Vec<_>>()
    };
    let t = |v: Vec<u8>| Tensor {
        dtype: DType::Float16,
        shape: vec![v.len() / 2],
        data: Bytes::Owned(v),
    };
    let r = [
        f64::NAN,
        f64::NAN,
        1.0,
        -65504.0,
        f64::INFINITY,
        65504.0,
        0.0,
        2.0,
    ];
    let d = [
        f64::NAN,
        1.0,
        f64::NAN,
        -f64::INFINITY,
        f64::INFINITY,
        -65504.0,
        0.5,
        2.5,
    ];
    let m = measure(&t(f16(&r)), &t(f16(&d)));
    assert_eq!(m.nonfinite_match, 2); // NaN/NaN, +inf/+inf
    assert_eq!(m.masked, 1); // -65504 / -inf: both at or beyond the range, same sign
    assert_eq!(m.nonfinite_mismatch, 3); // NaN/1, 1/NaN, 65504/-65504
    assert_eq!(m.first_nonfinite_mismatch_index, Some(1));
    assert_eq!(m.compared, 2);
    assert_eq!(m.ref_zero_mismatch, 1); // 0 vs 0.5: left out of relative errors
    assert_eq!(m.max_rel_err, 0.25);
    assert_eq!(m.mean_rel_err, 0.25);
    assert_eq!(m.max_abs_err, 0.5);
}
