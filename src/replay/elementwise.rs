//! Element-wise ops: add/sub/mul/div (tensor or scalar operands, broadcasting), pow, and the
//! activations silu, gelu (exact and tanh), relu, sigmoid, tanh, and friends; dropout in eval.

use super::{Call, R};
use ndarray::{ArrayD, IxDyn, Zip};

/// Shape two shapes broadcast to (numpy/torch rules).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let x = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let y = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *o = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// `f(a, b)` element-wise with broadcasting.
pub fn binary(a: &ArrayD<f64>, b: &ArrayD<f64>, f: impl Fn(f64, f64) -> f64) -> R<ArrayD<f64>> {
    let s = broadcast_shape(a.shape(), b.shape())?;
    let av = a.broadcast(IxDyn(&s)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&s)).ok_or("broadcast failed")?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

/// Logistic sigmoid.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Exact GELU: x * Phi(x). libm's erf (musl's, within an ulp) rather than statrs', which is
/// off by up to ~1e-10 relative near 0.5 (measured against Python's math.erf).
pub fn gelu_exact(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// tanh-approximated GELU as torch defines it.
pub fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

#[derive(Clone, Copy)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Cmp(fn(f64, f64) -> bool),
}

fn binary_op(op: &str) -> Option<(Bin, bool)> {
    // (operation, operands swapped)
    Some(match op {
        "add" | "add_" | "__add__" | "__iadd__" => (Bin::Add, false),
        "__radd__" => (Bin::Add, true),
        "sub" | "sub_" | "subtract" | "__sub__" | "__isub__" => (Bin::Sub, false),
        "rsub" | "__rsub__" => (Bin::Sub, true),
        "mul" | "mul_" | "multiply" | "__mul__" | "__imul__" => (Bin::Mul, false),
        "__rmul__" => (Bin::Mul, true),
        "div" | "div_" | "divide" | "true_divide" | "__truediv__" | "__itruediv__" | "__div__" => {
            (Bin::Div, false)
        }
        "__rtruediv__" | "__rdiv__" => (Bin::Div, true),
        "pow" | "pow_" | "__pow__" | "__ipow__" | "float_power" => (Bin::Pow, false),
        "__rpow__" => (Bin::Pow, true),
        "lt" | "__lt__" | "less" => (Bin::Cmp(|p, q| p < q), false),
        "le" | "__le__" | "less_equal" => (Bin::Cmp(|p, q| p <= q), false),
        "gt" | "__gt__" | "greater" => (Bin::Cmp(|p, q| p > q), false),
        "ge" | "__ge__" | "greater_equal" => (Bin::Cmp(|p, q| p >= q), false),
        "eq" | "__eq__" => (Bin::Cmp(|p, q| p == q), false),
        "ne" | "__ne__" => (Bin::Cmp(|p, q| p != q), false),
        _ => return None,
    })
}

fn unary(op: &str) -> Option<fn(f64) -> f64> {
    Some(match op {
        "silu" | "silu_" => |x| x * sigmoid(x),
        "relu" | "relu_" => |x: f64| if x.is_nan() { x } else { x.max(0.0) },
        "sigmoid" | "sigmoid_" => sigmoid,
        "tanh" | "tanh_" => f64::tanh,
        "exp" | "exp_" => f64::exp,
        "log" | "log_" => f64::ln,
        "sqrt" | "sqrt_" => f64::sqrt,
        "rsqrt" | "rsqrt_" => |x: f64| 1.0 / x.sqrt(),
        "neg" | "neg_" | "__neg__" | "negative" => |x: f64| -x,
        "abs" | "abs_" | "__abs__" => f64::abs,
        "cos" | "cos_" => f64::cos,
        "sin" | "sin_" => f64::sin,
        "reciprocal" | "reciprocal_" => |x: f64| 1.0 / x,
        "square" => |x: f64| x * x,
        _ => return None,
    })
}

/// Replays `op` when it is element-wise.
pub fn dispatch(op: &str, call: &Call) -> Option<R<ArrayD<f64>>> {
    if let Some((b, swapped)) = binary_op(op) {
        return Some(binary_call(b, swapped, call));
    }
    if let Some(f) = unary(op) {
        return Some((|| {
            call.at_most_args(if call.name.starts_with("Functional.") {
                2
            } else {
                1
            })?;
            // Functional activations take `inplace`, which does not change the values.
            call.only_kwargs(&["inplace"])?;
            Ok(call.tensor(0, "input")?.data.mapv(f))
        })());
    }
    match op {
        "gelu" | "gelu_" => Some((|| {
            call.only_kwargs(&["approximate"])?;
            let approx = match call.get(1, "approximate") {
                None | Some(super::Arg::None) => "none".to_string(),
                Some(super::Arg::Str(s)) => s.clone(),
                Some(other) => return Err(format!("approximate = {other:?}")),
            };
            let x = &call.tensor(0, "input")?.data;
            match approx.as_str() {
                "none" => Ok(x.mapv(gelu_exact)),
                "tanh" => Ok(x.mapv(gelu_tanh)),
                a => Err(format!("gelu approximate=`{a}` is not supported")),
            }
        })()),
        "where" => Some((|| {
            call.at_most_args(3)?;
            call.only_kwargs(&["input", "other"])?;
            let c = call.operand(0, "condition")?;
            let x = call.operand(1, "input")?;
            let y = call.operand(2, "other")?;
            let s = broadcast_shape(c.shape(), &broadcast_shape(x.shape(), y.shape())?)?;
            let cv = c.broadcast(IxDyn(&s)).ok_or("broadcast failed")?;
            let xv = x.broadcast(IxDyn(&s)).ok_or("broadcast failed")?;
            let yv = y.broadcast(IxDyn(&s)).ok_or("broadcast failed")?;
            Ok(Zip::from(&cv)
                .and(&xv)
                .and(&yv)
                .map_collect(|&c, &x, &y| if c != 0.0 { x } else { y }))
        })()),
        "dropout" => Some((|| {
            call.only_kwargs(&["p", "training", "inplace"])?;
            let p = call.opt_f64(1, "p")?.unwrap_or(0.5);
            let training = call.opt_bool(2, "training")?.unwrap_or(true);
            if training && p > 0.0 {
                return Err("dropout in training mode is random: not replayable".into());
            }
            Ok(call.tensor(0, "input")?.data.clone())
        })()),
        _ => None,
    }
}

fn binary_call(b: Bin, swapped: bool, call: &Call) -> R<ArrayD<f64>> {
    call.at_most_args(2)?;
    call.only_kwargs(&["alpha", "other", "exponent", "rounding_mode"])?;
    let x = call.operand(0, "input")?;
    let second = if matches!(b, Bin::Pow) {
        "exponent"
    } else {
        "other"
    };
    let y = call.operand(1, second)?;
    let (x, y) = if swapped { (y, x) } else { (x, y) };
    let alpha = call
        .kwargs
        .iter()
        .find(|(k, _)| k == "alpha")
        .map(|(_, v)| match v {
            super::Arg::Int(i) => Ok(*i as f64),
            super::Arg::Float(f) => Ok(*f),
            other => Err(format!("alpha = {other:?}")),
        })
        .transpose()?
        .unwrap_or(1.0);
    if let Some((_, v)) = call.kwargs.iter().find(|(k, _)| k == "rounding_mode") {
        if !matches!(v, super::Arg::None) {
            return Err(format!(
                "division with rounding_mode {v:?} is not supported"
            ));
        }
    }
    match b {
        Bin::Add => binary(&x, &y, |p, q| p + alpha * q),
        Bin::Sub => binary(&x, &y, |p, q| p - alpha * q),
        Bin::Mul => binary(&x, &y, |p, q| p * q),
        Bin::Div => binary(&x, &y, |p, q| p / q),
        Bin::Cmp(f) => binary(&x, &y, |p, q| f(p, q) as u8 as f64),
        Bin::Pow => binary(&x, &y, |p, q| if q == 2.0 { p * p } else { p.powf(q) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert!(broadcast_shape(&[2], &[3]).is_err());
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![1.0, 2.0]).unwrap();
        let b = ArrayD::from_shape_vec(IxDyn(&[3]), vec![10.0, 20.0, 30.0]).unwrap();
        let c = binary(&a, &b, |x, y| x + y).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(
            c.iter().copied().collect::<Vec<_>>(),
            vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]
        );
    }

    #[test]
    fn gelu_values() {
        // 0.5 * (1 + erf(1 / sqrt(2))) and the tanh form, from Python's math module.
        assert!((gelu_exact(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
        // Python: 0.5 * 0.5 * (1 + math.erf(0.5 / math.sqrt(2))), where statrs' erf was 1e-11 off.
        assert!((gelu_exact(0.5) - 0.345_731_230_637_006_56).abs() < 1e-16);
        assert!((gelu_tanh(1.0) - 0.841_191_990_608_276_8).abs() < 1e-15);
        assert!((gelu_exact(-3.0) - -0.004_049_694_094_890_31).abs() < 1e-12);
        assert_eq!(gelu_exact(0.0), 0.0);
    }
}
