//! Padded and bucketed shapes: a device run compiled for fixed shapes pads (a sequence of 32
//! tokens to 48, channels to a multiple of 16). When one tensor's shape contains the other's,
//! the common region is compared and the padding described (docs/alignment.md).

use crate::dump::{Bytes, Tensor};
use crate::metrics::{self, Histograms, Metrics};
use serde::{Deserialize, Serialize};

/// The side of a pair whose tensor is the larger one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The reference's tensor holds the padding.
    Reference,
    /// The candidate's tensor holds the padding.
    Candidate,
}

/// How one tensor of a pair pads the other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Padding {
    /// The side holding the larger tensor.
    pub padded: Side,
    /// The shape compared: the smaller tensor's (size-1 dimensions dropped when the ranks
    /// differ).
    pub common: Vec<usize>,
    /// Per dimension of `common`, elements of the larger tensor before and after the region.
    pub pad: Vec<(usize, usize)>,
    /// Elements of the larger tensor outside the region.
    pub elements: usize,
    /// Of these, how many are not zero (NaN included).
    pub nonzero: usize,
    /// Largest |value| among them (NaN when one is NaN).
    pub max_abs: f64,
}

/// Shapes of equal rank (after dropping size-1 dimensions when the ranks differ) where every
/// dimension of one is at least the other's: `(larger side, big, small)`.
fn containment(r: &[usize], d: &[usize]) -> Option<(Side, Vec<usize>, Vec<usize>)> {
    let sq = |s: &[usize]| s.iter().copied().filter(|&x| x != 1).collect::<Vec<_>>();
    let (r, d) = if r.len() == d.len() {
        (r.to_vec(), d.to_vec())
    } else {
        (sq(r), sq(d))
    };
    if r.len() != d.len() || r == d {
        return None;
    }
    if r.iter().zip(&d).all(|(a, b)| a >= b) {
        Some((Side::Reference, r, d))
    } else if r.iter().zip(&d).all(|(a, b)| a <= b) {
        Some((Side::Candidate, d, r))
    } else {
        None
    }
}

/// Whether one shape contains the other (so a pair can be compared on its common region).
pub fn fits(r: &[usize], d: &[usize]) -> bool {
    containment(r, d).is_some_and(|(_, _, small)| small.iter().all(|&x| x > 0))
}

/// The region of `t` (C order, shape `shape`) starting at `start` with shape `region`.
fn crop(t: &Tensor, shape: &[usize], start: &[usize], region: &[usize]) -> Tensor {
    let size = t.dtype.size();
    let rank = shape.len();
    let row = region.last().copied().unwrap_or(1) * size;
    let mut out = Vec::with_capacity(region.iter().product::<usize>() * size);
    // Strides in elements.
    let mut stride = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        stride[k] = stride[k + 1] * shape[k + 1];
    }
    let outer: usize = region[..rank.saturating_sub(1)].iter().product();
    let mut idx = vec![0usize; rank.saturating_sub(1)];
    for _ in 0..outer {
        let mut off = start.last().copied().unwrap_or(0);
        for (k, &i) in idx.iter().enumerate() {
            off += (start[k] + i) * stride[k];
        }
        out.extend_from_slice(&t.data[off * size..off * size + row]);
        // Next row index, last outer dimension fastest.
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < region[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Tensor {
        dtype: t.dtype,
        shape: region.to_vec(),
        data: Bytes::Owned(out),
    }
}

/// Measures a pair whose shapes differ but one contains the other: the common region, placed
/// where it fits best (padding after the data, or before it, as left-padded batches are), and
/// the padding left over, with or without the error histograms. `None` when neither shape
/// contains the other.
pub fn measure(r: &Tensor, d: &Tensor, histograms: Histograms) -> Option<(Metrics, Padding)> {
    let (side, big, small) = containment(&r.shape, &d.shape)?;
    if small.contains(&0) {
        return None;
    }
    let (bt, st) = match side {
        Side::Reference => (r, d),
        Side::Candidate => (d, r),
    };
    let small_t = Tensor {
        dtype: st.dtype,
        shape: small.clone(),
        data: st.data.clone(),
    };
    let at_end = vec![0; big.len()];
    let at_start: Vec<usize> = big.iter().zip(&small).map(|(b, s)| b - s).collect();
    let mut best: Option<(Metrics, Vec<usize>)> = None;
    for start in [at_end, at_start] {
        if best.as_ref().is_some_and(|(_, s)| *s == start) {
            continue;
        }
        let region = crop(bt, &big, &start, &small);
        let m = match side {
            Side::Reference => metrics::measure_with(&region, &small_t, histograms),
            Side::Candidate => metrics::measure_with(&small_t, &region, histograms),
        };
        let better = best
            .as_ref()
            .is_none_or(|(b, _)| m.rel_l2_err < b.rel_l2_err || b.rel_l2_err.is_nan());
        if better {
            best = Some((m, start));
        }
    }
    let (m, start) = best?;
    // The elements outside the region.
    let values = bt.to_f64_vec();
    let mut stride = vec![1usize; big.len()];
    for k in (0..big.len().saturating_sub(1)).rev() {
        stride[k] = stride[k + 1] * big[k + 1];
    }
    let (mut elements, mut nonzero, mut max_abs) = (0, 0, 0f64);
    for (i, v) in values.iter().enumerate() {
        let inside = (0..big.len()).all(|k| {
            let c = i / stride[k] % big[k];
            c >= start[k] && c < start[k] + small[k]
        });
        if !inside {
            elements += 1;
            if *v != 0.0 {
                nonzero += 1;
            }
            max_abs = if v.is_nan() || max_abs.is_nan() {
                f64::NAN
            } else {
                max_abs.max(v.abs())
            };
        }
    }
    let pad = (0..big.len())
        .map(|k| (start[k], big[k] - small[k] - start[k]))
        .collect();
    Some((
        m,
        Padding {
            padded: side,
            common: small,
            pad,
            elements,
            nonzero,
            max_abs,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::DType;

    fn tensor(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor {
            dtype: DType::Float32,
            shape: shape.to_vec(),
            data: Bytes::Owned(bytemuck::cast_slice(v).to_vec()),
        }
    }

    #[test]
    fn shapes_that_contain_each_other() {
        assert!(fits(&[1, 32, 64], &[1, 48, 64]));
        assert!(fits(&[32, 64], &[1, 48, 64]));
        assert!(!fits(&[32, 64], &[64, 32]));
        assert!(!fits(&[2, 3], &[2, 3]));
        assert!(!fits(&[2, 0], &[2, 3]));
    }

    #[test]
    fn the_common_region_is_compared_and_the_padding_described() {
        // Reference 2x3; the candidate pads each row to 4 with zeros, and a row of 9s after.
        let r = tensor(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let d = tensor(&[3, 4], &[1., 2., 3., 0., 4., 5., 6., 0., 9., 9., 9., 9.]);
        let (m, p) = measure(&r, &d, Histograms::Count).unwrap();
        assert_eq!(m.max_abs_err, 0.0);
        assert_eq!(m.numel, 6);
        assert_eq!(p.padded, Side::Candidate);
        assert_eq!(p.common, vec![2, 3]);
        assert_eq!(p.pad, vec![(0, 1), (0, 1)]);
        assert_eq!((p.elements, p.nonzero, p.max_abs), (6, 4, 9.0));
        // Left padding (a left-padded batch): the region at the end fits better.
        let d = tensor(&[1, 5], &[0., 0., 1., 2., 3.]);
        let r = tensor(&[3], &[1., 2., 3.]);
        let (m, p) = measure(&r, &d, Histograms::Count).unwrap();
        assert_eq!(m.max_abs_err, 0.0);
        assert_eq!(p.pad, vec![(2, 0)]);
        assert_eq!(p.common, vec![3]);
        // The reference may be the larger one too.
        let (_, p) = measure(&tensor(&[4], &[1., 2., 3., 7.]), &r, Histograms::Count).unwrap();
        assert_eq!((p.padded, p.max_abs), (Side::Reference, 7.0));
        assert!(measure(
            &tensor(&[2, 3], &[0.; 6]),
            &tensor(&[3, 2], &[0.; 6]),
            Histograms::Count
        )
        .is_none());
    }
}
