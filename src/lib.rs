//! driftscope: find where a neural network's numbers drift between backends.
//!
//! The library is the product; the `driftscope` binary is a thin layer over it.
//! - [`dump`]: reading dumps (msprobe, safetensors, npy/npz, native) into entries and tensors.
//! - [`align`]: pairing the entries of two dumps.
//! - [`metrics`]: every per-pair metric in one pass.
//! - [`compare`]: the comparison of two dumps.
//! - [`verdict`]: the noise model, verdicts and first-divergence bisection.
//! - [`report`]: table, JSON, CSV outputs.

pub mod align;
pub mod cli;
pub mod compare;
pub mod dump;
pub mod metrics;
pub mod progress;
pub mod ranks;
pub mod report;
pub mod verdict;
