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

/// A llama plain (safetensors) run.
pub fn llama_plain(run: &str) -> PathBuf {
    h200(&format!("llama/plain/{run}/activations.safetensors"))
}

/// Opens a dump with default options.
pub fn open(p: &std::path::Path) -> Dump {
    Dump::open(p, &OpenOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The release or debug binary built for the tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_driftscope"))
}
