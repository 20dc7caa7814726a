//! The `driftscope` binary: parses arguments, calls the library, writes outputs, sets the exit
//! code (0 success, 1 accuracy regression for `check`, 2 usage or input error).

use anyhow::Context;
use clap::Parser;
use driftscope::cli::{BisectArgs, Cli, Command, CompareArgs, DumpArgs};
use driftscope::compare::{compare, CompareOptions, Comparison, Status};
use driftscope::dump::{Dump, OpenOptions};
use driftscope::ranks::{self, MultiRank};
use driftscope::report::{self, table, Exporter};
use driftscope::verdict::calibrate::Calibration;
use driftscope::verdict::NoiseOptions;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(a) => run_compare(a),
        Command::Bisect(a) => run_bisect(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("driftscope: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The two dumps, and the reference tensors covered by fused device ops (`--fusion-map`).
fn open_both(a: &DumpArgs) -> anyhow::Result<(Dump, Dump, Vec<String>)> {
    let r = Dump::open(&a.reference, &open_options(a))?;
    let mut d = Dump::open(&a.candidate, &device_options(a))?;
    let fused = remap(a, &r, &mut d)?;
    Ok((r, d, fused))
}

/// Covered reference tensors are fused, not unmatched.
fn mark_fused(c: &mut Comparison, fused: &[String]) {
    if !fused.is_empty() {
        let f: std::collections::HashSet<&str> = fused.iter().map(String::as_str).collect();
        c.unmatched_reference.retain(|n| !f.contains(n.as_str()));
        println!(
            "fused: {} reference tensor(s) covered by fused device ops",
            fused.len()
        );
    }
}

/// The JSON report, with `fused_reference` when some reference tensors were fused.
fn report_json(c: &Comparison, fused: &[String]) -> anyhow::Result<Vec<u8>> {
    if fused.is_empty() {
        return report::json::Json.serialize(c);
    }
    let mut v = serde_json::to_value(c)?;
    v["fused_reference"] = serde_json::json!(fused);
    let mut b = serde_json::to_vec_pretty(&v)?;
    b.push(b'\n');
    Ok(b)
}

/// `--data-mapping`, `--layer-mapping`, `--fuzzy`: renames device entries to the reference
/// names they pair with.
fn remap(a: &DumpArgs, r: &Dump, d: &mut Dump) -> anyhow::Result<Vec<String>> {
    if a.data_mapping.is_none() && a.layer_mapping.is_none() && !a.fuzzy && a.fusion_map.is_none() {
        return Ok(Vec::new());
    }
    let o = driftscope::align::MappingOptions {
        data_mapping: match &a.data_mapping {
            Some(p) => driftscope::align::read_data_mapping(p)?,
            None => Default::default(),
        },
        layer_mapping: match &a.layer_mapping {
            Some(p) => driftscope::align::read_layer_mapping(p)?,
            None => Default::default(),
        },
        fuzzy: a.fuzzy,
        fusion: match &a.fusion_map {
            Some(p) => driftscope::align::read_fusion_map(p)?,
            None => Default::default(),
        },
    };
    let m = driftscope::align::remap(&r.entries, &mut d.entries, &o);
    eprintln!(
        "driftscope: {} paired by mapping files, {} by --fuzzy ({})",
        m.mapped.len(),
        m.fuzzy.len(),
        d.path.display()
    );
    Ok(m.fused)
}

fn compare_options(a: &DumpArgs, reference: &Dump) -> anyhow::Result<CompareOptions> {
    let mut o = CompareOptions {
        filter: a
            .filter
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .context("--filter is not a valid regular expression")?,
        noise: NoiseOptions {
            fp32_matmul: a.fp32_matmul,
            ..NoiseOptions::default()
        },
        calibration: None,
    };
    if let Some(p) = &a.noise {
        let cal = Dump::open(p, &open_options(a))?;
        let c = compare(reference, &cal, &o, &|| {});
        o.calibration = Some(std::sync::Arc::new(Calibration::from_comparison(&c)));
    }
    Ok(o)
}

fn open_options(a: &DumpArgs) -> OpenOptions {
    OpenOptions {
        format: a.format,
        npy_dtype: a.npy_dtype,
        allow_symlinks: a.allow_symlinks,
        layout: None,
    }
}

/// Options for device runs (the candidate, `--baseline`): `--layout` applies to them.
fn device_options(a: &DumpArgs) -> OpenOptions {
    OpenOptions {
        layout: a.layout.clone(),
        ..open_options(a)
    }
}

fn color(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// Exit code after a comparison: 2 when any pair could not be read (the rest was compared).
fn input_errors(c: &Comparison) -> ExitCode {
    let errs: Vec<_> = c
        .pairs
        .iter()
        .filter(|p| p.status == Status::Error)
        .collect();
    if errs.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "driftscope: error: {} pair(s) could not be read; first: {}",
        errs.len(),
        errs[0].error.as_deref().unwrap_or("")
    );
    ExitCode::from(2)
}

fn run_compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    if is_multi_rank(&a.dumps) {
        return run_compare_ranks(a);
    }
    let (r, d, fused) = open_both(&a.dumps)?;
    let opts = compare_options(&a.dumps, &r)?;
    let bar = driftscope::progress::bar(r.entries.len() as u64, "comparing");
    let mut c = compare(&r, &d, &opts, &|| bar.inc(1));
    bar.finish_and_clear();
    mark_fused(&mut c, &fused);
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &report_json(&c, &fused)?, &inputs)?;
    }
    if let Some(p) = &a.csv {
        report::write_atomic(p, &report::csv::Csv.serialize(&c)?, &inputs)?;
    }
    if let Some(p) = &a.msprobe_csv {
        let bytes = report::msprobe_csv::MsprobeCsv.serialize(&c)?;
        report::write_atomic(p, &bytes, &inputs)?;
    }
    print!(
        "{}",
        table::render(
            &c,
            table::TableOptions {
                color: color(a.no_color),
                only_failing: a.only_failing,
            }
        )
    );
    Ok(input_errors(&c))
}

/// Both sides (or either) are msprobe roots with `rankN` folders.
fn is_multi_rank(a: &DumpArgs) -> bool {
    matches!(a.format, None | Some(driftscope::dump::Format::Msprobe))
        && (ranks::find_ranks(&a.reference).is_some() || ranks::find_ranks(&a.candidate).is_some())
}

/// `a` narrowed to one rank: its two folders, and the same rank of `--noise` / `--baseline`.
fn rank_args(a: &DumpArgs, rank: u32, r: &Path, d: &Path) -> anyhow::Result<DumpArgs> {
    let mut o = a.clone();
    o.reference = r.to_path_buf();
    o.candidate = d.to_path_buf();
    if let Some(n) = &a.noise {
        o.noise = Some(ranks::rank_dir(n, rank).context("--noise")?);
    }
    Ok(o)
}

/// `OUT.csv` -> `OUT.rank3.csv`.
fn rank_file(p: &Path, rank: u32) -> PathBuf {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let name = match p.extension() {
        Some(e) => format!("{stem}.rank{rank}.{}", e.to_string_lossy()),
        None => format!("{stem}.rank{rank}"),
    };
    p.with_file_name(name)
}

/// Exit code and messages after a multi-rank run: 2 when a rank is missing on one side or a
/// pair could not be read.
fn rank_errors(m: &MultiRank) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    if m.has_missing() {
        eprintln!(
            "driftscope: error: ranks missing in the reference: [{}], in the candidate: [{}]",
            ranks::join(&m.missing_ranks_reference),
            ranks::join(&m.missing_ranks_candidate)
        );
        code = ExitCode::from(2);
    }
    for r in &m.ranks {
        if r.report.pairs.iter().any(|p| p.status == Status::Error) {
            eprint!("rank {}: ", r.rank);
            code = input_errors(&r.report);
        }
    }
    code
}

fn run_compare_ranks(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let m = ranks::compare_ranks(&a.dumps.reference, &a.dumps.candidate, |k, rp, dp| {
        let ra = rank_args(&a.dumps, k, rp, dp)?;
        let (r, d, fused) = open_both(&ra)?;
        let opts = compare_options(&ra, &r)?;
        let mut c = compare(&r, &d, &opts, &|| {});
        mark_fused(&mut c, &fused);
        Ok((c, fused))
    })?;
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &serde_json::to_vec_pretty(&m)?, &inputs)?;
    }
    for r in &m.ranks {
        if let Some(p) = &a.csv {
            let bytes = report::csv::Csv.serialize(&r.report)?;
            report::write_atomic(&rank_file(p, r.rank), &bytes, &inputs)?;
        }
        if let Some(p) = &a.msprobe_csv {
            let bytes = report::msprobe_csv::MsprobeCsv.serialize(&r.report)?;
            report::write_atomic(&rank_file(p, r.rank), &bytes, &inputs)?;
        }
        println!("== rank {} ==", r.rank);
        print!(
            "{}",
            table::render(
                &r.report,
                table::TableOptions {
                    color: color(a.no_color),
                    only_failing: a.only_failing,
                }
            )
        );
    }
    println!("ranks: {}", m.summary.text);
    Ok(rank_errors(&m))
}

fn run_bisect(a: BisectArgs) -> anyhow::Result<ExitCode> {
    if is_multi_rank(&a.dumps) {
        return run_bisect_ranks(a);
    }
    let (c, fused) = bisect_one(&a.dumps, a.baseline.as_deref(), a.exhaustive)?;
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &report_json(&c, &fused)?, &inputs)?;
    }
    print!("{}", driftscope::report::bisect_text(&c, color(a.no_color)));
    Ok(input_errors(&c))
}

fn bisect_one(
    a: &DumpArgs,
    baseline: Option<&Path>,
    exhaustive: bool,
) -> anyhow::Result<(Comparison, Vec<String>)> {
    let (r, d, fused) = open_both(a)?;
    let opts = compare_options(a, &r)?;
    let baseline = match baseline {
        Some(p) => {
            let mut b = Dump::open(p, &device_options(a))?;
            remap(a, &r, &mut b)?;
            Some(b)
        }
        None => None,
    };
    let mut c = driftscope::verdict::bisect::run(&r, &d, baseline.as_ref(), &opts, exhaustive)?;
    mark_fused(&mut c, &fused);
    Ok((c, fused))
}

fn run_bisect_ranks(a: BisectArgs) -> anyhow::Result<ExitCode> {
    let m = ranks::compare_ranks(&a.dumps.reference, &a.dumps.candidate, |k, rp, dp| {
        let ra = rank_args(&a.dumps, k, rp, dp)?;
        let base = match &a.baseline {
            Some(b) => Some(ranks::rank_dir(b, k).context("--baseline")?),
            None => None,
        };
        bisect_one(&ra, base.as_deref(), a.exhaustive)
    })?;
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &serde_json::to_vec_pretty(&m)?, &inputs)?;
    }
    for r in &m.ranks {
        println!("== rank {} ==", r.rank);
        print!(
            "{}",
            driftscope::report::bisect_text(&r.report, color(a.no_color))
        );
    }
    println!("ranks: {}", m.summary.text);
    Ok(rank_errors(&m))
}
