//! `--msprobe-csv`: msprobe's compare_result columns, on the real fault dump.

use crate::common;
use common::*;
use std::process::Command;

/// Splits CSV text into rows of fields (RFC 4180 quoting).
fn parse(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

#[test]
fn msprobe_csv_has_msprobes_columns_and_names_only_the_fault_no() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("compare_result.csv");
    let o = Command::new(bin())
        .arg("compare")
        .arg(llama("cpu_fp32"))
        .arg(llama("cuda_fp16_fault_silu_l1"))
        .arg("--msprobe-csv")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let rows = parse(&std::fs::read_to_string(&out).unwrap());
    // msprobe CompareConst.COMPARE_RESULT_HEADER (tensor mode) + Data_name.
    let want = "NPU Name,Bench Name,NPU Dtype,Bench Dtype,NPU Tensor Shape,Bench Tensor Shape,\
                NPU Requires_grad,Bench Requires_grad,Cosine,EucDist,MaxAbsErr,MaxRelativeErr,\
                One Thousandth Err Ratio,Five Thousandths Err Ratio,NPU max,NPU min,NPU mean,\
                NPU l2norm,Bench max,Bench min,Bench mean,Bench l2norm,Requires_grad Consistent,\
                Accuracy Reached or Not,Err_message,Data_name";
    assert_eq!(rows[0].join(","), want);
    assert_eq!(rows.len(), 1 + 415);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let col = |n: &str| rows[0].iter().position(|h| h == n).unwrap();
    let (acc, name) = (col("Accuracy Reached or Not"), col("NPU Name"));
    let silu = rows
        .iter()
        .find(|r| r[name] == "Functional.silu.1.forward.output.0")
        .unwrap();
    assert_eq!(silu[acc], "No");
    assert!(silu[col("Err_message")].contains("driftscope: diverged"));
    let no = rows.iter().filter(|r| r[acc] == "No").count();
    assert!(no <= 5, "{no} rows marked No");
    // fp16 vs fp32 alone is not an error.
    let emb = rows
        .iter()
        .find(|r| r[name] == "Functional.embedding.0.forward.output.0")
        .unwrap();
    assert_eq!(
        (
            emb[col("NPU Dtype")].as_str(),
            emb[col("Bench Dtype")].as_str(),
            emb[acc].as_str()
        ),
        ("float16", "float32", "Yes")
    );
    let cos: f64 = emb[col("Cosine")].parse().unwrap();
    assert!(cos > 0.9999);
    let euc: f64 = silu[col("EucDist")].parse().unwrap();
    assert!(euc > 0.0);
}

/// A float32 `.npy` of `values` (shape `[len]`).
fn npy_f32(path: &std::path::Path, values: &[f32]) {
    let mut h = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    while (h.len() + 11) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, out).unwrap();
}

/// The CSV rows of `compare REF DEV --msprobe-csv`, by NPU Name, and the header.
fn csv_of(r: &std::path::Path, d: &std::path::Path, extra: &[&str]) -> Vec<Vec<String>> {
    let out = r.parent().unwrap().join("out.csv");
    let o = Command::new(bin())
        .arg("compare")
        .arg(r)
        .arg(d)
        .args(extra)
        .arg("--msprobe-csv")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.code().is_some_and(|c| c < 2), "{o:?}");
    parse(&std::fs::read_to_string(&out).unwrap())
}

fn cell<'a>(rows: &'a [Vec<String>], name: &str, col: &str) -> &'a str {
    let c = rows[0].iter().position(|h| h == col).unwrap();
    let r = rows.iter().find(|r| r[0] == name).unwrap();
    &r[c]
}

#[test]
fn msprobe_csv_numbers_follow_msprobes_definitions() {
    // Expected values: mindstudio-probe 26.2.0's `npy_compare.compare_ops_apply` (after its
    // `npy_data_check`) on the same arrays.
    let t = tempfile::tempdir().unwrap();
    let (r, d) = (t.path().join("ref"), t.path().join("dev"));
    std::fs::create_dir_all(&r).unwrap();
    std::fs::create_dir_all(&d).unwrap();
    npy_f32(&r.join("zeros.npy"), &[0.0; 4]);
    npy_f32(&d.join("zeros.npy"), &[0.0, 1e-3, -2e-3, 0.0]);
    npy_f32(&r.join("nan.npy"), &[1.0, 2.0, 3.0, 4.0]);
    npy_f32(&d.join("nan.npy"), &[1.0, f32::NAN, 3.0, 4.0]);
    npy_f32(&r.join("some_zero.npy"), &[1.0, 2.0, 0.0, 4.0]);
    npy_f32(&d.join("some_zero.npy"), &[1.5, 2.0, 0.25, 4.0]);
    let rows = csv_of(&r, &d, &[]);
    let f = |n: &str, c: &str| -> f64 { cell(&rows, n, c).parse().unwrap() };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-300);
    // An all-zero reference: msprobe divides by float32's epsilon.
    assert!(close(f("zeros", "MaxRelativeErr"), 16777.216796875));
    assert!(close(f("zeros", "MaxAbsErr"), 0.002000000095));
    assert!(close(f("zeros", "EucDist"), 0.0022360680837073196));
    // Zeros among non-zeros: the zero's |dev| / eps, not the largest absolute error's.
    assert!(close(f("some_zero", "MaxRelativeErr"), 2097152.0));
    assert!(close(f("some_zero", "MaxAbsErr"), 0.5));
    assert!(close(f("some_zero", "EucDist"), 0.5590169943749475));
    assert!(close(f("some_zero", "Cosine"), 0.993241131101));
    // NaN on one side only: msprobe computes nothing; the message says what happened.
    for c in [
        "Cosine",
        "EucDist",
        "MaxAbsErr",
        "MaxRelativeErr",
        "One Thousandth Err Ratio",
        "Five Thousandths Err Ratio",
    ] {
        assert_eq!(cell(&rows, "nan", c), "N/A", "{c}");
    }
    let msg = cell(&rows, "nan", "Err_message");
    assert!(
        msg.contains("NaN/Inf on one side only at 1 of 4 elements (first at flat index 1")
            && msg.contains("the position of inf or nan in NPU and bench Tensor do not match"),
        "{msg}"
    );
    assert_eq!(cell(&rows, "nan", "NPU max"), "nan");
    assert_eq!(cell(&rows, "nan", "Bench max"), "4");
}

#[test]
fn msprobe_csv_of_statistics_dumps_shows_the_recorded_statistics() {
    // The statistics fixture of tests/ascend_layer_mapping.rs.
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/msprobe_layer_mapping");
    let t = tempfile::tempdir().unwrap();
    let (r, d) = (t.path().join("bench"), t.path().join("npu"));
    for (from, to) in [("bench", &r), ("npu", &d)] {
        std::fs::create_dir_all(to).unwrap();
        for f in ["dump.json", "construct.json", "stack.json"] {
            std::fs::copy(data.join(from).join(f), to.join(f)).unwrap();
        }
    }
    // Give the device's Torch.sin output different statistics.
    let path = d.join("dump.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let out = &mut v["data"]["Mint.sin.0.forward"]["output"][0];
    out["Max"] = 1.25.into();
    out["Min"] = (-3.0).into();
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let map = data.join("layer_mapping.yaml");
    let rows = csv_of(&r, &d, &["--layer-mapping", map.to_str().unwrap()]);
    let n = "Mint.sin.0.forward.output.0";
    assert_eq!(cell(&rows, n, "Bench Name"), "Torch.sin.0.forward.output.0");
    assert_eq!(cell(&rows, n, "NPU max"), "1.25");
    assert_eq!(cell(&rows, n, "NPU min"), "-3");
    assert_eq!(cell(&rows, n, "Bench max"), "1");
    assert_eq!(cell(&rows, n, "Bench l2norm"), "2");
    // |Δmax| = 0.25, |Δmin| = 2: the larger.
    assert_eq!(cell(&rows, n, "MaxAbsErr"), "2");
    assert_eq!(cell(&rows, n, "Cosine"), "N/A");
}
