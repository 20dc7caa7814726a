//! Command-line definitions (clap). Behaviour lives in the library; `main.rs` wires them.

use crate::dump::ascend_layout::LayoutOverride;
use crate::dump::{DType, Format};
use crate::verdict::Fp32Matmul;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Find where a neural network's numbers drift between backends.
#[derive(Parser, Debug)]
#[command(name = "driftscope", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compare two dumps pair by pair: metrics, noise-aware verdicts, first divergence.
    Compare(CompareArgs),
    /// Find the first place where DEV departs from REF beyond noise, reading few tensors.
    Bisect(BisectArgs),
}

/// How to read the two dumps.
#[derive(Args, Debug, Clone)]
pub struct DumpArgs {
    /// Reference dump (folder, dump.json, driftscope.json, .safetensors, .npy/.npz).
    pub reference: PathBuf,
    /// Candidate (device) dump.
    pub candidate: PathBuf,
    /// Force the layout of both dumps instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// True dtype of .npy arrays numpy cannot name (bf16 saved as <V2 or <i2, fp8 as |V1).
    #[arg(long, value_parser = parse_dtype)]
    pub npy_dtype: Option<DType>,
    /// Follow symlinks inside a dump that point outside it.
    #[arg(long)]
    pub allow_symlinks: bool,
    /// How fp32 matrix products ran on the device (auto: TF32/HF32 allowed for them).
    #[arg(long, value_enum, default_value_t = Fp32Matmul::Auto)]
    pub fp32_matmul: Fp32Matmul,
    /// Only pairs whose tensor name matches this regular expression.
    #[arg(long)]
    pub filter: Option<String>,
    /// A calibration run (a second reference run, or a trusted clean device run): its error
    /// against REF is each tensor's observed noise floor.
    #[arg(long, value_name = "REF2")]
    pub noise: Option<PathBuf>,
    /// The candidate's tensors are stored in this NPU layout (nc1hwc0, ndc1hwc0, fractal-z,
    /// fractal-nz, or an aclFormat code), optionally only those whose name matches REGEX;
    /// they are converted to ND/NCHW before comparison (docs/ascend.md).
    #[arg(long, value_name = "FORMAT[:REGEX]", value_parser = LayoutOverride::parse)]
    pub layout: Option<LayoutOverride>,
    /// msprobe data mapping (YAML or JSON): candidate (NPU) name -> reference (bench) name,
    /// for tensors or whole places.
    #[arg(long, value_name = "FILE")]
    pub data_mapping: Option<PathBuf>,
    /// msprobe layer mapping (YAML or JSON): module class -> {candidate child: reference child}.
    #[arg(long, value_name = "FILE")]
    pub layer_mapping: Option<PathBuf>,
    /// Pair leftover entries by API name without call counters, in execution order (msprobe's
    /// fuzzy match).
    #[arg(long)]
    pub fuzzy: bool,
    /// Fused device ops (YAML or JSON): fused place -> the reference places it covers, in
    /// order; compared at the fused boundary, covered tensors reported as fused.
    #[arg(long, value_name = "FILE")]
    pub fusion_map: Option<PathBuf>,
}

/// `driftscope compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The dumps.
    #[command(flatten)]
    pub dumps: DumpArgs,
    /// Write the JSON report here (docs/report-schema.md).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per pair here (msprobe column names where they mean the same).
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// Write msprobe's compare_result CSV (its exact tensor-mode columns) here.
    #[arg(long, value_name = "OUT.csv")]
    pub msprobe_csv: Option<PathBuf>,
    /// Show only pairs that drift, diverge, differ or could not be compared.
    #[arg(long)]
    pub only_failing: bool,
    /// Never colour the table.
    #[arg(long)]
    pub no_color: bool,
}

/// `driftscope bisect`.
#[derive(Args, Debug)]
pub struct BisectArgs {
    /// The dumps.
    #[command(flatten)]
    pub dumps: DumpArgs,
    /// A known-good device run against the same reference: report where DEV departs from it.
    #[arg(long, value_name = "DEV0")]
    pub baseline: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Judge every place instead of binary-searching.
    #[arg(long)]
    pub exhaustive: bool,
    /// Never colour the output.
    #[arg(long)]
    pub no_color: bool,
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::parse(s).ok_or_else(|| format!("unknown dtype `{s}`"))
}
