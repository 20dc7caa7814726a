//! One `metrics::measure` call per dtype pair on 4 Mi-element tensors, for counting the metric
//! kernel's instructions per element pair under callgrind (load-independent, unlike wall time):
//!
//! ```sh
//! cargo build --release --example kernel_count
//! RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/kernel_count f32
//! callgrind_annotate --inclusive=yes cg.out | grep metrics::
//! ```
//!
//! Pairs: `f32`, `f16`, `bf16`, `f32_vs_bf16`, `f32_vs_f16` (default: all five, in that
//! order). The data are those of `benches/kernels.rs`: uniform values in [-1, 1), the candidate
//! the reference times `1 + 1e-3 · noise`.

use driftscope::dump::{Bytes, DType, Tensor};
use driftscope::metrics::measure;
use half::{bf16, f16};

const N: usize = 1 << 22;

fn values(seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..N)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn tensor(dtype: DType, v: &[f32]) -> Tensor {
    let data: Vec<u8> = match dtype {
        DType::Float32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::Float16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
            .collect(),
        DType::Bfloat16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_bits().to_le_bytes())
            .collect(),
        _ => unreachable!(),
    };
    Tensor {
        dtype,
        shape: vec![v.len()],
        data: Bytes::Owned(data),
    }
}

fn main() {
    let r = values(1);
    let noise = values(2);
    let d: Vec<f32> = r
        .iter()
        .zip(&noise)
        .map(|(a, e)| a * (1.0 + 1e-3 * e))
        .collect();
    let all = ["f32", "f16", "bf16", "f32_vs_bf16", "f32_vs_f16"];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wanted: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in wanted {
        let (rt, dt) = match name {
            "f32" => (DType::Float32, DType::Float32),
            "f16" => (DType::Float16, DType::Float16),
            "bf16" => (DType::Bfloat16, DType::Bfloat16),
            "f32_vs_bf16" => (DType::Float32, DType::Bfloat16),
            "f32_vs_f16" => (DType::Float32, DType::Float16),
            _ => {
                eprintln!("unknown pair {name}; one of {all:?}");
                std::process::exit(2);
            }
        };
        let m = measure(&tensor(rt, &r), &tensor(dt, &d));
        println!(
            "{name}: n={} cosine={:.12} max_abs={:e} within_1e-3={:.6}",
            m.compared, m.cosine, m.max_abs_err, m.one_thousandth_err_ratio
        );
    }
}
