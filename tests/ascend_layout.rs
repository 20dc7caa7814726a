//! NPU private layouts: known ND data packed in the test by CANN's published index formulas
//! (written out here independently of the library), unpacked by driftscope, compared equal;
//! and `--layout` end to end on an msprobe dump whose device side is stored NC1HWC0/FRACTAL_NZ.

use crate::common;
use common::*;
use driftscope::dump::ascend_layout::{default_c0, pack, unpack, NpuFormat};
use driftscope::dump::{pt, DType};
use std::path::Path;
use std::process::Command;

/// Distinct nonzero elements (padding is zero, so a misplaced padding element shows).
fn data(n: usize, size: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let v = (i as u64 + 1).to_le_bytes();
            v[..size].to_vec()
        })
        .collect()
}

/// Stored element index of logical element `idx` by CANN's definitions (docs/ascend.md).
fn stored_index(f: NpuFormat, shape: &[usize], idx: &[usize], c0: usize) -> usize {
    let cdiv = |a: usize, b: usize| a.div_ceil(b);
    match f {
        NpuFormat::Nc1hwc0 => {
            let (c, h, w) = (shape[1], shape[2], shape[3]);
            let c1 = cdiv(c, c0);
            let [n_, c_, h_, w_] = idx.try_into().unwrap();
            (((n_ * c1 + c_ / c0) * h + h_) * w + w_) * c0 + c_ % c0
        }
        NpuFormat::Ndc1hwc0 => {
            let (c, d, h, w) = (shape[1], shape[2], shape[3], shape[4]);
            let c1 = cdiv(c, c0);
            let [n_, c_, d_, h_, w_] = idx.try_into().unwrap();
            ((((n_ * d + d_) * c1 + c_ / c0) * h + h_) * w + w_) * c0 + c_ % c0
        }
        NpuFormat::FractalZ => {
            // (C1*H*W, N1, 16, C0)
            let (n, h, w) = (shape[0], shape[2], shape[3]);
            let n1 = cdiv(n, 16);
            let [n_, c_, h_, w_] = idx.try_into().unwrap();
            let row = (c_ / c0) * h * w + h_ * w + w_;
            ((row * n1 + n_ / 16) * 16 + n_ % 16) * c0 + c_ % c0
        }
        NpuFormat::FractalNz => {
            // (..., N1, M1, 16, C0) for (..., M, N)
            let r = shape.len();
            let (m, n) = (shape[r - 2], shape[r - 1]);
            let (m1, n1) = (cdiv(m, 16), cdiv(n, c0));
            let batch = idx[..r - 2]
                .iter()
                .zip(&shape[..r - 2])
                .fold(0, |acc, (&i, &d)| acc * d + i);
            let (m_, n_) = (idx[r - 2], idx[r - 1]);
            (((batch * n1 + n_ / c0) * m1 + m_ / 16) * 16 + m_ % 16) * c0 + n_ % c0
        }
        _ => unreachable!(),
    }
}

fn stored_len(f: NpuFormat, shape: &[usize], c0: usize) -> usize {
    let cdiv = |a: usize, b: usize| a.div_ceil(b);
    match f {
        NpuFormat::Nc1hwc0 => shape[0] * cdiv(shape[1], c0) * shape[2] * shape[3] * c0,
        NpuFormat::Ndc1hwc0 => shape[0] * shape[2] * cdiv(shape[1], c0) * shape[3] * shape[4] * c0,
        NpuFormat::FractalZ => {
            cdiv(shape[1], c0) * shape[2] * shape[3] * cdiv(shape[0], 16) * 16 * c0
        }
        NpuFormat::FractalNz => {
            let r = shape.len();
            let b: usize = shape[..r - 2].iter().product();
            b * cdiv(shape[r - 1], c0) * cdiv(shape[r - 2], 16) * 16 * c0
        }
        _ => unreachable!(),
    }
}

/// Packs by the formulas above.
fn pack_reference(f: NpuFormat, shape: &[usize], nd: &[u8], size: usize, c0: usize) -> Vec<u8> {
    let mut out = vec![0u8; stored_len(f, shape, c0) * size];
    let mut idx = vec![0usize; shape.len()];
    let numel: usize = shape.iter().product();
    for e in 0..numel {
        let s = stored_index(f, shape, &idx, c0);
        out[s * size..(s + 1) * size].copy_from_slice(&nd[e * size..(e + 1) * size]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

fn check(f: NpuFormat, dtype: DType, shape: &[usize], c0: usize) {
    let size = dtype.size();
    let nd = data(shape.iter().product(), size);
    let want = pack_reference(f, shape, &nd, size, c0);
    let packed = pack(f, dtype, shape, &nd, c0).unwrap();
    assert_eq!(
        packed, want,
        "{f:?} {dtype:?} {shape:?} C0={c0}: pack differs from CANN's formula"
    );
    let back = unpack(f, dtype, shape, &want).unwrap();
    assert_eq!(
        back, nd,
        "{f:?} {dtype:?} {shape:?} C0={c0}: unpack does not restore ND"
    );
}

#[test]
fn fp16_layouts_with_c0_16_round_trip_with_padding() {
    assert_eq!(default_c0(DType::Float16), 16);
    for shape in [[2, 3, 5, 7], [1, 16, 2, 2], [3, 33, 1, 4]] {
        check(NpuFormat::Nc1hwc0, DType::Float16, &shape, 16);
        check(NpuFormat::FractalZ, DType::Float16, &shape, 16);
    }
    check(NpuFormat::FractalZ, DType::Float16, &[17, 20, 3, 3], 16);
    check(NpuFormat::Ndc1hwc0, DType::Float16, &[2, 19, 3, 4, 5], 16);
    for shape in [&[20usize, 40][..], &[2, 3, 17, 33], &[16, 16], &[1, 1]] {
        check(NpuFormat::FractalNz, DType::Float16, shape, 16);
        check(NpuFormat::FractalNz, DType::Bfloat16, shape, 16);
    }
}

#[test]
fn int8_layouts_use_c0_32() {
    assert_eq!(default_c0(DType::Int8), 32);
    check(NpuFormat::Nc1hwc0, DType::Int8, &[2, 40, 3, 3], 32);
    check(NpuFormat::FractalZ, DType::Int8, &[20, 40, 3, 3], 32);
    check(NpuFormat::FractalNz, DType::Int8, &[5, 70, 45], 32);
    check(NpuFormat::Ndc1hwc0, DType::Int8, &[1, 33, 2, 2, 2], 32);
}

#[test]
fn fp32_c0_is_inferred_from_the_stored_size() {
    // CANN's default for fp32 is C0 = 8; older releases padded fp32 to 16: both are read.
    assert_eq!(default_c0(DType::Float32), 8);
    check(NpuFormat::Nc1hwc0, DType::Float32, &[1, 20, 3, 3], 8);
    check(NpuFormat::Nc1hwc0, DType::Float32, &[1, 20, 3, 3], 16);
    check(NpuFormat::FractalNz, DType::Float32, &[3, 20, 30], 8);
    // A one-dimensional FRACTAL_NZ tensor is one row.
    let nd = data(5, 2);
    let s = pack(NpuFormat::FractalNz, DType::Float16, &[5], &nd, 16).unwrap();
    assert_eq!(s.len(), 16 * 16 * 2);
    assert_eq!(
        unpack(NpuFormat::FractalNz, DType::Float16, &[5], &s).unwrap(),
        nd
    );
    // Too small a storage is an error, never a short tensor.
    let e = unpack(NpuFormat::Nc1hwc0, DType::Float16, &[1, 20, 3, 3], &s).unwrap_err();
    assert!(e.contains("too small"), "{e}");
}

#[test]
fn pt_reader_converts_a_forced_layout() {
    // A real fp16 [1, 32, 64] tensor: 2048 elements, exactly a FRACTAL_NZ of that shape.
    let f = llama("cuda_fp16").join("step0");
    let proc = std::fs::read_dir(&f)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let p = proc.join("dump_tensor_data/Functional.embedding.0.forward.output.0.pt");
    let plain = pt::read_single(&p).unwrap();
    let nz = pt::read_single_with(&p, Some(NpuFormat::FractalNz)).unwrap();
    assert_eq!(nz.tensor.shape, vec![1, 32, 64]);
    let want = unpack(
        NpuFormat::FractalNz,
        DType::Float16,
        &[1, 32, 64],
        &plain.tensor.data,
    )
    .unwrap();
    assert_eq!(&nz.tensor.data[..], &want[..]);
    assert_ne!(&nz.tensor.data[..], &plain.tensor.data[..]);
    // Formats whose rank does not fit leave the tensor alone.
    let nc = pt::read_single_with(&p, Some(NpuFormat::Nc1hwc0)).unwrap();
    assert_eq!(&nc.tensor.data[..], &plain.tensor.data[..]);
}

fn npy_f16(path: &Path, shape: &[usize], bytes: &[u8]) {
    let dims = shape.iter().map(|d| format!("{d}, ")).collect::<String>();
    let mut h = format!("{{'descr': '<f2', 'fortran_order': False, 'shape': ({dims}), }}");
    while (h.len() + 11) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out.extend(bytes);
    std::fs::write(path, out).unwrap();
}

/// An msprobe dump with one linear output [20, 40] fp16, stored as `stored` (with `shape`).
fn msprobe_dump(dir: &Path, stored_shape: &[usize], bytes: &[u8]) {
    std::fs::create_dir_all(dir.join("dump_tensor_data")).unwrap();
    npy_f16(
        &dir.join("dump_tensor_data/Functional.linear.0.forward.output.0.npy"),
        stored_shape,
        bytes,
    );
    let j = serde_json::json!({
        "task": "tensor", "level": "L1", "framework": "mindspore", "dump_data_dir": null,
        "data": {"Functional.linear.0.forward": {"output": [{
            "type": "mindspore.Tensor", "dtype": "Float16", "shape": [20, 40],
            "data_name": "Functional.linear.0.forward.output.0.npy"}]}}
    });
    std::fs::write(dir.join("dump.json"), serde_json::to_vec(&j).unwrap()).unwrap();
}

#[test]
fn layout_flag_converts_the_device_side_before_comparison() {
    let t = tempfile::tempdir().unwrap();
    let nd: Vec<u8> = (0..800u16)
        .flat_map(|i| half::f16::from_f32(i as f32 / 8.0).to_bits().to_le_bytes())
        .collect();
    let nz = pack(NpuFormat::FractalNz, DType::Float16, &[20, 40], &nd, 16).unwrap();
    msprobe_dump(&t.path().join("ref"), &[20, 40], &nd);
    msprobe_dump(&t.path().join("dev"), &[3, 2, 16, 16], &nz);
    let j = t.path().join("r.json");
    let run = |extra: &[&str]| {
        let o = Command::new(bin())
            .args(["compare"])
            .arg(t.path().join("ref"))
            .arg(t.path().join("dev"))
            .arg("--json")
            .arg(&j)
            .args(extra)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
        (o.status.code(), v["pairs"][0].clone())
    };
    let (code, p) = run(&["--layout", "fractal-nz:linear"]);
    assert_eq!(code, Some(0), "{p}");
    assert_eq!(p["status"], "compared");
    assert_eq!(p["verdict"], "identical");
    assert_eq!(p["max_abs_err"], 0.0);
    let (code, p) = run(&["--layout", "29"]);
    assert_eq!(
        (code, &p["verdict"]),
        (Some(0), &serde_json::json!("identical"))
    );
    // Without the flag the stored array cannot be the recorded shape: an error, not a pass.
    let (code, p) = run(&[]);
    assert_eq!(code, Some(2));
    assert_eq!(p["status"], "error");
    // A regex that does not match leaves it alone.
    let (code, _) = run(&["--layout", "fractal-nz:conv"]);
    assert_eq!(code, Some(2));
}

#[test]
fn npy_folders_take_per_tensor_layout_rules() {
    // A plain folder: the reference holds ND arrays, the device the same values stored
    // NC1HWC0 (a conv output) and FRACTAL_NZ (a linear output) as raw device memory; a norm
    // output is plain on both sides. The logical shape comes from the reference.
    let t = tempfile::tempdir().unwrap();
    let (r, d) = (t.path().join("ref"), t.path().join("dev"));
    std::fs::create_dir_all(&r).unwrap();
    std::fs::create_dir_all(&d).unwrap();
    let f16 = |n: usize, k: f32| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                half::f16::from_f32((i as f32 * k).sin())
                    .to_bits()
                    .to_le_bytes()
            })
            .collect()
    };
    let conv = f16(2 * 20 * 3 * 3, 0.1);
    let linear = f16(20 * 40, 0.2);
    let norm = f16(16 * 16, 0.3);
    npy_f16(&r.join("conv1.npy"), &[2, 20, 3, 3], &conv);
    npy_f16(&r.join("fc.linear.npy"), &[20, 40], &linear);
    npy_f16(&r.join("norm.npy"), &[16, 16], &norm);
    let nc = pack(
        NpuFormat::Nc1hwc0,
        DType::Float16,
        &[2, 20, 3, 3],
        &conv,
        16,
    )
    .unwrap();
    let nz = pack(NpuFormat::FractalNz, DType::Float16, &[20, 40], &linear, 16).unwrap();
    npy_f16(&d.join("conv1.npy"), &[2, 2, 3, 3, 16], &nc);
    npy_f16(&d.join("fc.linear.npy"), &[3, 2, 16, 16], &nz);
    npy_f16(&d.join("norm.npy"), &[16, 16], &norm);
    let rules = t.path().join("layouts.txt");
    std::fs::write(
        &rules,
        "# name pattern = stored layout\nconv = nc1hwc0\nlinear = fractal-nz\n",
    )
    .unwrap();
    let j = t.path().join("r.json");
    let run = |layout: &str| {
        let o = Command::new(bin())
            .arg("compare")
            .arg(&r)
            .arg(&d)
            .arg("--json")
            .arg(&j)
            .args(["--layout", layout])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
        (o.status.code(), v)
    };
    for layout in [
        format!("@{}", rules.display()),
        "conv=nc1hwc0;linear=fractal-nz".to_string(),
    ] {
        let (code, v) = run(&layout);
        assert_eq!(code, Some(0), "{v}");
        for p in v["pairs"].as_array().unwrap() {
            assert_eq!(p["verdict"], "identical", "{p}");
            assert_eq!(p["max_abs_err"], 0.0, "{p}");
        }
        assert_eq!(v["pairs"].as_array().unwrap().len(), 3);
    }
    // One rule for every tensor: the plain norm array (already the reference's shape) is read
    // as it is; the NC1HWC0 conv array cannot be FRACTAL_NZ of its logical shape: an error.
    let (_, v) = run("fractal-nz");
    let status = |n: &str| {
        v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("norm"), "compared");
    assert_eq!(status("fc.linear"), "compared");
    assert_eq!(status("conv1"), "error");
}
