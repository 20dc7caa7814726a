//! Dumps are often compared while the training job still writes them: a file that shrinks
//! while driftscope reads it must end in an error naming it, never in a crash (SIGBUS) or in
//! numbers read from a file that is no longer there.

use crate::common;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

const CHILD: &str = "DRIFTSCOPE_TRUNCATE_CHILD";

fn write_file(path: &Path, len: usize) -> Vec<u8> {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    File::create(path).unwrap().write_all(&bytes).unwrap();
    bytes
}

fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

/// A file written moments ago is still settling: it is read, not mapped, so truncating it
/// afterwards changes nothing of what was read.
#[test]
fn fresh_file_is_read_not_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.bin");
    let bytes = write_file(&path, 3 << 20);
    let map = driftscope::dump::map_file(&path).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(&map[..], &bytes[..]);
}

/// An empty file maps to no bytes (not one).
#[test]
fn empty_file_has_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.bin");
    File::create(&path).unwrap();
    assert_eq!(driftscope::dump::map_file(&path).unwrap().len(), 0);
}

/// A settled, large file is mapped; truncated under the map, the read that faults ends the
/// process with exit code 2 and an error naming the file (run in a child process: the fault
/// ends it).
#[cfg(unix)]
#[test]
fn file_truncated_under_the_map_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("rank0_step3_Functional.linear.7.forward.output.0.pt");
    write_file(&path, 8 << 20);
    age(&path);
    let out = common::this_test_binary()
        .args([
            "--exact",
            "truncated::truncate_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "driftscope: error: {}: the file shrank",
            path.display()
        )),
        "stderr: {stderr}"
    );
    // The child never finished its read.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sum="));
}

/// The child of the test above: maps the file, truncates it, reads every byte.
#[test]
#[ignore = "run by file_truncated_under_the_map_is_an_error_naming_it in a child process"]
fn truncate_child() {
    let path = std::path::PathBuf::from(std::env::var_os(CHILD).expect("set by the parent"));
    let map = driftscope::dump::map_file(&path).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let sum: u64 = map.iter().map(|&b| b as u64).sum();
    println!("sum={sum}");
}
