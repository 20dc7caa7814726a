//! driftscope: find where a neural network's numbers drift between backends.
//!
//! The library is the product; the `driftscope` binary parses arguments and writes outputs.
//! Start at [`session`]: open two dumps with [`session::Session::open`], then `compare`,
//! `bisect` or [`session::check`]. The rooms, lowest first (each uses only rooms above it in
//! this list; docs/architecture.md):
//! - [`dump`]: reading dumps (msprobe, safetensors, npy/npz, native, CANN) into entries and
//!   tensors, and decoding their elements.
//! - [`metrics`]: every per-pair metric in one pass.
//! - [`align`]: pairing the entries of two dumps, and aligning their call streams.
//! - [`noise`]: how much error rounding alone explains, per dtype and op.
//! - [`hierarchy`]: the model's structure (module tree) as far as a dump knows it.
//! - [`replay`]: recomputing API calls in float64 from a dump's own inputs.
//! - [`comparison`]: the plain data of a comparison (pairs, summaries, analysis): the JSON
//!   report.
//! - [`verdict`]: the judge's rules, lost signal, calibration: pairs judged into an analysis.
//! - [`compare`]: measuring every pair of two dumps, then judging them.
//! - [`bisect`]: finding the first divergence reading few tensors; baseline mode.
//! - [`own_error`]: judging suspects by their own error, recomputed by [`replay`].
//! - [`report`]: table, JSON, CSV, msprobe CSV and Model Explorer outputs.
//! - [`plot`]: static plots (PNG, SVG) and the interactive HTML report.
//! - [`nightly`]: the accuracy-regression job: config, baselines, JUnit, Markdown, trends.
//! - [`ranks`]: multi-rank runs compared rank by rank.
//! - [`shard`]: sharded multi-rank runs: part files and their streaming merge.
//! - [`session`]: the entry point: paths and options in, what the commands compute out.

pub mod align;
pub mod bisect;
pub mod compare;
pub mod comparison;
pub mod dump;
pub mod hierarchy;
pub mod metrics;
pub mod nightly;
pub mod noise;
pub mod own_error;
pub mod plot;
pub mod ranks;
pub mod replay;
pub mod report;
pub mod session;
pub mod shard;
pub mod verdict;
