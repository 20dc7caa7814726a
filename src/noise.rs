//! The noise model: how much error rounding alone explains for a pair, given its dtypes and op.

use crate::dump::DType;
use serde::{Deserialize, Serialize};

/// How fp32 matrix products and convolutions on the candidate are assumed to have run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fp32Matmul {
    /// Allow TF32/HF32 rounding (10-bit mantissa) for matmul-class and unknown ops, IEEE fp32
    /// for ops known to be elementwise. NVIDIA (TF32) and Ascend (HF32 convolutions by default)
    /// both do this with fp32 tensors.
    #[default]
    Auto,
    /// Every fp32 op is IEEE fp32 (use when TF32/HF32 were disabled on the device).
    Ieee,
    /// Every fp32 op may have run in TF32/HF32.
    Tf32,
}

impl Fp32Matmul {
    /// Every assumption, in the order `--fp32-matmul` lists them.
    pub const ALL: [Fp32Matmul; 3] = [Fp32Matmul::Auto, Fp32Matmul::Ieee, Fp32Matmul::Tf32];

    /// The name `--fp32-matmul` and the config file use.
    pub fn name(self) -> &'static str {
        match self {
            Fp32Matmul::Auto => "auto",
            Fp32Matmul::Ieee => "ieee",
            Fp32Matmul::Tf32 => "tf32",
        }
    }
}

impl std::str::FromStr for Fp32Matmul {
    type Err = String;

    /// An assumption by [`Fp32Matmul::name`], in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        Fp32Matmul::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown fp32 matmul mode `{s}` (auto, ieee or tf32)"))
    }
}

/// Options of the noise model and the verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseOptions {
    /// fp32 matmul assumption.
    pub fp32_matmul: Fp32Matmul,
    /// A place diverges when its error exceeds `noise_factor` times the rounding it may add.
    pub noise_factor: f64,
    /// ... and `amplification` times the error it inherited.
    pub amplification: f64,
    /// Places whose inherited error is looked up in module-level dumps (outputs only).
    pub window: usize,
    /// Noise factor for statistics-only pairs, whose error measure (the relative difference of
    /// norms) is a lower bound that rounding noise barely moves.
    pub stats_noise_factor: f64,
}

impl Default for NoiseOptions {
    fn default() -> Self {
        NoiseOptions {
            fp32_matmul: Fp32Matmul::Auto,
            noise_factor: 16.0,
            amplification: 16.0,
            window: 4,
            stats_noise_factor: 2.0,
        }
    }
}

/// Unit roundoff of TF32 and Ascend HF32 (10 explicit mantissa bits).
pub const TF32_UNIT_ROUNDOFF: f64 = 1.0 / 2048.0;

/// Ops known to contain no matrix product or convolution (their fp32 result is IEEE fp32 on
/// every backend driftscope knows). Matched case-insensitively against msprobe API names and
/// module classes; anything else, including unknown ops and container modules, may hold one.
const NO_MATMUL: &[&str] = &[
    "silu",
    "gelu",
    "relu",
    "relu6",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "layer_norm",
    "rms_norm",
    "group_norm",
    "batch_norm",
    "dropout",
    "__add__",
    "__radd__",
    "__iadd__",
    "__sub__",
    "__rsub__",
    "__isub__",
    "__mul__",
    "__rmul__",
    "__imul__",
    "__truediv__",
    "__rtruediv__",
    "__itruediv__",
    "__div__",
    "__neg__",
    "__pow__",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "mean",
    "sum",
    "rsqrt",
    "sqrt",
    "exp",
    "log",
    "cos",
    "sin",
    "cat",
    "stack",
    "where",
    "embedding",
    "hardswish",
    "hardsigmoid",
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "max_pool2d",
    "flatten",
    "reshape",
    "view",
    "transpose",
    "permute",
    "contiguous",
    "to",
    "float",
    "half",
    "type_as",
    "expand",
    "__getitem__",
    "__setitem__",
    "masked_fill",
    "triu",
    "tril",
    "clamp",
    "abs",
    "max",
    "min",
    "argmax",
    "topk",
    "split",
    "chunk",
    "unsqueeze",
    "squeeze",
    "__le__",
    "__lt__",
    "__ge__",
    "__gt__",
    "__eq__",
    "__ne__",
    "__and__",
    "__or__",
    "arange",
    "ones",
    "zeros",
    "full",
    "npu_rms_norm",
    "npu_swiglu",
    "swiglu",
    "interpolate",
    "pad",
    "silu_",
    "relu_",
    "hardswish_",
    "batchnorm2d",
    "batchnorm1d",
    "layernorm",
    "relu6",
    "hardsigmoid",
    "hardswish",
    "dropout",
    "identity",
    "embedding",
    "llamarmsnorm",
    "rmsnorm",
    "adaptiveavgpool2d",
    "avgpool2d",
    "maxpool2d",
    "flatten",
    "sigmoid",
    "silu",
    "gelu",
    "tanh",
    "softmax",
    "llamarotaryembedding",
];

/// True when `op` may contain a matrix product or convolution.
pub fn may_matmul(op: Option<&str>) -> bool {
    match op {
        None => true,
        Some(op) => {
            let l = op.to_ascii_lowercase();
            !NO_MATMUL.contains(&l.as_str())
        }
    }
}

/// Unit roundoff that governs a pair: that of the coarser dtype, raised to TF32's for fp32
/// ops that may have run their products in TF32/HF32.
pub fn unit_roundoff(r: DType, d: DType, op: Option<&str>, mode: Fp32Matmul) -> f64 {
    let c = DType::coarser(r, d);
    let u = c.unit_roundoff();
    if c == DType::Float32 || c == DType::Float64 && d == DType::Float32 {
        match mode {
            Fp32Matmul::Ieee => u,
            Fp32Matmul::Tf32 => u.max(TF32_UNIT_ROUNDOFF),
            Fp32Matmul::Auto if may_matmul(op) => u.max(TF32_UNIT_ROUNDOFF),
            Fp32Matmul::Auto => u,
        }
    } else {
        u
    }
}

/// Unit roundoff of the coarsest precision among `(reference, candidate, op)` triples.
pub fn coarsest_roundoff<'a>(
    pairs: impl Iterator<Item = (DType, DType, Option<&'a str>)>,
    mode: Fp32Matmul,
) -> f64 {
    pairs
        .map(|(r, d, op)| unit_roundoff(r, d, op, mode))
        .fold(0.0, f64::max)
}

/// Relative L2 error that one rounding into the pair's precision may cause: the unit
/// roundoff, plus the absolute floor of subnormal spacing relative to the reference's RMS
/// (tiny activations in fp16 lose relative precision; docs/metrics.md).
pub fn expected_err(
    r: DType,
    d: DType,
    op: Option<&str>,
    mode: Fp32Matmul,
    ref_rms: Option<f64>,
) -> f64 {
    let u = unit_roundoff(r, d, op, mode);
    let eta = DType::coarser(r, d).min_subnormal();
    match ref_rms {
        Some(rms) if rms > 0.0 => u + eta / (2.0 * rms),
        _ => u,
    }
}

/// Name of the precision a unit roundoff stands for, for messages.
pub fn precision_name(u: f64) -> &'static str {
    let names = [
        (2f64.powi(-53), "fp64"),
        (2f64.powi(-24), "fp32"),
        (TF32_UNIT_ROUNDOFF, "fp16/tf32"),
        (2f64.powi(-8), "bf16"),
        (2f64.powi(-4), "fp8 e4m3"),
        (2f64.powi(-3), "fp8 e5m2"),
    ];
    names
        .iter()
        .min_by(|a, b| {
            (a.0.ln() - u.ln())
                .abs()
                .total_cmp(&(b.0.ln() - u.ln()).abs())
        })
        .map(|n| n.1)
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp32_matmul_gets_tf32_allowance_in_auto_mode() {
        let f = DType::Float32;
        assert_eq!(
            unit_roundoff(f, f, Some("linear"), Fp32Matmul::Auto),
            TF32_UNIT_ROUNDOFF
        );
        assert_eq!(
            unit_roundoff(f, f, Some("silu"), Fp32Matmul::Auto),
            2f64.powi(-24)
        );
        assert_eq!(
            unit_roundoff(f, f, Some("linear"), Fp32Matmul::Ieee),
            2f64.powi(-24)
        );
        assert_eq!(
            unit_roundoff(f, DType::Bfloat16, Some("silu"), Fp32Matmul::Auto),
            2f64.powi(-8)
        );
    }
}
