//! msprobe statistics and md5 tasks (made from the real dump.json by dropping the tensor
//! files), and the native layout written by hand as the harness writes it.

use crate::common;
use common::*;
use driftscope::compare::{compare, CompareOptions, Status};
use driftscope::comparison::Comparison;
use driftscope::dump::{Format, Task};
use driftscope::verdict::{Overall, Verdict};
use serde_json::Value;

/// Rewrites a run's dump.json into `dir/dump.json` with `f` applied to every tensor record.
fn rewrite(
    run: &str,
    dir: &std::path::Path,
    task: &str,
    f: &dyn Fn(&str, &mut serde_json::Map<String, Value>),
) {
    let proc = llama_rank(run);
    let mut v =
        driftscope::dump::msprobe::parse_json(&std::fs::read(proc.join("dump.json")).unwrap())
            .unwrap();
    v["task"] = Value::from(task);
    fn walk(v: &mut Value, f: &dyn Fn(&str, &mut serde_json::Map<String, Value>)) {
        match v {
            Value::Object(o) if o.contains_key("data_name") => {
                let name = o["data_name"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches(".pt")
                    .to_string();
                o.remove("data_name");
                f(&name, o);
            }
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, f)),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, f)),
            _ => {}
        }
    }
    walk(&mut v["data"], f);
    std::fs::write(dir.join("dump.json"), serde_json::to_vec(&v).unwrap()).unwrap();
}

/// `compare` as the session runs it (the own-error check included), default options.
fn judged(r: &driftscope::dump::Dump, d: &driftscope::dump::Dump) -> Comparison {
    driftscope::session::compare_dumps(
        r,
        d,
        &CompareOptions::default(),
        &driftscope::align::Remap::default(),
        &|| {},
    )
}

/// The injected fault of `cuda_fp16_fault_silu_l1` is the first divergence.
fn assert_first_is_the_silu_fault(c: &Comparison) {
    assert_eq!(
        c.analysis
            .first_divergence
            .as_ref()
            .map(|f| f.name.as_str()),
        Some("Functional.silu.1.forward"),
        "{}",
        c.analysis.summary
    );
}

#[test]
fn statistics_task_compares_recorded_statistics_and_finds_the_fault() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    rewrite("cpu_fp32", a.path(), "statistics", &|_, _| {});
    rewrite(
        "cuda_fp16_fault_silu_l1",
        b.path(),
        "statistics",
        &|_, _| {},
    );
    let (r, d) = (open(a.path()), open(b.path()));
    assert_eq!(r.task, Task::Statistics);
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    assert_eq!(c.mode, Task::Statistics);
    // A statistics reference against a tensor run compares statistics, in bisect too (it
    // once took the mode from the device dump alone).
    let t = open(&llama("cuda_fp16_fault_silu_l1"));
    let b = driftscope::bisect::run(&r, &t, None, &CompareOptions::default(), false).unwrap();
    assert_eq!(b.mode, Task::Statistics);
    assert_eq!(c.pairs.len(), 415);
    assert!(c
        .pairs
        .iter()
        .all(|p| p.status == Status::Statistics && p.stats_diff.is_some()));
    let silu = c
        .pairs
        .iter()
        .find(|p| &*p.name == "Functional.silu.1.forward.output.0")
        .unwrap();
    assert!(silu.stats_diff.unwrap().norm_rel_diff().unwrap() > 1e-3);
    // The norm bound alone is enough to name the fault, and clean runs stay clean.
    assert_first_is_the_silu_fault(&c);
}

#[test]
fn statistics_task_skips_the_replay_no_call_of_it_allows() {
    // A statistics dump saved no tensor files: the own-error check reports 0 calls replayed
    // without reading the records (a tree of the whole dump.json), as replaying each call
    // would, and the fault is found as before.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    rewrite("cpu_fp32", a.path(), "statistics", &|_, _| {});
    rewrite(
        "cuda_fp16_fault_silu_l1",
        b.path(),
        "statistics",
        &|_, _| {},
    );
    let (r, d) = (open(a.path()), open(b.path()));
    let c = judged(&r, &d);
    assert_eq!(c.analysis.replayed, Some(0));
    assert_first_is_the_silu_fault(&c);
    let (ds, rs) = (
        driftscope::replay::Side::new(&d).unwrap(),
        driftscope::replay::Side::new(&r).unwrap(),
    );
    let places = ds.places();
    assert_eq!(places.len(), d.place_count());
    for place in &places {
        let rep = driftscope::replay::replay_call(&ds, Some(&rs), place);
        assert!(!rep.replayed, "{place} was replayed");
    }
}

#[test]
fn statistics_task_keeps_clean_runs_within_noise() {
    for run in ["cuda_tf32", "cuda_fp16", "cuda_bf16", "cpu_fp32_rerun"] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        rewrite("cpu_fp32", a.path(), "statistics", &|_, _| {});
        rewrite(run, b.path(), "statistics", &|_, _| {});
        let c = compare(
            &open(a.path()),
            &open(b.path()),
            &CompareOptions::default(),
            &|| {},
        );
        assert!(
            c.analysis.first_divergence.is_none(),
            "{run}: {}",
            c.analysis.summary
        );
    }
}

#[test]
fn md5_task_compares_checksums() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let crc = |n: &str| format!("{:08x}", crc32fast::hash(n.as_bytes()));
    rewrite("cpu_fp32", a.path(), "statistics", &|n, o| {
        o.insert("md5".into(), Value::from(crc(n)));
    });
    rewrite("cpu_fp32", b.path(), "statistics", &|n, o| {
        let v = if n == "Functional.silu.1.forward.output.0" {
            "deadbeef".into()
        } else {
            crc(n)
        };
        o.insert("md5".into(), Value::from(v));
    });
    let c = compare(
        &open(a.path()),
        &open(b.path()),
        &CompareOptions::default(),
        &|| {},
    );
    assert_eq!(c.mode, Task::Md5);
    let changed: Vec<_> = c
        .pairs
        .iter()
        .filter(|p| p.checksum_equal == Some(false))
        .collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].verdict, Some(Verdict::Changed));
    assert_eq!(c.analysis.overall, Overall::Changed);
}

#[test]
fn native_layout_reads_raw_tensors_in_their_own_dtype() {
    let write = |dir: &std::path::Path, vals: &[f32], bf16: bool| {
        std::fs::create_dir_all(dir.join("tensors")).unwrap();
        let (dtype, bytes): (&str, Vec<u8>) = if bf16 {
            (
                "bfloat16",
                vals.iter()
                    .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                    .collect(),
            )
        } else {
            (
                "float32",
                vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        };
        std::fs::write(dir.join("tensors/000000.bin"), &bytes).unwrap();
        let m = serde_json::json!({
            "format": "driftscope-native", "version": 1, "level": "module",
            "run": {"device": "cpu"},
            "entries": [
                {"order": 0, "place": "model.fc", "kind": "module", "op_type": "Linear", "role": "output",
                 "index": "0", "name": "model.fc.output.0", "dtype": dtype, "shape": [2, 2],
                 "device": "cpu", "file": "tensors/000000.bin", "nbytes": bytes.len()},
                {"order": 1, "place": "model.big", "kind": "module", "role": "output", "index": "0",
                 "name": "model.big.output.0", "dtype": dtype, "shape": [4096, 4096], "device": "cpu",
                 "file": null, "skipped": "numel 16777216 exceeds max_numel"}
            ]
        });
        std::fs::write(dir.join("driftscope.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(a.path(), &[1.0, 2.0, 3.0, 4.0], false);
    write(b.path(), &[1.0, 2.0, 3.0, 4.0], true);
    let (r, d) = (open(a.path()), open(b.path()));
    assert_eq!(r.format, Format::Native);
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    let fc = &c.pairs[0];
    assert_eq!(fc.dtype_dev, Some(driftscope::dump::DType::Bfloat16));
    assert_eq!(fc.metrics.as_ref().unwrap().max_abs_err, 0.0);
    let big = &c.pairs[1];
    assert_eq!(big.status, Status::Error);
    assert!(big.error.as_deref().unwrap().contains("max_numel"));
    // A raw file of the wrong size is refused with its entry named.
    std::fs::write(b.path().join("tensors/000000.bin"), [0u8; 3]).unwrap();
    let e = d.load(&d.entries[0]).unwrap_err().to_string();
    assert!(
        e.contains("model.fc.output.0") && e.contains("000000.bin"),
        "{e}"
    );
}

/// Writes an `.npy` (version 1.0, C order) holding `t`'s elements.
fn write_npy(path: &std::path::Path, t: &driftscope::dump::Tensor) {
    std::fs::write(path, npy_bytes(t.dtype, &t.shape, &t.data)).unwrap();
}

#[test]
fn mindspore_style_npy_tensor_files_compare_like_pt() {
    // The fault run re-saved as MindSpore does (np.save per tensor, data_name *.npy).
    let src = open(&llama("cuda_fp16_fault_silu_l1"));
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("step0/rank0");
    std::fs::create_dir_all(proc.join("dump_tensor_data")).unwrap();
    for e in &src.entries {
        let t = src.load(e).unwrap();
        write_npy(
            &proc
                .join("dump_tensor_data")
                .join(format!("{}.npy", e.name)),
            &t,
        );
    }
    let text = dump_json_as_npy(&llama("cuda_fp16_fault_silu_l1"));
    std::fs::write(proc.join("dump.json"), text).unwrap();
    // Point at the dump.json itself, and at the step folder.
    for path in [proc.join("dump.json"), dir.path().join("step0")] {
        let d = open(&path);
        assert_eq!(d.format, Format::Msprobe);
        let c = compare(
            &open(&llama("cpu_fp32")),
            &d,
            &CompareOptions::default(),
            &|| {},
        );
        assert!(c.pairs.iter().all(|p| p.status == Status::Compared));
        assert_eq!(
            c.analysis
                .first_divergence
                .as_ref()
                .map(|f| f.name.as_str()),
            Some("Functional.silu.1.forward")
        );
        let same = compare(&src, &d, &CompareOptions::default(), &|| {});
        assert_eq!(same.analysis.overall, Overall::Identical);
    }
}

/// Copies a run's rank folder into `dir` with every call's inputs dropped from dump.json and
/// their tensor files left out: what msprobe's `data_mode: ["output"]` writes.
fn outputs_only(run: &str, dir: &std::path::Path) {
    let proc = llama_rank(run);
    let mut v =
        driftscope::dump::msprobe::parse_json(&std::fs::read(proc.join("dump.json")).unwrap())
            .unwrap();
    let data = dir.join("dump_tensor_data");
    std::fs::create_dir(&data).unwrap();
    fn data_names(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                out.extend(o.get("data_name").and_then(Value::as_str).map(String::from));
                o.values().for_each(|x| data_names(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| data_names(x, out)),
            _ => {}
        }
    }
    for rec in v["data"].as_object_mut().unwrap().values_mut() {
        rec.as_object_mut()
            .unwrap()
            .retain(|k, _| !k.starts_with("input"));
    }
    let mut names = Vec::new();
    data_names(&v["data"], &mut names);
    for name in names {
        std::fs::copy(proc.join("dump_tensor_data").join(&name), data.join(&name)).unwrap();
    }
    std::fs::write(dir.join("dump.json"), serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn outputs_only_dump_skips_the_replay_without_reading_the_records() {
    // No call recorded an input, so none can be recomputed: the own-error check replays
    // nothing and does not read the records again. With the dump.json files gone after
    // opening, reading them would fail and leave `replayed` unset.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    outputs_only("cpu_fp32", a.path());
    outputs_only("cuda_fp16_fault_silu_l1", b.path());
    let (r, d) = (open(a.path()), open(b.path()));
    assert!(d
        .entries
        .iter()
        .all(|e| e.role == driftscope::dump::Role::Output));
    assert!(d.entries.len() > 100, "{} entries", d.entries.len());
    std::fs::remove_file(a.path().join("dump.json")).unwrap();
    std::fs::remove_file(b.path().join("dump.json")).unwrap();
    let c = judged(&r, &d);
    assert_eq!(c.analysis.replayed, Some(0));
    assert_first_is_the_silu_fault(&c);
}
