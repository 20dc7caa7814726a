//! CANN offline dump files written by the test's own encoder (prost, the vendored schema):
//! a small graph (Conv2D on NC1HWC0 / FRACTAL_Z, MatMul on FRACTAL_NZ, Relu on ND) dumped in
//! fp16 private layouts against an fp32 ND reference, with a fault in the Relu.

use crate::common;
use common::*;
use driftscope::dump::ascend_layout::{pack, NpuFormat};
use driftscope::dump::cann::{DumpData, OpInput, OpOutput, Shape};
use driftscope::dump::{DType, Dump, Format, OpenOptions};
use prost::Message;
use std::path::Path;
use std::process::Command;

/// One tensor to dump: logical values, logical shape, stored layout.
struct T {
    values: Vec<f32>,
    shape: Vec<usize>,
    format: Option<NpuFormat>,
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
}

/// (OutputDataType, stored bytes, stored shape, aclFormat code) of `t` in fp16 (`device`) or fp32.
fn encode(t: &T, device: bool) -> (i32, Vec<u8>, Vec<u64>, i32) {
    if !device {
        let b = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        return (1, b, t.shape.iter().map(|&d| d as u64).collect(), 2);
    }
    let nd: Vec<u8> = t
        .values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    match t.format {
        None => (2, nd, t.shape.iter().map(|&d| d as u64).collect(), 2),
        Some(f) => {
            let b = pack(f, DType::Float16, &t.shape, &nd, 16).unwrap();
            let c1 = |c: usize| c.div_ceil(16) as u64;
            let s = &t.shape;
            let stored = match f {
                NpuFormat::Nc1hwc0 => vec![s[0] as u64, c1(s[1]), s[2] as u64, s[3] as u64, 16],
                NpuFormat::FractalZ => vec![c1(s[1]) * (s[2] * s[3]) as u64, c1(s[0]), 16, 16],
                NpuFormat::FractalNz => vec![c1(s[1]), c1(s[0]), 16, 16],
                _ => unreachable!(),
            };
            (2, b, stored, f.acl() as i32)
        }
    }
}

/// Writes `{op_type}.{op_name}.{task}.0.{ts}`: u64 header length, DumpData, inputs, outputs.
fn write_op(
    dir: &Path,
    op_type: &str,
    op: &str,
    ts: u64,
    inputs: &[T],
    outputs: &[T],
    device: bool,
) {
    let mut h = DumpData {
        version: "2.0".into(),
        dump_time: ts,
        op_name: op.into(),
        ..Default::default()
    };
    let mut data = Vec::new();
    for t in inputs {
        let (dt, b, stored, fmt) = encode(t, device);
        h.input.push(OpInput {
            data_type: dt,
            format: fmt,
            shape: Some(Shape { dim: stored }),
            original_shape: Some(Shape {
                dim: t.shape.iter().map(|&d| d as u64).collect(),
            }),
            size: b.len() as u64,
            ..Default::default()
        });
        data.extend(b);
    }
    for t in outputs {
        let (dt, b, stored, fmt) = encode(t, device);
        h.output.push(OpOutput {
            data_type: dt,
            format: fmt,
            shape: Some(Shape { dim: stored }),
            original_shape: Some(Shape {
                dim: t.shape.iter().map(|&d| d as u64).collect(),
            }),
            size: b.len() as u64,
            ..Default::default()
        });
        data.extend(b);
    }
    let hb = h.encode_to_vec();
    let mut out = (hb.len() as u64).to_le_bytes().to_vec();
    out.extend(hb);
    out.extend(data);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{op_type}.{op}.{}.0.{ts}", ts % 97)), out).unwrap();
}

/// The graph: conv1 (x [1,3,5,5] NC1HWC0, w [4,3,3,3] FRACTAL_Z -> y [1,4,3,3] NC1HWC0),
/// fc ([4,9] NZ -> [4,20] NZ), relu ([4,20] -> [4,20] ND). `fault` scales relu's output.
fn graph(dir: &Path, device: bool, fault: f32) {
    let t = |values: Vec<f32>, shape: &[usize], format: Option<NpuFormat>| T {
        values,
        shape: shape.to_vec(),
        format,
    };
    let nc = Some(NpuFormat::Nc1hwc0);
    let nz = Some(NpuFormat::FractalNz);
    let y = values(36, 3.0);
    write_op(
        dir,
        "Conv2D",
        "conv1",
        1_700_000_000_000_001,
        &[
            t(values(75, 1.0), &[1, 3, 5, 5], nc),
            t(values(108, 2.0), &[4, 3, 3, 3], Some(NpuFormat::FractalZ)),
        ],
        &[t(y.clone(), &[1, 4, 3, 3], nc)],
        device,
    );
    let fc = values(80, 4.0);
    write_op(
        dir,
        "MatMulV2",
        "fc",
        1_700_000_000_000_002,
        &[t(y, &[4, 9], nz)],
        &[t(fc.clone(), &[4, 20], nz)],
        device,
    );
    let relu: Vec<f32> = fc
        .iter()
        .enumerate()
        .map(|(i, v)| v.max(0.0) * if i % 3 == 0 { fault } else { 1.0 })
        .collect();
    write_op(
        dir,
        "Relu",
        "relu",
        1_700_000_000_000_003,
        &[t(fc, &[4, 20], None)],
        &[t(relu, &[4, 20], None)],
        device,
    );
}

#[test]
fn cann_files_are_read_with_layouts_converted() {
    let t = tempfile::tempdir().unwrap();
    graph(&t.path().join("ref"), false, 1.0);
    graph(&t.path().join("dev"), true, 1.0);
    let o = OpenOptions::default();
    let r = Dump::open(&t.path().join("ref"), &o).unwrap();
    let d = Dump::open(&t.path().join("dev"), &o).unwrap();
    assert_eq!(d.format, Format::Cann);
    let names: Vec<&str> = d.entries.iter().map(|e| &*e.name).collect();
    assert_eq!(
        names,
        [
            "conv1.input.0",
            "conv1.input.1",
            "conv1.output.0",
            "fc.input.0",
            "fc.output.0",
            "relu.input.0",
            "relu.output.0"
        ]
    );
    assert_eq!(d.entries[1].op_type.as_deref(), Some("Conv2D"));
    for (re, de) in r.entries.iter().zip(&d.entries) {
        let a = r.load(re).unwrap();
        let b = d.load(de).unwrap();
        assert_eq!(b.shape, a.shape, "{}", de.name);
        assert_eq!(b.dtype, DType::Float16);
        // Unpacked fp16 is the reference rounded to fp16, element for element.
        let want: Vec<f64> = a
            .to_f64_vec()
            .iter()
            .map(|&v| half::f16::from_f64(v).to_f64())
            .collect();
        assert_eq!(b.to_f64_vec(), want, "{}", de.name);
    }
}

#[test]
fn cann_compare_names_the_faulty_op_and_refuses_truncated_files() {
    let t = tempfile::tempdir().unwrap();
    graph(&t.path().join("ref"), false, 1.0);
    graph(&t.path().join("dev"), true, 1.3);
    let j = t.path().join("r.json");
    let o = Command::new(bin())
        .arg("bisect")
        .arg(t.path().join("ref"))
        .arg(t.path().join("dev"))
        .arg("--exhaustive")
        .arg("--json")
        .arg(&j)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    assert_eq!(v["candidate"]["format"], "cann");
    assert_eq!(v["analysis"]["first_divergence"]["name"], "relu");
    for p in v["pairs"].as_array().unwrap() {
        if !p["name"].as_str().unwrap().starts_with("relu.output") {
            assert_ne!(p["verdict"], "diverged", "{p}");
        }
    }
    // A file cut short is an input error naming it, never a short tensor.
    let f = std::fs::read_dir(t.path().join("dev"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("Relu."))
        .unwrap();
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() - 10]).unwrap();
    let e = Dump::open(&f, &OpenOptions::default()).unwrap_err();
    assert!(e.to_string().contains("run past the end"), "{e}");
}

#[test]
fn files_are_ordered_by_the_timestamp_field_msprobe_reads_for_each_name_shape() {
    // The headers' dump times run backwards, so only the names can give this order.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("dev");
    let one = |v: f32| T {
        values: vec![v; 4],
        shape: vec![4],
        format: None,
    };
    let ops = [
        // (op type, op name, file name after the op type and name)
        ("Add", "first", "3.1700000000000100"),
        ("Mul", "second", "4.2.1700000000000110"),
        ("Conv2D", "third_lxslice1", "5.2.1700000000000150.4.487.0.0"),
        ("Relu", "fourth", "6.2.1700000000000160.4.487.0.1"),
        ("Relu", "fifth", "6.2.1700000000000160.4.487.0.0"),
    ];
    for (k, (ty, op, rest)) in ops.iter().enumerate() {
        let ts = 1_000_000 - k as u64;
        write_op(&dir, ty, op, ts, &[one(k as f32)], &[one(k as f32)], false);
        std::fs::rename(
            dir.join(format!("{ty}.{op}.{}.0.{ts}", ts % 97)),
            dir.join(format!("{ty}.{op}.{rest}")),
        )
        .unwrap();
    }
    let d = Dump::open(&dir, &OpenOptions::default()).unwrap();
    let mut places: Vec<&str> = d.entries.iter().map(|e| &*e.place).collect();
    places.dedup();
    // Equal timestamps of an FFTS+ op (task type 4): thread 0 before thread 1.
    assert_eq!(
        places,
        ["first", "second", "third_lxslice1", "fifth", "fourth"]
    );
}
