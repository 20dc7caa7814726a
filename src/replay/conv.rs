//! 2-D convolution (`F.conv2d`) with stride, padding (numbers, `"same"`, `"valid"`),
//! dilation and groups.

use super::{Arg, Call, R};
use ndarray::{Array4, ArrayD, Ix4};

/// Convolution geometry.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Stride (h, w).
    pub stride: [usize; 2],
    /// Padding (top, bottom, left, right).
    pub padding: [usize; 4],
    /// Dilation (h, w).
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
}

/// `F.conv2d` on an `[N, C, H, W]` (or unbatched `[C, H, W]`) input.
pub fn conv2d(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    b: Option<&ArrayD<f64>>,
    g: &Conv2d,
) -> R<ArrayD<f64>> {
    let unbatched = x.ndim() == 3;
    let x4 = if unbatched {
        x.clone().insert_axis(ndarray::Axis(0))
    } else {
        x.clone()
    };
    let x4 = x4
        .into_dimensionality::<Ix4>()
        .map_err(|_| format!("conv2d input of shape {:?}", x.shape()))?;
    let w4 = w
        .clone()
        .into_dimensionality::<Ix4>()
        .map_err(|_| format!("conv2d weight of shape {:?}", w.shape()))?;
    let (n, c, h, wd) = x4.dim();
    let (oc, icg, kh, kw) = w4.dim();
    let gr = g.groups.max(1);
    if c != icg * gr || oc % gr != 0 {
        return Err(format!(
            "conv2d channels: input {c}, weight {:?}, groups {gr}",
            w.shape()
        ));
    }
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let [pt, pb, pl, pr] = g.padding;
    let eff_h = dh * (kh - 1) + 1;
    let eff_w = dw * (kw - 1) + 1;
    if h + pt + pb < eff_h || wd + pl + pr < eff_w || sh == 0 || sw == 0 {
        return Err("conv2d kernel larger than the padded input".into());
    }
    let oh = (h + pt + pb - eff_h) / sh + 1;
    let ow = (wd + pl + pr - eff_w) / sw + 1;
    let ocg = oc / gr;
    let bias: Vec<f64> = b.map(|b| b.iter().copied().collect()).unwrap_or_default();
    if b.is_some() && bias.len() != oc {
        return Err(format!(
            "conv2d bias of {} values for {oc} channels",
            bias.len()
        ));
    }
    let mut out = Array4::<f64>::zeros((n, oc, oh, ow));
    for ni in 0..n {
        for o in 0..oc {
            let grp = o / ocg;
            let bias = bias.get(o).copied().unwrap_or(0.0);
            for yi in 0..oh {
                for xi in 0..ow {
                    let mut acc = bias;
                    for ci in 0..icg {
                        let cin = grp * icg + ci;
                        for ki in 0..kh {
                            let iy = (yi * sh + ki * dh) as isize - pt as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kj in 0..kw {
                                let ix = (xi * sw + kj * dw) as isize - pl as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                acc +=
                                    x4[[ni, cin, iy as usize, ix as usize]] * w4[[o, ci, ki, kj]];
                            }
                        }
                    }
                    out[[ni, o, yi, xi]] = acc;
                }
            }
        }
    }
    let out = out.into_dyn();
    Ok(if unbatched {
        out.index_axis_move(ndarray::Axis(0), 0)
    } else {
        out
    })
}

fn pair(call: &Call, i: usize, name: &str, default: usize) -> R<[usize; 2]> {
    match call.opt_ints(i, name)? {
        None => Ok([default; 2]),
        Some(v) if v.len() == 1 && v[0] >= 0 => Ok([v[0] as usize; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!("conv2d {name} = {v:?}")),
    }
}

/// Replays `conv2d`.
pub fn dispatch(op: &str, call: &Call) -> Option<R<ArrayD<f64>>> {
    if op != "conv2d" {
        return None;
    }
    Some((|| {
        call.at_most_args(7)?;
        call.only_kwargs(&["weight", "bias", "stride", "padding", "dilation", "groups"])?;
        let x = &call.tensor(0, "input")?.data;
        let w = &call.tensor(1, "weight")?.data;
        let b = call.opt_tensor(2, "bias")?.map(|t| &t.data);
        let stride = pair(call, 3, "stride", 1)?;
        let dilation = pair(call, 5, "dilation", 1)?;
        let groups = call.opt_i64(6, "groups")?.unwrap_or(1);
        if groups < 1 {
            return Err(format!("conv2d groups = {groups}"));
        }
        if w.ndim() != 4 {
            return Err(format!("conv2d weight of shape {:?}", w.shape()));
        }
        let (kh, kw) = (w.shape()[2], w.shape()[3]);
        let padding = match call.get(4, "padding") {
            Some(Arg::Str(s)) if s == "valid" => [0; 4],
            Some(Arg::Str(s)) if s == "same" => {
                // torch pads the extra row/column at the end
                let th = dilation[0] * (kh - 1);
                let tw = dilation[1] * (kw - 1);
                [th / 2, th - th / 2, tw / 2, tw - tw / 2]
            }
            _ => {
                let [ph, pw] = pair(call, 4, "padding", 0)?;
                [ph, ph, pw, pw]
            }
        };
        conv2d(
            x,
            w,
            b,
            &Conv2d {
                stride,
                padding,
                dilation,
                groups: groups as usize,
            },
        )
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn conv2d_small() {
        // 1x1x3x3 input 1..9, 1x1x2x2 kernel of ones, padding 1, stride 2
        let x =
            ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), (1..=9).map(f64::from).collect()).unwrap();
        let w = ArrayD::from_elem(IxDyn(&[1, 1, 2, 2]), 1.0);
        let g = Conv2d {
            stride: [2, 2],
            padding: [1, 1, 1, 1],
            dilation: [1, 1],
            groups: 1,
        };
        let y = conv2d(&x, &w, None, &g).unwrap();
        // torch.nn.functional.conv2d(x, w, stride=2, padding=1)
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![1.0, 5.0, 11.0, 28.0]
        );
    }
}
