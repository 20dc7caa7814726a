//! Replay on the ops zoo (`reference_dumps/ops`): real msprobe L1 dumps of single torch calls
//! (gelu, conv2d, attention, norms, ...) made on a CPU in float32 and in bfloat16. Every call
//! of the pure-Rust replay is checked against torch's own recorded output.

use crate::common;

use driftscope::dump::{DType, Dump};
use driftscope::replay::{self, recompute, rel_l2, Arg, ReplayVerdict, Side};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Ops of the zoo that the pure-Rust replay implements.
const PURE_RUST: &[&str] = &[
    "gelu",
    "relu",
    "log_softmax",
    "softmax",
    "layer_norm",
    "rms_norm",
    "conv2d",
    "scaled_dot_product_attention",
    "embedding",
    "matmul",
    "linear",
    "tanh",
    "batch_norm",
    "avg_pool2d",
];

/// Ops of the zoo outside it (replayed only through libtorch, `--features torch`).
const OUTSIDE: &[&str] = &[
    "erf",
    "cumsum",
    "clamp",
    "view",
    "transpose",
    "hardtanh",
    "group_norm",
    "addmm",
    "leaky_relu",
    "max_pool2d",
];

fn path(run: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("reference_dumps/ops/msprobe")
        .join(run)
}

fn dump(run: &str) -> Dump {
    common::open(&path(run))
}

/// msprobe's op name: `Functional.gelu.1.forward` -> `gelu`.
fn op_of(place: &str) -> &str {
    place.split('.').nth(1).unwrap()
}

#[test]
fn both_runs_hold_the_same_calls_each_classified() {
    let (r, d) = (dump("cpu_fp32"), dump("cpu_bf16"));
    let (rs, ds) = (Side::new(&r).unwrap(), Side::new(&d).unwrap());
    let places = rs.places();
    assert_eq!(places, ds.places());
    assert_eq!(places.len(), 29, "{places:?}");
    for p in &places {
        let op = op_of(p);
        assert!(
            PURE_RUST.contains(&op) ^ OUTSIDE.contains(&op),
            "{p}: classify `{op}` in PURE_RUST or OUTSIDE"
        );
    }
    // The bf16 run really is bfloat16 (the float inputs and outputs).
    let c = ds.call("Functional.conv2d.0.forward").unwrap();
    let Some(Arg::Tensor(out)) = c.outputs.first() else {
        panic!("no output")
    };
    assert_eq!(out.dtype, DType::Bfloat16);
}

/// Every pure-Rust call, recomputed in float64 from the cpu_fp32 dump's inputs, matches torch's
/// recorded float32 output.
#[test]
fn pure_rust_ops_match_torch_on_the_zoo() {
    let r = dump("cpu_fp32");
    let rs = Side::new(&r).unwrap();
    let mut seen: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for place in rs.places() {
        let call = rs.call(&place).unwrap_or_else(|e| panic!("{place}: {e}"));
        if !PURE_RUST.contains(&call.op.as_str()) {
            continue;
        }
        let want = recompute(&call).unwrap_or_else(|e| panic!("{place}: {e}"));
        let Some(Arg::Tensor(out)) = call.outputs.first() else {
            panic!("{place}: no output tensor")
        };
        assert_eq!(out.dtype, DType::Float32, "{place}");
        let e = rel_l2(&out.data, &want).unwrap();
        assert!(e < 1e-5, "{place}: rel L2 {e} against torch");
        let w = seen.entry(call.op.clone()).or_insert((0.0, 0));
        w.0 = w.0.max(e);
        w.1 += 1;
    }
    // Each family by name, with its variants: gelu none+tanh, rms_norm with and without eps,
    // conv2d strided+padded and grouped+dilated+'same', attention causal/bool/additive mask.
    for (op, n) in [
        ("gelu", 2),
        ("relu", 1),
        ("log_softmax", 1),
        ("softmax", 1),
        ("layer_norm", 1),
        ("rms_norm", 2),
        ("conv2d", 2),
        ("scaled_dot_product_attention", 3),
        ("embedding", 1),
        ("matmul", 1),
        ("linear", 1),
        ("tanh", 1),
    ] {
        let got = seen.get(op).map_or(0, |w| w.1);
        assert_eq!(got, n, "{op}: {got} call(s) replayed, want {n}: {seen:?}");
    }
}

/// On the bfloat16 run, every pure-Rust call's own error is bf16 rounding, not a fault; the
/// fp32 reference's own error is fp32 rounding.
#[test]
fn bf16_run_is_within_the_allowance() {
    let (r, d) = (dump("cpu_fp32"), dump("cpu_bf16"));
    let (rs, ds) = (Side::new(&r).unwrap(), Side::new(&d).unwrap());
    let rep = replay::replay(&ds, Some(&rs), &[]);
    let mut n = 0;
    for c in &rep.calls {
        if !PURE_RUST.contains(&op_of(&c.name)) {
            continue;
        }
        n += 1;
        assert!(c.replayed, "{c:?}");
        assert_eq!(c.dtype.as_deref(), Some("bfloat16"), "{c:?}");
        let (dev, allow) = (c.device_own_rel_l2.unwrap(), c.allowance.unwrap());
        let refe = c.reference_own_rel_l2.unwrap();
        assert!(dev <= allow, "{}: own {dev} > allowance {allow}", c.name);
        // bf16 unit roundoff is 2^-8: a correct bf16 op stays near it.
        assert!(dev < 1e-2, "{}: own {dev}", c.name);
        assert!(refe < 1e-6, "{}: reference own {refe}", c.name);
        assert!(
            matches!(c.verdict, ReplayVerdict::Ok | ReplayVerdict::Inherited),
            "{c:?}"
        );
    }
    assert_eq!(n, 19);
    // rms_norm without eps: torch's default is float32's eps for a bf16 input (computation
    // dtype), not finfo(bfloat16).eps; with that wrong default this call read as wrong on device.
    let c = replay::replay_call(&ds, Some(&rs), "Functional.rms_norm.1.forward");
    assert!(c.device_own_rel_l2.unwrap() < 1e-2, "{c:?}");
}

/// Ops outside the pure-Rust replay are refused with a reason in the default build.
#[cfg(not(feature = "torch"))]
#[test]
fn ops_outside_the_pure_rust_replay_are_not_replayable() {
    let (r, d) = (dump("cpu_fp32"), dump("cpu_bf16"));
    let (rs, ds) = (Side::new(&r).unwrap(), Side::new(&d).unwrap());
    let rep = replay::replay(&ds, Some(&rs), &[]);
    let mut seen = Vec::new();
    for c in &rep.calls {
        let op = op_of(&c.name);
        if !OUTSIDE.contains(&op) {
            continue;
        }
        assert!(!c.replayed, "{c:?}");
        assert_eq!(c.verdict, ReplayVerdict::NotReplayable, "{c:?}");
        let why = c.reason.as_deref().unwrap_or_else(|| panic!("{c:?}"));
        assert!(why.contains(&format!("`{op}`")), "{}: {why}", c.name);
        seen.push(op);
    }
    seen.sort_unstable();
    let mut want = OUTSIDE.to_vec();
    want.sort_unstable();
    assert_eq!(seen, want);
    assert_eq!((rep.replayed, rep.not_replayable), (19, 10));
}

#[cfg(not(feature = "torch"))]
#[test]
fn cli_replay_all_on_the_zoo() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let st = std::process::Command::new(common::bin())
        .arg("replay")
        .arg(path("cpu_bf16"))
        .arg("--reference")
        .arg(path("cpu_fp32"))
        .arg("--all")
        .arg("--json")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["replayed"], 19);
    assert_eq!(v["not_replayable"], 10);
    let calls = v["calls"].as_array().unwrap();
    assert!(calls.iter().all(|c| c["verdict"] != "wrong_on_device"));
}
