//! driftscope: find where a neural network's numbers drift between backends.
//!
//! The library is the product; the `driftscope` binary parses arguments and writes outputs.
//! - [`dump`]: reading dumps (msprobe, safetensors, npy/npz, native, CANN) into entries and
//!   tensors.
//! - [`align`]: pairing the entries of two dumps, and aligning their call streams.
//! - [`metrics`]: every per-pair metric in one pass.
//! - [`compare`]: the comparison of two dumps.
//! - [`verdict`]: the noise model, the judge's rules, lost signal, bisection, baseline mode.
//! - [`hierarchy`]: the model's structure (module tree) as far as a dump knows it.
//! - [`report`]: table, JSON, CSV, msprobe CSV and Model Explorer outputs.
//! - [`ranks`]: multi-rank runs compared rank by rank.
//! - [`shard`]: sharded multi-rank runs: part files and their streaming merge.
//! - [`plot`]: static plots (PNG, SVG) and the interactive HTML report.
//! - [`nightly`]: the accuracy-regression job: config, baselines, JUnit, Markdown, trends.
//! - [`replay`]: recomputing API calls in float64 from a dump's own inputs.
//! - [`own_error`]: judging suspects by their own error, recomputed by [`replay`].
//! - [`session`]: the pipeline as the commands run it (compare, judge, own error).

pub mod align;
pub mod cli;
pub mod compare;
pub mod dump;
pub mod hierarchy;
pub mod metrics;
pub mod nightly;
pub mod own_error;
pub mod plot;
pub mod progress;
pub mod ranks;
pub mod replay;
pub mod report;
pub mod session;
pub mod shard;
pub mod verdict;
