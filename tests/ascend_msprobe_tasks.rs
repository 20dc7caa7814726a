//! msprobe task variants seen in msprobe's own tests and docs: a statistics task whose records
//! carry `data_name`, and the debug task's `debug.json` (`msprobe.save`).

use crate::common;
use common::*;
use std::path::Path;
use std::process::Command;

fn stats(max: f64) -> serde_json::Value {
    serde_json::json!({"type": "torch.Tensor", "dtype": "torch.float32", "shape": [4],
        "Max": max, "Min": -1.0, "Mean": 0.5, "Norm": 2.0, "requires_grad": false})
}

fn write(dir: &Path, file: &str, v: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn compare(r: &Path, d: &Path, out: &Path) -> (i32, serde_json::Value, String) {
    let j = out.join("r.json");
    let o = Command::new(bin())
        .arg("compare")
        .arg(r)
        .arg(d)
        .arg("--json")
        .arg(&j)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let v = std::fs::read(&j)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_default();
    (o.status.code().unwrap_or(-1), v, stderr)
}

#[test]
fn a_statistics_task_with_data_names_compares_statistics() {
    let t = tempfile::tempdir().unwrap();
    for (side, max) in [("ref", 1.0), ("dev", 1.5)] {
        let mut rec = stats(max);
        rec["data_name"] = "Functional.relu.0.forward.output.0.pt".into();
        write(
            &t.path().join(side),
            "dump.json",
            serde_json::json!({"task": "statistics", "level": "L1", "framework": "pytorch",
                "dump_data_dir": null,
                "data": {"Functional.relu.0.forward": {"input_args": [], "input_kwargs": {},
                    "output": [rec]}}}),
        );
    }
    let (code, v, err) = compare(&t.path().join("ref"), &t.path().join("dev"), t.path());
    assert!(code < 2, "{err}");
    let p = &v["pairs"][0];
    assert_eq!(p["name"], "Functional.relu.0.forward.output.0");
    assert_eq!(p["status"], "statistics");
    assert_eq!(p["stats_diff"]["max_diff"], 0.5);
}

#[test]
fn debug_json_is_found_without_format() {
    let t = tempfile::tempdir().unwrap();
    for (side, max) in [("ref", 1.0), ("dev", 1.0)] {
        write(
            &t.path().join(side),
            "debug.json",
            serde_json::json!({"task": "statistics", "level": "debug", "framework": "pytorch",
                "dump_data_dir": null,
                "data": {"x_tensor.0.debug": stats(max),
                         "state.0.debug": {"h": stats(max), "c": [stats(max), {"type": "int", "value": 3}]}}}),
        );
    }
    // The folder, and the file itself.
    for (r, d) in [
        (t.path().join("ref"), t.path().join("dev")),
        (
            t.path().join("ref/debug.json"),
            t.path().join("dev/debug.json"),
        ),
    ] {
        let (code, v, err) = compare(&r, &d, t.path());
        assert_eq!(code, 0, "{err}");
        let names: Vec<&str> = v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["x_tensor.0.debug", "state.0.debug.h", "state.0.debug.c.0"]
        );
        assert_eq!(v["pairs"][0]["role"], "debug");
    }
}

#[test]
fn report_plots_every_place_of_a_statistics_dump() {
    let t = tempfile::tempdir().unwrap();
    let places = 40;
    for (side, k) in [("ref", 0.0), ("dev", 1e-3)] {
        let data: serde_json::Map<String, serde_json::Value> = (0..places)
            .map(|i| {
                let mut s = stats(1.0 + i as f64 * k);
                s["Norm"] = (2.0 + i as f64 * k).into();
                (
                    format!("Functional.relu.{i}.forward"),
                    serde_json::json!({"input_args": [], "input_kwargs": {}, "output": [s]}),
                )
            })
            .collect();
        write(
            &t.path().join(side),
            "dump.json",
            serde_json::json!({"task": "statistics", "level": "L1", "framework": "pytorch",
                "dump_data_dir": null, "data": data}),
        );
    }
    let out = t.path().join("report");
    let o = Command::new(bin())
        .arg("report")
        .arg(t.path().join("ref"))
        .arg(t.path().join("dev"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.code().is_some_and(|c| c < 2), "{o:?}");
    let svg = std::fs::read_to_string(out.join("drift.svg")).unwrap();
    // The longest line drawn has a vertex per place.
    let longest = svg
        .split("<polyline")
        .skip(1)
        .filter_map(|l| l.split("points=\"").nth(1)?.split('"').next())
        .map(|p| p.split_whitespace().count())
        .max()
        .unwrap_or(0);
    assert!(longest >= places, "{longest} vertices");
}
