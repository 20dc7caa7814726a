//! Backward-pass entries (`.backward` places, `parameters_grad`) are read, paired and compared
//! like forward ones, in execution order: built from the real llama dumps by appending a SiLU
//! backward call and a Linear weight gradient, as msprobe records them.

use crate::common;
use common::*;
use std::path::Path;

fn copy_with_backward(run: &str, to: &Path) {
    let from = proc_dir(run);
    let data = to.join("dump_tensor_data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(from.join("dump_tensor_data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    let mut v =
        driftscope::dump::msprobe::parse_json(&std::fs::read(from.join("dump.json")).unwrap())
            .unwrap();
    let rec = |src_place: &str, key: &str, i: usize, file: &str| {
        let mut r = v["data"][src_place][key][i].clone();
        let src = r["data_name"].as_str().unwrap().to_string();
        std::fs::copy(data.join(&src), data.join(file)).unwrap();
        r["data_name"] = file.into();
        r
    };
    let grad_out = rec(
        "Functional.silu.1.forward",
        "output",
        0,
        "Functional.silu.1.backward.input.0.pt",
    );
    let grad_in = rec(
        "Functional.silu.1.forward",
        "input_args",
        0,
        "Functional.silu.1.backward.output.0.pt",
    );
    let wgrad = rec(
        "Functional.linear.28.forward",
        "input_args",
        1,
        "Module.lm_head.Linear.parameters_grad.weight.pt",
    );
    v["data"]["Functional.silu.1.backward"] =
        serde_json::json!({"input": [grad_out], "output": [grad_in]});
    v["data"]["Module.lm_head.Linear.parameters_grad"] = serde_json::json!({ "weight": wgrad });
    std::fs::write(to.join("dump.json"), serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn backward_and_parameter_gradients_are_compared_in_order() {
    let t = tempfile::tempdir().unwrap();
    copy_with_backward("cpu_fp32", &t.path().join("ref"));
    copy_with_backward("cuda_fp16_fault_silu_l1", &t.path().join("dev"));
    let r = open(&t.path().join("ref"));
    let d = open(&t.path().join("dev"));
    let c = driftscope::compare::compare(&r, &d, &Default::default(), &|| {});
    assert!(c.unmatched_reference.is_empty() && c.unmatched_candidate.is_empty());
    let find = |n: &str| {
        c.pairs
            .iter()
            .find(|p| &*p.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let bw = find("Functional.silu.1.backward.output.0");
    let wg = find("Module.lm_head.Linear.parameters_grad.weight");
    assert_eq!(bw.op_type.as_deref(), Some("silu"));
    assert_eq!(bw.role, driftscope::dump::Role::Output);
    assert_eq!(wg.op_type.as_deref(), Some("Linear"));
    assert_eq!(wg.role, driftscope::dump::Role::ParametersGrad);
    for p in [bw, wg] {
        assert_eq!(
            p.status,
            driftscope::compare::Status::Compared,
            "{}",
            p.name
        );
    }
    // Execution order is kept: the backward places come after every forward place.
    let last_forward = c
        .pairs
        .iter()
        .filter(|p| p.place.ends_with(".forward"))
        .map(|p| p.order)
        .max()
        .unwrap();
    assert!(bw.order > last_forward && wg.order > bw.order);
    // The backward of the faulty SiLU carries the fault's error (its grad input is the
    // forward input, its grad output the faulty forward output).
    assert!(
        find("Functional.silu.1.backward.input.0")
            .metrics
            .as_ref()
            .unwrap()
            .rel_l2_err
            > 1e-2
    );
}
