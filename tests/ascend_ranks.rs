//! Multi-rank msprobe runs built from the real llama dumps: each `rankN` folder is a copy of a
//! real run (rank 1 of the candidate is the SiLU fault run), plus a communication op.

use crate::common;
use common::*;
use std::path::Path;
use std::process::Command;

/// Appends `Distributed.all_reduce.0.forward` (input and output: copies of the last linear's
/// output) to a rank folder's dump.json, as msprobe records a communication op.
fn add_all_reduce(rank_dir: &Path) {
    let data = rank_dir.join("dump_tensor_data");
    let src = data.join("Functional.linear.28.forward.output.0.pt");
    for role in ["input", "output"] {
        std::fs::copy(
            &src,
            data.join(format!("Distributed.all_reduce.0.forward.{role}.0.pt")),
        )
        .unwrap();
    }
    let p = rank_dir.join("dump.json");
    let mut v = driftscope::dump::msprobe::parse_json(&std::fs::read(&p).unwrap()).unwrap();
    let mut rec = v["data"]["Functional.linear.28.forward"]["output"][0].clone();
    rec["data_name"] = "Distributed.all_reduce.0.forward.input.0.pt".into();
    let mut out = rec.clone();
    out["data_name"] = "Distributed.all_reduce.0.forward.output.0.pt".into();
    v["data"]["Distributed.all_reduce.0.forward"] = serde_json::json!({
        "input_args": [rec],
        "input_kwargs": {"op": {"type": "str", "value": "sum"}},
        "output": [out],
    });
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// reference: ranks 0, 1, 2 (cpu_fp32); candidate: rank 0 clean fp16, rank 1 the fault run,
/// rank 3 (no counterpart).
fn fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (side, rank, run) in [
        ("ref", 0, "cpu_fp32"),
        ("ref", 1, "cpu_fp32"),
        ("ref", 2, "cpu_fp32"),
        ("dev", 0, "cuda_fp16"),
        ("dev", 1, "cuda_fp16_fault_silu_l1"),
        ("dev", 3, "cuda_fp16"),
    ] {
        let d = t.path().join(format!("{side}/step0/rank{rank}"));
        copy_dir(&proc_dir(run), &d);
        add_all_reduce(&d);
    }
    t
}

fn run(args: &[&Path]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn ranks_are_paired_by_id_and_the_faulty_rank_is_named() {
    let t = fixture();
    let j = t.path().join("out/compare.json");
    let csv = t.path().join("out/compare.csv");
    let (code, out, err) = run(&[
        Path::new("compare"),
        &t.path().join("ref"),
        &t.path().join("dev"),
        Path::new("--json"),
        &j,
        Path::new("--csv"),
        &csv,
    ]);
    // A rank missing on one side is an incomplete comparison: exit 2, but reported.
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ranks missing in the reference: [3], in the candidate: [2]"));
    assert!(
        out.contains("== rank 0 ==") && out.contains("== rank 1 =="),
        "{out}"
    );
    assert!(
        out.contains("first: rank(s) 1 at Functional.silu.1.forward"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    let ranks = v["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    assert_eq!(ranks[0]["rank"], 0);
    assert_eq!(ranks[1]["rank"], 1);
    assert_eq!(v["missing_ranks_reference"], serde_json::json!([3]));
    assert_eq!(v["missing_ranks_candidate"], serde_json::json!([2]));
    assert_eq!(v["summary"]["first_ranks"], serde_json::json!([1]));
    assert_eq!(v["summary"]["clean"], serde_json::json!([0]));
    assert_eq!(ranks[0]["report"]["analysis"]["overall"], "within_noise");
    assert_eq!(
        ranks[1]["report"]["analysis"]["first_divergence"]["name"],
        "Functional.silu.1.forward"
    );
    // The communication op is compared like any other op.
    let ar = ranks[0]["report"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Distributed.all_reduce.0.forward.output.0")
        .expect("all_reduce output paired");
    assert_eq!(ar["status"], "compared");
    assert_eq!(ar["op_type"], "all_reduce");
    // One CSV per rank.
    for k in [0, 1] {
        let c = std::fs::read_to_string(t.path().join(format!("out/compare.rank{k}.csv"))).unwrap();
        assert!(c.starts_with("NPU Name,"));
    }
}

#[test]
fn bisect_on_rank_roots_reports_each_ranks_first_divergence() {
    let t = fixture();
    // Same rank set on both sides: drop the unpaired ranks.
    std::fs::remove_dir_all(t.path().join("ref/step0/rank2")).unwrap();
    std::fs::remove_dir_all(t.path().join("dev/step0/rank3")).unwrap();
    let j = t.path().join("bisect.json");
    let (code, out, err) = run(&[
        Path::new("bisect"),
        &t.path().join("ref/step0"),
        &t.path().join("dev"),
        Path::new("--json"),
        &j,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("first divergence: Functional.silu.1.forward"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    let ranks = v["ranks"].as_array().unwrap();
    assert!(ranks[0]["report"]["analysis"]["first_divergence"].is_null());
    assert_eq!(
        ranks[1]["report"]["analysis"]["first_divergence"]["tensor"],
        "Functional.silu.1.forward.output.0"
    );
    assert_eq!(v["missing_ranks_reference"], serde_json::json!([]));
    assert_eq!(v["summary"]["diverged"][0]["rank"], 1);
}

#[test]
fn a_rank_root_against_a_single_dump_is_refused_and_ambiguous_layouts_keep_their_error() {
    let t = fixture();
    let (code, _, err) = run(&[
        Path::new("compare"),
        &t.path().join("ref"),
        &llama("cuda_fp16"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a multi-rank dump"), "{err}");
    // Two steps of one rank: not a rank layout; the library names the ambiguity.
    let s = tempfile::tempdir().unwrap();
    copy_dir(&proc_dir("cpu_fp32"), &s.path().join("step0/rank0"));
    copy_dir(&proc_dir("cpu_fp32"), &s.path().join("step1/rank0"));
    let e = driftscope::dump::Dump::open(s.path(), &Default::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("2 dump.json files below this folder"),
        "{e}"
    );
}
