//! Helpers shared by the integration tests: paths to the bundled real dumps.

#![allow(dead_code)] // each test binary uses a different subset

use driftscope::dump::{Dump, OpenOptions};
use std::path::PathBuf;

/// `reference_dumps/h200/<rest>`.
pub fn h200(rest: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("reference_dumps/h200")
        .join(rest)
}

/// A llama msprobe run.
pub fn llama(run: &str) -> PathBuf {
    h200(&format!("llama/msprobe/{run}"))
}

/// The rank folder of a llama msprobe run (`step0/proc…`, the only one): its dump.json,
/// stack.json and dump_tensor_data.
pub fn llama_rank(run: &str) -> PathBuf {
    std::fs::read_dir(llama(run).join("step0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// A llama plain (safetensors) run.
pub fn llama_plain(run: &str) -> PathBuf {
    h200(&format!("llama/plain/{run}/activations.safetensors"))
}

/// Opens a dump with default options.
pub fn open(p: &std::path::Path) -> Dump {
    Dump::open(p, &OpenOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The binary under test: the one cargo built for the tests, or `DRIFTSCOPE_TEST_BIN` where a
/// cross-built binary runs under an emulator (tests/aarch64/run.sh: a wrapper calling qemu).
pub fn bin() -> PathBuf {
    std::env::var_os("DRIFTSCOPE_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_driftscope")),
        PathBuf::from,
    )
}

/// A command running this test binary again (`std::env::current_exe`), through the emulator
/// named by `DRIFTSCOPE_TEST_RUNNER` when the tests run under one (tests/aarch64/run.sh).
pub fn this_test_binary() -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let runner = std::env::var("DRIFTSCOPE_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut c = std::process::Command::new(program);
            c.args(words).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    }
}

/// An `.npy` file (version 1.0, C order) holding `data`, elements of `dtype` in `shape`.
pub fn npy_bytes(dtype: driftscope::dump::DType, shape: &[usize], data: &[u8]) -> Vec<u8> {
    use driftscope::dump::DType;
    let descr = match dtype {
        DType::Float32 => "<f4",
        DType::Float16 => "<f2",
        DType::Int64 => "<i8",
        DType::Int8 => "|i1",
        DType::Bool => "|b1",
        other => panic!("no npy dtype for {other}"),
    };
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(data);
    b
}

/// The `dump.json` of msprobe run `run` (its one `step0/<proc>` folder) with every tensor file
/// named `.npy` instead of `.pt`, as MindSpore's `np.save` dumps name them.
pub fn dump_json_as_npy(run: &std::path::Path) -> String {
    let proc = std::fs::read_dir(run.join("step0"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read_to_string(proc.join("dump.json"))
        .unwrap()
        .replace(".pt\"", ".npy\"")
}

/// The one `procN` folder (holding dump.json) of a llama msprobe run.
pub fn proc_dir(run: &str) -> PathBuf {
    std::fs::read_dir(llama(run).join("step0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("dump.json").is_file())
        .unwrap()
}

/// Copies a folder tree.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}
