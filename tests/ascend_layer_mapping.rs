//! msprobe's layer mapping on a MindSpore-vs-PyTorch statistics fixture of the same structure
//! as msprobe's own (`test/msprobe_test/mindspore_ut/compare/dump_file`): our own toy model in
//! `tests/data/msprobe_layer_mapping/` (NPU: MindSpore names, old `stack.json` layout; bench:
//! PyTorch names, current layout), a `layer_mapping.yaml` with the legacy `Cell:` key, dotted
//! and API entries. `msprobe_data_mapping.json` is what mindstudio-probe 26.2.0's
//! `generate_data_mapping_by_layer_mapping` printed for these files: driftscope must pair the
//! same tensors.

use crate::common;
use common::*;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/msprobe_layer_mapping")
}

fn run(cmd: &str, extra: &[&std::ffi::OsStr], json: Option<&Path>) -> Output {
    let mut c = Command::new(bin());
    c.arg(cmd).arg(data().join("bench")).arg(data().join("npu"));
    c.args(extra);
    if let Some(j) = json {
        c.arg("--json").arg(j);
    }
    c.output().unwrap()
}

/// `(device name, reference name)` of every pair, and the unmatched device tensors.
fn pairs(v: &serde_json::Value) -> (BTreeSet<(String, String)>, Vec<String>) {
    let p = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let r = p["name"].as_str().unwrap().to_string();
            let d = p["name_dev"].as_str().map_or(r.clone(), str::to_string);
            (d, r)
        })
        .collect();
    let u = v["unmatched_candidate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    (p, u)
}

fn compare_with(map: &Path) -> (Output, serde_json::Value) {
    let t = tempfile::tempdir().unwrap();
    let j = t.path().join("r.json");
    let o = run(
        "compare",
        &["--layer-mapping".as_ref(), map.as_os_str()],
        Some(&j),
    );
    let v = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    (o, v)
}

#[test]
fn layer_mapping_pairs_the_tensors_msprobe_pairs() {
    let (o, v) = compare_with(&data().join("layer_mapping.yaml"));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (got, unmatched) = pairs(&v);
    // Every device tensor is paired or listed, under its own name.
    let tensors: BTreeSet<&str> = got
        .iter()
        .map(|(d, _)| d.as_str())
        .chain(unmatched.iter().map(String::as_str))
        .collect();
    let msprobe: HashMap<String, String> =
        serde_json::from_slice(&std::fs::read(data().join("msprobe_data_mapping.json")).unwrap())
            .unwrap();
    // msprobe also pairs non-tensor arguments (ints, strings); driftscope compares tensors.
    let want: BTreeSet<(String, String)> = msprobe
        .iter()
        .filter(|(d, r)| *r != "N/A" && tensors.contains(d.as_str()))
        .map(|(d, r)| (d.clone(), r.clone()))
        .collect();
    assert_eq!(msprobe.values().filter(|r| *r != "N/A").count(), 29);
    assert_eq!(want.len(), 26);
    assert_eq!(got, want);
    // What msprobe leaves unpaired stays unpaired, even where a bench tensor has its name
    // (`Tensor.__mul__.0` ran inside a framework `__setitem__`; bench's `__mul__.0` is the
    // device's `__mul__.1`).
    for n in [
        "Tensor.__mul__.0.forward.input.0",
        "Tensor.__eq__.1.forward.output.0",
        "Functional.flash_attention_score.0.forward.input.attn_mask",
        "Cell.trainer.net.encoder.blocks.0.pre_norm.FusedLayerNorm.backward.0.output.0",
    ] {
        assert!(unmatched.iter().any(|u| u == n), "{n} not unmatched");
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn top_layer_and_cell_keys_mean_the_same() {
    let t = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(data().join("layer_mapping.yaml")).unwrap();
    let top = t.path().join("top.yaml");
    std::fs::write(&top, text.replace("Cell:", "TopLayer:")).unwrap();
    let (_, a) = compare_with(&data().join("layer_mapping.yaml"));
    let (_, b) = compare_with(&top);
    assert_eq!(pairs(&a), pairs(&b));
    assert_eq!(pairs(&a).0.len(), 26);
}

#[test]
fn mappings_that_pair_nothing_warn_and_fail_check() {
    let t = tempfile::tempdir().unwrap();
    let map = t.path().join("m.yaml");
    std::fs::write(&map, "Nothing:\n  here: there\nBlock:\n  attn: self_attn\n").unwrap();
    let (o, _) = compare_with(&map);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: --layer-mapping: 1 of 2 rules matched no device place: Nothing: here"
        ),
        "{stderr}"
    );
    let dm = t.path().join("d.yaml");
    std::fs::write(
        &dm,
        "Functional.nothing.0.forward: Functional.else.0.forward\n",
    )
    .unwrap();
    let o = run(
        "compare",
        &["--data-mapping".as_ref(), dm.as_os_str()],
        None,
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("--data-mapping: 1 of 1 keys match no device tensor or place"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--data-mapping pairs no tensor"),
        "{stderr}"
    );
    let o = run("check", &["--data-mapping".as_ref(), dm.as_os_str()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("match no device tensor"));
}

#[test]
fn keyword_arguments_are_inputs_as_msprobe_names_them() {
    // A statistics dump names a keyword argument `input.<key>`, so msprobe's data mapping keys
    // pair; the role is still `kwargs`.
    let t = tempfile::tempdir().unwrap();
    let dm = t.path().join("d.yaml");
    std::fs::write(
        &dm,
        "Functional.flash_attention_score.0.forward.input.attn_mask: \
         NPU.npu_fusion_attention.0.forward.input.atten_mask\n",
    )
    .unwrap();
    let j = t.path().join("r.json");
    let o = run(
        "compare",
        &["--data-mapping".as_ref(), dm.as_os_str()],
        Some(&j),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    let p = v["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "NPU.npu_fusion_attention.0.forward.input.atten_mask")
        .expect("attn_mask paired");
    assert_eq!(
        p["name_dev"],
        "Functional.flash_attention_score.0.forward.input.attn_mask"
    );
    assert_eq!(p["role"], "kwargs");
    assert_eq!(p["matched_by"], "mapped");
}

#[test]
fn report_takes_the_mapping_options() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("report");
    let o = Command::new(bin())
        .arg("report")
        .arg(data().join("bench"))
        .arg(data().join("npu"))
        .arg("--layer-mapping")
        .arg(data().join("layer_mapping.yaml"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("paired by mapping files"), "{stderr}");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    // The mapped pair is in the report under the bench name, with the device's own name.
    assert!(html.contains("Torch.sin.0.forward.output.0"));
    assert!(html.contains("Mint.sin.0.forward.output.0"));
}
