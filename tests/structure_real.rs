//! Structural alignment on the real llama msprobe dumps, edited as a device run with other
//! control flow would record them: an extra call, a missing call, a skipped decoder layer,
//! counters that start elsewhere. Each edit keeps msprobe's own numbering (every API's calls
//! counted 0, 1, 2, ... in execution order), so one extra call renames every later call of
//! its API in `dump.json`, `stack.json` and the tensor files, as msprobe would.

use crate::common;
use common::*;
use driftscope::align::structure::{AlignMethod, ChangeKind};
use driftscope::align::MatchKind;
use driftscope::bisect;
use driftscope::compare::{compare, CompareOptions, Comparison};
use driftscope::dump::msprobe;
use driftscope::verdict::Overall;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// `Functional.linear.7.forward` -> (`Functional.linear`, 7, `forward`).
fn split(place: &str) -> (String, usize, String) {
    let p: Vec<&str> = place.split('.').collect();
    let n = p.len();
    (
        p[..n - 2].join("."),
        p[n - 2].parse().unwrap(),
        p[n - 1].into(),
    )
}

/// A run's folder holding dump.json.
fn proc_dir(run: &Path) -> PathBuf {
    std::fs::read_dir(run.join("step0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// Writes `run` into a new folder with its call stream edited by `edit` (on the list of
/// `(place, record)` in execution order), then renumbered as msprobe numbers calls, each
/// API's counters shifted by `offset(api)`. Tensor files are copied under their new names.
fn edited(
    run: &str,
    edit: impl FnOnce(&mut Vec<(String, Value)>),
    offset: impl Fn(&str) -> usize,
) -> tempfile::TempDir {
    let src = proc_dir(&llama(run));
    // Python's bare NaN/Infinity come back quoted, which driftscope reads as well.
    let doc = msprobe::parse_json(&std::fs::read(src.join("dump.json")).unwrap()).unwrap();
    let mut calls: Vec<(String, Value)> = doc["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    edit(&mut calls);
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("step0/proc0");
    std::fs::create_dir_all(dst.join("dump_tensor_data")).unwrap();
    let mut counters: std::collections::HashMap<String, usize> = Default::default();
    let mut data = Map::new();
    let mut renamed = std::collections::HashMap::new();
    for (old, mut rec) in calls {
        let (api, _, pass) = split(&old);
        let k = counters.entry(api.clone()).or_insert(0);
        let new = format!("{api}.{}.{pass}", *k + offset(&api));
        *k += 1;
        rename_tensors(&mut rec, &old, &new, &src, &dst);
        renamed.insert(old, new.clone());
        data.insert(new, rec);
    }
    let mut doc = doc;
    doc["data"] = Value::Object(data);
    std::fs::write(dst.join("dump.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    // stack.json: {id: [[places], [lines]]}, places renamed (dropped calls dropped).
    let mut stack: Value =
        serde_json::from_slice(&std::fs::read(src.join("stack.json")).unwrap()).unwrap();
    for (_, v) in stack.as_object_mut().unwrap() {
        let names = v[0].as_array_mut().unwrap();
        *names = names
            .iter()
            .filter_map(|n| {
                renamed
                    .get(n.as_str().unwrap())
                    .map(|n| Value::from(n.clone()))
            })
            .collect();
    }
    std::fs::write(dst.join("stack.json"), serde_json::to_vec(&stack).unwrap()).unwrap();
    dir
}

/// Points every `data_name` of a record to call `new` and copies its file.
fn rename_tensors(v: &mut Value, old: &str, new: &str, src: &Path, dst: &Path) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(dn)) = o.get_mut("data_name") {
                // The file's name within its call: after `.forward` (a fused record may hold
                // tensors of other calls).
                let at = dn
                    .find(".forward.")
                    .map_or(old.len(), |i| i + ".forward".len());
                let to = format!("{new}{}", &dn[at..]);
                std::fs::copy(
                    src.join("dump_tensor_data").join(&*dn),
                    dst.join("dump_tensor_data").join(&to),
                )
                .unwrap();
                *dn = to;
            }
            for x in o.values_mut() {
                rename_tensors(x, old, new, src, dst);
            }
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| rename_tensors(x, old, new, src, dst)),
        _ => {}
    }
}

/// Inserts a copy of call `place` right after it.
fn duplicate(place: &'static str) -> impl FnOnce(&mut Vec<(String, Value)>) {
    move |calls| {
        let k = calls.iter().position(|(p, _)| p == place).unwrap();
        let copy = calls[k].clone();
        calls.insert(k + 1, copy);
    }
}

fn no_offset(_: &str) -> usize {
    0
}

fn first(c: &Comparison) -> Option<&str> {
    c.analysis
        .first_divergence
        .as_ref()
        .map(|f| f.name.as_str())
}

/// Every pair meets the device call that recorded the same reference call: the device's
/// name, renumbered by `shift` for the edited API, is the reference's.
fn assert_pairs_follow(c: &Comparison, api: &str, shift: impl Fn(usize) -> usize) {
    for p in &c.pairs {
        let dev = p.name_dev.as_deref().unwrap_or(&p.name);
        let (a, k, _) = split(&p.place);
        let want = if a == api {
            format!("{a}.{}.forward{}", shift(k), &p.name[p.place.len()..])
        } else {
            p.name.to_string()
        };
        assert_eq!(dev, want, "{} paired with {dev}", p.name);
        let kind = if dev == &*p.name {
            MatchKind::Exact
        } else {
            MatchKind::Structural
        };
        assert_eq!(p.matched_by, kind, "{}", p.name);
    }
}

#[test]
fn an_extra_call_leaves_every_other_call_paired_and_is_reported() {
    let dev = edited(
        "cuda_fp16",
        duplicate("Functional.linear.2.forward"),
        no_offset,
    );
    let (r, d) = (open(&llama("cpu_fp32")), open(dev.path()));
    let o = CompareOptions::default();
    let c = compare(&r, &d, &o, &|| {});
    // Reference linear.k meets the device's linear.k+1 from linear.3 on.
    assert_pairs_follow(&c, "Functional.linear", |k| if k >= 3 { k + 1 } else { k });
    assert_eq!(c.pairs.len(), 415);
    assert!(c.unmatched_reference.is_empty());
    assert_eq!(
        c.unmatched_candidate.len(),
        3,
        "{:?}",
        c.unmatched_candidate
    );
    let s = &c.structure;
    assert_eq!(s.method, AlignMethod::Signatures);
    assert_eq!(
        (s.calls_reference, s.calls_candidate, s.paired),
        (158, 159, 158)
    );
    assert_eq!(s.renumbered, 26);
    assert_eq!(s.changes.len(), 1, "{:?}", s.changes);
    let ch = &s.changes[0];
    assert_eq!(ch.kind, ChangeKind::Extra);
    assert_eq!(ch.calls, vec!["Functional.linear.3.forward"]);
    assert_eq!(ch.after.as_deref(), Some("Functional.linear.2.forward"));
    assert_eq!(ch.apis, vec![("Functional.linear".to_string(), 1)]);
    assert!(
        ch.message
            .contains("the device ran 1 extra `Functional.linear` call"),
        "{}",
        ch.message
    );
    // Nothing else differs: the numbers are the clean fp16 run's.
    assert_eq!(
        c.analysis.overall,
        Overall::WithinNoise,
        "{}",
        c.analysis.summary
    );
    let b = bisect::run(&r, &d, None, &o, false).unwrap();
    assert_eq!(first(&b), None, "{}", b.analysis.summary);
    assert_eq!(b.structure, c.structure);
    // The extra call is the first difference between the runs: as the commands run it, it is
    // the first divergence, of kind control_flow.
    assert_eq!(s.first_difference(None), Some(ch));
    let none = Default::default();
    for c in [
        driftscope::session::compare_dumps(&r, &d, &o, &none, &|| {}),
        driftscope::session::bisect_dumps(&r, &d, None, &o, &none, false).unwrap(),
    ] {
        let f = c.analysis.first_divergence.as_ref().unwrap();
        assert_eq!(f.kind, driftscope::verdict::DivergenceKind::ControlFlow);
        assert_eq!(f.name, "Functional.linear.3.forward");
        assert!(
            f.reason.contains("1 extra `Functional.linear` call"),
            "{}",
            f.reason
        );
        assert_eq!(c.analysis.overall, Overall::Diverged);
    }
}

#[test]
fn the_silu_fault_is_still_named_first_after_an_extra_call() {
    let dev = edited(
        "cuda_fp16_fault_silu_l1",
        duplicate("Functional.linear.2.forward"),
        no_offset,
    );
    let (r, d) = (open(&llama("cpu_fp32")), open(dev.path()));
    let o = CompareOptions::default();
    for c in [
        compare(&r, &d, &o, &|| {}),
        bisect::run(&r, &d, None, &o, false).unwrap(),
    ] {
        assert_eq!(first(&c), Some("Functional.silu.1.forward"));
        let f = c.analysis.first_divergence.as_ref().unwrap();
        // The structural change comes first in execution order, and says so.
        let ch = c.structure.first_difference(Some(f.order)).unwrap();
        assert_eq!(ch.calls, vec!["Functional.linear.3.forward"]);
        assert!(ch.order < f.order);
    }
}

#[test]
fn a_missing_call_is_reported_and_the_rest_paired() {
    let dev = edited(
        "cuda_fp16",
        |calls| {
            let k = calls
                .iter()
                .position(|(p, _)| p == "Functional.linear.5.forward")
                .unwrap();
            calls.remove(k);
        },
        no_offset,
    );
    let (r, d) = (open(&llama("cpu_fp32")), open(dev.path()));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    assert_pairs_follow(&c, "Functional.linear", |k| if k > 5 { k - 1 } else { k });
    assert_eq!(c.structure.changes.len(), 1);
    let ch = &c.structure.changes[0];
    assert_eq!(ch.kind, ChangeKind::Missing);
    assert_eq!(ch.calls, vec!["Functional.linear.5.forward"]);
    // The MLP runs gate (linear.4), SiLU, up (linear.5), down (linear.6).
    assert_eq!(ch.after.as_deref(), Some("Functional.silu.0.forward"));
    assert_eq!(c.unmatched_reference.len(), 3);
    assert!(c.unmatched_candidate.is_empty());
    assert_eq!(c.analysis.overall, Overall::WithinNoise);
}

#[test]
fn a_skipped_decoder_layer_is_one_run_of_missing_calls() {
    // One of the 4 identical decoder layers, from its input RMSNorm's `pow` to the residual
    // `__add__` closing it, as an early exit (the last layer) or a shorter loop would leave it
    // out. Signatures cannot tell identical layers apart; recorded statistics can.
    for (from, to) in [
        ("Tensor.pow.6.forward", "Tensor.pow.8.forward"),
        ("Tensor.pow.2.forward", "Tensor.pow.4.forward"),
    ] {
        let dev = edited(
            "cuda_fp16",
            |calls| {
                let at = |p: &str| calls.iter().position(|(q, _)| q == p).unwrap();
                let (a, b) = (at(from), at(to));
                calls.drain(a..b);
            },
            no_offset,
        );
        let (r, d) = (open(&llama("cpu_fp32")), open(dev.path()));
        let c = compare(&r, &d, &CompareOptions::default(), &|| {});
        let s = &c.structure;
        assert_eq!(s.changes.len(), 1, "{:?}", s.changes);
        let ch = &s.changes[0];
        assert_eq!(ch.kind, ChangeKind::Missing);
        assert_eq!(ch.calls.first().unwrap(), from);
        assert_eq!(ch.calls.len(), s.calls_reference - s.calls_candidate);
        assert_eq!(s.paired, s.calls_candidate);
        // Every device call is paired with the reference call it recorded.
        assert!(c.unmatched_candidate.is_empty());
        assert_eq!(
            c.analysis.overall,
            Overall::WithinNoise,
            "{from}: {}",
            c.analysis.summary
        );
    }
}

#[test]
fn counters_that_start_elsewhere_pair_without_findings() {
    // As if three linears ran before the dump started.
    let dev = edited(
        "cuda_fp16",
        |_| {},
        |api| if api == "Functional.linear" { 3 } else { 0 },
    );
    let (r, d) = (open(&llama("cpu_fp32")), open(dev.path()));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    assert_pairs_follow(&c, "Functional.linear", |k| k + 3);
    assert!(c.structure.changes.is_empty(), "{:?}", c.structure.changes);
    assert_eq!(c.structure.renumbered, 29);
    assert!(c.unmatched_reference.is_empty() && c.unmatched_candidate.is_empty());
    assert_eq!(c.analysis.overall, Overall::WithinNoise);
}

#[test]
fn agreeing_streams_take_the_name_fast_path() {
    let (r, d) = (open(&llama("cpu_fp32")), open(&llama("cuda_fp16")));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    assert_eq!(c.structure.method, AlignMethod::Names);
    assert_eq!(c.structure.paired, 158);
    assert!(c.structure.changes.is_empty());
    assert!(c.pairs.iter().all(|p| p.matched_by == MatchKind::Exact));
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let o = std::process::Command::new(bin())
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn compare_bisect_and_check_report_the_extra_call() {
    let dev = edited(
        "cuda_fp16_fault_silu_l1",
        duplicate("Functional.linear.2.forward"),
        no_offset,
    );
    let t = tempfile::tempdir().unwrap();
    let (j, cfg) = (t.path().join("r.json"), t.path().join("ok.toml"));
    let (r, d) = (llama("cpu_fp32"), dev.path().to_path_buf());
    let line = "the device ran 1 extra `Functional.linear` call (Functional.linear.3.forward) \
                after `Functional.linear.2.forward`";
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let (code, out, err) = run(&[
        os("compare"),
        r.as_os_str(),
        d.as_os_str(),
        os("--json"),
        j.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(line), "{out}");
    assert!(
        out.contains("diverged (own_error): first at Functional.silu.1.forward"),
        "{out}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    let ch = &v["structure"]["changes"][0];
    assert_eq!(ch["kind"], "extra");
    assert_eq!(ch["calls"][0], "Functional.linear.3.forward");
    assert_eq!(v["structure"]["method"], "signatures");
    let (code, out, _) = run(&[os("bisect"), r.as_os_str(), d.as_os_str()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("first divergence: Functional.silu.1.forward"),
        "{out}"
    );
    assert!(out.contains(line), "{out}");
    // check fails on the structural change (and the fault); allowing one change leaves the
    // fault alone to fail it.
    let (code, out, _) = run(&[os("check"), r.as_os_str(), d.as_os_str()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("structural_changes 1 exceeds limit 0"),
        "{out}"
    );
    std::fs::write(&cfg, "[coverage]\nmax_structural_changes = 1\n").unwrap();
    let (code, out, _) = run(&[
        os("check"),
        r.as_os_str(),
        d.as_os_str(),
        os("--config"),
        cfg.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert!(!out.contains("structural_changes"), "{out}");
    assert!(out.contains("Functional.silu.1.forward"), "{out}");
}

/// Rewrites tensor `file` (a `.pt` of shape [a, b, c] in `dev`) as an `.npy` padded along its
/// second dimension to `to` with `fill`, as a device run compiled for a fixed sequence length
/// records it; dump.json follows.
fn pad_tensor(dev: &Path, file: &str, to: usize, fill: f32) {
    let proc = proc_dir(dev);
    let data = proc.join("dump_tensor_data");
    let t = driftscope::dump::pt::read_single(&data.join(file))
        .unwrap()
        .tensor;
    assert_eq!(t.dtype, driftscope::dump::DType::Float16);
    let (a, b, c) = (t.shape[0], t.shape[1], t.shape[2]);
    let fill = half::f16::from_f32(fill).to_le_bytes();
    let mut out = Vec::new();
    for i in 0..a {
        out.extend_from_slice(&t.data[i * b * c * 2..(i + 1) * b * c * 2]);
        for _ in 0..(to - b) * c {
            out.extend_from_slice(&fill);
        }
    }
    let mut header =
        format!("{{'descr': '<f2', 'fortran_order': False, 'shape': ({a}, {to}, {c}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend_from_slice(&out);
    let npy_name = file.replace(".pt", ".npy");
    std::fs::write(data.join(&npy_name), npy).unwrap();
    std::fs::remove_file(data.join(file)).unwrap();
    let json = proc.join("dump.json");
    let mut doc = msprobe::parse_json(&std::fs::read(&json).unwrap()).unwrap();
    fn fix(v: &mut Value, file: &str, npy: &str, shape: &Value) {
        match v {
            Value::Object(o) if o.get("data_name").and_then(Value::as_str) == Some(file) => {
                o.insert("data_name".into(), npy.into());
                o.insert("shape".into(), shape.clone());
            }
            Value::Object(o) => o.values_mut().for_each(|x| fix(x, file, npy, shape)),
            Value::Array(x) => x.iter_mut().for_each(|x| fix(x, file, npy, shape)),
            _ => {}
        }
    }
    fix(&mut doc, file, &npy_name, &serde_json::json!([a, to, c]));
    std::fs::write(&json, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[test]
fn a_padded_tensor_is_compared_on_its_common_region() {
    use driftscope::align::padding::Side;
    use driftscope::compare::Status;
    let name = "Functional.silu.0.forward.output.0";
    let dev = edited("cuda_fp16", |_| {}, no_offset);
    // The sequence of 32 tokens padded to 48 with zeros.
    pad_tensor(dev.path(), &format!("{name}.pt"), 48, 0.0);
    let (r, d) = (open(&llama("cpu_fp32")), open(dev.path()));
    let clean = compare(
        &r,
        &open(&llama("cuda_fp16")),
        &CompareOptions::default(),
        &|| {},
    );
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    let get = |c: &Comparison| c.pairs.iter().find(|p| &*p.name == name).unwrap().clone();
    let (p, p0) = (get(&c), get(&clean));
    assert_eq!(p.status, Status::Compared);
    assert_eq!(p.shape_dev, Some(vec![1, 48, 172].into()));
    // The common region is exactly the unpadded tensor.
    let (m, m0) = (p.metrics.unwrap(), p0.metrics.unwrap());
    assert_eq!((m.numel, m.rel_l2_err), (m0.numel, m0.rel_l2_err));
    let pad = p.padding.unwrap();
    assert_eq!(pad.padded, Side::Candidate);
    assert_eq!(pad.common, vec![1, 32, 172]);
    assert_eq!(pad.pad, vec![(0, 0), (0, 16), (0, 0)]);
    assert_eq!((pad.elements, pad.nonzero, pad.max_abs), (16 * 172, 0, 0.0));
    assert_eq!(
        c.analysis.overall,
        Overall::WithinNoise,
        "{}",
        c.analysis.summary
    );
    // Garbage in the padding is counted.
    let dev = edited("cuda_fp16", |_| {}, no_offset);
    pad_tensor(dev.path(), &format!("{name}.pt"), 40, -2.5);
    let c = compare(&r, &open(dev.path()), &CompareOptions::default(), &|| {});
    let pad = get(&c).padding.unwrap();
    assert_eq!(
        (pad.elements, pad.nonzero, pad.max_abs),
        (8 * 172, 8 * 172, 2.5)
    );
    // Nothing reads it (the next call, `__mul__.11`, got the unpadded tensor): no call's
    // result departs, so it does not leak and the run is clean.
    for c in [
        c,
        driftscope::session::compare_dumps(
            &r,
            &open(dev.path()),
            &CompareOptions::default(),
            &Default::default(),
            &|| {},
        ),
    ] {
        assert_eq!(
            c.analysis.overall,
            Overall::WithinNoise,
            "{}",
            c.analysis.summary
        );
    }
    // A shape that does not contain the other is still a mismatch, and check fails on it.
    let dev = edited("cuda_fp16", |_| {}, no_offset);
    pad_tensor(dev.path(), &format!("{name}.pt"), 48, 0.0);
    let json = proc_dir(dev.path()).join("dump.json");
    let text = std::fs::read_to_string(&json)
        .unwrap()
        .replace("[1,48,172]", "[1,172,48]");
    std::fs::write(&json, text).unwrap();
    let c = compare(&r, &open(dev.path()), &CompareOptions::default(), &|| {});
    assert_eq!(get(&c).status, Status::ShapeMismatch);
    // A pair that cannot be compared is a broken input: exit 2, naming it.
    let (code, _, err) = run(&[
        std::ffi::OsStr::new("check"),
        llama("cpu_fp32").as_os_str(),
        dev.path().as_os_str(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("have shapes that do not fit; first: Functional.silu.0.forward"),
        "{err}"
    );
}

#[test]
fn a_fused_run_of_calls_gets_a_fusion_map_proposal() {
    // The final RMSNorm (pow, mean, add, rsqrt, mul, mul) as one fused device kernel: the
    // first call's input in, the last call's output out. (The last one: a fused kernel earlier
    // renumbers later calls of these APIs, and `--fusion-map` pairs by reference names, which
    // the renumbered device names then shadow; docs/alignment.md.)
    let norm = [
        "Tensor.pow.8.forward",
        "Tensor.mean.8.forward",
        "Tensor.__add__.31.forward",
        "Torch.rsqrt.8.forward",
        "Tensor.__mul__.42.forward",
        "Tensor.__mul__.43.forward",
    ];
    let dev = edited(
        "cuda_fp16",
        |calls| {
            let at = calls.iter().position(|(p, _)| p == norm[0]).unwrap();
            assert_eq!(calls[at + 5].0, norm[5]);
            let rec = serde_json::json!({
                "input_args": [calls[at].1["input_args"][0].clone()],
                "input_kwargs": {},
                "output": [calls[at + 5].1["output"][0].clone()],
            });
            calls.splice(
                at..at + 6,
                [("NPU.npu_rms_norm.0.forward".to_string(), rec)],
            );
        },
        no_offset,
    );
    let (r, mut d) = (open(&llama("cpu_fp32")), open(dev.path()));
    let o = CompareOptions::default();
    let c = compare(&r, &d, &o, &|| {});
    let s = &c.structure;
    let kinds: Vec<_> = s.changes.iter().map(|c| (c.kind, c.calls.len())).collect();
    assert_eq!(kinds, [(ChangeKind::Missing, 6), (ChangeKind::Extra, 1)]);
    let want: Vec<String> = norm.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        s.fusion_proposal.get("NPU.npu_rms_norm.0.forward"),
        Some(&want),
        "{:?}",
        s.fusion_proposal
    );
    // Confirmed, the proposal pairs the kernel's boundary tensors, and nothing is left extra,
    // missing or divergent.
    let opts = driftscope::align::MappingOptions {
        fusion: s.fusion_proposal.clone().into_iter().collect(),
        ..Default::default()
    };
    let m = driftscope::align::remap(&r.entries, &mut d.entries, &opts);
    let mut c = compare(&r, &d, &o, &|| {});
    c.mark_remapped(&m);
    for t in [
        "Tensor.pow.8.forward.input.0",
        "Tensor.__mul__.43.forward.output.0",
    ] {
        let p = c.pairs.iter().find(|p| &*p.name == t).unwrap();
        assert_eq!(p.matched_by, MatchKind::Mapped, "{t}");
    }
    assert!(c.structure.changes.is_empty(), "{:?}", c.structure.changes);
    assert_eq!(
        c.analysis.overall,
        Overall::WithinNoise,
        "{}",
        c.analysis.summary
    );
}

/// Replaces tensor `file` of `dev` (a `.pt`) by an `.npy` holding `data` (`dtype`, `shape`);
/// dump.json follows.
fn put_npy(dev: &Path, file: &str, dtype: driftscope::dump::DType, shape: &[usize], data: &[u8]) {
    let proc = proc_dir(dev);
    let npy = file.replace(".pt", ".npy");
    std::fs::write(
        proc.join("dump_tensor_data").join(&npy),
        npy_bytes(dtype, shape, data),
    )
    .unwrap();
    std::fs::remove_file(proc.join("dump_tensor_data").join(file)).unwrap();
    let json = proc.join("dump.json");
    let mut doc = msprobe::parse_json(&std::fs::read(&json).unwrap()).unwrap();
    fn fix(v: &mut Value, file: &str, npy: &str, shape: &[usize]) {
        match v {
            Value::Object(o) if o.get("data_name").and_then(Value::as_str) == Some(file) => {
                o.insert("data_name".into(), npy.into());
                o.insert("shape".into(), serde_json::json!(shape));
            }
            Value::Object(o) => o.values_mut().for_each(|x| fix(x, file, npy, shape)),
            Value::Array(x) => x.iter_mut().for_each(|x| fix(x, file, npy, shape)),
            _ => {}
        }
    }
    fix(&mut doc, file, &npy, shape);
    std::fs::write(&json, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// The first attention softmax of the fp16 llama run as a device compiled for a key length of
/// 48 runs it: its input (the masked scores, [1, 4, 32, 32] fp16) padded to 48 keys with
/// `fill`, and its float32 output computed (in float64) over the padded rows, as the kernel
/// computes what it is given. A `fill` of fp16's lowest value is a masked bucket: exp gives 0
/// there and the common region is the unpadded softmax. Any other fill leaks into every row.
fn bucketed_softmax(fill: f32) -> tempfile::TempDir {
    use driftscope::dump::DType;
    let dev = edited("cuda_fp16", |_| {}, no_offset);
    let data = proc_dir(dev.path()).join("dump_tensor_data");
    let x =
        driftscope::dump::pt::read_single(&data.join("Functional.softmax.0.forward.input.0.pt"))
            .unwrap()
            .tensor;
    assert_eq!(
        (x.dtype, &x.shape[..]),
        (DType::Float16, &[1, 4, 32, 32][..])
    );
    let x = x.to_f64_vec();
    let (keys, to) = (32, 48);
    let fill = half::f16::from_f32(fill).to_f64();
    let (mut input, mut output) = (Vec::new(), Vec::new());
    for row in x.chunks(keys) {
        let mut padded = row.to_vec();
        padded.resize(to, fill);
        let max = padded.iter().copied().fold(f64::MIN, f64::max);
        let e: Vec<f64> = padded.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        for (v, e) in padded.iter().zip(&e) {
            input.extend_from_slice(&half::f16::from_f64(*v).to_le_bytes());
            output.extend_from_slice(&((e / sum) as f32).to_le_bytes());
        }
    }
    let shape = [1, 4, 32, to];
    put_npy(
        dev.path(),
        "Functional.softmax.0.forward.input.0.pt",
        DType::Float16,
        &shape,
        &input,
    );
    put_npy(
        dev.path(),
        "Functional.softmax.0.forward.output.0.pt",
        DType::Float32,
        &shape,
        &output,
    );
    dev
}

#[test]
fn padding_a_softmax_reads_leaks_and_is_named_where_it_is_read() {
    use driftscope::verdict::DivergenceKind;
    let r = open(&llama("cpu_fp32"));
    let o = CompareOptions::default();
    let none = Default::default();
    // Garbage (3.0) and zeros in the padding: the softmax spreads each row's mass over them.
    for fill in [3.0, 0.0] {
        let dev = bucketed_softmax(fill);
        let d = open(dev.path());
        for c in [
            compare(&r, &d, &o, &|| {}),
            bisect::run(&r, &d, None, &o, false).unwrap(),
            driftscope::session::compare_dumps(&r, &d, &o, &none, &|| {}),
            driftscope::session::bisect_dumps(&r, &d, None, &o, &none, false).unwrap(),
        ] {
            let f = c.analysis.first_divergence.as_ref().expect("a divergence");
            assert_eq!(
                (f.kind, f.name.as_str()),
                (DivergenceKind::PaddingLeak, "Functional.softmax.0.forward"),
                "fill {fill}: {}",
                c.analysis.summary
            );
            assert!(
                f.reason.contains(
                    "it reads the padding of Functional.softmax.0.forward.input.0 (the \
                     candidate's [1, 4, 32, 48] pads [1, 4, 32, 32] by [(0, 0), (0, 0), (0, 0), \
                     (0, 16)]"
                ),
                "{}",
                f.reason
            );
            assert!(c.structure.changes.is_empty());
        }
        // With the call recorded, its float64 replay from the device's padded inputs shows
        // the kernel right: what it read is wrong.
        let c = driftscope::session::compare_dumps(&r, &d, &o, &none, &|| {});
        let f = c.analysis.first_divergence.unwrap();
        assert!(
            f.reason.contains("the op computes correctly what it reads"),
            "{}",
            f.reason
        );
    }
    // The padding masked with fp16's lowest value: read, but it adds nothing. Clean.
    let dev = bucketed_softmax(-65504.0);
    let d = open(dev.path());
    for c in [
        driftscope::session::compare_dumps(&r, &d, &o, &none, &|| {}),
        driftscope::session::bisect_dumps(&r, &d, None, &o, &none, false).unwrap(),
    ] {
        assert_eq!(
            c.analysis.overall,
            Overall::WithinNoise,
            "{}",
            c.analysis.summary
        );
        let p = c
            .pairs
            .iter()
            .find(|p| &*p.name == "Functional.softmax.0.forward.input.0")
            .unwrap();
        let pad = p.padding.as_ref().unwrap();
        assert_eq!((pad.nonzero, pad.max_abs), (4 * 32 * 16, 65504.0));
    }
}

#[test]
fn compare_bisect_and_check_report_the_padding_leak() {
    let dev = bucketed_softmax(3.0);
    let (r, d) = (llama("cpu_fp32"), dev.path().to_path_buf());
    let t = tempfile::tempdir().unwrap();
    let j = t.path().join("r.json");
    let os = std::ffi::OsStr::new;
    let (code, out, err) = run(&[
        os("compare"),
        r.as_os_str(),
        d.as_os_str(),
        os("--json"),
        j.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("diverged (padding_leak): first at Functional.softmax.0.forward"),
        "{out}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    assert_eq!(v["analysis"]["first_divergence"]["kind"], "padding_leak");
    let (code, out, _) = run(&[os("bisect"), r.as_os_str(), d.as_os_str()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("first divergence: Functional.softmax.0.forward"),
        "{out}"
    );
    assert!(out.contains("padding_leak"), "{out}");
    let (code, out, _) = run(&[os("check"), r.as_os_str(), d.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("padding_leak"), "{out}");
    assert!(
        out.contains("Functional.softmax.0.forward.output.0"),
        "{out}"
    );
}
