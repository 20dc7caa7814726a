//! Criterion benchmarks of the call-stream alignment (`align::structure::align`, docs/alignment.md)
//! on synthetic msprobe-like streams of 100k calls (two tensors each): `agree` (the name fast
//! path), `extra_3` (three extra calls: Myers over signatures, small D) and `reversed` (every
//! call moved: the bounded fallbacks). `cargo bench --bench align`

use criterion::{criterion_group, criterion_main, Criterion};
use driftscope::align::structure::align;
use driftscope::dump::{DType, Entry, RecordedStats, Source};
use std::collections::HashMap;

const CALLS: usize = 100_000;

/// Calls `(api, width)` numbered per API as msprobe does, an input and an output each.
fn stream(calls: &[(&str, usize)]) -> Vec<Entry> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(2 * calls.len());
    for (order, &(api, w)) in calls.iter().enumerate() {
        let k = seen.entry(api).or_insert(0);
        let place = format!("Functional.{api}.{k}.forward");
        *k += 1;
        for role in ["input", "output"] {
            out.push(Entry {
                name: format!("{place}.{role}.0").into(),
                place: place.as_str().into(),
                role: driftscope::dump::Role::from_key(role),
                index: "0".into(),
                order,
                op_type: Some(api.into()),
                dtype: Some(DType::Float16),
                shape: Some(vec![1, w].into()),
                stats: Some(RecordedStats::new(
                    None,
                    None,
                    None,
                    Some((order * 2 + w) as f64),
                )),
                checksum: None,
                source: Source::Absent("bench".into()),
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let apis = ["linear", "add", "mul", "silu", "matmul"];
    let calls: Vec<(&str, usize)> = (0..CALLS).map(|i| (apis[i % 5], 8 + i % 50)).collect();
    let r = stream(&calls);
    let mut g = c.benchmark_group("align_100k_calls");
    g.sample_size(10);
    g.bench_function("agree", |b| b.iter(|| align(&r, &r)));
    let mut extra = calls.clone();
    for at in [70_000, 20_000, 5] {
        extra.insert(at, ("add", 999));
    }
    let d = stream(&extra);
    g.bench_function("extra_3", |b| b.iter(|| align(&r, &d)));
    let reversed: Vec<_> = calls.iter().rev().copied().collect();
    let d = stream(&reversed);
    g.bench_function("reversed", |b| b.iter(|| align(&r, &d)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
