//! `compare` on the real H200 dumps: pairing, metrics against an independent f64
//! computation, and the layouts (msprobe .pt, safetensors, npy).

use crate::common;
use common::*;
use driftscope::compare::{compare, CompareOptions, Status};
use driftscope::dump::Format;

/// Independent f64 reference: plain loops over fully decoded tensors.
fn naive(a: &[f64], b: &[f64]) -> (f64, f64, f64, f64) {
    let (mut ab, mut aa, mut bb, mut ee, mut mx, mut mr) = (0.0, 0.0, 0.0, 0.0, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() || x.abs() >= 65504.0 || y.abs() >= 65504.0 {
            continue;
        }
        ab += x * y;
        aa += x * x;
        bb += y * y;
        ee += (y - x) * (y - x);
        mx = mx.max((y - x).abs());
        if x != 0.0 {
            mr = mr.max((y - x).abs() / x.abs());
        }
    }
    // docs/metrics.md: both sides all zero -> 1, exactly one side all zero -> 0.
    let cos = match (aa == 0.0, bb == 0.0) {
        (true, true) => 1.0,
        (true, false) | (false, true) => 0.0,
        _ => ab / (aa.sqrt() * bb.sqrt()),
    };
    let rel = if aa > 0.0 { (ee / aa).sqrt() } else { 0.0 };
    (cos, mx, rel, mr)
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) || (a - b).abs() < 1e-300
}

#[test]
fn llama_msprobe_pairs_every_entry_and_file() {
    for run in [
        "cpu_fp32_rerun",
        "cuda_tf32",
        "cuda_fp16",
        "cuda_bf16",
        "cuda_fp16_fault_silu_l1",
    ] {
        let r = open(&llama("cpu_fp32"));
        let d = open(&llama(run));
        assert_eq!(r.format, Format::Msprobe);
        assert_eq!(r.place_count(), 158);
        assert_eq!(r.entries.len(), 415);
        let c = compare(&r, &d, &CompareOptions::default(), &|| {});
        assert_eq!(c.pairs.len(), 415, "{run}");
        assert!(
            c.unmatched_reference.is_empty() && c.unmatched_candidate.is_empty(),
            "{run}"
        );
        assert!(
            c.pairs.iter().all(|p| p.status == Status::Compared),
            "{run}"
        );
    }
}

#[test]
fn metrics_agree_with_an_independent_f64_computation() {
    let cases = [
        (llama("cpu_fp32"), llama("cuda_fp16_fault_silu_l1")),
        (llama("cpu_fp32"), llama("cuda_bf16")),
        (llama("cpu_fp32"), llama("cuda_tf32")),
        (llama_plain("cpu_fp32"), llama_plain("cuda_bf16")),
        (
            h200("mobilenet/msprobe/cpu_fp32"),
            h200("mobilenet/msprobe/cuda_fp16"),
        ),
    ];
    let mut checked = 0;
    for (rp, dp) in cases {
        let (r, d) = (open(&rp), open(&dp));
        let c = compare(&r, &d, &CompareOptions::default(), &|| {});
        for p in &c.pairs {
            let m = p.metrics.as_ref().unwrap();
            let re = r.entries.iter().find(|e| e.name == p.name).unwrap();
            let de = d.entries.iter().find(|e| e.name == p.name).unwrap();
            let a = r.load(re).unwrap().to_f64_vec();
            let b = d.load(de).unwrap().to_f64_vec();
            let (cos, mx, rel, mr) = naive(&a, &b);
            assert!(
                (m.cosine - cos).abs() <= 1e-9,
                "{}: cosine {} vs {cos}",
                p.name,
                m.cosine
            );
            assert!(
                close(m.max_abs_err, mx, 1e-6),
                "{}: max abs {} vs {mx}",
                p.name,
                m.max_abs_err
            );
            assert!(
                close(m.rel_l2_err, rel, 1e-6),
                "{}: rel L2 {} vs {rel}",
                p.name,
                m.rel_l2_err
            );
            assert!(
                close(m.max_rel_err, mr, 1e-6),
                "{}: max rel {} vs {mr}",
                p.name,
                m.max_rel_err
            );
            checked += 1;
        }
    }
    assert!(checked > 1500, "checked {checked}");
}

#[test]
fn attention_mask_fill_values_are_masked_not_errors() {
    let (r, d) = (open(&llama("cpu_fp32")), open(&llama("cuda_fp16")));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    let masked: Vec<_> = c
        .pairs
        .iter()
        .filter(|p| p.metrics.as_ref().is_some_and(|m| m.masked > 0))
        .collect();
    assert!(
        !masked.is_empty(),
        "the causal mask holds -3.4e38 vs -65504 fill values"
    );
    for p in masked {
        let m = p.metrics.as_ref().unwrap();
        assert_eq!(m.nonfinite_mismatch, 0, "{}", p.name);
        assert!(
            m.max_abs_err < 1.0,
            "{}: fill values leaked into max abs err {}",
            p.name,
            m.max_abs_err
        );
    }
}

#[test]
fn safetensors_keep_order_and_bf16() {
    let d = open(&llama_plain("cuda_bf16"));
    assert_eq!(d.format, Format::Safetensors);
    assert_eq!(d.entries.len(), 57);
    assert_eq!(&*d.entries[0].name, "model.embed_tokens");
    assert_eq!(d.entries[0].dtype, Some(driftscope::dump::DType::Bfloat16));
    let act = d
        .entries
        .iter()
        .position(|e| &*e.name == "model.layers.1.mlp.act_fn")
        .unwrap();
    let mlp = d
        .entries
        .iter()
        .position(|e| &*e.name == "model.layers.1.mlp")
        .unwrap();
    assert!(act < mlp, "children complete before their parent");
}

#[test]
fn npy_folders_pair_by_relative_path() {
    let r = open(&h200("llama/plain/cpu_fp32/npy"));
    let d = open(&h200("llama/plain/cuda_fp16/npy"));
    assert_eq!(r.format, Format::Npy);
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    assert_eq!(c.pairs.len(), r.entries.len());
    assert!(c.unmatched_reference.is_empty() && c.unmatched_candidate.is_empty());
    // The same module through two layouts gives the same numbers (npy holds fp32 upcasts).
    let st = compare(
        &open(&llama_plain("cpu_fp32")),
        &open(&llama_plain("cuda_fp16")),
        &CompareOptions::default(),
        &|| {},
    );
    let a = c
        .pairs
        .iter()
        .find(|p| &*p.name == "model.layers.1.mlp.act_fn")
        .unwrap();
    let b = st
        .pairs
        .iter()
        .find(|p| &*p.name == "model.layers.1.mlp.act_fn")
        .unwrap();
    let (ma, mb) = (a.metrics.as_ref().unwrap(), b.metrics.as_ref().unwrap());
    assert!(close(ma.rel_l2_err, mb.rel_l2_err, 1e-9));
}

#[test]
fn every_run_pair_of_every_layout_compares() {
    for (model, layout) in [
        ("llama", "msprobe"),
        ("llama", "plain"),
        ("mobilenet", "msprobe"),
        ("mobilenet", "plain"),
    ] {
        let dir = h200(&format!("{model}/{layout}"));
        let runs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        for a in &runs {
            for b in &runs {
                let (pa, pb) = if layout == "plain" {
                    (
                        a.join("activations.safetensors"),
                        b.join("activations.safetensors"),
                    )
                } else {
                    (a.clone(), b.clone())
                };
                let c = compare(&open(&pa), &open(&pb), &CompareOptions::default(), &|| {});
                assert!(c.unmatched_reference.is_empty() && c.unmatched_candidate.is_empty());
                assert!(
                    c.pairs.iter().all(|p| p.status == Status::Compared),
                    "{pa:?} {pb:?}"
                );
                if a == b {
                    assert_eq!(c.analysis.overall, driftscope::verdict::Overall::Identical);
                }
            }
        }
    }
}

/// The JSON report reads back into the same comparison: a merge (`merge --check`) and the
/// Python API judge what they read. Identical pairs have an infinite SNR, which JSON holds as
/// null; such a pair once read back with no metrics at all.
#[test]
fn json_report_reads_back_whole() {
    let (r, d) = (open(&llama("cpu_fp32")), open(&llama("cuda_fp16")));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    let identical = c
        .pairs
        .iter()
        .filter(|p| p.metrics.as_ref().is_some_and(|m| m.snr_db.is_infinite()))
        .count();
    assert!(
        identical > 0,
        "the run has identical pairs (integer tensors)"
    );
    let json = serde_json::to_vec_pretty(&c).unwrap();
    let back: driftscope::compare::Comparison = serde_json::from_slice(&json).unwrap();
    for (a, b) in c.pairs.iter().zip(&back.pairs) {
        assert_eq!(a.metrics.is_some(), b.metrics.is_some(), "{}", a.name);
        if let (Some(x), Some(y)) = (&a.metrics, &b.metrics) {
            assert_eq!(x.rel_l2_err.to_bits(), y.rel_l2_err.to_bits(), "{}", a.name);
            assert!(y.snr_db == x.snr_db || !x.snr_db.is_finite() && y.snr_db.is_nan());
        }
    }
    assert_eq!(serde_json::to_vec_pretty(&back).unwrap(), json);
}

/// Without histograms every pair's metrics, verdicts and the analysis are those measured with
/// them, on the real dumps (fp32 against fp16, bf16 and the injected fault: ref == 0 elements,
/// masked values and every verdict occur); only the two histograms are left out.
#[test]
fn skipping_histograms_changes_nothing_else() {
    use driftscope::metrics::Histograms;
    let r = open(&llama("cpu_fp32"));
    for dev in ["cuda_fp16", "cuda_bf16", "cuda_fp16_fault_silu_l1"] {
        let d = open(&llama(dev));
        let with = compare(&r, &d, &CompareOptions::default(), &|| {});
        let skip = CompareOptions {
            histograms: Histograms::Skip,
            ..CompareOptions::default()
        };
        let without = compare(&r, &d, &skip, &|| {});
        let mut want = serde_json::to_value(&with).unwrap();
        let got = serde_json::to_value(&without).unwrap();
        let mut measured = 0;
        for p in want["pairs"].as_array_mut().unwrap() {
            if let Some(m) = p.as_object_mut() {
                let a = m.remove("hist_abs_err");
                let b = m.remove("hist_rel_err");
                assert_eq!(a.is_some(), b.is_some());
                measured += a.is_some() as usize;
            }
        }
        assert!(measured > 100, "{dev}: {measured} pairs measured");
        assert_eq!(got, want, "{dev}");
    }
}
