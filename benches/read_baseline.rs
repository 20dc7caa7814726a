//! The "speed of memory" reference for benches/e2e.sh: reads each byte of every file under the
//! given paths (recursively) once (a sum of u64 words), on 2 threads by default
//! (`READ_THREADS`). Nothing else: no parsing, no decoding. Prints bytes, seconds and GB/s.
//!
//! Every file is first read as a reader of a small file must (`open`, `read` into a reused
//! 1 MiB buffer until a short read, `close`), the files shared among the threads: for an
//! op-level dump (100k files of a few KiB) this is the floor of the system calls per file.
//! A file that fills the buffer is mapped instead and read in 8 MiB pieces shared among the
//! threads (its first MiB is read twice: 0.1% of a 1 GiB file).
//!
//! `cargo build --release --example read_baseline`;
//! `target/release/examples/read_baseline DIR...`

use memmap2::Mmap;
use rayon::prelude::*;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Files shorter than this are read, not mapped.
const SMALL: usize = 1 << 20;
/// Bytes of a mapped file per work item.
const PIECE: usize = 8 << 20;

/// The files under `p`, in name order; the kind of each entry comes from the listing (no
/// `stat` per file).
fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if !p.is_dir() {
        out.push(p.to_path_buf());
        return;
    }
    let mut v: Vec<_> = std::fs::read_dir(p)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name(), e.file_type().is_ok_and(|t| t.is_dir())))
        .collect();
    // By the names' bytes: `Path`'s order compares component by component, ~10x slower.
    v.sort_unstable();
    for (name, dir) in v {
        let q = p.join(name);
        if dir {
            walk(&q, out);
        } else {
            out.push(q);
        }
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

/// A file read whole (its checksum and length), or one too long to read: mapped.
enum Read1 {
    Small(u64, usize),
    Large(Mmap),
}

/// Opens `path` and reads it into `buf` until a short read; maps it if it fills `buf`.
fn read_or_map(path: &Path, buf: &mut [u8]) -> Read1 {
    let mut file = File::open(path).unwrap();
    let mut n = 0;
    loop {
        let asked = buf.len() - n;
        let k = file.read(&mut buf[n..]).unwrap();
        n += k;
        if n == buf.len() {
            let map = unsafe { Mmap::map(&file) }.unwrap();
            let _ = map.advise(memmap2::Advice::Sequential);
            return Read1::Large(map);
        }
        if k < asked {
            return Read1::Small(sum_words(&buf[..n]), n);
        }
    }
}

fn main() {
    let threads: usize = std::env::var("READ_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        walk(Path::new(&a), &mut files);
    }
    let listed = t0.elapsed().as_secs_f64();
    let (total, bytes) = pool.install(|| {
        let read: Vec<Read1> = files
            .par_iter()
            .map_init(|| vec![0u8; SMALL], |buf, f| read_or_map(f, buf))
            .collect();
        let mut pieces = Vec::new();
        let (mut acc, mut bytes) = (0u64, 0usize);
        for r in &read {
            match r {
                Read1::Small(sum, n) => (acc, bytes) = (acc ^ sum, bytes + n),
                Read1::Large(map) => {
                    bytes += map.len();
                    pieces.extend((0..map.len()).step_by(PIECE).map(|s| (map, s)));
                }
            }
        }
        let large = pieces
            .par_iter()
            .map(|&(map, s)| sum_words(&map[s..(s + PIECE).min(map.len())]))
            .reduce(|| 0, |a, b| a ^ b);
        (acc ^ large, bytes)
    });
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "read_baseline files={} bytes={} secs={:.4} (listing {:.4}) GBps={:.3} checksum={:016x}",
        files.len(),
        bytes,
        secs,
        listed,
        bytes as f64 / secs / 1e9,
        total
    );
}
