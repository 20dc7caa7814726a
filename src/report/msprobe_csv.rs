//! msprobe's compare_result CSV for tensor mode, with its exact columns (`CompareConst.
//! COMPARE_RESULT_HEADER` + `Data_name` in msprobe's `core/common/const.py`), so existing
//! spreadsheets and scripts keep working. Values are driftscope's; where driftscope's verdict
//! deliberately differs from msprobe's, docs/ascend.md has the table.

use super::Exporter;
use crate::compare::{Comparison, PairReport, Status};
use crate::dump::{DType, RecordedStats};
use crate::metrics::Metrics;
use crate::verdict::Verdict;

/// msprobe-compatible CSV export.
pub struct MsprobeCsv;

/// msprobe's tensor-mode header, in order.
pub const HEADER: &[&str] = &[
    "NPU Name",
    "Bench Name",
    "NPU Dtype",
    "Bench Dtype",
    "NPU Tensor Shape",
    "Bench Tensor Shape",
    "NPU Requires_grad",
    "Bench Requires_grad",
    "Cosine",
    "EucDist",
    "MaxAbsErr",
    "MaxRelativeErr",
    "One Thousandth Err Ratio",
    "Five Thousandths Err Ratio",
    "NPU max",
    "NPU min",
    "NPU mean",
    "NPU l2norm",
    "Bench max",
    "Bench min",
    "Bench mean",
    "Bench l2norm",
    "Requires_grad Consistent",
    "Accuracy Reached or Not",
    "Err_message",
    "Data_name",
];

/// msprobe's placeholder for a value that does not exist.
const NA: &str = "N/A";

fn num(x: Option<f64>) -> String {
    match x {
        None => NA.into(),
        Some(x) if x.is_nan() => "nan".into(),
        Some(x) if x.is_infinite() => if x > 0.0 { "inf" } else { "-inf" }.into(),
        Some(x) => format!("{x}"),
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// msprobe's "Accuracy Reached or Not" from driftscope's verdict: only the place that
/// introduces error beyond noise is `No`; error inherited from it is `Warning`.
fn accuracy(p: &PairReport) -> &'static str {
    match (p.status, p.verdict) {
        (Status::Error | Status::ShapeMismatch, _) => "No",
        (_, Some(Verdict::Diverged | Verdict::Changed)) => "No",
        (_, Some(Verdict::Drift)) => "Warning",
        (_, Some(Verdict::Ok | Verdict::Identical)) => "Yes",
        (_, None) => NA,
    }
}

fn message(p: &PairReport) -> String {
    let mut m = match p.verdict {
        Some(v) => format!("driftscope: {}", v.name()),
        None => String::new(),
    };
    if p.status == Status::ShapeMismatch {
        m = "shape unmatched".into();
    }
    let mut add = |s: &str| {
        if !m.is_empty() {
            m.push_str("; ");
        }
        m.push_str(s);
    };
    if let Some(e) = &p.error {
        add(e);
    }
    if let Some(x) = p.metrics.as_ref().filter(|x| x.nonfinite_mismatch > 0) {
        add(&format!(
            "NaN/Inf on one side only at {} of {} elements (first at flat index {}; NPU {} NaN, \
             {} Inf; bench {} NaN, {} Inf): the position of inf or nan in NPU and bench Tensor \
             do not match",
            x.nonfinite_mismatch,
            x.numel,
            x.first_nonfinite_mismatch_index.unwrap_or(0),
            x.nan_dev,
            x.inf_dev,
            x.nan_ref,
            x.inf_ref
        ));
    }
    if p.status == Status::Statistics {
        add("statistics only: MaxAbsErr is the larger of |max diff| and |min diff|");
    }
    if let (Some(r), Some(d)) = (p.dtype_ref, p.dtype_dev) {
        if r != d {
            add(&format!(
                "dtype {} vs {}: judged against {} rounding, not flagged for the dtype alone",
                d.name(),
                r.name(),
                d.name()
            ));
        }
    }
    m
}

/// msprobe's MaxRelativeErr: |dev - ref| / |ref|, where ref == 0 both sides shifted by the
/// machine epsilon of float32 (float64 for float64 pairs), so a non-zero device value against
/// a zero reference counts |dev| / eps. driftscope's own `max_rel_err` leaves those elements
/// out (docs/metrics.md).
fn msprobe_max_rel(p: &PairReport, m: &Metrics) -> f64 {
    let Some(z) = m.max_abs_at_ref_zero else {
        return m.max_rel_err;
    };
    let f64s = p.dtype_ref == Some(DType::Float64) && p.dtype_dev == Some(DType::Float64);
    let eps = if f64s {
        f64::EPSILON
    } else {
        f32::EPSILON as f64
    };
    m.max_rel_err.max(z / eps)
}

/// The summary columns of one side: what the dump recorded (as msprobe shows), else what
/// driftscope measured over the elements (NaN when the tensor holds NaN, as torch reports).
fn side(rec: Option<RecordedStats>, m: Option<&Metrics>, reference: bool) -> [String; 4] {
    if let Some(r) = rec {
        return [num(r.max()), num(r.min()), num(r.mean()), num(r.norm())];
    }
    let Some(m) = m else {
        return [NA.into(), NA.into(), NA.into(), NA.into()];
    };
    let (s, nan) = if reference {
        (&m.ref_stats, m.nan_ref)
    } else {
        (&m.dev_stats, m.nan_dev)
    };
    if nan > 0 {
        return ["nan".into(), "nan".into(), "nan".into(), "nan".into()];
    }
    [num(s.max), num(s.min), num(s.mean), num(Some(s.norm))]
}

impl Exporter for MsprobeCsv {
    fn serialize(&self, c: &Comparison) -> anyhow::Result<Vec<u8>> {
        let mut out = HEADER.join(",");
        out.push('\n');
        let shape = |s: &Option<std::sync::Arc<[usize]>>| {
            s.as_ref().map_or(NA.into(), |s| format!("{s:?}"))
        };
        let dtype = |d: Option<crate::dump::DType>| d.map_or(NA.into(), |d| d.name().to_string());
        for p in &c.pairs {
            let m = p.metrics.as_deref();
            // msprobe computes nothing when NaN/Inf positions differ: the columns say N/A.
            let cmp = m.filter(|m| m.nonfinite_mismatch == 0);
            let stat_abs = if p.status == Status::Statistics {
                p.stats_diff.and_then(|d| d.max_abs())
            } else {
                None
            };
            let [nmax, nmin, nmean, nnorm] = side(p.recorded_dev, m, false);
            let [bmax, bmin, bmean, bnorm] = side(p.recorded_ref, m, true);
            let row = [
                p.name_dev.as_deref().unwrap_or(&p.name).to_string(),
                p.name.to_string(),
                dtype(p.dtype_dev),
                dtype(p.dtype_ref),
                shape(&p.shape_dev),
                shape(&p.shape_ref),
                NA.into(),
                NA.into(),
                num(cmp.map(|m| m.cosine)),
                num(cmp.map(|m| m.rmse * (m.compared as f64).sqrt())),
                num(cmp.map(|m| m.max_abs_err).or(stat_abs)),
                num(cmp.map(|m| msprobe_max_rel(p, m))),
                num(cmp.map(|m| m.one_thousandth_err_ratio)),
                num(cmp.map(|m| m.five_thousandths_err_ratio)),
                nmax,
                nmin,
                nmean,
                nnorm,
                bmax,
                bmin,
                bmean,
                bnorm,
                NA.into(),
                accuracy(p).into(),
                message(p),
                NA.into(),
            ];
            out.push_str(&row.iter().map(|s| quote(s)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        // Device tensors with no reference counterpart, as msprobe lists them.
        for n in &c.unmatched_candidate {
            let mut row = vec![quote(n)];
            row.extend(std::iter::repeat_n(NA.to_string(), HEADER.len() - 4));
            row.push("Unmatched".into());
            row.push("No bench data matched.".into());
            row.push(NA.into());
            out.push_str(&row.join(","));
            out.push('\n');
        }
        Ok(out.into_bytes())
    }
}
