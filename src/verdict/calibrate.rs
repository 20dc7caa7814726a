//! Empirical noise: a calibration run (a second reference run, or a trusted clean device run)
//! measured against the same reference gives each tensor's observed clean error, and statrs
//! turns the spread of errors across places into a one-sided test for the first divergence.

use super::pair_err;
use crate::comparison::{Comparison, PairReport};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::statistics::{Data, OrderStatistics};
use std::collections::HashMap;
use std::path::PathBuf;

/// A tensor diverges with a calibration run only beyond this many times its calibrated error.
pub const CALIBRATION_FACTOR: f64 = 4.0;

/// Observed clean error per tensor.
#[derive(Clone, Debug, Default)]
pub struct Calibration {
    /// The calibration run.
    pub path: PathBuf,
    /// Relative L2 error of each tensor of the calibration run against the reference.
    pub errors: HashMap<String, f64>,
}

impl Calibration {
    /// Calibration from the comparison of the reference with the calibration run.
    pub fn from_comparison(c: &Comparison) -> Self {
        Calibration {
            path: c.candidate.path.clone(),
            errors: c
                .pairs
                .iter()
                .filter_map(|p| Some((p.name.to_string(), pair_err(p)?)))
                .collect(),
        }
    }

    /// The noise allowance a calibrated error grants a tensor (0 when not calibrated).
    pub fn allowance(&self, name: &str) -> f64 {
        self.errors
            .get(name)
            .map_or(0.0, |e| CALIBRATION_FACTOR * e)
    }
}

/// Margin of a judged comparison: min over outputs not diverged of allowance / error.
pub fn margin(
    pairs: &[PairReport],
    cal: &Calibration,
    noise_factor: f64,
    amplification: f64,
) -> (Option<f64>, Option<String>) {
    let mut best: Option<(f64, &str)> = None;
    for p in pairs {
        if p.role != crate::dump::Role::Output || p.verdict == Some(super::Verdict::Diverged) {
            continue;
        }
        let (Some(e), Some(x)) = (pair_err(p), p.expected_err) else {
            continue;
        };
        if e <= 0.0 {
            continue;
        }
        let allowed = (noise_factor * x)
            .max(amplification * p.inherited_err.unwrap_or(0.0))
            .max(cal.allowance(&p.name));
        let m = allowed / e;
        if best.is_none_or(|b| m < b.0) {
            best = Some((m, &p.place));
        }
    }
    (best.map(|b| b.0), best.map(|b| b.1.to_string()))
}

/// One-sided test of one place's log error ratio against the ratios of every place: a robust
/// z-score (median and MAD) and its upper-tail probability under a normal model.
pub fn outlier_test(log_ratios: &[f64], x: f64) -> Option<(f64, f64)> {
    if log_ratios.len() < 8 {
        return None;
    }
    let mut d = Data::new(log_ratios.to_vec());
    let med = d.median();
    let mut dev = Data::new(
        log_ratios
            .iter()
            .map(|v| (v - med).abs())
            .collect::<Vec<_>>(),
    );
    let mad = 1.4826 * dev.median();
    if mad.is_nan() || mad <= 0.0 {
        return None;
    }
    let z = (x - med) / mad;
    // The survival function keeps its digits far in the tail, where 1 - cdf is 0.
    let p = Normal::new(0.0, 1.0).ok()?.sf(z);
    Some((z, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outlier_gets_a_small_p_value() {
        let xs: Vec<f64> = (0..50).map(|i| ((i % 7) as f64 - 3.0) * 0.1).collect();
        let (z, p) = outlier_test(&xs, 4.0).unwrap();
        assert!(z > 10.0 && p < 1e-6, "z {z} p {p}");
        let (_, p) = outlier_test(&xs, 0.0).unwrap();
        assert!(p > 0.3);
        assert!(outlier_test(&xs[..3], 4.0).is_none());
    }
}
