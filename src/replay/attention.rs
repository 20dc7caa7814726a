//! `F.scaled_dot_product_attention`: softmax(q k^T * scale + mask) v, in float64.

use super::elementwise::binary;
use super::linalg::matmul;
use super::norm::softmax;
use super::{Arr, Call, R};
use crate::dump::DType;
use ndarray::{ArrayD, Axis, IxDyn};

/// Attention over the last two dimensions. `mask`: boolean (true = attend) or additive.
pub fn sdpa(
    q: &ArrayD<f64>,
    k: &ArrayD<f64>,
    v: &ArrayD<f64>,
    mask: Option<&Arr>,
    is_causal: bool,
    scale: Option<f64>,
    enable_gqa: bool,
) -> R<ArrayD<f64>> {
    if q.ndim() < 2 || k.ndim() < 2 || v.ndim() < 2 {
        return Err("attention operands need at least 2 dimensions".into());
    }
    let nd = q.ndim();
    let e = q.shape()[nd - 1];
    let l = q.shape()[nd - 2];
    let s = k.shape()[k.ndim() - 2];
    let (mut k, mut v) = (k.clone(), v.clone());
    if enable_gqa && nd >= 3 && k.ndim() == nd {
        let (hq, hk) = (q.shape()[nd - 3], k.shape()[nd - 3]);
        if hk == 0 || hq % hk != 0 {
            return Err(format!("{hq} query heads for {hk} key heads"));
        }
        let rep = hq / hk;
        let repeat = |t: &ArrayD<f64>| -> ArrayD<f64> {
            let views: Vec<_> = (0..t.shape()[nd - 3])
                .flat_map(|h| std::iter::repeat_n(t.index_axis(Axis(nd - 3), h), rep))
                .map(|v| v.insert_axis(Axis(nd - 3)))
                .collect();
            ndarray::concatenate(Axis(nd - 3), &views).expect("same shapes")
        };
        k = repeat(&k);
        v = repeat(&v);
    }
    let kn = k.ndim();
    let kt = k.view().permuted_axes(
        (0..kn)
            .map(|i| {
                if i == kn - 2 {
                    kn - 1
                } else if i == kn - 1 {
                    kn - 2
                } else {
                    i
                }
            })
            .collect::<Vec<_>>(),
    );
    let scale = scale.unwrap_or(1.0 / (e as f64).sqrt());
    let mut scores = matmul(q, &kt.to_owned())?.mapv(|x| x * scale);
    if is_causal {
        let causal = ArrayD::from_shape_fn(IxDyn(&[l, s]), |ix| {
            if ix[1] <= ix[0] {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        });
        scores = binary(&scores, &causal, |p, q| p + q)?;
    }
    if let Some(m) = mask {
        scores = if m.dtype == DType::Bool {
            binary(&scores, &m.data, |p, keep| {
                if keep != 0.0 {
                    p
                } else {
                    f64::NEG_INFINITY
                }
            })?
        } else {
            binary(&scores, &m.data, |p, q| p + q)?
        };
    }
    let sd = scores.ndim() - 1;
    let p = softmax(&scores, sd, false);
    matmul(&p, &v)
}

/// Replays `scaled_dot_product_attention`.
pub fn dispatch(op: &str, call: &Call) -> Option<R<ArrayD<f64>>> {
    if op != "scaled_dot_product_attention" {
        return None;
    }
    Some((|| {
        call.at_most_args(8)?;
        call.only_kwargs(&[
            "attn_mask",
            "dropout_p",
            "is_causal",
            "scale",
            "enable_gqa",
            "key",
            "value",
        ])?;
        let q = &call.tensor(0, "query")?.data;
        let k = &call.tensor(1, "key")?.data;
        let v = &call.tensor(2, "value")?.data;
        let mask = call.opt_tensor(3, "attn_mask")?;
        let p = call.opt_f64(4, "dropout_p")?.unwrap_or(0.0);
        if p > 0.0 {
            return Err("attention dropout is random: not replayable".into());
        }
        let causal = call.opt_bool(5, "is_causal")?.unwrap_or(false);
        let scale = call.opt_f64(6, "scale")?;
        let gqa = call.opt_bool(7, "enable_gqa")?.unwrap_or(false);
        sdpa(q, k, v, mask, causal, scale, gqa)
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_attention_first_row_is_first_value() {
        let q = ArrayD::from_shape_vec(IxDyn(&[1, 2, 2]), vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        let k = q.clone();
        let v = ArrayD::from_shape_vec(IxDyn(&[1, 2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = sdpa(&q, &k, &v, None, true, None, false).unwrap();
        assert_eq!(y[[0, 0, 0]], 1.0);
        assert_eq!(y[[0, 0, 1]], 2.0);
        // second row: softmax([0, 1/sqrt2]) weights
        let w1 = 1.0 / (1.0 + (1.0 / 2f64.sqrt()).exp());
        assert!((y[[0, 1, 0]] - (w1 * 1.0 + (1.0 - w1) * 3.0)).abs() < 1e-15);
    }
}
