//! CSV: one row per pair, with msprobe's column names where the meaning is the same.

use super::{fmt_f, Exporter};
use crate::compare::Comparison;

/// CSV export.
pub struct Csv;

const HEADER: &[&str] = &[
    "NPU Name",
    "Bench Name",
    "Place",
    "Role",
    "Index",
    "NPU Dtype",
    "Bench Dtype",
    "NPU Tensor Shape",
    "Bench Tensor Shape",
    "Cosine",
    "1-Cosine",
    "MaxAbsErr",
    "MaxRelativeErr",
    "RelL2Err",
    "MeanRelErr",
    "RMSE",
    "SNR(dB)",
    "One Thousandth Err Ratio",
    "Five Thousandths Err Ratio",
    "AllcloseFail",
    "NaN NPU",
    "NaN Bench",
    "Inf NPU",
    "Inf Bench",
    "Masked",
    "NonfiniteMismatch",
    "NPU max",
    "NPU min",
    "NPU mean",
    "NPU l2norm",
    "Bench max",
    "Bench min",
    "Bench mean",
    "Bench l2norm",
    "Status",
    "Verdict",
    "Err_message",
];

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn shape(s: &Option<std::sync::Arc<[usize]>>) -> String {
    s.as_ref().map(|s| format!("{s:?}")).unwrap_or_default()
}

impl Exporter for Csv {
    fn serialize(&self, c: &Comparison) -> anyhow::Result<Vec<u8>> {
        let mut out = HEADER.join(",");
        out.push('\n');
        for p in &c.pairs {
            let o = |x: Option<f64>| x.map(fmt_f).unwrap_or_default();
            let m = p.metrics.as_ref();
            let mut row: Vec<String> = vec![
                p.name_dev.as_deref().unwrap_or(&p.name).to_string(),
                p.name.to_string(),
                p.place.to_string(),
                p.role.to_string(),
                p.index.to_string(),
                p.dtype_dev
                    .map(|d| d.name().to_string())
                    .unwrap_or_default(),
                p.dtype_ref
                    .map(|d| d.name().to_string())
                    .unwrap_or_default(),
                shape(&p.shape_dev),
                shape(&p.shape_ref),
            ];
            row.extend(
                [
                    m.map(|m| m.cosine),
                    m.map(|m| m.one_minus_cosine),
                    m.map(|m| m.max_abs_err),
                    m.map(|m| m.max_rel_err),
                    m.map(|m| m.rel_l2_err),
                    m.map(|m| m.mean_rel_err),
                    m.map(|m| m.rmse),
                    m.map(|m| m.snr_db),
                    m.map(|m| m.one_thousandth_err_ratio),
                    m.map(|m| m.five_thousandths_err_ratio),
                ]
                .into_iter()
                .map(o),
            );
            row.extend(
                [
                    m.map(|m| m.allclose_fail),
                    m.map(|m| m.nan_dev),
                    m.map(|m| m.nan_ref),
                    m.map(|m| m.inf_dev),
                    m.map(|m| m.inf_ref),
                    m.map(|m| m.masked),
                    m.map(|m| m.nonfinite_mismatch),
                ]
                .into_iter()
                .map(|x| x.map(|x| x.to_string()).unwrap_or_default()),
            );
            row.extend(
                [
                    m.and_then(|m| m.dev_stats.max),
                    m.and_then(|m| m.dev_stats.min),
                    m.and_then(|m| m.dev_stats.mean),
                    m.map(|m| m.dev_stats.norm),
                    m.and_then(|m| m.ref_stats.max),
                    m.and_then(|m| m.ref_stats.min),
                    m.and_then(|m| m.ref_stats.mean),
                    m.map(|m| m.ref_stats.norm),
                ]
                .into_iter()
                .map(o),
            );
            row.push(
                serde_json::to_value(p.status)?
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
            row.push(p.verdict.map(|v| v.name().to_string()).unwrap_or_default());
            row.push(p.error.clone().unwrap_or_default());
            out.push_str(&row.iter().map(|s| quote(s)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        Ok(out.into_bytes())
    }
}
