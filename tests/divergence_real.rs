//! Noise-aware verdicts and first-divergence bisection on the real H200 dumps: the injected
//! SiLU fault is named first, in both layouts and every method; clean runs are within noise.

use crate::common;
use common::*;
use driftscope::bisect;
use driftscope::compare::{compare, CompareOptions};
use driftscope::verdict::{Method, Overall, Verdict};

fn first(c: &driftscope::compare::Comparison) -> Option<(String, String)> {
    c.analysis
        .first_divergence
        .as_ref()
        .map(|f| (f.name.clone(), f.tensor.clone()))
}

#[test]
fn fault_is_named_first_in_msprobe_layout_by_every_method() {
    let (r, d) = (
        open(&llama("cpu_fp32")),
        open(&llama("cuda_fp16_fault_silu_l1")),
    );
    let o = CompareOptions::default();
    let want = Some((
        "Functional.silu.1.forward".to_string(),
        "Functional.silu.1.forward.output.0".to_string(),
    ));
    let ex = compare(&r, &d, &o, &|| {});
    assert_eq!(first(&ex), want);
    let fault_order = ex.analysis.first_divergence.as_ref().unwrap().order;
    // Nothing before the fault is flagged.
    for p in &ex.pairs {
        if p.order < fault_order {
            assert!(
                matches!(p.verdict, Some(Verdict::Ok) | Some(Verdict::Identical)),
                "{} flagged {:?} before the fault",
                p.name,
                p.verdict
            );
        }
    }
    let bi = bisect::run(&r, &d, None, &o, false).unwrap();
    assert_eq!(first(&bi), want);
    assert!(
        bi.analysis.tensors_read < 60,
        "bisect read {} of {}",
        bi.analysis.tensors_read,
        bi.analysis.tensors_total
    );
    let exh = bisect::run(&r, &d, None, &o, true).unwrap();
    assert_eq!(first(&exh), want);
    // The reason compares the error to the noise and to the inputs' error.
    let f = ex.analysis.first_divergence.unwrap();
    assert!(f.rel_l2_err > 16.0 * f.inherited_err, "{f:?}");
    assert!(
        f.stack.as_deref().unwrap_or("").contains("activations.py"),
        "{f:?}"
    );
}

#[test]
fn fault_is_named_first_in_safetensors_layout() {
    let (r, d) = (
        open(&llama_plain("cpu_fp32")),
        open(&llama_plain("cuda_fp16_fault_silu_l1")),
    );
    let o = CompareOptions::default();
    for c in [
        compare(&r, &d, &o, &|| {}),
        bisect::run(&r, &d, None, &o, false).unwrap(),
    ] {
        assert_eq!(
            c.analysis
                .first_divergence
                .as_ref()
                .map(|f| f.name.as_str()),
            Some("model.layers.1.mlp.act_fn")
        );
        assert_eq!(c.analysis.overall, Overall::Diverged);
    }
}

#[test]
fn clean_runs_are_within_the_noise_of_their_precision() {
    let o = CompareOptions::default();
    for (run, precision) in [
        ("cuda_tf32", "fp32"),
        ("cuda_fp16", "float16"),
        ("cuda_bf16", "bfloat16"),
    ] {
        for (rp, dp) in [
            (llama("cpu_fp32"), llama(run)),
            (llama_plain("cpu_fp32"), llama_plain(run)),
        ] {
            let (r, d) = (open(&rp), open(&dp));
            for c in [
                compare(&r, &d, &o, &|| {}),
                bisect::run(&r, &d, None, &o, false).unwrap(),
            ] {
                assert_eq!(
                    c.analysis.overall,
                    Overall::WithinNoise,
                    "{run}: {}",
                    c.analysis.summary
                );
                assert!(c.analysis.first_divergence.is_none());
                assert!(
                    c.analysis.summary.contains(precision),
                    "{run}: {}",
                    c.analysis.summary
                );
                assert!(c.pairs.iter().all(|p| p.verdict != Some(Verdict::Diverged)));
            }
        }
    }
    // MobileNet's fp16 run is not clean: its activations underflow float16 (false_greens.rs).
}

#[test]
fn rerun_is_identical() {
    let (r, d) = (open(&llama("cpu_fp32")), open(&llama("cpu_fp32_rerun")));
    let c = compare(&r, &d, &CompareOptions::default(), &|| {});
    assert_eq!(c.analysis.overall, Overall::Identical);
    assert!(c.analysis.summary.starts_with("identical"));
}

#[test]
fn baseline_mode_names_the_same_first_divergence() {
    let r = open(&llama("cpu_fp32"));
    let d = open(&llama("cuda_fp16_fault_silu_l1"));
    let d0 = open(&llama("cuda_fp16"));
    let c = bisect::run(&r, &d, Some(&d0), &CompareOptions::default(), false).unwrap();
    assert_eq!(
        c.analysis
            .first_divergence
            .as_ref()
            .map(|f| f.name.as_str()),
        Some("Functional.silu.1.forward")
    );
    // Against itself the baseline shows no departure.
    let same = bisect::run(&r, &d0, Some(&d0), &CompareOptions::default(), false).unwrap();
    assert!(same.analysis.first_divergence.is_none());
}

#[test]
fn clean_bisect_clears_a_run_only_after_judging_it() {
    // The bf16 llama computes its norms and rotary angles in float32: a fault there could stay
    // below the search's bf16 elevation line, so bisect judges every place before it calls the
    // run clean, and agrees with compare.
    let (r, d) = (open(&llama("cpu_fp32")), open(&llama("cuda_bf16")));
    let c = bisect::run(&r, &d, None, &CompareOptions::default(), false).unwrap();
    assert!(
        c.analysis.first_divergence.is_none(),
        "{}",
        c.analysis.summary
    );
    assert_eq!(c.analysis.method, Method::BisectThenScan);
    assert_eq!(c.analysis.tensors_total, 415);
    // On the fault run the search still reads few pairs.
    let d = open(&llama("cuda_fp16_fault_silu_l1"));
    let c = bisect::run(&r, &d, None, &CompareOptions::default(), false).unwrap();
    assert!(
        c.analysis.tensors_read <= 60,
        "read {}",
        c.analysis.tensors_read
    );
    assert_eq!(c.analysis.method, Method::Bisect);
}

#[test]
fn calibration_run_keeps_the_fault_and_reports_evidence_and_margin() {
    use driftscope::verdict::calibrate::Calibration;
    use std::sync::Arc;
    let r = open(&llama("cpu_fp32"));
    let clean = open(&llama("cuda_fp16"));
    let cal = compare(&r, &clean, &CompareOptions::default(), &|| {});
    let o = CompareOptions {
        calibration: Some(Arc::new(Calibration::from_comparison(&cal))),
        ..CompareOptions::default()
    };
    let d = open(&llama("cuda_fp16_fault_silu_l1"));
    for c in [
        compare(&r, &d, &o, &|| {}),
        bisect::run(&r, &d, None, &o, false).unwrap(),
    ] {
        let f = c.analysis.first_divergence.as_ref().unwrap();
        assert_eq!(f.name, "Functional.silu.1.forward");
        assert!(f.z_score.unwrap() > 5.0, "{f:?}");
        assert!(f.p_value.unwrap() < 1e-6, "{f:?}");
        let cal = c.analysis.calibration.as_ref().unwrap();
        assert_eq!(cal.tensors, 415);
        assert!(cal.margin.unwrap() >= 1.0, "{cal:?}");
    }
    // Calibrated by itself, a clean run is within noise with a margin of at least the factor.
    let c = compare(&r, &clean, &o, &|| {});
    assert_eq!(c.analysis.overall, Overall::WithinNoise);
    assert!(c.analysis.calibration.unwrap().margin.unwrap() >= 4.0);
}
