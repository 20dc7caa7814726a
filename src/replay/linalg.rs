//! Matrix products (linear, matmul/bmm/mm/`@` with torch's broadcasting) and embedding.

use super::elementwise::{binary, broadcast_shape};
use super::{Call, R};
use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, IxDyn};

/// `torch.matmul` semantics: 1-D operands are promoted and the added dimension removed again;
/// batch dimensions broadcast.
pub fn matmul(a: &ArrayD<f64>, b: &ArrayD<f64>) -> R<ArrayD<f64>> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err("matmul of a 0-d tensor".into());
    }
    let a1 = a.ndim() == 1;
    let b1 = b.ndim() == 1;
    let a = if a1 {
        a.clone().insert_axis(Axis(0))
    } else {
        a.clone()
    };
    let b = if b1 {
        b.clone().insert_axis(Axis(1))
    } else {
        b.clone()
    };
    let (na, nb) = (a.ndim(), b.ndim());
    let (n, k) = (a.shape()[na - 2], a.shape()[na - 1]);
    let (k2, m) = (b.shape()[nb - 2], b.shape()[nb - 1]);
    if k != k2 {
        return Err(format!(
            "matmul shapes {:?} and {:?} do not match",
            a.shape(),
            b.shape()
        ));
    }
    let batch = broadcast_shape(&a.shape()[..na - 2], &b.shape()[..nb - 2])?;
    let nbatch: usize = batch.iter().product();
    let mut sa = batch.clone();
    sa.extend([n, k]);
    let mut sb = batch.clone();
    sb.extend([k, m]);
    let av = a.broadcast(IxDyn(&sa)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&sb)).ok_or("broadcast failed")?;
    let av = av
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[nbatch, n, k]))
        .map_err(|e| e.to_string())?;
    let bv = bv
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[nbatch, k, m]))
        .map_err(|e| e.to_string())?;
    let mut out = ArrayD::zeros(IxDyn(&[nbatch, n, m]));
    for i in 0..nbatch {
        let x = av
            .index_axis(Axis(0), i)
            .into_dimensionality::<Ix2>()
            .map_err(|e| e.to_string())?;
        let y = bv
            .index_axis(Axis(0), i)
            .into_dimensionality::<Ix2>()
            .map_err(|e| e.to_string())?;
        out.index_axis_mut(Axis(0), i).assign(&mm(x, y));
    }
    let mut shape = batch;
    if !a1 {
        shape.push(n);
    }
    if !b1 {
        shape.push(m);
    }
    out.into_shape_with_order(IxDyn(&shape))
        .map_err(|e| e.to_string())
}

/// A plain f64 matrix product (every product and sum in f64).
fn mm(x: ArrayView2<f64>, y: ArrayView2<f64>) -> Array2<f64> {
    x.dot(&y)
}

/// `F.linear(x, W, b)` = x W^T + b.
pub fn linear(x: &ArrayD<f64>, w: &ArrayD<f64>, b: Option<&ArrayD<f64>>) -> R<ArrayD<f64>> {
    let wt = if w.ndim() == 2 {
        w.t().to_owned().into_dyn()
    } else {
        w.clone()
    };
    let y = matmul(x, &wt)?;
    match b {
        Some(b) => binary(&y, b, |p, q| p + q),
        None => Ok(y),
    }
}

/// `F.embedding` without `max_norm`: rows of `weight` gathered by index.
pub fn embedding(idx: &ArrayD<f64>, weight: &ArrayD<f64>) -> R<ArrayD<f64>> {
    if weight.ndim() != 2 {
        return Err("embedding weight is not 2-D".into());
    }
    let (rows, d) = (weight.shape()[0], weight.shape()[1]);
    let mut out = Vec::with_capacity(idx.len() * d);
    for &i in idx.iter() {
        if i.fract() != 0.0 || i < 0.0 || i as usize >= rows {
            return Err(format!("embedding index {i} out of range 0..{rows}"));
        }
        out.extend(weight.index_axis(Axis(0), i as usize).iter());
    }
    let mut shape = idx.shape().to_vec();
    shape.push(d);
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// Replays `op` when it is a matrix product or embedding.
pub fn dispatch(op: &str, call: &Call) -> Option<R<ArrayD<f64>>> {
    Some(match op {
        "linear" => (|| {
            call.at_most_args(3)?;
            call.only_kwargs(&["bias", "weight"])?;
            let x = &call.tensor(0, "input")?.data;
            let w = &call.tensor(1, "weight")?.data;
            let b = call.opt_tensor(2, "bias")?.map(|t| &t.data);
            linear(x, w, b)
        })(),
        "matmul" | "__matmul__" | "bmm" | "mm" | "mv" | "__rmatmul__" => (|| {
            call.at_most_args(2)?;
            call.only_kwargs(&["other", "mat2", "vec"])?;
            let a = &call.tensor(0, "input")?.data;
            let name = if op == "bmm" || op == "mm" {
                "mat2"
            } else if op == "mv" {
                "vec"
            } else {
                "other"
            };
            let b = &call.tensor(1, name)?.data;
            if op == "__rmatmul__" {
                matmul(b, a)
            } else {
                matmul(a, b)
            }
        })(),
        "outer" | "ger" => (|| {
            call.at_most_args(2)?;
            call.only_kwargs(&["vec2"])?;
            let a = &call.tensor(0, "input")?.data;
            let b = &call.tensor(1, "vec2")?.data;
            if a.ndim() != 1 || b.ndim() != 1 {
                return Err(format!(
                    "outer of {}-d and {}-d tensors",
                    a.ndim(),
                    b.ndim()
                ));
            }
            let (n, m) = (a.len(), b.len());
            Ok(ArrayD::from_shape_fn(ndarray::IxDyn(&[n, m]), |i| {
                a[[i[0]]] * b[[i[1]]]
            }))
        })(),
        "embedding" => (|| {
            call.at_most_args(7)?;
            call.only_kwargs(&[
                "padding_idx",
                "max_norm",
                "norm_type",
                "scale_grad_by_freq",
                "sparse",
            ])?;
            if call.opt_f64(3, "max_norm")?.is_some() {
                return Err("embedding with max_norm renormalises the weight: not replayed".into());
            }
            let idx = &call.tensor(0, "input")?.data;
            let w = &call.tensor(1, "weight")?.data;
            embedding(idx, w)
        })(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(shape: &[usize], v: Vec<f64>) -> ArrayD<f64> {
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    #[test]
    fn matmul_broadcasts_and_handles_vectors() {
        let a = arr(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = arr(&[2, 1], vec![5.0, 6.0]);
        let c = matmul(&a, &b).unwrap();
        assert_eq!(c.shape(), &[2, 1, 1]);
        assert_eq!(c.iter().copied().collect::<Vec<_>>(), vec![17.0, 39.0]);
        let v = arr(&[2], vec![1.0, 1.0]);
        assert_eq!(matmul(&a, &v).unwrap().shape(), &[2, 1]);
        assert_eq!(matmul(&v, &b).unwrap().shape(), &[1]);
    }

    #[test]
    fn linear_adds_bias() {
        let x = arr(&[1, 2], vec![1.0, 2.0]);
        let w = arr(&[3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let b = arr(&[3], vec![0.5, 0.5, 0.5]);
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![1.5, 2.5, 3.5]);
    }
}
