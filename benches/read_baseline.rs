//! The "speed of memory" reference for benches/e2e.sh: maps every file under the given paths
//! (recursively) and reads each byte once (a sum of u64 words), on 2 threads by default
//! (`READ_THREADS`). Nothing else: no parsing, no decoding. Prints bytes, seconds and GB/s.
//!
//! `cargo build --release --example read_baseline`;
//! `target/release/examples/read_baseline DIR...`

use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        for q in v {
            walk(&q, out);
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn sum_words(b: &[u8]) -> u64 {
    let (head, words, tail) = unsafe { b.align_to::<u64>() };
    let mut s = [0u64; 4];
    let mut it = words.chunks_exact(4);
    for c in &mut it {
        for k in 0..4 {
            s[k] = s[k].wrapping_add(c[k]);
        }
    }
    let mut t = s[0] ^ s[1] ^ s[2] ^ s[3];
    for &w in it.remainder() {
        t = t.wrapping_add(w);
    }
    for &x in head.iter().chain(tail) {
        t = t.wrapping_add(x as u64);
    }
    t
}

fn main() {
    let threads: usize = std::env::var("READ_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let t0 = Instant::now();
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        walk(Path::new(&a), &mut files);
    }
    // Work items: (file index, byte range), 8 MiB each, handed out round-robin by an atomic.
    const PIECE: usize = 8 << 20;
    let maps: Vec<Option<Mmap>> = files
        .iter()
        .map(|f| {
            let file = File::open(f).ok()?;
            if file.metadata().ok()?.len() == 0 {
                return None;
            }
            let m = unsafe { Mmap::map(&file) }.ok()?;
            let _ = m.advise(memmap2::Advice::Sequential);
            Some(m)
        })
        .collect();
    let mut work = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        if let Some(m) = m {
            let mut s = 0;
            while s < m.len() {
                work.push((i, s, (s + PIECE).min(m.len())));
                s += PIECE;
            }
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let total: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| {
                    let mut acc = 0u64;
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(i, s, e)) = work.get(k) else { break };
                        acc ^= sum_words(&maps[i].as_ref().unwrap()[s..e]);
                    }
                    acc
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .fold(0, |a, b| a ^ b)
    });
    let secs = t0.elapsed().as_secs_f64();
    let bytes: usize = maps.iter().flatten().map(|m| m.len()).sum();
    println!(
        "read_baseline files={} bytes={} secs={:.4} GBps={:.3} checksum={:016x}",
        files.len(),
        bytes,
        secs,
        bytes as f64 / secs / 1e9,
        total
    );
}
