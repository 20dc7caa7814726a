//! Replay on the bundled llama msprobe dumps (recorded with torch on an H200 and its CPU).

use crate::common;

use driftscope::dump::{DType, Dump};
use driftscope::replay::{self, recompute, rel_l2, Arg, ReplayVerdict, Side};
use std::collections::BTreeMap;
use std::process::Command;

fn dump(run: &str) -> Dump {
    common::open(&common::llama(run))
}

#[test]
fn faulty_silu_is_wrong_on_the_device_and_clean_on_the_reference() {
    let (d, r) = (dump("cuda_fp16_fault_silu_l1"), dump("cpu_fp32"));
    let (ds, rs) = (Side::new(&d).unwrap(), Side::new(&r).unwrap());
    let c = replay::replay_call(&ds, Some(&rs), "Functional.silu.1.forward");
    assert!(c.replayed, "{c:?}");
    let dev = c.device_own_rel_l2.unwrap();
    let refe = c.reference_own_rel_l2.unwrap();
    assert!(dev > 1e-2 && dev < 1e-1, "device own error {dev}");
    assert!(refe <= 1e-6, "reference own error {refe}");
    assert_eq!(c.verdict, ReplayVerdict::WrongOnDevice);
    // The silu before it is fine on the same device.
    let c0 = replay::replay_call(&ds, Some(&rs), "Functional.silu.0.forward");
    assert_ne!(c0.verdict, ReplayVerdict::WrongOnDevice, "{c0:?}");
}

#[test]
fn clean_linear_on_fp16_has_fp16_rounding_level_own_error() {
    let (d, r) = (dump("cuda_fp16"), dump("cpu_fp32"));
    let (ds, rs) = (Side::new(&d).unwrap(), Side::new(&r).unwrap());
    let c = replay::replay_call(&ds, Some(&rs), "Functional.linear.0.forward");
    assert!(c.replayed, "{c:?}");
    assert_eq!(c.dtype.as_deref(), Some("float16"));
    let e = c.device_own_rel_l2.unwrap();
    assert!(e > 0.0 && e < 16.0 * 2f64.powi(-11), "own error {e}");
    assert!(
        matches!(c.verdict, ReplayVerdict::Inherited | ReplayVerdict::Ok),
        "{c:?}"
    );
    // Without a reference: still not wrong on the device.
    let c = replay::replay_call(&ds, None, "Functional.linear.0.forward");
    assert_eq!(c.verdict, ReplayVerdict::Inherited);
    assert!(c.reference_own_rel_l2.is_none());
}

/// Every op family the pure-Rust replay implements, recomputed from the cpu_fp32 dump's inputs,
/// matches torch's recorded fp32 output.
#[test]
fn pure_rust_ops_match_torch_on_cpu_fp32() {
    let r = dump("cpu_fp32");
    let rs = Side::new(&r).unwrap();
    let mut worst: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for place in rs.places() {
        let call = rs.call(&place).unwrap_or_else(|e| panic!("{place}: {e}"));
        let want = recompute(&call).unwrap_or_else(|e| panic!("{place}: {e}"));
        let Some(Arg::Tensor(out)) = call.outputs.first() else {
            panic!("{place}: no output tensor")
        };
        let e = rel_l2(&out.data, &want).unwrap();
        let limit = if out.dtype == DType::Float32 {
            1e-5
        } else {
            0.0
        };
        assert!(e <= limit, "{place}: rel L2 {e} against torch");
        let w = worst.entry(call.op.clone()).or_insert((0.0, 0));
        w.0 = w.0.max(e);
        w.1 += 1;
    }
    for op in [
        "linear",
        "matmul",
        "__matmul__",
        "__add__",
        "__mul__",
        "pow",
        "mean",
        "rsqrt",
        "softmax",
        "silu",
        "embedding",
        "dropout",
        "cos",
        "sin",
        "where",
        "__le__",
    ] {
        assert!(worst.contains_key(op), "{op} not exercised: {worst:?}");
    }
}

#[test]
fn cli_replay_all_writes_json_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    let st = Command::new(common::bin())
        .arg("replay")
        .arg(common::llama("cuda_fp16_fault_silu_l1"))
        .arg("--reference")
        .arg(common::llama("cpu_fp32"))
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
    let stdout = String::from_utf8_lossy(&st.stdout);
    assert!(stdout.contains("call(s) replayed"), "{stdout}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let calls = v["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 158);
    assert_eq!(
        v["replayed"].as_u64().unwrap() + v["not_replayable"].as_u64().unwrap(),
        158
    );
    let wrong: Vec<&str> = calls
        .iter()
        .filter(|c| c["verdict"] == "wrong_on_device")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(wrong, vec!["Functional.silu.1.forward"]);
    for c in calls {
        assert!(c["name"].is_string());
        if c["replayed"] == true {
            assert!(c["device_own_rel_l2"].is_number(), "{c}");
            assert!(c["reference_own_rel_l2"].is_number(), "{c}");
        } else {
            assert!(c["reason"].is_string(), "{c}");
        }
    }
}

#[test]
fn cli_bisect_replay_attaches_the_replay_of_the_suspects() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.json");
    let st = Command::new(common::bin())
        .arg("bisect")
        .arg(common::llama("cpu_fp32"))
        .arg(common::llama("cuda_fp16_fault_silu_l1"))
        .arg("--replay")
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
    let calls = v["replay"]["calls"].as_array().unwrap();
    assert_eq!(calls[0]["name"], "Functional.silu.1.forward");
    assert_eq!(calls[0]["verdict"], "wrong_on_device");
    assert!(calls[1..].iter().all(|c| c["verdict"] != "wrong_on_device"));
}

#[test]
fn module_level_records_are_not_replayed() {
    let d = common::open(&common::h200("mobilenet/msprobe/cpu_fp32"));
    let ds = Side::new(&d).unwrap();
    let c = replay::replay_call(&ds, None, "Module.features.0.0.Conv2d.forward.0");
    assert!(!c.replayed);
    assert_eq!(c.verdict, ReplayVerdict::NotReplayable);
    assert!(c.reason.unwrap().contains("module-level"));
    let c = replay::replay_call(&ds, None, "Functional.nope.0.forward");
    assert!(!c.replayed);
}
