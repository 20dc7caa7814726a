//! Shared by the fuzz targets: the readers take paths, so each input is written to a file in a
//! per-process scratch folder, and every tensor a reader returns is touched end to end (its
//! bytes dereferenced and decoded) so a bad window into a memory map cannot hide.

#![allow(dead_code)]

use driftscope::dump::{Dump, OpenOptions, Tensor};
use std::path::PathBuf;

/// `$TMPDIR/driftscope-fuzz-<pid>/<name>` holding `data` (the folder is reused across runs).
pub fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("driftscope-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Reads every byte and decodes every element.
pub fn touch(t: &Tensor) {
    let b: &[u8] = &t.data;
    let mut x = 0u8;
    for v in b {
        x ^= v;
    }
    std::hint::black_box(x);
    if t.data.len() <= 1 << 24 {
        std::hint::black_box(t.to_f64_vec());
    }
}

/// Opens a dump and loads every entry (errors are fine, panics are not).
pub fn open_all(p: &std::path::Path) {
    if let Ok(d) = Dump::open(p, &OpenOptions::default()) {
        for e in d.entries.iter().take(64) {
            if let Ok(t) = d.load(e) {
                touch(&t);
            }
        }
    }
}
