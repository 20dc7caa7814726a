//! Command-line definitions (clap). Behaviour lives in the library; `options.rs` turns these
//! into its typed options.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use driftscope::dump::ascend_layout::LayoutOverride;
use driftscope::dump::{DType, Format};
use driftscope::shard::{RankList, ShardSpec};
use driftscope::verdict::Fp32Matmul;
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
    /// Recompute API calls in float64 from a dump's own inputs: is the op wrong, or inherited?
    ///
    /// The ops listed in docs/replay.md run in pure Rust; a binary built with `--features
    /// torch` replays any other ATen op by name through libtorch.
    Replay(ReplayArgs),
    /// Nightly check: exit 0 pass, 1 accuracy regression, 2 usage or input error.
    Check(CheckArgs),
    /// Accept a run as the new baseline (metrics only, JSON).
    Baseline(BaselineArgs),
    /// Plot a `check --history` file: trend.html plus .png and .svg next to it.
    Trend(TrendArgs),
    /// Write an interactive HTML report and drift plots (PNG, SVG) of one or more device runs.
    Report(ReportArgs),
    /// Plot one tensor's error close up: histograms and heatmap of |dev - ref| (PNG and SVG).
    Plot(PlotArgs),
    /// Export a comparison for other viewers: Model Explorer's graph and node-data JSON.
    Export(ExportArgs),
    /// Merge the part files of a sharded multi-rank run into one report (docs/cluster.md).
    Merge(MergeArgs),
}

/// How to read dumps and which pairs to compare, shared by every command that opens dumps.
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Force the layout of the dumps instead of detecting it.
    #[arg(long, value_parser = named(Format::ALL.map(Format::name)).try_map(|s| s.parse::<Format>()))]
    pub format: Option<Format>,
    /// True dtype of .npy arrays numpy cannot name (bf16 saved as <V2 or <i2, fp8 as |V1).
    #[arg(long, value_parser = parse_dtype)]
    pub npy_dtype: Option<DType>,
    /// Follow symlinks inside a dump that point outside it.
    #[arg(long)]
    pub allow_symlinks: bool,
    /// How fp32 matrix products ran on the device (auto: TF32/HF32 allowed for them).
    #[arg(
        long,
        default_value = "auto",
        value_parser = named(Fp32Matmul::ALL.map(Fp32Matmul::name)).try_map(|s| s.parse::<Fp32Matmul>())
    )]
    pub fp32_matmul: Fp32Matmul,
    /// Only pairs whose tensor name matches this regular expression.
    #[arg(long)]
    pub filter: Option<String>,
}

/// How to read the two dumps.
#[derive(Args, Debug, Clone)]
pub struct DumpArgs {
    /// Reference dump (folder, dump.json, driftscope.json, .safetensors, .npy/.npz).
    pub reference: PathBuf,
    /// Candidate (device) dump.
    pub candidate: PathBuf,
    /// How to read and compare them.
    #[command(flatten)]
    pub read: ReadArgs,
    /// A calibration run (a second reference run, or a trusted clean device run): its error
    /// against REF is each tensor's observed noise floor.
    #[arg(long, value_name = "REF2")]
    pub noise: Option<PathBuf>,
    /// The candidate's tensors are stored in this NPU layout (nc1hwc0, ndc1hwc0, fractal-z,
    /// fractal-nz, or an aclFormat code), optionally only those whose name matches REGEX;
    /// or per tensor, `REGEX=FORMAT;REGEX=FORMAT` or `@FILE` of such lines (first match wins).
    /// They are converted to ND/NCHW before comparison (docs/ascend.md).
    #[arg(long, value_name = "FORMAT[:REGEX]", value_parser = LayoutOverride::parse)]
    pub layout: Option<LayoutOverride>,
    /// msprobe's mapping options.
    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// Sharding a multi-rank run over machines (docs/cluster.md).
#[derive(Args, Debug, Clone)]
pub struct PartArgs {
    /// Only these ranks of a multi-rank run (`0-63`, `0,2,8-15`).
    #[arg(long, value_name = "LIST", value_parser = RankList::parse)]
    pub ranks: Option<RankList>,
    /// Compare shard I of N (zero-based) of the ranks, contiguous blocks; `N` alone takes I
    /// from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "I/N", value_parser = ShardSpec::parse, requires = "part")]
    pub shard: Option<ShardSpec>,
    /// Write this shard's part file here, for `driftscope merge`.
    #[arg(long, value_name = "PART.json")]
    pub part: Option<PathBuf>,
    /// The run has ranks 0..N-1 on both sides, of which this machine holds some (node-local
    /// disks): compare the ranks found here (or --ranks/--shard of 0..N-1, all held here).
    #[arg(long, value_name = "N", requires = "part", value_parser = clap::value_parser!(u32).range(1..))]
    pub world_size: Option<u32>,
}

/// msprobe's mapping options: how device names that differ pair with reference names.
#[derive(Args, Debug, Clone, Default)]
pub struct MappingArgs {
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
    /// Write the JSON report here (docs/report-schema.md); it holds each pair's error
    /// histograms, which are counted only when a report needs them.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per pair here (msprobe column names where they mean the same).
    #[arg(long, value_name = "OUT.csv")]
    pub csv: Option<PathBuf>,
    /// Write msprobe's compare_result CSV (its exact tensor-mode columns) here.
    #[arg(long, value_name = "OUT.csv")]
    pub msprobe_csv: Option<PathBuf>,
    /// Show only pairs that drift, diverge, differ or could not be compared (all of them).
    #[arg(long, conflicts_with = "all")]
    pub only_failing: bool,
    /// Show every pair (by default: the rows that matter, at most 40, and a summary).
    #[arg(long)]
    pub all: bool,
    /// Never colour the table.
    #[arg(long)]
    pub no_color: bool,
    /// Multi-rank runs: which ranks, and a part file.
    #[command(flatten)]
    pub parts: PartArgs,
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
    /// Replay the first divergence and the top ranked places in float64 (docs/replay.md).
    #[arg(long)]
    pub replay: bool,
    /// Multi-rank runs: which ranks, and a part file.
    #[command(flatten)]
    pub parts: PartArgs,
}

/// `driftscope replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Device dump (msprobe, API level).
    pub device: PathBuf,
    /// Reference dump: replay the same calls there too.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Call(s) to replay (`Functional.silu.1.forward`); repeatable.
    #[arg(long, value_name = "CALL", required_unless_present = "all")]
    pub at: Vec<String>,
    /// Replay every call of the dump.
    #[arg(long, conflicts_with = "at")]
    pub all: bool,
    /// Write `{"calls": [...]}` here.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Follow symlinks inside a dump that point outside it.
    #[arg(long)]
    pub allow_symlinks: bool,
}

/// `driftscope check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The dumps.
    #[command(flatten)]
    pub dumps: DumpArgs,
    /// A baseline written by `driftscope baseline`: fail where a place regresses beyond it.
    #[arg(long, value_name = "BASELINE.json")]
    pub baseline: Option<PathBuf>,
    /// Write the JSON comparison report here (docs/report-schema.md).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Config and CI outputs.
    #[command(flatten)]
    pub out: CheckOutputs,
    /// Ranks, shard and part file of a multi-rank run.
    #[command(flatten)]
    pub parts: PartArgs,
}

/// The config of a check and what it writes besides the JSON report.
#[derive(Args, Debug, Default)]
pub struct CheckOutputs {
    /// Limits, overrides, ignored places, coverage, noise model (docs/nightly.md).
    #[arg(long, value_name = "driftscope.toml")]
    pub config: Option<PathBuf>,
    /// Write JUnit XML here (one test suite per rank for a multi-rank run).
    #[arg(long, value_name = "OUT.xml")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "OUT.md")]
    pub markdown: Option<PathBuf>,
    /// Append one JSON line for this run to this history file.
    #[arg(long, value_name = "H.jsonl")]
    pub history: Option<PathBuf>,
    /// Build or run id recorded in the history.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Link to the full report in the Markdown summary (default: the JSON report's path).
    #[arg(long, value_name = "URL")]
    pub report_url: Option<String>,
    /// Multi-rank runs: write an HTML page (rank-by-place error map, table of ranks) here.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

/// `driftscope baseline`.
#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// The dumps.
    #[command(flatten)]
    pub dumps: DumpArgs,
    /// Where to write the baseline.
    #[arg(short, long, value_name = "BASELINE.json")]
    pub output: PathBuf,
    /// Config whose noise-model options to use (as `check --config`).
    #[arg(long, value_name = "driftscope.toml")]
    pub config: Option<PathBuf>,
}

/// `driftscope trend`.
#[derive(Args, Debug)]
pub struct TrendArgs {
    /// History written by `check --history`.
    pub history: PathBuf,
    /// The HTML page to write; .png and .svg are written next to it.
    #[arg(short, long, value_name = "trend.html")]
    pub output: PathBuf,
    /// Places to plot besides the final output (repeatable; default: the worst ones).
    #[arg(long, value_name = "PLACE")]
    pub place: Vec<String>,
    /// Without --place: plot this many places with the largest error in the latest run.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
}

/// `driftscope report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Reference dump.
    pub reference: PathBuf,
    /// Device dumps compared against the reference, overlaid in one report.
    #[arg(required = true, num_args = 1..)]
    pub candidates: Vec<PathBuf>,
    /// A known-good device run: each DEV is judged by where it departs from it (also plotted).
    #[arg(long, value_name = "DEV0")]
    pub baseline: Option<PathBuf>,
    /// Output folder: index.html, drift.png, drift.svg.
    #[arg(
        short,
        long,
        value_name = "OUT_DIR",
        default_value = "driftscope-report"
    )]
    pub out: PathBuf,
    /// How to read and compare the dumps.
    #[command(flatten)]
    pub read: ReadArgs,
    /// msprobe's mapping options, applied to every DEV and the baseline.
    #[command(flatten)]
    pub mapping: MappingArgs,
}

/// `driftscope plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// The dumps.
    #[command(flatten)]
    pub dumps: DumpArgs,
    /// Reference tensor name (`Functional.silu.1.forward.output.0`).
    #[arg(long)]
    pub tensor: String,
    /// Output PNG; an SVG is written next to it with the same stem.
    #[arg(short, long, value_name = "OUT.png")]
    pub out: PathBuf,
}

/// `driftscope export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The dumps (one rank each).
    #[command(flatten)]
    pub dumps: DumpArgs,
    /// Write Model Explorer's graph (graph.json) and node-data files into this folder.
    #[arg(long, value_name = "OUT_DIR")]
    pub model_explorer: PathBuf,
}

/// `driftscope merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Part files written by `compare --part`, `bisect --part` or `check --part`, together the
    /// whole run.
    #[arg(required = true, num_args = 1..)]
    pub parts: Vec<PathBuf>,
    /// The merged JSON report (as `--json` of the same command on one machine).
    #[arg(short, long, value_name = "OUT.json")]
    pub output: PathBuf,
    /// Judge the merged run as `check` does (exit 1 on a regression); the options below need
    /// it. Parts of `compare` or `check`, compared with the config's noise model.
    #[arg(long)]
    pub check: bool,
    /// Config and CI outputs, as `check` takes them.
    #[command(flatten)]
    pub out: CheckOutputs,
}

/// A parser that accepts these names and lists them in `--help`; the library's `FromStr`
/// turns the name into its enum.
fn named<const N: usize>(names: [&'static str; N]) -> PossibleValuesParser {
    PossibleValuesParser::new(names)
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    DType::parse(s).ok_or_else(|| format!("unknown dtype `{s}`"))
}
