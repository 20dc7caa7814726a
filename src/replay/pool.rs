//! 2-D average pooling (`F.avg_pool2d`, `F.adaptive_avg_pool2d`) over the last two dimensions.

use super::{Call, R};
use ndarray::{ArrayD, IxDyn};

/// `(h, w)` from an int or a list of one or two ints (`default` when absent).
fn pair(call: &Call, i: usize, name: &str, default: Option<[usize; 2]>) -> R<[usize; 2]> {
    match call.opt_ints(i, name)? {
        None => default.ok_or_else(|| format!("pooling without `{name}`")),
        Some(v) if v.len() == 1 && v[0] > 0 => Ok([v[0] as usize; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) if name == "padding" && v.iter().all(|&x| x == 0) => Ok([0, 0]),
        Some(v) => Err(format!("pooling `{name}` = {v:?}")),
    }
}

/// Averages windows of the last two dimensions: `windows(o, n)` gives the half-open input
/// range `[start, end)` of output index `o` along a dimension of `n`, `divisor(count)` the
/// number the window's sum is divided by.
fn pool(
    x: &ArrayD<f64>,
    out_hw: [usize; 2],
    windows: impl Fn(usize, usize, usize) -> (isize, isize),
    divisor: impl Fn(usize, usize) -> f64,
) -> R<ArrayD<f64>> {
    let nd = x.ndim();
    if nd < 2 {
        return Err(format!("pooling a {nd}-d input"));
    }
    let (h, w) = (x.shape()[nd - 2], x.shape()[nd - 1]);
    let mut shape = x.shape().to_vec();
    shape[nd - 2] = out_hw[0];
    shape[nd - 1] = out_hw[1];
    let lead: usize = x.shape()[..nd - 2].iter().product();
    let flat = x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[lead, h, w]))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(lead * out_hw[0] * out_hw[1]);
    for l in 0..lead {
        for oy in 0..out_hw[0] {
            let (y0, y1) = windows(0, oy, h);
            for ox in 0..out_hw[1] {
                let (x0, x1) = windows(1, ox, w);
                let mut s = 0.0;
                for y in y0.max(0)..y1.min(h as isize) {
                    for xx in x0.max(0)..x1.min(w as isize) {
                        s += flat[[l, y as usize, xx as usize]];
                    }
                }
                let inside = ((y1.min(h as isize) - y0.max(0)).max(0)
                    * (x1.min(w as isize) - x0.max(0)).max(0))
                    as usize;
                let window = ((y1 - y0) * (x1 - x0)) as usize;
                out.push(s / divisor(inside, window));
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// Replays `avg_pool2d` and `adaptive_avg_pool2d`.
pub fn dispatch(op: &str, call: &Call) -> Option<R<ArrayD<f64>>> {
    Some(match op {
        "avg_pool2d" => (|| {
            // F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
            // divisor_override)
            call.at_most_args(7)?;
            call.only_kwargs(&[
                "kernel_size",
                "stride",
                "padding",
                "ceil_mode",
                "count_include_pad",
                "divisor_override",
            ])?;
            let x = &call.tensor(0, "input")?.data;
            let k = pair(call, 1, "kernel_size", None)?;
            let s = pair(call, 2, "stride", Some(k))?;
            let p = pair(call, 3, "padding", Some([0, 0]))?;
            if call.opt_bool(4, "ceil_mode")?.unwrap_or(false) {
                return Err("avg_pool2d with ceil_mode: not replayed".into());
            }
            let include_pad = call.opt_bool(5, "count_include_pad")?.unwrap_or(true);
            let over = call.opt_i64(6, "divisor_override")?;
            let nd = x.ndim();
            if nd < 2 {
                return Err(format!("avg_pool2d of a {nd}-d input"));
            }
            let dims = [x.shape()[nd - 2], x.shape()[nd - 1]];
            let out: Vec<usize> = (0..2)
                .map(|d| (dims[d] + 2 * p[d]).saturating_sub(k[d]) / s[d] + 1)
                .collect();
            pool(
                x,
                [out[0], out[1]],
                |d, o, _| {
                    let start = (o * s[d]) as isize - p[d] as isize;
                    (start, start + k[d] as isize)
                },
                |inside, window| match over {
                    Some(v) => v as f64,
                    None if include_pad => window as f64,
                    None => inside as f64,
                },
            )
        })(),
        "adaptive_avg_pool2d" => (|| {
            call.at_most_args(2)?;
            call.only_kwargs(&["output_size"])?;
            let x = &call.tensor(0, "input")?.data;
            let o = pair(call, 1, "output_size", None)?;
            pool(
                x,
                o,
                |d, i, n| {
                    // torch: start = floor(i * n / o), end = ceil((i + 1) * n / o).
                    let start = i * n / o[d];
                    let end = ((i + 1) * n).div_ceil(o[d]);
                    (start as isize, end as isize)
                },
                |inside, _| inside as f64,
            )
        })(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_of_windows() {
        let x =
            ArrayD::from_shape_vec(IxDyn(&[1, 4, 4]), (0..16).map(f64::from).collect()).unwrap();
        let full = |o| {
            pool(
                &x,
                [o, o],
                move |_, i, n| ((i * n / o) as isize, ((i + 1) * n).div_ceil(o) as isize),
                |inside, _| inside as f64,
            )
            .unwrap()
        };
        assert_eq!(full(1).iter().copied().collect::<Vec<_>>(), vec![7.5]);
        // 2x2 windows of a 4x4 ramp: (0+1+4+5)/4 = 2.5, ...
        assert_eq!(
            full(2).iter().copied().collect::<Vec<_>>(),
            vec![2.5, 4.5, 10.5, 12.5]
        );
        // Uneven bins overlap, as torch's do: 4 -> 3 gives [0,2), [1,3), [2,4).
        assert_eq!(full(3)[[0, 0, 0]], 2.5);
        assert_eq!(full(3)[[0, 1, 1]], 7.5);
    }
}
