//! Broken runs must never come back green (issue 14): every case is built from a real dump of
//! reference_dumps/ by changing the device side the way a real failure would, then re-saved as
//! an msprobe MindSpore-style dump (`.npy` tensor files) or in driftscope's native layout.

use crate::common;
use common::*;
use driftscope::bisect;
use driftscope::compare::{compare, CompareOptions, Comparison};
use driftscope::dump::{DType, Entry, Role, Tensor};
use driftscope::verdict::{DivergenceKind, Overall};
use std::path::Path;

/// How a broken run is saved.
#[derive(Copy, Clone, Debug)]
enum Layout {
    /// msprobe's layout with `np.save` tensor files, as MindSpore writes them.
    MsprobeNpy,
    /// driftscope's own layout, as the harness writes it.
    Native,
}

fn decode(t: &Tensor) -> Vec<f32> {
    match t.dtype {
        DType::Float32 => t
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        DType::Float16 => t
            .data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
            .collect(),
        DType::Int64 => t
            .data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        DType::Bool => t.data.iter().map(|&b| b as f32).collect(),
        other => panic!("test data has no {other}"),
    }
}

fn encode(dtype: DType, v: &[f32]) -> Vec<u8> {
    match dtype {
        DType::Float32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::Float16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        DType::Int64 => v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
        DType::Bool => v.iter().map(|&x| (x != 0.0) as u8).collect(),
        other => panic!("test data has no {other}"),
    }
}

/// The elements moved as a layout mistake moves them: element `i` is read from `i * k mod n`
/// for a stride `k` coprime with `n` (what reading NC1HWC0 bytes as NCHW does, in effect).
fn scramble(v: &[f32]) -> Vec<f32> {
    let n = v.len();
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let k = (7..).find(|&k| gcd(k, n.max(1)) == 1).unwrap();
    (0..n).map(|i| v[(i * k) % n]).collect()
}

fn npy(t: &Tensor, bytes: &[u8]) -> Vec<u8> {
    npy_bytes(t.dtype, &t.shape, bytes)
}

/// Re-saves dump `src` (an msprobe dump) into `dst` in `layout`, with every tensor's elements
/// passed through `change` (which returns `None` to keep them).
fn rewrite(
    src: &Path,
    dst: &Path,
    layout: Layout,
    change: impl Fn(&Entry, &[f32]) -> Option<Vec<f32>>,
) {
    let d = open(src);
    let bytes_of = |e: &Entry| {
        let t = d.load(e).unwrap();
        let new = change(e, &decode(&t)).map(|v| encode(t.dtype, &v));
        let b = new.unwrap_or_else(|| t.data.to_vec());
        (t, b)
    };
    match layout {
        Layout::MsprobeNpy => {
            let proc = dst.join("step0/rank0");
            std::fs::create_dir_all(proc.join("dump_tensor_data")).unwrap();
            for e in &d.entries {
                let (t, b) = bytes_of(e);
                let file = proc.join(format!("dump_tensor_data/{}.npy", e.name));
                std::fs::write(file, npy(&t, &b)).unwrap();
            }
            std::fs::write(proc.join("dump.json"), dump_json_as_npy(src)).unwrap();
        }
        Layout::Native => {
            std::fs::create_dir_all(dst.join("tensors")).unwrap();
            let mut entries = Vec::new();
            for (k, e) in d.entries.iter().enumerate() {
                let (t, b) = bytes_of(e);
                let file = format!("tensors/{k:06}.bin");
                std::fs::write(dst.join(&file), &b).unwrap();
                // The harness spells a module's parameters `parameter`.
                let role = match e.role {
                    Role::Parameters => "parameter",
                    r => r.name(),
                };
                entries.push(serde_json::json!({
                    "order": e.order, "place": e.place, "op_type": e.op_type, "role": role,
                    "index": e.index, "name": e.name, "dtype": t.dtype.name(),
                    "shape": t.shape, "file": file, "nbytes": b.len()
                }));
            }
            let m = serde_json::json!({
                "format": "driftscope-native", "version": 1, "level": "op", "entries": entries
            });
            std::fs::write(dst.join("driftscope.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        }
    }
}

/// Execution order of `place` in dump `src`: a fault there shows in every tensor from it on.
fn order_of(src: &Path, place: &str) -> usize {
    open(src)
        .entries
        .iter()
        .find(|e| &*e.place == place)
        .unwrap_or_else(|| panic!("{place}"))
        .order
}

fn mobilenet(run: &str) -> std::path::PathBuf {
    h200(&format!("mobilenet/msprobe/{run}"))
}

/// Compares `reference` with a broken copy of `device`, exhaustively and by bisection, and
/// checks both name `place` first with `kind`. Returns the exhaustive comparison.
fn expect(
    reference: &Path,
    device: &Path,
    layout: Layout,
    change: impl Fn(&Entry, &[f32]) -> Option<Vec<f32>>,
    place: &str,
    kind: DivergenceKind,
) -> Comparison {
    let t = tempfile::tempdir().unwrap();
    let broken = t.path().join("dev");
    rewrite(device, &broken, layout, change);
    let (r, d) = (open(reference), open(&broken));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    let b = bisect::run(&r, &d, None, &CompareOptions::default(), false).unwrap();
    for (how, x) in [("compare", &c), ("bisect", &b)] {
        let f =
            x.analysis.first_divergence.as_ref().unwrap_or_else(|| {
                panic!("{how} {layout:?}: no divergence: {}", x.analysis.summary)
            });
        assert_eq!(
            (f.name.as_str(), f.kind),
            (place, kind),
            "{how} {layout:?}: {}",
            x.analysis.summary
        );
        assert_eq!(x.analysis.overall, Overall::Diverged);
    }
    // The nightly job fails on it (exit 1).
    let out = std::process::Command::new(bin())
        .args(["check".as_ref(), reference.as_os_str(), broken.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "check {layout:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    c
}

#[test]
fn every_tensor_scrambled_is_named_at_the_first_call() {
    let all = |_: &Entry, v: &[f32]| Some(scramble(v));
    for layout in [Layout::MsprobeNpy, Layout::Native] {
        let c = expect(
            &llama("cpu_fp32"),
            &llama("cuda_fp16"),
            layout,
            all,
            "Functional.embedding.0.forward",
            DivergenceKind::Scrambled,
        );
        let f = c.analysis.first_divergence.unwrap();
        assert!(f.advice.unwrap().contains("--layout"));
    }
    expect(
        &mobilenet("cpu_fp32"),
        &mobilenet("cuda_fp16"),
        Layout::MsprobeNpy,
        all,
        "Module.features.0.0.Conv2d.forward.0",
        DivergenceKind::Scrambled,
    );
}

#[test]
fn a_differing_model_input_makes_the_runs_not_comparable() {
    // Token ids doubled at API level (every later tensor differs: doubled here), the image
    // doubled at module level (and so every later tensor).
    let ids = |e: &Entry, v: &[f32]| {
        Some(if &*e.name == "Functional.embedding.0.forward.input.0" {
            v.iter().map(|x| (2.0 * x) % 256.0).collect()
        } else if e.role == Role::Input && &*e.index == "1" && e.order == 0 {
            return None; // the embedding table is the same
        } else {
            v.iter().map(|x| 2.0 * x).collect()
        })
    };
    for layout in [Layout::MsprobeNpy, Layout::Native] {
        let c = expect(
            &llama("cpu_fp32"),
            &llama("cuda_fp16"),
            layout,
            ids,
            "Functional.embedding.0.forward",
            DivergenceKind::InputsDiffer,
        );
        let f = c.analysis.first_divergence.unwrap();
        assert!(f.reason.contains("inputs differ"), "{}", f.reason);
    }
    let image = |e: &Entry, v: &[f32]| {
        (e.role != Role::Parameters).then(|| v.iter().map(|x| 2.0 * x).collect())
    };
    expect(
        &mobilenet("cpu_fp32"),
        &mobilenet("cuda_fp16"),
        Layout::MsprobeNpy,
        image,
        "Module.features.0.0.Conv2d.forward.0",
        DivergenceKind::InputsDiffer,
    );
}

#[test]
fn one_layers_weights_differing_by_one_percent_are_named_there() {
    // The weight is 1% larger, and so (for a bias-free product) is the layer's output and,
    // roughly, every later tensor.
    let weight = |src: &Path, place: &'static str, weight: &'static str| {
        let at = order_of(src, place);
        move |e: &Entry, v: &[f32]| {
            let changed =
                &*e.name == weight || (e.order >= at && !(e.role.is_input() && &*e.place == place));
            (changed && !(e.role == Role::Parameters && &*e.name != weight))
                .then(|| v.iter().map(|x| 1.01 * x).collect())
        }
    };
    for layout in [Layout::MsprobeNpy, Layout::Native] {
        let dev = llama("cuda_fp16");
        expect(
            &llama("cpu_fp32"),
            &dev,
            layout,
            weight(
                &dev,
                "Functional.linear.5.forward",
                "Functional.linear.5.forward.input.1",
            ),
            "Functional.linear.5.forward",
            DivergenceKind::WeightsDiffer,
        );
        let dev = mobilenet("cuda_fp16");
        expect(
            &mobilenet("cpu_fp32"),
            &dev,
            layout,
            weight(
                &dev,
                "Module.features.3.block.0.0.Conv2d.forward.0",
                "Module.features.3.block.0.0.Conv2d.forward.0.parameters.weight",
            ),
            "Module.features.3.block.0.0.Conv2d.forward.0",
            DivergenceKind::WeightsDiffer,
        );
    }
}

#[test]
fn one_scrambled_layer_is_named_at_that_layer() {
    // From this layer on the device computes garbage: its tensors and every later one are
    // scrambled.
    let layer = |src: &Path, place: &'static str| {
        let at = order_of(src, place);
        move |e: &Entry, v: &[f32]| {
            (e.order >= at && e.role != Role::Parameters).then(|| scramble(v))
        }
    };
    for layout in [Layout::MsprobeNpy, Layout::Native] {
        let dev = llama("cuda_fp16");
        expect(
            &llama("cpu_fp32"),
            &dev,
            layout,
            layer(&dev, "Functional.linear.5.forward"),
            "Functional.linear.5.forward",
            DivergenceKind::Scrambled,
        );
        let dev = mobilenet("cuda_fp16");
        expect(
            &mobilenet("cpu_fp32"),
            &dev,
            layout,
            layer(&dev, "Module.features.3.block.0.0.Conv2d.forward.0"),
            "Module.features.3.block.0.0.Conv2d.forward.0",
            DivergenceKind::Scrambled,
        );
    }
}

#[test]
fn overflow_to_inf_is_not_a_mask() {
    // One activation of the first MLP product overflows float16 on the device, and the inf
    // travels on through every later tensor of that size.
    let dev = llama("cuda_fp16");
    let at = order_of(&dev, "Tensor.__mul__.0.forward");
    let inf = move |e: &Entry, v: &[f32]| {
        let from_here = e.order > at || (e.order == at && e.role == Role::Output);
        (from_here && v.len() > 3 && e.role != Role::Parameters).then(|| {
            let mut v = v.to_vec();
            v[3] = f32::INFINITY;
            v
        })
    };
    let c = expect(
        &llama("cpu_fp32"),
        &dev,
        Layout::MsprobeNpy,
        inf,
        "Tensor.__mul__.0.forward",
        DivergenceKind::Overflow,
    );
    let p = c
        .pairs
        .iter()
        .find(|p| &*p.name == "Tensor.__mul__.0.forward.output.0")
        .unwrap();
    assert_eq!(p.metrics.as_ref().unwrap().overflow, 1);
}

#[test]
fn mobilenet_fp16_is_underflow_where_the_range_loss_starts_to_matter() {
    // A real H200 run: from the middle of the network on, the float16 outputs are all zero.
    let (r, d) = (open(&mobilenet("cpu_fp32")), open(&mobilenet("cuda_fp16")));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    let b = bisect::run(&r, &d, None, &CompareOptions::default(), false).unwrap();
    for x in [&c, &b] {
        let f = x.analysis.first_divergence.as_ref().unwrap();
        assert_eq!(f.kind, DivergenceKind::Underflow);
        assert_eq!(f.name, "Module.features.5.block.1.0.Conv2d.forward.0");
        assert!(f.reason.contains("smallest normal"), "{}", f.reason);
        assert!(f.advice.as_deref().unwrap().contains("float32"));
    }
    // Everything before it is within noise, and the all-zero tail is its drift.
    let first = c.analysis.first_divergence.as_ref().unwrap().order;
    let classifier = c
        .pairs
        .iter()
        .find(|p| &*p.name == "Module.classifier.3.Linear.forward.0.output.0")
        .unwrap();
    assert_eq!(classifier.metrics.as_ref().unwrap().dev_stats.norm, 0.0);
    assert_eq!(
        classifier.verdict,
        Some(driftscope::verdict::Verdict::Drift)
    );
    assert!(c
        .pairs
        .iter()
        .filter(|p| p.order < first)
        .all(|p| p.verdict != Some(driftscope::verdict::Verdict::Diverged)));
    // The plain (forward hooks, safetensors) dump of the same run says the same.
    let plain = |run: &str| h200(&format!("mobilenet/plain/{run}/activations.safetensors"));
    let c = compare(
        &open(&plain("cpu_fp32")),
        &open(&plain("cuda_fp16")),
        &CompareOptions::default(),
        &|| {},
    );
    let f = c.analysis.first_divergence.unwrap();
    assert_eq!(
        (f.name.as_str(), f.kind),
        ("features.5.block.1.0", DivergenceKind::Underflow)
    );
    let out = std::process::Command::new(bin())
        .args([
            "check".as_ref(),
            mobilenet("cpu_fp32").as_os_str(),
            mobilenet("cuda_fp16").as_os_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn baseline_mode_names_an_op_that_changed_with_identical_inputs() {
    // The device run is the baseline run except one op, which now rounds differently: its
    // output moves by 3e-3 (6 float16 units), its error against the reference grows by < 4x.
    let t = tempfile::tempdir().unwrap();
    let dev = t.path().join("dev");
    let place = "Tensor.__add__.27.forward";
    rewrite(&llama("cuda_fp16"), &dev, Layout::MsprobeNpy, |e, v| {
        (&*e.place == place && e.role == Role::Output)
            .then(|| v.iter().map(|x| x * (1.0 + 3e-3)).collect())
    });
    let (r, d, d0) = (
        open(&llama("cpu_fp32")),
        open(&dev),
        open(&llama("cuda_fp16")),
    );
    let c = bisect::run(&r, &d, Some(&d0), &CompareOptions::default(), false).unwrap();
    let f = c.analysis.first_divergence.unwrap();
    assert_eq!(
        (f.name.as_str(), f.kind),
        (place, DivergenceKind::OpChanged)
    );
    assert!(f.rel_l2_err < 4.0 * f.inherited_err, "{}", f.reason);
    assert!(f.reason.contains("bit-identical"), "{}", f.reason);
    // The baseline against itself changes nothing.
    let same = bisect::run(&r, &d0, Some(&d0), &CompareOptions::default(), false).unwrap();
    assert!(same.analysis.first_divergence.is_none());
}

#[test]
fn a_folder_of_unrelated_arrays_inherits_nothing() {
    // Two unrelated arrays in name order: a broken int8 array after a float one with a small
    // error must still be named (each array stands alone).
    let t = tempfile::tempdir().unwrap();
    let write = |dir: &Path, a: &[f32], b: &[i8]| {
        std::fs::create_dir_all(dir).unwrap();
        let fa = encode(DType::Float32, a);
        std::fs::write(
            dir.join("a.npy"),
            npy_bytes(DType::Float32, &[a.len()], &fa),
        )
        .unwrap();
        let bytes: Vec<u8> = b.iter().map(|&x| x as u8).collect();
        std::fs::write(
            dir.join("b.npy"),
            npy_bytes(DType::Int8, &[b.len()], &bytes),
        )
        .unwrap();
    };
    write(&t.path().join("ref"), &[1.0, 2.0, 3.0, 4.0], &[1, 2, 3, 4]);
    // The float array differs within float32 noise; once its error was "inherited" by the
    // next array in name order, and the int8 difference passed as ok.
    write(
        &t.path().join("dev"),
        &[1.0, 2.0, 3.0, 4.000_000_5],
        &[1, 2, 3, -4],
    );
    let c = compare(
        &open(&t.path().join("ref")),
        &open(&t.path().join("dev")),
        &CompareOptions::default(),
        &|| {},
    );
    // Integer places are not ranked by a ratio to their zero rounding (it printed 1e308).
    assert!(
        c.analysis.ranked.iter().all(|r| r.added < 1e6),
        "{:?}",
        c.analysis.ranked
    );
    let f = c.analysis.first_divergence.unwrap();
    assert_eq!(
        (f.name.as_str(), f.kind),
        ("b", DivergenceKind::IntegerMismatch)
    );
}

#[test]
fn clean_runs_stay_clean() {
    for run in ["cuda_tf32", "cuda_fp16", "cuda_bf16", "cpu_fp32_rerun"] {
        let (r, d) = (open(&llama("cpu_fp32")), open(&llama(run)));
        let c = compare(&r, &d, &CompareOptions::default(), &|| {});
        assert!(
            c.analysis.first_divergence.is_none(),
            "{run}: {}",
            c.analysis.summary
        );
    }
}
