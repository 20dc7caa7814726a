//! msprobe's compare_result CSV for tensor mode, with its exact columns (`CompareConst.
//! COMPARE_RESULT_HEADER` + `Data_name` in msprobe's `core/common/const.py`), so existing
//! spreadsheets and scripts keep working. Values are driftscope's; where driftscope's verdict
//! deliberately differs from msprobe's, docs/ascend.md has the table.

use super::Exporter;
use crate::compare::{Comparison, PairReport, Status};
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
    if let Some(e) = &p.error {
        if !m.is_empty() {
            m.push_str("; ");
        }
        m.push_str(e);
    }
    if let (Some(r), Some(d)) = (p.dtype_ref, p.dtype_dev) {
        if r != d {
            m.push_str(&format!(
                "; dtype {} vs {}: judged against {} rounding, not flagged for the dtype alone",
                d.name(),
                r.name(),
                d.name()
            ));
        }
    }
    m
}

impl Exporter for MsprobeCsv {
    fn serialize(&self, c: &Comparison) -> anyhow::Result<Vec<u8>> {
        let mut out = HEADER.join(",");
        out.push('\n');
        let shape = |s: &Option<Vec<usize>>| s.as_ref().map_or(NA.into(), |s| format!("{s:?}"));
        let dtype = |d: Option<crate::dump::DType>| d.map_or(NA.into(), |d| d.name().to_string());
        for p in &c.pairs {
            let m = p.metrics.as_ref();
            let row = [
                p.name_dev.clone().unwrap_or_else(|| p.name.clone()),
                p.name.clone(),
                dtype(p.dtype_dev),
                dtype(p.dtype_ref),
                shape(&p.shape_dev),
                shape(&p.shape_ref),
                NA.into(),
                NA.into(),
                num(m.map(|m| m.cosine)),
                num(m.map(|m| m.rmse * (m.compared as f64).sqrt())),
                num(m.map(|m| m.max_abs_err)),
                num(m.map(|m| m.max_rel_err)),
                num(m.map(|m| m.one_thousandth_err_ratio)),
                num(m.map(|m| m.five_thousandths_err_ratio)),
                num(m.and_then(|m| m.dev_stats.max)),
                num(m.and_then(|m| m.dev_stats.min)),
                num(m.and_then(|m| m.dev_stats.mean)),
                num(m.map(|m| m.dev_stats.norm)),
                num(m.and_then(|m| m.ref_stats.max)),
                num(m.and_then(|m| m.ref_stats.min)),
                num(m.and_then(|m| m.ref_stats.mean)),
                num(m.map(|m| m.ref_stats.norm)),
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
