//! Element types of dumped tensors and the facts about them that metrics and verdicts need.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor, as named by PyTorch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// IEEE binary64.
    Float64,
    /// IEEE binary32.
    Float32,
    /// IEEE binary16.
    Float16,
    /// bfloat16: the upper 16 bits of a binary32.
    Bfloat16,
    /// OCP fp8 E4M3 (finite-only, one NaN pattern), `torch.float8_e4m3fn`.
    Float8E4m3fn,
    /// OCP fp8 E5M2, `torch.float8_e5m2`.
    Float8E5m2,
    /// Signed 64-bit integer.
    Int64,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 8-bit integer.
    Int8,
    /// Unsigned 8-bit integer.
    Uint8,
    /// Boolean, one byte (0 or 1).
    Bool,
}

impl DType {
    /// Every dtype, for tests and listings.
    pub const ALL: [DType; 12] = [
        DType::Float64,
        DType::Float32,
        DType::Float16,
        DType::Bfloat16,
        DType::Float8E4m3fn,
        DType::Float8E5m2,
        DType::Int64,
        DType::Int32,
        DType::Int16,
        DType::Int8,
        DType::Uint8,
        DType::Bool,
    ];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Float64 | DType::Int64 => 8,
            DType::Float32 | DType::Int32 => 4,
            DType::Float16 | DType::Bfloat16 | DType::Int16 => 2,
            DType::Float8E4m3fn | DType::Float8E5m2 | DType::Int8 | DType::Uint8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name without the `torch.` prefix (`float32`, `bfloat16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Float64 => "float64",
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::Bfloat16 => "bfloat16",
            DType::Float8E4m3fn => "float8_e4m3fn",
            DType::Float8E5m2 => "float8_e5m2",
            DType::Int64 => "int64",
            DType::Int32 => "int32",
            DType::Int16 => "int16",
            DType::Int8 => "int8",
            DType::Uint8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Parses PyTorch, numpy and MindSpore spellings: `torch.float32`, `float`, `half`,
    /// `BFloat16`, `Float32` (MindSpore), `F32` (safetensors is handled by its reader).
    pub fn parse(s: &str) -> Option<DType> {
        let s = s.trim();
        let s = s
            .strip_prefix("torch.")
            .or_else(|| s.strip_prefix("mindspore."))
            .or_else(|| s.strip_prefix("numpy."))
            .unwrap_or(s);
        Some(match s.to_ascii_lowercase().as_str() {
            "float64" | "double" | "f64" => DType::Float64,
            "float32" | "float" | "f32" => DType::Float32,
            "float16" | "half" | "f16" => DType::Float16,
            "bfloat16" | "bf16" => DType::Bfloat16,
            "float8_e4m3fn" | "f8_e4m3" | "float8e4m3fn" => DType::Float8E4m3fn,
            "float8_e5m2" | "f8_e5m2" | "float8e5m2" => DType::Float8E5m2,
            "int64" | "long" | "i64" => DType::Int64,
            "int32" | "int" | "i32" => DType::Int32,
            "int16" | "short" | "i16" => DType::Int16,
            "int8" | "char" | "i8" => DType::Int8,
            "uint8" | "byte" | "u8" => DType::Uint8,
            "bool" | "bool_" => DType::Bool,
            _ => return None,
        })
    }

    /// True for floating-point types.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::Float64
                | DType::Float32
                | DType::Float16
                | DType::Bfloat16
                | DType::Float8E4m3fn
                | DType::Float8E5m2
        )
    }

    /// Unit roundoff u = 2^-p of round-to-nearest (p = significand bits including the hidden
    /// one); 0 for integer types, which are exact.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            DType::Float64 => 2f64.powi(-53),
            DType::Float32 => 2f64.powi(-24),
            DType::Float16 => 2f64.powi(-11),
            DType::Bfloat16 => 2f64.powi(-8),
            DType::Float8E4m3fn => 2f64.powi(-4),
            DType::Float8E5m2 => 2f64.powi(-3),
            _ => 0.0,
        }
    }

    /// Smallest positive (subnormal) value: the absolute spacing of representable numbers near
    /// zero, where rounding error stops being relative. 0 for integer types.
    pub fn min_subnormal(self) -> f64 {
        match self {
            DType::Float64 => f64::from_bits(1),
            DType::Float32 => 2f64.powi(-149),
            DType::Float16 => 2f64.powi(-24),
            DType::Bfloat16 => 2f64.powi(-133),
            DType::Float8E4m3fn => 2f64.powi(-9),
            DType::Float8E5m2 => 2f64.powi(-16),
            _ => 0.0,
        }
    }

    /// Smallest positive normal value: below it a value keeps fewer significant bits
    /// (subnormal) or is flushed to zero. 0 for integer types.
    pub fn min_normal(self) -> f64 {
        match self {
            DType::Float64 => f64::MIN_POSITIVE,
            DType::Float32 | DType::Bfloat16 => 2f64.powi(-126),
            DType::Float16 | DType::Float8E5m2 => 2f64.powi(-14),
            DType::Float8E4m3fn => 2f64.powi(-6),
            _ => 0.0,
        }
    }

    /// Largest finite magnitude (used to recognise fill values and saturation).
    pub fn max_finite(self) -> f64 {
        match self {
            DType::Float64 => f64::MAX,
            DType::Float32 => f32::MAX as f64,
            DType::Float16 => 65504.0,
            DType::Bfloat16 => 3.3895313892515355e38,
            DType::Float8E4m3fn => 448.0,
            DType::Float8E5m2 => 57344.0,
            DType::Int64 => i64::MAX as f64,
            DType::Int32 => i32::MAX as f64,
            DType::Int16 => i16::MAX as f64,
            DType::Int8 => i8::MAX as f64,
            DType::Uint8 => u8::MAX as f64,
            DType::Bool => 1.0,
        }
    }

    /// `torch.testing.assert_close` default (rtol, atol) for this dtype. fp8 has no torch
    /// default; driftscope uses one unit roundoff as rtol there.
    pub fn default_tolerances(self) -> (f64, f64) {
        match self {
            DType::Float64 => (1e-7, 1e-7),
            DType::Float32 => (1.3e-6, 1e-5),
            DType::Float16 => (1e-3, 1e-5),
            DType::Bfloat16 => (1.6e-2, 1e-5),
            DType::Float8E4m3fn => (0.125, 1e-5),
            DType::Float8E5m2 => (0.25, 1e-5),
            _ => (0.0, 0.0),
        }
    }

    /// The less precise of two dtypes (the one whose rounding dominates a comparison).
    /// Integers count as exact, so an integer paired with a float yields the float.
    pub fn coarser(a: DType, b: DType) -> DType {
        if a.unit_roundoff() >= b.unit_roundoff() {
            a
        } else {
            b
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_torch_and_mindspore_names() {
        assert_eq!(DType::parse("torch.float32"), Some(DType::Float32));
        assert_eq!(DType::parse("torch.bfloat16"), Some(DType::Bfloat16));
        assert_eq!(DType::parse("Float16"), Some(DType::Float16));
        assert_eq!(DType::parse("torch.int64"), Some(DType::Int64));
        assert_eq!(DType::parse("torch.complex64"), None);
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()), Some(d));
        }
    }

    #[test]
    fn coarser_picks_the_lower_precision() {
        assert_eq!(
            DType::coarser(DType::Float32, DType::Float16),
            DType::Float16
        );
        assert_eq!(
            DType::coarser(DType::Bfloat16, DType::Float16),
            DType::Bfloat16
        );
        assert_eq!(DType::coarser(DType::Int64, DType::Float32), DType::Float32);
    }
}
