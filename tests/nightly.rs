//! The nightly job on the real H200 dumps: `check`, `baseline`, `trend` as a CI runs them, exit
//! codes, JUnit read back by a JUnit parser, config limits and overrides, history and plots.

use crate::common;
use common::*;
use driftscope::compare::{compare, CompareOptions, Comparison};
use driftscope::nightly::{self, config::Config, FailureKind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const FAULT: &str = "Functional.silu.1.forward";

/// Clean fp16 run compared in-process once.
fn clean() -> &'static Comparison {
    static C: OnceLock<Comparison> = OnceLock::new();
    C.get_or_init(|| {
        compare(
            &open(&llama("cpu_fp32")),
            &open(&llama("cuda_fp16")),
            &CompareOptions::default(),
            &|| {},
        )
    })
}

fn check(c: &Comparison, toml: &str) -> nightly::CheckReport {
    let cfg = Config::parse(toml).unwrap();
    let noise = cfg.noise_options(Default::default());
    nightly::check(c, &cfg.compile().unwrap(), &noise, None)
}

/// A baseline of cpu_fp32 vs cuda_fp16 in `dir`, written by the binary.
fn make_baseline(dir: &Path, r: &Path, d: &Path) -> PathBuf {
    let b = dir.join("baseline.json");
    let (code, out, err) = run(&["baseline", s(r), s(d), "-o", s(&b)]);
    assert_eq!(code, 0, "{out}{err}");
    b
}

fn junit(p: &Path) -> junit_parser::TestSuites {
    let f = std::io::BufReader::new(std::fs::File::open(p).unwrap());
    junit_parser::from_reader(f).unwrap()
}

#[test]
fn baseline_passes_against_itself_and_a_rerun_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let b = make_baseline(dir.path(), &llama("cpu_fp32"), &llama("cuda_fp16"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&b).unwrap()).unwrap();
    assert_eq!(v["schema"], "driftscope-baseline");
    assert_eq!(v["version"], 1);
    assert!(v["places"][FAULT]["rel_l2_err"].as_f64().unwrap() > 0.0);
    // Metrics, not tensors: small.
    assert!(std::fs::metadata(&b).unwrap().len() < 200_000);
    for r in ["cpu_fp32", "cpu_fp32_rerun"] {
        let (code, out, err) = run(&[
            "check",
            s(&llama(r)),
            s(&llama("cuda_fp16")),
            "--baseline",
            s(&b),
        ]);
        assert_eq!(code, 0, "{r}: {out}{err}");
        assert!(out.contains("PASS"), "{out}");
    }
    let pb = make_baseline(
        &dir.path().join("plain"),
        &llama_plain("cpu_fp32"),
        &llama_plain("cuda_fp16"),
    );
    let (code, out, err) = run(&[
        "check",
        s(&llama_plain("cpu_fp32_rerun")),
        s(&llama_plain("cuda_fp16")),
        "--baseline",
        s(&pb),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // Another layout's place names are all new: listed, not a regression by default.
    let (code, out, _) = run(&[
        "check",
        s(&llama_plain("cpu_fp32")),
        s(&llama_plain("cuda_fp16")),
        "--baseline",
        s(&b),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("new place(s) vs the baseline") && out.contains("vanished place(s)"),
        "{out}"
    );
}

#[test]
fn fault_fails_with_exit_1_naming_the_place_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let b = make_baseline(dir.path(), &llama("cpu_fp32"), &llama("cuda_fp16"));
    let (xml, md, js) = (
        dir.path().join("j.xml"),
        dir.path().join("s.md"),
        dir.path().join("r.json"),
    );
    let (code, out, err) = run(&[
        "check",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16_fault_silu_l1")),
        "--baseline",
        s(&b),
        "--junit",
        s(&xml),
        "--markdown",
        s(&md),
        "--json",
        s(&js),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&format!("FAIL {FAULT}")), "{out}");
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(
        md.contains("accuracy regression")
            && md.contains(&format!("**First divergence (own_error):** `{FAULT}`")),
        "{md}"
    );
    assert!(md.contains("r.json"), "{md}");
    let j = junit(&xml);
    assert_eq!(j.suites.len(), 1);
    let suite = &j.suites[0];
    let places = driftscope::verdict::places(
        &serde_json::from_slice::<Comparison>(&std::fs::read(&js).unwrap())
            .unwrap()
            .pairs,
    )
    .len();
    // One case per place plus the run's coverage case.
    assert_eq!(suite.cases.len(), places + 1);
    assert_eq!(suite.tests as usize, places + 1);
    let failed: Vec<_> = suite
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .collect();
    assert_eq!(failed.len() as u64, suite.failures);
    assert!(failed.len() > 1);
    let silu = failed
        .iter()
        .find(|c| c.original_name == FAULT)
        .expect("silu case fails");
    let f = silu.status.failure_as_ref();
    assert!(
        f.message.contains("first divergence") && f.message.contains("baseline"),
        "{}",
        f.message
    );
    assert_eq!(f.failure_type, "divergence");
    // Nothing before the fault fails.
    let first_failed = suite
        .cases
        .iter()
        .position(|c| c.status.is_failure())
        .unwrap();
    assert_eq!(suite.cases[first_failed].original_name, FAULT);
}

#[test]
fn clean_run_passes_junit_cases_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("j.xml");
    let (code, out, _) = run(&[
        "check",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16")),
        "--config",
        s(&example_config()),
        "--junit",
        s(&xml),
    ]);
    assert_eq!(code, 0, "{out}");
    let j = junit(&xml);
    let suite = &j.suites[0];
    assert_eq!(suite.failures, 0);
    // Ignored places are skipped cases.
    assert!(suite
        .cases
        .iter()
        .any(|c| c.status.is_skipped() && c.original_name.starts_with("Functional.dropout.")));
    assert!(suite
        .cases
        .iter()
        .any(|c| c.status.is_success() && c.original_name == FAULT));
}

#[test]
fn junit_groups_by_op_type() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, xml) = (dir.path().join("c.toml"), dir.path().join("j.xml"));
    std::fs::write(&cfg, "[junit]\ngroup_by = \"op_type\"\n").unwrap();
    let (code, _, _) = run(&[
        "check",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16_fault_silu_l1")),
        "--config",
        s(&cfg),
        "--junit",
        s(&xml),
    ]);
    assert_eq!(code, 1);
    let suite = &junit(&xml).suites[0];
    let names: Vec<&str> = suite
        .cases
        .iter()
        .map(|c| c.original_name.as_str())
        .collect();
    assert!(
        names.contains(&"silu") && names.contains(&"linear"),
        "{names:?}"
    );
    let failed: Vec<&str> = suite
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .map(|c| c.original_name.as_str())
        .collect();
    assert_eq!(failed, ["silu"]);
    assert!(suite
        .cases
        .iter()
        .find(|c| c.original_name == "silu")
        .unwrap()
        .status
        .failure_as_ref()
        .message
        .contains(FAULT));
}

#[test]
fn broken_truncated_or_missing_dumps_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // Copy a run and truncate one tensor file.
    let src = std::fs::read_dir(llama("cuda_fp16_fault_silu_l1").join("step0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let dst = dir.path().join("run/step0/proc0");
    std::fs::create_dir_all(dst.join("dump_tensor_data")).unwrap();
    for f in ["dump.json", "stack.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    for e in std::fs::read_dir(src.join("dump_tensor_data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("dump_tensor_data").join(e.file_name())).unwrap();
    }
    let f = dst.join("dump_tensor_data/Functional.linear.5.forward.output.0.pt");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 3]).unwrap();
    let hist = dir.path().join("h.jsonl");
    // The run also diverges, but an input error wins over a regression.
    let (code, _, err) = run(&[
        "check",
        s(&llama("cpu_fp32")),
        s(&dir.path().join("run")),
        "--history",
        s(&hist),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("could not be read") && err.contains("Functional.linear.5.forward.output.0"),
        "{err}"
    );
    assert!(!hist.exists(), "a broken run must not enter the history");
    let (code, _, err) = run(&["check", s(&llama("cpu_fp32")), "/nonexistent/nightly/dump"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/nightly/dump"), "{err}");
    let (code, _, err) = run(&[
        "baseline",
        s(&llama("cpu_fp32")),
        s(&dir.path().join("run")),
        "-o",
        s(&dir.path().join("b.json")),
    ]);
    assert_eq!(code, 2, "{err}");
    // A bad baseline or config is an input error too.
    std::fs::write(dir.path().join("bad.json"), "{\"schema\": \"other\"}").unwrap();
    let (code, _, err) = run(&[
        "check",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16")),
        "--baseline",
        s(&dir.path().join("bad.json")),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a driftscope baseline"), "{err}");
    std::fs::write(dir.path().join("bad.toml"), "[limits]\nmax_rel_l2 = 1\n").unwrap();
    let (code, _, err) = run(&[
        "check",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16")),
        "--config",
        s(&dir.path().join("bad.toml")),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml"), "{err}");
}

fn example_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/driftscope.example.toml")
}

#[test]
fn example_config_parses_and_says_what_it_documents() {
    let c = Config::load(&example_config()).unwrap();
    assert_eq!(c.limits.max_rel_l2_err, Some(0.05));
    assert_eq!(c.coverage.max_unmatched_reference, Some(0));
    assert_eq!(c.overrides.len(), 3);
    let c = c.compile().unwrap();
    assert!(c.rules("Functional.dropout.0.forward", None).ignored);
    assert!(c.rules("Tensor.sin.0.forward", None).ignored);
    assert_eq!(
        c.rules("Functional.linear.3.forward", Some("linear"))
            .limits
            .max_rel_l2_err,
        Some(0.02)
    );
    assert_eq!(
        c.rules("Functional.softmax.0.forward", Some("softmax"))
            .limits
            .min_cosine,
        Some(0.9999)
    );
}

#[test]
fn config_limits_overrides_and_ignores_are_honoured() {
    let c = clean();
    assert!(check(c, "").passed);
    let sums = nightly::place_summaries(c);
    let worst = sums
        .iter()
        .max_by(|a, b| {
            a.metrics
                .rel_l2_err
                .unwrap_or(0.0)
                .total_cmp(&b.metrics.rel_l2_err.unwrap_or(0.0))
        })
        .unwrap();
    let e = worst.metrics.rel_l2_err.unwrap();
    let limit = e * 0.9;
    let r = check(c, &format!("[limits]\nmax_rel_l2_err = {limit:e}\n"));
    assert!(!r.passed);
    let failed: Vec<_> = r.places.iter().filter(|p| !p.failures.is_empty()).collect();
    assert!(failed.iter().any(|p| p.name == worst.name));
    for p in &failed {
        let f = &p.failures[0];
        assert_eq!(
            (f.kind, f.metric.as_str(), f.limit),
            (FailureKind::Limit, "rel_l2_err", Some(limit))
        );
        assert!(f.value.unwrap() > limit);
        assert!(
            f.message.contains("rel_l2_err") && f.message.contains("exceeds limit"),
            "{}",
            f.message
        );
    }
    // A glob override lifts the limit for the places it names.
    let glob = format!("{}*", &worst.name[..worst.name.find('.').unwrap() + 1]);
    let r2 = check(
        c,
        &format!("[limits]\nmax_rel_l2_err = {limit:e}\n[[override]]\npattern = \"{glob}\"\nmax_rel_l2_err = 1.0\n"),
    );
    assert!(r2
        .places
        .iter()
        .filter(|p| !p.failures.is_empty())
        .all(|p| !glob::Pattern::new(&glob).unwrap().matches(&p.name)));
    assert!(!r2
        .places
        .iter()
        .any(|p| p.name == worst.name && !p.failures.is_empty()));
    // By op type, and ignoring: every failing place ignored passes the run.
    let op = worst.metrics.op_type.clone().unwrap();
    let r3 = check(
        c,
        &format!("[limits]\nmax_rel_l2_err = {limit:e}\n[[override]]\nop_type = \"{}\"\nmax_rel_l2_err = 1.0\n", op.to_uppercase()),
    );
    assert!(!r3
        .places
        .iter()
        .any(|p| p.metrics.op_type.as_deref() == Some(&op) && !p.failures.is_empty()));
    let names: Vec<String> = failed.iter().map(|p| format!("{:?}", p.name)).collect();
    let r4 = check(
        c,
        &format!(
            "ignore = [{}]\n[limits]\nmax_rel_l2_err = {limit:e}\n",
            names.join(", ")
        ),
    );
    assert!(r4.passed, "{}", r4.text());
    // Cosine limits, and coverage.
    let r5 = check(c, "[limits]\nmin_cosine = 0.99999999\n");
    assert!(r5
        .places
        .iter()
        .flat_map(|p| &p.failures)
        .any(|f| f.metric == "cosine" && f.message.contains("is below limit")));
    let mut partial = c.clone();
    partial.unmatched_reference = vec!["a".into(), "b".into()];
    assert!(check(&partial, "[coverage]\nmax_unmatched_reference = 2\n").passed);
    let r6 = check(&partial, "[coverage]\nmax_unmatched_reference = 1\n");
    assert!(!r6.passed && r6.run_failures[0].metric == "unmatched_reference");
    // The noise model's options reach the verdict: a huge factor makes the fault pass.
    let cfg = Config::parse(
        "[noise]\nnoise_factor = 1000.0\namplification = 1000.0\nfp32_matmul = \"tf32\"\n",
    )
    .unwrap();
    let noise = cfg.noise_options(Default::default());
    assert_eq!((noise.noise_factor, noise.amplification), (1000.0, 1000.0));
    let f = compare(
        &open(&llama("cpu_fp32")),
        &open(&llama("cuda_fp16_fault_silu_l1")),
        &CompareOptions {
            noise: noise.clone(),
            ..CompareOptions::default()
        },
        &|| {},
    );
    assert!(nightly::check(&f, &cfg.compile().unwrap(), &noise, None).passed);
}

#[test]
fn history_and_trend_mark_the_regression() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("hist/h.jsonl");
    let runs = [
        ("n1", "cuda_fp16", 0),
        ("n2", "cuda_fp16", 0),
        ("n3", "cuda_fp16_fault_silu_l1", 1),
        ("n4", "cuda_fp16_fault_silu_l1", 1),
    ];
    for (id, dev, want) in runs {
        let (code, out, _) = run(&[
            "check",
            s(&llama("cpu_fp32")),
            s(&llama(dev)),
            "--history",
            s(&h),
            "--run-id",
            id,
        ]);
        assert_eq!(code, want, "{out}");
    }
    let recs = nightly::history::load(&h).unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[2].run_id.as_deref(), Some("n3"));
    assert_eq!(recs[2].first_divergence.as_deref(), Some(FAULT));
    assert!(recs[0].final_err().unwrap() > 0.0);
    assert!(recs[3].rel_l2_err[FAULT].unwrap() > 0.01);
    let html = dir.path().join("out/trend.html");
    let (code, out, err) = run(&["trend", s(&h), "-o", s(&html)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("regression started at n3"), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg")
            && !page.contains("<script")
            && page.contains("regression started: n3")
    );
    let png = std::fs::read(html.with_extension("png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000);
    let svg = std::fs::read_to_string(html.with_extension("svg")).unwrap();
    assert!(
        svg.contains("<svg")
            && svg.contains("regression started: n3")
            && svg.contains("final output")
    );
    // Chosen places.
    let (code, _, _) = run(&["trend", s(&h), "-o", s(&html), "--place", FAULT]);
    assert_eq!(code, 0);
    assert!(std::fs::read_to_string(&html).unwrap().contains(FAULT));
    // A broken history is an input error.
    std::fs::write(&h, "not json\n").unwrap();
    let (code, _, err) = run(&["trend", s(&h), "-o", s(&html)]);
    assert_eq!(code, 2);
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn ignored_places_are_left_out_of_the_ranking() {
    let c = clean();
    let top = &c.analysis.ranked[0].name;
    let r = check(c, &format!("ignore = [{top:?}]\n"));
    assert!(r.places.iter().any(|p| *p.name == **top && p.ignored));
    assert!(!r.ranked.iter().any(|k| &k.name == top));
    assert!(nightly::markdown::render(&r, None).contains("Places adding the most error"));
    assert!(!nightly::markdown::render(&r, None).contains(&format!("`{top}`")));
}

/// Against a baseline, an fp16 run's places are allowed the run's fp16 rounding noise, also
/// where the op itself ran in fp32 (RMSNorm's pow and mean in an autocast llama): the message
/// used to say "16x rounding 5.960e-8", float32's unit roundoff.
#[test]
fn baseline_allowance_of_an_fp16_run_is_fp16_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let (r, clean, fault) = (
        llama("cpu_fp32"),
        llama("cuda_fp16"),
        llama("cuda_fp16_fault_silu_l1"),
    );
    let b = make_baseline(dir.path(), &r, &clean);
    let (code, out, err) = run(&["check", s(&r), s(&fault), "--baseline", s(&b)]);
    assert_eq!(code, 1, "{out}{err}");
    let baseline_failures: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("regressed beyond baseline"))
        .collect();
    assert!(baseline_failures.iter().any(|l| l.contains(FAULT)), "{out}");
    // RMSNorm's pow ran in fp32 on the device, downstream of the fault: its error (6.7e-3
    // against a baseline of 1.0e-3) is within the run's fp16 noise allowance (1.0e-3 + 16 *
    // 2^-11), as it is for the fp16 ops beside it; float32's 16 * 2^-24 failed it.
    assert!(
        !baseline_failures
            .iter()
            .any(|l| l.contains("Tensor.pow.4.forward")),
        "{out}"
    );
    for l in &baseline_failures {
        let u: f64 = l
            .rsplit("x rounding ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .parse()
            .unwrap();
        // float16's unit roundoff is 2^-11 = 4.883e-4.
        assert!(u >= 4.88e-4, "{l}");
    }
}
