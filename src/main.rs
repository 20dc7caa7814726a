//! The `driftscope` binary: parses arguments, calls the library, writes outputs, sets the exit
//! code (0 success, 1 accuracy regression for `check`, 2 usage or input error).

use anyhow::Context;
use clap::Parser;
use driftscope::cli::{BisectArgs, Cli, Command, CompareArgs, DumpArgs, ReplayArgs};
use driftscope::compare::{compare, CompareOptions, Comparison, Status};
use driftscope::dump::{Dump, OpenOptions};
use driftscope::replay;
use driftscope::report::{self, table, Exporter};
use driftscope::verdict::calibrate::Calibration;
use driftscope::verdict::NoiseOptions;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(a) => run_compare(a),
        Command::Bisect(a) => run_bisect(a),
        Command::Replay(a) => run_replay(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("driftscope: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn open_both(a: &DumpArgs) -> anyhow::Result<(Dump, Dump)> {
    let o = open_options(a);
    let r = Dump::open(&a.reference, &o)?;
    let d = Dump::open(&a.candidate, &o)?;
    Ok((r, d))
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
    let (r, d) = open_both(&a.dumps)?;
    let opts = compare_options(&a.dumps, &r)?;
    let bar = driftscope::progress::bar(r.entries.len() as u64, "comparing");
    let c = compare(&r, &d, &opts, &|| bar.inc(1));
    bar.finish_and_clear();
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &report::json::Json.serialize(&c)?, &inputs)?;
    }
    if let Some(p) = &a.csv {
        report::write_atomic(p, &report::csv::Csv.serialize(&c)?, &inputs)?;
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

fn run_bisect(a: BisectArgs) -> anyhow::Result<ExitCode> {
    let (r, d) = open_both(&a.dumps)?;
    let opts = compare_options(&a.dumps, &r)?;
    let baseline = match &a.baseline {
        Some(p) => Some(Dump::open(p, &open_options(&a.dumps))?),
        None => None,
    };
    let c = driftscope::verdict::bisect::run(&r, &d, baseline.as_ref(), &opts, a.exhaustive)?;
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    let replayed = if a.replay {
        Some(replay_suspects(&r, &d, &c)?)
    } else {
        None
    };
    if let Some(p) = &a.json {
        let mut bytes = report::json::Json.serialize(&c)?;
        if let Some(rep) = &replayed {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes)?;
            v["replay"] = serde_json::to_value(rep)?;
            bytes = serde_json::to_vec_pretty(&v)?;
        }
        report::write_atomic(p, &bytes, &inputs)?;
    }
    print!("{}", driftscope::report::bisect_text(&c, color(a.no_color)));
    if let Some(rep) = &replayed {
        print!(
            "\nreplay (float64, from each side's own inputs):\n{}",
            replay::render(rep)
        );
    }
    Ok(input_errors(&c))
}

/// `bisect --replay`: the first divergence and the top ranked places, replayed.
fn replay_suspects(r: &Dump, d: &Dump, c: &Comparison) -> anyhow::Result<replay::ReplayReport> {
    let mut places: Vec<String> = Vec::new();
    let first = c.analysis.first_divergence.iter().map(|f| &f.name);
    for p in first.chain(c.analysis.ranked.iter().take(5).map(|x| &x.name)) {
        if !places.contains(p) {
            places.push(p.clone());
        }
    }
    if places.is_empty() {
        return Ok(replay::ReplayReport::default());
    }
    let (ds, rs) = (replay::Side::new(d)?, replay::Side::new(r)?);
    Ok(replay::replay(&ds, Some(&rs), &places))
}

fn run_replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let o = OpenOptions {
        allow_symlinks: a.allow_symlinks,
        ..OpenOptions::default()
    };
    let d = Dump::open(&a.device, &o)?;
    let r = a
        .reference
        .as_ref()
        .map(|p| Dump::open(p, &o))
        .transpose()?;
    let ds = replay::Side::new(&d)?;
    let rs = r.as_ref().map(replay::Side::new).transpose()?;
    let rep = replay::replay(&ds, rs.as_ref(), if a.all { &[] } else { &a.at });
    if let Some(p) = &a.json {
        let mut inputs = vec![a.device.clone()];
        inputs.extend(a.reference.clone());
        report::write_atomic(p, &serde_json::to_vec_pretty(&rep)?, &inputs)?;
    }
    print!("{}", replay::render(&rep));
    Ok(ExitCode::SUCCESS)
}
