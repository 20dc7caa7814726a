//! Reductions and normalisations: mean/sum, softmax, log_softmax, layer_norm, rms_norm,
//! batch_norm.

use super::args::norm_dim;
use super::elementwise::binary;
use super::{Call, R};
use crate::dump::DType;
use ndarray::{ArrayD, Axis, IxDyn};

/// Softmax (or log-softmax) along `dim`; a lane of all `-inf` gives NaN, as in torch.
pub fn softmax(x: &ArrayD<f64>, dim: usize, log: bool) -> ArrayD<f64> {
    let mut y = x.clone();
    if y.ndim() == 0 {
        y.mapv_inplace(|v| {
            let one = if v.is_finite() { 1.0 } else { f64::NAN };
            if log {
                one.ln()
            } else {
                one
            }
        });
        return y;
    }
    for mut lane in y.lanes_mut(Axis(dim)) {
        let m = lane.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = lane.iter().map(|&v| (v - m).exp()).sum();
        if log {
            let ls = s.ln();
            lane.mapv_inplace(|v| v - m - ls);
        } else {
            lane.mapv_inplace(|v| (v - m).exp() / s);
        }
    }
    y
}

/// Mean or sum over `dims` (all when `None`).
pub fn reduce(x: &ArrayD<f64>, dims: Option<&[i64]>, keepdim: bool, mean: bool) -> R<ArrayD<f64>> {
    let nd = x.ndim();
    let mut axes: Vec<usize> = match dims {
        None => (0..nd).collect(),
        Some([]) => (0..nd).collect(),
        Some(d) => d.iter().map(|&d| norm_dim(d, nd)).collect::<R<_>>()?,
    };
    axes.sort_unstable();
    axes.dedup();
    if nd == 0 {
        return Ok(x.clone());
    }
    let mut y = x.clone();
    for &a in axes.iter().rev() {
        let n = y.shape()[a] as f64;
        let s = y.sum_axis(Axis(a));
        y = if mean { s.mapv(|v| v / n) } else { s };
        if keepdim {
            y = y.insert_axis(Axis(a));
        }
    }
    Ok(y)
}

/// Normalises over the last `k` dimensions: `(x - mean) / sqrt(var + eps)` (layer norm) or
/// `x / sqrt(mean(x^2) + eps)` (RMS norm), then `* weight + bias`.
pub fn normalize_last(
    x: &ArrayD<f64>,
    k: usize,
    eps: f64,
    rms: bool,
    weight: Option<&ArrayD<f64>>,
    bias: Option<&ArrayD<f64>>,
) -> R<ArrayD<f64>> {
    if k == 0 || k > x.ndim() {
        return Err(format!(
            "normalized_shape of {k} dims for a {}-d input",
            x.ndim()
        ));
    }
    let m: usize = x.shape()[x.ndim() - k..].iter().product();
    let rows = x.len() / m.max(1);
    let flat = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[rows, m]))
        .map_err(|e| e.to_string())?;
    let mut y = flat.clone();
    for mut row in y.lanes_mut(Axis(1)) {
        let n = m as f64;
        let (mean, var) = if rms {
            (0.0, row.iter().map(|v| v * v).sum::<f64>() / n)
        } else {
            let mu = row.iter().sum::<f64>() / n;
            (mu, row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / n)
        };
        let inv = 1.0 / (var + eps).sqrt();
        row.mapv_inplace(|v| (v - mean) * inv);
    }
    let mut y = y
        .into_shape_with_order(IxDyn(x.shape()))
        .map_err(|e| e.to_string())?;
    if let Some(w) = weight {
        y = binary(&y, w, |p, q| p * q)?;
    }
    if let Some(b) = bias {
        y = binary(&y, b, |p, q| p + q)?;
    }
    Ok(y)
}

fn softmax_dim(call: &Call, ndim: usize) -> R<usize> {
    match call.opt_i64(1, "dim")? {
        Some(d) => norm_dim(d, ndim),
        // torch's legacy implicit dim (_get_softmax_dim)
        None => Ok(if matches!(ndim, 0 | 1 | 3) { 0 } else { 1 }),
    }
}

/// rms_norm's default epsilon: `torch.finfo` of the op's *computation* dtype, not of the input's.
/// float16/bfloat16 are upcast to float32, so they get float32's eps (2^-23), as torch's
/// `_fused_rms_norm` decomposition and its CPU kernel do (checked on torch 2.15.0 by the bf16
/// run of `reference_dumps/ops`; finfo(bfloat16).eps = 2^-7 was wrong here before).
pub(super) fn default_rms_eps(d: DType) -> R<f64> {
    Ok(match d {
        DType::Float64 => f64::EPSILON,
        DType::Float32 | DType::Float16 | DType::Bfloat16 => f32::EPSILON as f64,
        d => return Err(format!("rms_norm on {} input", d.name())),
    })
}

/// Replays `op` when it is a reduction or normalisation.
pub fn dispatch(op: &str, call: &Call) -> Option<R<ArrayD<f64>>> {
    Some(match op {
        "softmax" | "log_softmax" | "_softmax" | "_log_softmax" => (|| {
            // Functional: (input, dim, _stacklevel, dtype); Tensor/Torch: (input, dim, dtype)
            call.only_kwargs(&["dim", "dtype", "_stacklevel"])?;
            call.at_most_args(4)?;
            let x = &call.tensor(0, "input")?.data;
            let d = softmax_dim(call, x.ndim())?;
            Ok(softmax(x, d, op.contains("log")))
        })(),
        "mean" | "sum" => (|| {
            call.only_kwargs(&["dim", "keepdim", "dtype", "axis"])?;
            call.at_most_args(3)?;
            let x = &call.tensor(0, "input")?.data;
            let dims = call.opt_ints(1, "dim")?;
            let keep = call.opt_bool(2, "keepdim")?.unwrap_or(false);
            reduce(x, dims.as_deref(), keep, op == "mean")
        })(),
        "layer_norm" => (|| {
            call.only_kwargs(&["normalized_shape", "weight", "bias", "eps"])?;
            call.at_most_args(5)?;
            let x = &call.tensor(0, "input")?.data;
            let shape = call
                .opt_ints(1, "normalized_shape")?
                .ok_or("layer_norm without normalized_shape")?;
            let w = call.opt_tensor(2, "weight")?.map(|t| &t.data);
            let b = call.opt_tensor(3, "bias")?.map(|t| &t.data);
            let eps = call.opt_f64(4, "eps")?.unwrap_or(1e-5);
            normalize_last(x, shape.len(), eps, false, w, b)
        })(),
        "rms_norm" => (|| {
            call.only_kwargs(&["normalized_shape", "weight", "eps"])?;
            call.at_most_args(4)?;
            let xt = call.tensor(0, "input")?;
            let shape = call
                .opt_ints(1, "normalized_shape")?
                .ok_or("rms_norm without normalized_shape")?;
            let w = call.opt_tensor(2, "weight")?.map(|t| &t.data);
            let eps = match call.opt_f64(3, "eps")? {
                Some(e) => e,
                None => default_rms_eps(xt.dtype)?,
            };
            normalize_last(&xt.data, shape.len(), eps, true, w, None)
        })(),
        "batch_norm" => (|| {
            // F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
            call.only_kwargs(&[
                "running_mean",
                "running_var",
                "weight",
                "bias",
                "training",
                "momentum",
                "eps",
            ])?;
            call.at_most_args(8)?;
            let x = &call.tensor(0, "input")?.data;
            let training = call.opt_bool(5, "training")?.unwrap_or(false);
            let stats = if training {
                None
            } else {
                let m = call.opt_tensor(1, "running_mean")?;
                let v = call.opt_tensor(2, "running_var")?;
                Some((
                    &m.ok_or("batch_norm in eval mode without running_mean")?
                        .data,
                    &v.ok_or("batch_norm in eval mode without running_var")?.data,
                ))
            };
            let w = call.opt_tensor(3, "weight")?.map(|t| &t.data);
            let b = call.opt_tensor(4, "bias")?.map(|t| &t.data);
            let eps = call.opt_f64(7, "eps")?.unwrap_or(1e-5);
            batch_norm(x, stats, w, b, eps)
        })(),
        _ => return None,
    })
}

/// Batch normalisation over dimension 1 (channels): with the running statistics `stats`
/// (eval mode), else with the batch's own mean and biased variance (training mode).
pub fn batch_norm(
    x: &ArrayD<f64>,
    stats: Option<(&ArrayD<f64>, &ArrayD<f64>)>,
    w: Option<&ArrayD<f64>>,
    b: Option<&ArrayD<f64>>,
    eps: f64,
) -> R<ArrayD<f64>> {
    if x.ndim() < 2 {
        return Err(format!("batch_norm of a {}-d input", x.ndim()));
    }
    let c = x.shape()[1];
    let per_channel = |t: Option<&ArrayD<f64>>, what: &str| -> R<Option<Vec<f64>>> {
        match t {
            None => Ok(None),
            Some(t) if t.len() == c => Ok(Some(t.iter().copied().collect())),
            Some(t) => Err(format!(
                "batch_norm {what} of {} values for {c} channels",
                t.len()
            )),
        }
    };
    let (w, b) = (per_channel(w, "weight")?, per_channel(b, "bias")?);
    let stats = match stats {
        Some((m, v)) => Some((
            per_channel(Some(m), "running_mean")?.unwrap_or_default(),
            per_channel(Some(v), "running_var")?.unwrap_or_default(),
        )),
        None => None,
    };
    let mut y = x.clone();
    for k in 0..c {
        let mut lane = y.index_axis_mut(Axis(1), k);
        let (mean, var) = match &stats {
            Some((m, v)) => (m[k], v[k]),
            None => {
                let n = lane.len().max(1) as f64;
                let mean = lane.sum() / n;
                (
                    mean,
                    lane.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n,
                )
            }
        };
        let scale = w.as_ref().map_or(1.0, |w| w[k]) / (var + eps).sqrt();
        let shift = b.as_ref().map_or(0.0, |b| b[k]);
        lane.mapv_inplace(|v| (v - mean) * scale + shift);
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(shape: &[usize], v: Vec<f64>) -> ArrayD<f64> {
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    #[test]
    fn softmax_rows_sum_to_one_and_log_matches() {
        let x = arr(&[2, 3], vec![1.0, 2.0, 3.0, f64::NEG_INFINITY, 0.0, 0.0]);
        let s = softmax(&x, 1, false);
        assert!((s.index_axis(Axis(0), 0).sum() - 1.0).abs() < 1e-15);
        assert_eq!(s[[1, 0]], 0.0);
        assert_eq!(s[[1, 1]], 0.5);
        let l = softmax(&x, 1, true);
        assert!((l[[0, 2]] - s[[0, 2]].ln()).abs() < 1e-15);
    }

    #[test]
    fn layer_norm_and_rms_norm() {
        let x = arr(&[1, 4], vec![1.0, 2.0, 3.0, 4.0]);
        let y = normalize_last(&x, 1, 0.0, false, None, None).unwrap();
        // mean 2.5, var 1.25
        assert!((y[[0, 0]] + 1.5 / 1.25f64.sqrt()).abs() < 1e-15);
        let r = normalize_last(&x, 1, 0.0, true, None, None).unwrap();
        assert!((r[[0, 3]] - 4.0 / 7.5f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn batch_norm_eval_and_training() {
        let x = arr(&[2, 2, 1], vec![1.0, 10.0, 3.0, 30.0]);
        let (m, v) = (arr(&[2], vec![2.0, 20.0]), arr(&[2], vec![1.0, 100.0]));
        let w = arr(&[2], vec![2.0, 1.0]);
        let y = batch_norm(&x, Some((&m, &v)), Some(&w), None, 0.0).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![-2.0, -1.0, 2.0, 1.0]
        );
        // Training mode: the batch's mean (2, 20) and biased variance (1, 100), the same here.
        let t = batch_norm(&x, None, Some(&w), None, 0.0).unwrap();
        assert_eq!(t, y);
    }

    #[test]
    fn mean_keepdim() {
        let x = arr(&[2, 2], vec![1.0, 2.0, 3.0, 5.0]);
        let m = reduce(&x, Some(&[-1]), true, true).unwrap();
        assert_eq!(m.shape(), &[2, 1]);
        assert_eq!(m[[1, 0]], 4.0);
        assert_eq!(reduce(&x, None, false, false).unwrap().sum(), 11.0);
    }
}
