//! Element decoding: raw little-endian bytes of any dtype into f64, one block at a time.

use super::DType;
use half::{bf16, f16};
use std::sync::OnceLock;

/// Decodes `out.len()` elements of `dtype` from the start of `bytes` into `out`.
///
/// `bytes` must hold at least `out.len() * dtype.size()` bytes.
pub fn decode_f64(dtype: DType, bytes: &[u8], out: &mut [f64]) {
    let n = out.len();
    let b = &bytes[..n * dtype.size()];
    match dtype {
        DType::Float64 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(8)) {
                *o = f64::from_le_bytes(c.try_into().unwrap());
            }
        }
        DType::Float32 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                *o = f32::from_le_bytes(c.try_into().unwrap()) as f64;
            }
        }
        DType::Float16 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64();
            }
        }
        DType::Bfloat16 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64();
            }
        }
        DType::Float8E4m3fn => {
            let t = fp8_table(true);
            for (o, &c) in out.iter_mut().zip(b) {
                *o = t[c as usize];
            }
        }
        DType::Float8E5m2 => {
            let t = fp8_table(false);
            for (o, &c) in out.iter_mut().zip(b) {
                *o = t[c as usize];
            }
        }
        DType::Int64 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(8)) {
                *o = i64::from_le_bytes(c.try_into().unwrap()) as f64;
            }
        }
        DType::Int32 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                *o = i32::from_le_bytes(c.try_into().unwrap()) as f64;
            }
        }
        DType::Int16 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                *o = i16::from_le_bytes([c[0], c[1]]) as f64;
            }
        }
        DType::Int8 => {
            for (o, &c) in out.iter_mut().zip(b) {
                *o = c as i8 as f64;
            }
        }
        DType::Uint8 => {
            for (o, &c) in out.iter_mut().zip(b) {
                *o = c as f64;
            }
        }
        DType::Bool => {
            // Any non-zero byte is true, as in torch.
            for (o, &c) in out.iter_mut().zip(b) {
                *o = (c != 0) as u8 as f64;
            }
        }
    }
}

/// Whether every value of `dtype` is exactly an f32 (the dtypes of the fast kernel).
pub fn exact_in_f32(dtype: DType) -> bool {
    matches!(dtype, DType::Float32 | DType::Float16 | DType::Bfloat16)
}

/// Decodes `out.len()` elements of an f32-exact dtype (see [`exact_in_f32`]) into f32.
/// Inlined so that callers compiled with AVX2/F16C enabled vectorise it.
#[inline(always)]
pub fn decode_f32(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let n = out.len();
    let b = &bytes[..n * dtype.size()];
    match dtype {
        DType::Float32 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                *o = f32::from_le_bytes(c.try_into().unwrap());
            }
        }
        DType::Float16 => {
            use half::slice::HalfFloatSliceExt;
            match bytemuck::try_cast_slice::<u8, f16>(b) {
                // half converts slices with F16C when the CPU has it (runtime detection).
                Ok(h) if cfg!(target_endian = "little") => h.convert_to_f32_slice(out),
                _ => {
                    for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                        *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
                    }
                }
            }
        }
        DType::Bfloat16 => {
            for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
            }
        }
        _ => unreachable!("decode_f32 on {dtype:?}"),
    }
}

/// Value of every fp8 bit pattern. E4M3FN: bias 7, no infinities, S.1111.111 is NaN.
/// E5M2: bias 15, IEEE-like with infinities and NaNs.
fn fp8_table(e4m3: bool) -> &'static [f64; 256] {
    static E4M3: OnceLock<[f64; 256]> = OnceLock::new();
    static E5M2: OnceLock<[f64; 256]> = OnceLock::new();
    let build = |e4m3: bool| {
        let mut t = [0f64; 256];
        let (mbits, bias) = if e4m3 { (3, 7) } else { (2, 15) };
        let ebits = 7 - mbits;
        for (bits, v) in t.iter_mut().enumerate() {
            let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
            let exp = (bits >> mbits) & ((1 << ebits) - 1);
            let man = bits & ((1 << mbits) - 1);
            let emax = (1 << ebits) - 1;
            *v = if e4m3 && exp == emax && man == (1 << mbits) - 1 {
                f64::NAN
            } else if !e4m3 && exp == emax {
                if man == 0 {
                    sign * f64::INFINITY
                } else {
                    f64::NAN
                }
            } else if exp == 0 {
                sign * (man as f64) * 2f64.powi(1 - bias - mbits)
            } else {
                sign * (1.0 + man as f64 / (1 << mbits) as f64) * 2f64.powi(exp as i32 - bias)
            };
        }
        t
    };
    if e4m3 {
        E4M3.get_or_init(|| build(true))
    } else {
        E5M2.get_or_init(|| build(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_extremes() {
        let t = fp8_table(true);
        assert_eq!(t[0x7e], 448.0);
        assert!(t[0x7f].is_nan());
        assert_eq!(t[0x01], 2f64.powi(-9));
        let t = fp8_table(false);
        assert_eq!(t[0x7b], 57344.0);
        assert_eq!(t[0x7c], f64::INFINITY);
    }

    #[test]
    fn decodes_bf16_and_f16() {
        let mut out = [0.0; 2];
        decode_f64(DType::Bfloat16, &[0x80, 0x3f, 0x00, 0xc0], &mut out);
        assert_eq!(out, [1.0, -2.0]);
        decode_f64(DType::Float16, &[0x00, 0x3c, 0xff, 0x7b], &mut out);
        assert_eq!(out, [1.0, 65504.0]);
    }
}
