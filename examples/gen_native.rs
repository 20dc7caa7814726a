//! Writes native-format benchmark dumps (`driftscope.json` + raw `tensors/*.bin`) without torch,
//! for `benches/e2e_native.sh`: for each dtype pair a reference and a candidate folder of `MIB`
//! MiB of reference data in 4 tensors, the candidate the reference times `1 + 1e-3 · noise`
//! (values uniform in [-1, 1), the same shape of data as `benches/gen_dumps.py` writes with
//! torch).
//!
//! `cargo run --release --example gen_native -- OUT [MIB]` writes `OUT/{fp32,fp16,bf16,
//! fp32_bf16,fp32_fp16}_{ref,dev}`.

use half::{bf16, f16};
use std::io::Write;
use std::path::Path;

const TENSORS: usize = 4;

fn encode(dtype: &str, v: &[f32]) -> Vec<u8> {
    match dtype {
        "float32" => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        "float16" => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        "bfloat16" => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

fn size(dtype: &str) -> usize {
    if dtype == "float32" {
        4
    } else {
        2
    }
}

fn write_side(root: &Path, dtype: &str, tensors: &[Vec<f32>]) -> std::io::Result<()> {
    std::fs::create_dir_all(root.join("tensors"))?;
    let mut entries = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let file = format!("tensors/{i:06}.bin");
        let mut f = std::io::BufWriter::new(std::fs::File::create(root.join(&file))?);
        f.write_all(&encode(dtype, t))?;
        f.flush()?;
        let place = format!("Functional.linear.{i}.forward");
        entries.push(serde_json::json!({
            "order": i, "place": place, "kind": "module", "op_type": "Linear", "role": "output",
            "index": "0", "name": format!("{place}.output.0"), "dtype": dtype,
            "shape": [t.len() / 1024, 1024], "device": "cpu", "file": file,
            "nbytes": t.len() * size(dtype),
        }));
    }
    let manifest = serde_json::json!({
        "format": "driftscope-native", "version": 1, "level": "module", "run": {},
        "entries": entries,
    });
    std::fs::write(root.join("driftscope.json"), manifest.to_string())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: gen_native OUT [MIB]");
        std::process::exit(2);
    };
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    };
    for (tag, rt, dt) in [
        ("fp32", "float32", "float32"),
        ("fp16", "float16", "float16"),
        ("bf16", "bfloat16", "bfloat16"),
        ("fp32_bf16", "float32", "bfloat16"),
        ("fp32_fp16", "float32", "float16"),
    ] {
        // MIB of reference data per side; a 1024-element row is the unit.
        let numel = (mib << 20) / size(rt) / TENSORS / 1024 * 1024;
        let (mut refs, mut devs) = (Vec::new(), Vec::new());
        for _ in 0..TENSORS {
            let r: Vec<f32> = (0..numel).map(|_| next()).collect();
            let d: Vec<f32> = r.iter().map(|&x| x * (1.0 + 1e-3 * next())).collect();
            refs.push(r);
            devs.push(d);
        }
        write_side(&Path::new(out).join(format!("{tag}_ref")), rt, &refs)?;
        write_side(&Path::new(out).join(format!("{tag}_dev")), dt, &devs)?;
    }
    Ok(())
}
