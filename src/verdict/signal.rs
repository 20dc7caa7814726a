//! Lost signal: a pair whose candidate no longer carries the reference's information. Whatever
//! the noise model would allow, such a pair is never "within noise" (docs/divergence.md).

use crate::comparison::PairReport;
use crate::dump::DType;
use serde::{Deserialize, Serialize};

/// Cosine below which the candidate is no longer the reference's signal.
pub const LOST_COSINE: f64 = 0.5;
/// Norm ratio (either way) within which an uncorrelated candidate is called scrambled (same
/// values in another order or layout) rather than simply lost.
pub const SCRAMBLED_NORM_RATIO: f64 = 2.0;

/// Relative spread (max - min over the largest magnitude), in unit roundoffs of the pair's
/// coarser dtype, that a reference must have for a constant candidate to count as lost.
pub const FLAT_SPREAD: f64 = 16.0;

/// How the signal of a pair was lost.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// The reference's magnitudes lie below the candidate dtype's smallest normal value:
    /// flushed to zero or left with few significant bits.
    Underflow,
    /// ±inf on the candidate where the reference is finite.
    Overflow,
    /// The candidate is clamped at its dtype's largest value where the reference is beyond it.
    Saturation,
    /// NaN (or an infinity or fill value) on one side only.
    NonFinite,
    /// Uncorrelated with the reference at a similar norm: a layout or pairing mistake.
    Scrambled,
    /// All zeros or constant on one side only, or uncorrelated: nothing of the signal is left.
    Lost,
}

impl Loss {
    /// Lower-case name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Underflow => "underflow",
            Loss::Overflow => "overflow",
            Loss::Saturation => "saturation",
            Loss::NonFinite => "non-finite values",
            Loss::Scrambled => "scrambled",
            Loss::Lost => "signal lost",
        }
    }
}

/// True when most of the reference's magnitude lies below the candidate dtype's normal range
/// (its RMS is below the smallest normal value), so that rounding there is absolute, not
/// relative: the tensor cannot be held in that dtype.
pub fn below_normal_range(p: &PairReport) -> bool {
    let (Some(m), Some(d)) = (p.metrics.as_ref(), p.dtype_dev) else {
        return false;
    };
    if !d.is_float() || m.compared == 0 {
        return false;
    }
    let rms = super::ref_rms(p).unwrap_or(0.0);
    rms > 0.0 && rms < d.min_normal() && d.min_normal() > p.dtype_ref.map_or(0.0, DType::min_normal)
}

/// The kind of signal loss of a floating-point pair, `None` when its signal is intact (its
/// error may still be beyond noise: that is for the verdict rules to say).
pub fn loss(p: &PairReport) -> Option<Loss> {
    let m = p.metrics.as_ref()?;
    if !p.dtype_ref?.is_float() || !p.dtype_dev?.is_float() {
        return None;
    }
    if m.overflow > 0 {
        return Some(Loss::Overflow);
    }
    if m.saturated > 0 {
        return Some(Loss::Saturation);
    }
    if m.nonfinite_mismatch > 0 {
        return Some(Loss::NonFinite);
    }
    if m.compared == 0 {
        return None;
    }
    let (nr, nd) = (m.ref_stats.norm, m.dev_stats.norm);
    if (nr == 0.0) != (nd == 0.0) {
        return Some(if nd == 0.0 && below_normal_range(p) {
            Loss::Underflow
        } else {
            Loss::Lost
        });
    }
    // Constant on one side only, where the reference's spread is more than rounding could
    // flatten (a sigmoid saturated at 0.5 ± 1e-5 is constant in float16, and rightly so).
    let spread = |s: &crate::metrics::SideStats| match (s.min, s.max) {
        (Some(a), Some(b)) => (b - a) / a.abs().max(b.abs()).max(f64::MIN_POSITIVE),
        _ => 0.0,
    };
    let u = DType::coarser(p.dtype_ref?, p.dtype_dev?).unit_roundoff();
    if m.compared > 1 && spread(&m.dev_stats) == 0.0 && spread(&m.ref_stats) > FLAT_SPREAD * u {
        return Some(Loss::Lost);
    }
    if m.cosine < LOST_COSINE && nr > 0.0 {
        let ratio = nd / nr;
        let similar = (1.0 / SCRAMBLED_NORM_RATIO..=SCRAMBLED_NORM_RATIO).contains(&ratio);
        return Some(if below_normal_range(p) {
            Loss::Underflow
        } else if similar {
            Loss::Scrambled
        } else {
            Loss::Lost
        });
    }
    None
}

/// One sentence saying what the loss is, with its numbers.
pub fn describe(p: &PairReport, loss: Loss) -> String {
    let Some(m) = p.metrics.as_ref() else {
        return loss.name().to_string();
    };
    let dev = p.dtype_dev.map_or("its dtype", DType::name);
    match loss {
        Loss::Underflow => {
            let rms = super::ref_rms(p).unwrap_or(0.0);
            format!(
                "underflow: the reference's RMS {rms:.2e} is below {dev}'s smallest normal \
                 {:.2e}{}",
                p.dtype_dev.map_or(0.0, DType::min_normal),
                if m.dev_stats.norm == 0.0 {
                    "; every candidate value is 0".to_string()
                } else {
                    format!(", cosine {:.4}", m.cosine)
                }
            )
        }
        Loss::Overflow => format!(
            "overflow: {} element(s) are ±inf on the candidate where the reference is finite",
            m.overflow
        ),
        Loss::Saturation => format!(
            "saturation: {} element(s) sit at {dev}'s largest value where the reference is beyond it",
            m.saturated
        ),
        Loss::NonFinite => format!(
            "NaN/Inf or fill values on one side only in {} element(s) (first at flat index {}; \
             NaN {} vs {}, Inf {} vs {})",
            m.nonfinite_mismatch,
            m.first_nonfinite_mismatch_index.unwrap_or(0),
            m.nan_ref,
            m.nan_dev,
            m.inf_ref,
            m.inf_dev
        ),
        Loss::Scrambled => format!(
            "scrambled: cosine {:.4} at a similar norm (relative L2 error {:.3}): the values do \
             not correspond",
            m.cosine, m.rel_l2_err
        ),
        Loss::Lost => {
            if m.dev_stats.norm == 0.0 {
                "signal lost: every candidate value is 0".to_string()
            } else if m.ref_stats.norm == 0.0 {
                "signal lost: the reference is all zeros, the candidate is not".to_string()
            } else if m.dev_stats.min == m.dev_stats.max {
                "signal lost: the candidate is constant".to_string()
            } else {
                format!(
                    "signal lost: cosine {:.4}, relative L2 error {:.3}",
                    m.cosine, m.rel_l2_err
                )
            }
        }
    }
}
