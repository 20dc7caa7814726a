//! Criterion micro-benchmarks of the metric kernel (`metrics::measure`) on in-memory tensors:
//! f32, f16, bf16 and mixed dtypes, 4M elements per side (chunked over rayon like a real pair),
//! and `f32_1k`: 1024-element f32 pairs, the op-level dumps' size (the kernel's fixed cost per call),
//! with the histograms (`--json`) and without (`f32_1k_no_histograms`, a plain `compare`).
//! `cargo bench --bench kernels`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftscope::dump::{Bytes, DType, Tensor};
use driftscope::metrics::{measure, measure_with, Histograms};
use half::{bf16, f16};

const N: usize = 1 << 22;

fn values(seed: u64, noise: f64) -> Vec<f32> {
    // xorshift: deterministic, no extra dependency.
    let mut s = seed;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    (0..N)
        .map(|_| {
            let x = next();
            (x * (1.0 + noise * next())) as f32
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

fn bench(c: &mut Criterion) {
    let r = values(1, 0.0);
    let d: Vec<f32> = {
        let n = values(2, 0.0);
        r.iter()
            .zip(&n)
            .map(|(a, e)| a * (1.0 + 1e-3 * e))
            .collect()
    };
    let mut g = c.benchmark_group("measure");
    g.sample_size(20);
    for (name, rt, dt) in [
        ("f32", DType::Float32, DType::Float32),
        ("f16", DType::Float16, DType::Float16),
        ("bf16", DType::Bfloat16, DType::Bfloat16),
        ("f32_vs_bf16", DType::Float32, DType::Bfloat16),
        ("f32_vs_f16", DType::Float32, DType::Float16),
    ] {
        let (a, b) = (tensor(rt, &r), tensor(dt, &d));
        g.throughput(Throughput::Bytes((a.data.len() + b.data.len()) as u64));
        g.bench_function(name, |bch| bch.iter(|| measure(&a, &b)));
    }
    let (a, b) = (
        tensor(DType::Float32, &r[..1024]),
        tensor(DType::Float32, &d[..1024]),
    );
    g.throughput(Throughput::Bytes((a.data.len() + b.data.len()) as u64));
    g.bench_function("f32_1k", |bch| bch.iter(|| measure(&a, &b)));
    // What a plain `compare` runs: no histograms.
    g.bench_function("f32_1k_no_histograms", |bch| {
        bch.iter(|| measure_with(&a, &b, Histograms::Skip))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
