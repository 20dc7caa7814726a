//! Optional libtorch replay (`--features torch`): ops the pure-Rust replay lacks, run through
//! `tch` in float64 on the CPU. tch has no dispatch by op name, so this is a table of ATen ops
//! taking one tensor and no other arguments; anything else is reported as not replayable.
//! Build instructions: docs/replay.md. Not built in CI (needs libtorch 2.13.0).

use super::{Call, R};
use ndarray::{ArrayD, IxDyn};
use tch::{Kind, TchError, Tensor};

type Unary = fn(&Tensor) -> Result<Tensor, TchError>;

fn unary(op: &str) -> Option<Unary> {
    let op = op.trim_end_matches('_');
    Some(match op {
        "erf" => Tensor::f_erf,
        "erfinv" => Tensor::f_erfinv,
        "expm1" => Tensor::f_expm1,
        "log1p" => Tensor::f_log1p,
        "atan" => Tensor::f_atan,
        "floor" => Tensor::f_floor,
        "sign" => Tensor::f_sign,
        "hardswish" => Tensor::f_hardswish,
        "hardsigmoid" => Tensor::f_hardsigmoid,
        "mish" => Tensor::f_mish,
        "selu" => Tensor::f_selu,
        "elu" => Tensor::f_elu,
        "softplus" => Tensor::f_softplus,
        "log_sigmoid" | "logsigmoid" => Tensor::f_log_sigmoid,
        _ => return None,
    })
}

fn to_tch(a: &ArrayD<f64>) -> Result<Tensor, TchError> {
    let data: Vec<f64> = a.iter().copied().collect();
    let shape: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
    Tensor::f_from_slice(&data)?.f_reshape(shape.as_slice())
}

fn from_tch(t: &Tensor) -> Result<ArrayD<f64>, TchError> {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let flat = t.f_to_kind(Kind::Double)?.f_flatten(0, -1)?;
    let v = Vec::<f64>::try_from(&flat)?;
    ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| TchError::Convert(e.to_string()))
}

/// Recomputes `call` with libtorch in float64, when its op is in the table.
pub fn recompute(call: &Call) -> R<ArrayD<f64>> {
    let f = unary(&call.op).ok_or_else(|| {
        format!(
            "no float64 replay for `{}` (neither pure-Rust nor in the libtorch table)",
            call.op
        )
    })?;
    call.at_most_args(1)?;
    call.only_kwargs(&[])?;
    let x = &call.tensor(0, "input")?.data;
    let run = || -> Result<ArrayD<f64>, TchError> { from_tch(&f(&to_tch(x)?)?) };
    run().map_err(|e| format!("libtorch: {e}"))
}
