//! Graph-mode fusion: the device run's `linear` + `silu` replaced by one fused op (built from
//! the real llama fp16 dump); `--fusion-map` compares it at the fused boundary and reports the
//! covered reference tensors as fused.

use crate::common;
use common::*;
use std::path::Path;
use std::process::Command;

const FUSED: &str = "NPU.npu_linear_silu.0.forward";

fn fused_run(to: &Path) {
    let from = std::fs::read_dir(llama("cuda_fp16").join("step0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("dump.json").is_file())
        .unwrap();
    let data = to.join("dump_tensor_data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(from.join("dump_tensor_data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    let v = driftscope::dump::msprobe::parse_json(&std::fs::read(from.join("dump.json")).unwrap())
        .unwrap();
    let mut out = v.clone();
    let mut map = serde_json::Map::new();
    for (k, rec) in v["data"].as_object().unwrap() {
        match k.as_str() {
            "Functional.linear.4.forward" => {
                let mut f = serde_json::json!({"input_args": rec["input_args"].clone(),
                    "input_kwargs": {}, "output": v["data"]["Functional.silu.0.forward"]["output"].clone()});
                for (role, i, src) in [
                    ("input_args", 0, "Functional.linear.4.forward.input.0.pt"),
                    ("input_args", 1, "Functional.linear.4.forward.input.1.pt"),
                    ("output", 0, "Functional.silu.0.forward.output.0.pt"),
                ] {
                    let io = if role == "output" { "output" } else { "input" };
                    let name = format!("{FUSED}.{io}.{i}.pt");
                    std::fs::copy(data.join(src), data.join(&name)).unwrap();
                    f[role][i]["data_name"] = name.into();
                }
                map.insert(FUSED.into(), f);
            }
            "Functional.silu.0.forward" => {}
            _ => {
                map.insert(k.clone(), rec.clone());
            }
        }
    }
    out["data"] = serde_json::Value::Object(map);
    std::fs::write(to.join("dump.json"), serde_json::to_vec(&out).unwrap()).unwrap();
}

fn compare(dev: &Path, json: &Path, extra: &[&str]) -> serde_json::Value {
    let o = Command::new(bin())
        .arg("compare")
        .arg(llama("cpu_fp32"))
        .arg(dev)
        .arg("--json")
        .arg(json)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn fused_op_is_compared_at_its_boundary_and_covered_tensors_are_fused() {
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("dev");
    fused_run(&dev);
    let j = t.path().join("r.json");
    let v = compare(&dev, &j, &[]);
    assert!(v["unmatched_reference"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "Functional.silu.0.forward.output.0"));
    let map = t.path().join("fusion.yaml");
    std::fs::write(
        &map,
        format!("{FUSED}: Functional.linear.4.forward, Functional.silu.0.forward\n"),
    )
    .unwrap();
    let v = compare(&dev, &j, &["--fusion-map", map.to_str().unwrap()]);
    assert_eq!(v["unmatched_reference"], serde_json::json!([]));
    assert_eq!(v["unmatched_candidate"], serde_json::json!([]));
    assert_eq!(
        v["fused_reference"],
        serde_json::json!([
            "Functional.linear.4.forward.output.0",
            "Functional.silu.0.forward.input.0"
        ])
    );
    let pairs = v["pairs"].as_array().unwrap();
    let out = pairs
        .iter()
        .find(|p| p["name"] == "Functional.silu.0.forward.output.0")
        .unwrap();
    assert_eq!(out["status"], "compared");
    assert_ne!(out["verdict"], "diverged");
    assert!(pairs
        .iter()
        .any(|p| p["name"] == "Functional.linear.4.forward.input.1"));
    assert_eq!(v["analysis"]["overall"], "within_noise");
    // check's JSON is the same report: the fused tensors are in it too.
    let jc = t.path().join("check.json");
    let o = Command::new(bin())
        .arg("check")
        .arg(llama("cpu_fp32"))
        .arg(&dev)
        .args([
            "--fusion-map",
            map.to_str().unwrap(),
            "--json",
            jc.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let vc: serde_json::Value = serde_json::from_slice(&std::fs::read(&jc).unwrap()).unwrap();
    assert_eq!(vc["fused_reference"], v["fused_reference"]);
}
