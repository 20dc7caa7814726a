//! msprobe mapping files and fuzzy matching on the real llama dumps: the device run's SiLU
//! calls are renumbered (as a framework with different call counters would record them).

use crate::common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of the fault run with `Functional.silu.N` renamed `Functional.silu.{N+10}`.
fn renumbered(dir: &Path) -> PathBuf {
    let step = llama("cuda_fp16_fault_silu_l1").join("step0");
    let src = std::fs::read_dir(&step)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("dump.json").is_file())
        .unwrap();
    let dst = dir.join("dev");
    let data = dst.join("dump_tensor_data");
    std::fs::create_dir_all(&data).unwrap();
    let rename = |s: &str| -> String {
        match s.strip_prefix("Functional.silu.") {
            Some(rest) => {
                let (n, tail) = rest.split_once('.').unwrap();
                format!("Functional.silu.{}.{tail}", n.parse::<u32>().unwrap() + 10)
            }
            None => s.to_string(),
        }
    };
    for e in std::fs::read_dir(src.join("dump_tensor_data")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        std::fs::copy(e.path(), data.join(rename(&name))).unwrap();
    }
    let text = std::fs::read_to_string(src.join("dump.json")).unwrap();
    let re = regex::Regex::new(r"Functional\.silu\.(\d+)\.").unwrap();
    let text = re.replace_all(&text, |c: &regex::Captures| {
        format!("Functional.silu.{}.", c[1].parse::<u32>().unwrap() + 10)
    });
    std::fs::write(dst.join("dump.json"), text.as_bytes()).unwrap();
    dst
}

fn compare(dev: &Path, json: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let o = Command::new(bin())
        .arg("compare")
        .arg(llama("cpu_fp32"))
        .arg(dev)
        .arg("--json")
        .arg(json)
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (
        o.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn fuzzy_match_pairs_renumbered_calls_and_finds_the_fault() {
    let t = tempfile::tempdir().unwrap();
    let dev = renumbered(t.path());
    let j = t.path().join("r.json");
    // Without --fuzzy, aligning the call streams pairs the renumbered calls too
    // (tests/structure_real.rs); --fuzzy names them so.
    let (_, v, _) = compare(&dev, &j, &[]);
    assert_eq!(v["unmatched_reference"].as_array().unwrap().len(), 0);
    assert_eq!(
        v["analysis"]["first_divergence"]["name"],
        "Functional.silu.1.forward"
    );
    let silu = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Functional.silu.1.forward.output.0")
        .unwrap();
    assert_eq!(silu["matched_by"], "structural");
    let (code, v, err) = compare(&dev, &j, &["--fuzzy"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("by --fuzzy"), "{err}");
    assert_eq!(v["unmatched_reference"].as_array().unwrap().len(), 0);
    assert_eq!(v["unmatched_candidate"].as_array().unwrap().len(), 0);
    assert_eq!(v["pairs"].as_array().unwrap().len(), 415);
    assert_eq!(
        v["analysis"]["first_divergence"]["name"],
        "Functional.silu.1.forward"
    );
    // The renumbered pairs say how they were paired and what the device called them.
    let pair = |name: &str| {
        v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let silu = pair("Functional.silu.1.forward.output.0");
    assert_eq!(silu["matched_by"], "fuzzy");
    assert_eq!(silu["name_dev"], "Functional.silu.11.forward.output.0");
    let linear = pair("Functional.linear.0.forward.output.0");
    assert_eq!(linear["matched_by"], "exact");
    assert!(linear.get("name_dev").is_none());
}

#[test]
fn data_mapping_yaml_pairs_named_places() {
    let t = tempfile::tempdir().unwrap();
    let dev = renumbered(t.path());
    let map = t.path().join("data_mapping.yaml");
    std::fs::write(
        &map,
        "# NPU name: bench name\n\
         Functional.silu.10.forward: Functional.silu.0.forward\n\
         Functional.silu.11.forward.output.0: \"Functional.silu.1.forward.output.0\"\n",
    )
    .unwrap();
    let j = t.path().join("r.json");
    let (code, v, err) = compare(&dev, &j, &["--data-mapping", map.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("3 paired by mapping files"), "{err}");
    let names: Vec<&str> = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in [
        "Functional.silu.0.forward.input.0",
        "Functional.silu.0.forward.output.0",
        "Functional.silu.1.forward.output.0",
    ] {
        assert!(names.contains(&n), "{n} not paired");
    }
    let mapped: Vec<(&str, &str)> = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["matched_by"] == "mapped")
        .map(|p| (p["name"].as_str().unwrap(), p["name_dev"].as_str().unwrap()))
        .collect();
    assert_eq!(
        mapped,
        [
            (
                "Functional.silu.0.forward.input.0",
                "Functional.silu.10.forward.input.0"
            ),
            (
                "Functional.silu.0.forward.output.0",
                "Functional.silu.10.forward.output.0"
            ),
            (
                "Functional.silu.1.forward.output.0",
                "Functional.silu.11.forward.output.0"
            ),
        ]
    );
    // The CSV's NPU Name column is the device's own name.
    let csv = t.path().join("r.csv");
    let o = Command::new(bin())
        .arg("compare")
        .arg(llama("cpu_fp32"))
        .arg(&dev)
        .args(["--data-mapping", map.to_str().unwrap(), "--csv"])
        .arg(&csv)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.lines().any(|l| l
        .starts_with("Functional.silu.11.forward.output.0,Functional.silu.1.forward.output.0,")));
    // silu.1's input was not mapped: aligning the call streams pairs it.
    let input = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Functional.silu.1.forward.input.0")
        .unwrap();
    assert_eq!(input["matched_by"], "structural");
    assert_eq!(input["name_dev"], "Functional.silu.11.forward.input.0");
    assert_eq!(v["unmatched_reference"].as_array().unwrap().len(), 0);
    // A malformed mapping file is an input error.
    std::fs::write(&map, "a:\n  - b\n").unwrap();
    let o = Command::new(bin())
        .arg("compare")
        .arg(llama("cpu_fp32"))
        .arg(&dev)
        .arg("--data-mapping")
        .arg(&map)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2"));
}
