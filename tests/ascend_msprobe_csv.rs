//! `--msprobe-csv`: msprobe's compare_result columns, on the real fault dump.

mod common;
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
