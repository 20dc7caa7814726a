//! The rooms of the library depend on each other one way only (docs/architecture.md): a
//! module may use only modules listed before it in `ORDER`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ORDER: &[&str] = &[
    "dump",
    "metrics",
    "align",
    "noise",
    "hierarchy",
    "replay",
    "comparison",
    "verdict",
    "compare",
    "bisect",
    "own_error",
    "report",
    "plot",
    "nightly",
    "ranks",
    "shard",
    "session",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a file's code names (`crate::x` and `crate::{x, ...}`), leaving out
/// comments and its `#[cfg(test)] mod tests`.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut out = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split([',', '}']).collect(),
                None => vec![rest],
            };
            for n in names {
                let n: String = n
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !n.is_empty() {
                    out.insert(n);
                }
            }
        }
    }
    out
}

#[test]
fn rooms_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(rank) = ORDER.iter().position(|m| *m == top) else {
            continue; // the binary's own files, lib.rs
        };
        for used in uses(&std::fs::read_to_string(&f).unwrap()) {
            if let Some(r) = ORDER.iter().position(|m| *m == used) {
                assert!(
                    r <= rank,
                    "{} uses `{used}`, a room listed after `{top}` (docs/architecture.md)",
                    rel.display()
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} library files found");
}
