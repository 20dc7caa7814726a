//! The `driftscope` binary: parses arguments, calls the library, writes outputs, sets the exit
//! code (0 success, 1 accuracy regression for `check`, 2 usage or input error).

use anyhow::Context;
use clap::Parser;
use driftscope::cli::{BisectArgs, Cli, Command, CompareArgs, DumpArgs, PlotArgs, ReportArgs};
use driftscope::compare::{compare, CompareOptions, Comparison, Status};
use driftscope::dump::{Dump, OpenOptions};
use driftscope::plot::{self, Run};
use driftscope::report::{self, table, Exporter};
use driftscope::verdict::{Fp32Matmul, NoiseOptions};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compare(a) => run_compare(a),
        Command::Bisect(a) => run_bisect(a),
        Command::Report(a) => run_report(a),
        Command::Plot(a) => run_plot(a),
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
    let o = OpenOptions {
        format: a.format,
        npy_dtype: a.npy_dtype,
        allow_symlinks: a.allow_symlinks,
    };
    let r = Dump::open(&a.reference, &o)?;
    let d = Dump::open(&a.candidate, &o)?;
    Ok((r, d))
}

fn compare_options(a: &DumpArgs) -> anyhow::Result<CompareOptions> {
    options(a.filter.as_deref(), a.fp32_matmul)
}

fn options(filter: Option<&str>, fp32_matmul: Fp32Matmul) -> anyhow::Result<CompareOptions> {
    Ok(CompareOptions {
        filter: filter
            .map(regex::Regex::new)
            .transpose()
            .context("--filter is not a valid regular expression")?,
        noise: NoiseOptions {
            fp32_matmul,
            ..NoiseOptions::default()
        },
    })
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
    let opts = compare_options(&a.dumps)?;
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
    let opts = compare_options(&a.dumps)?;
    let baseline = match &a.baseline {
        Some(p) => Some(Dump::open(
            p,
            &OpenOptions {
                format: a.dumps.format,
                npy_dtype: a.dumps.npy_dtype,
                allow_symlinks: a.dumps.allow_symlinks,
            },
        )?),
        None => None,
    };
    let c = driftscope::verdict::bisect::run(&r, &d, baseline.as_ref(), &opts, a.exhaustive)?;
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &report::json::Json.serialize(&c)?, &inputs)?;
    }
    print!("{}", driftscope::report::bisect_text(&c, color(a.no_color)));
    Ok(input_errors(&c))
}

/// Legend label of a dump: its folder or file name.
fn label(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn run_report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let o = OpenOptions {
        format: a.format,
        npy_dtype: a.npy_dtype,
        allow_symlinks: a.allow_symlinks,
    };
    let opts = options(a.filter.as_deref(), a.fp32_matmul)?;
    let r = Dump::open(&a.reference, &o)?;
    let devs = a
        .candidates
        .iter()
        .map(|p| Dump::open(p, &o))
        .collect::<Result<Vec<_>, _>>()?;
    let base = a.baseline.as_ref().map(|p| Dump::open(p, &o)).transpose()?;
    let mut runs = Vec::new();
    let mut used: Vec<&Dump> = Vec::new();
    for (p, d) in a.candidates.iter().zip(&devs) {
        let c = driftscope::verdict::bisect::run(&r, d, base.as_ref(), &opts, true)?;
        runs.push(Run {
            label: label(p),
            comparison: c,
        });
        used.push(d);
    }
    if let (Some(p), Some(b)) = (&a.baseline, &base) {
        runs.push(Run {
            label: format!("{} (baseline)", label(p)),
            comparison: compare(&r, b, &opts, &|| {}),
        });
        used.push(b);
    }
    let mut inputs = vec![a.reference.clone()];
    inputs.extend(a.candidates.iter().cloned());
    inputs.extend(a.baseline.iter().cloned());
    let html = plot::html::render(&r, &runs, &used)?;
    report::write_atomic(&a.out.join("index.html"), html.as_bytes(), &inputs)?;
    report::write_atomic(&a.out.join("drift.png"), &plot::drift::png(&runs)?, &inputs)?;
    report::write_atomic(
        &a.out.join("drift.svg"),
        plot::drift::svg(&runs)?.as_bytes(),
        &inputs,
    )?;
    for run in &runs {
        println!("{}: {}", run.label, run.comparison.analysis.summary);
    }
    println!(
        "wrote {} (index.html, drift.png, drift.svg)",
        a.out.display()
    );
    let mut code = ExitCode::SUCCESS;
    for run in &runs {
        if input_errors(&run.comparison) != ExitCode::SUCCESS {
            code = ExitCode::from(2);
        }
    }
    Ok(code)
}

fn run_plot(a: PlotArgs) -> anyhow::Result<ExitCode> {
    let (r, d) = open_both(&a.dumps)?;
    let al = driftscope::align::align(&r, &d);
    let p = al
        .pairs
        .iter()
        .find(|p| r.entries[p.reference].name == a.tensor)
        .ok_or_else(|| anyhow::anyhow!("no tensor `{}` in both dumps", a.tensor))?;
    let (re, de) = (&r.entries[p.reference], &d.entries[p.candidate]);
    let pair = driftscope::compare::measure_pair(&r, re, &d, de, p.kind);
    if let Some(e) = &pair.error {
        anyhow::bail!("{}: {e}", a.tensor);
    }
    let heat = plot::heatmap::load(&r, re, &d, de)?;
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    let (png, svg) = (a.out.with_extension("png"), a.out.with_extension("svg"));
    report::write_atomic(&png, &plot::closeup_png(&pair, &heat)?, &inputs)?;
    report::write_atomic(&svg, plot::closeup_svg(&pair, &heat)?.as_bytes(), &inputs)?;
    println!("wrote {} and {}", png.display(), svg.display());
    Ok(ExitCode::SUCCESS)
}
