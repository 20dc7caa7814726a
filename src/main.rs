//! The `driftscope` binary: parses arguments, calls the library, writes outputs, sets the exit
//! code (0 success, 1 accuracy regression for `check`, 2 usage or input error).

use anyhow::Context;
use clap::Parser;
use driftscope::align::Remap;
use driftscope::cli::{
    BaselineArgs, BisectArgs, CheckArgs, Cli, Command, CompareArgs, DumpArgs, ExportArgs,
    MappingArgs, MergeArgs, PartArgs, PlotArgs, ReadArgs, ReplayArgs, ReportArgs, TrendArgs,
};
use driftscope::compare::{compare, CompareOptions, Comparison, Status};
use driftscope::dump::{Dump, OpenOptions};
use driftscope::nightly::{self, baseline::Baseline, config::Config, history, trend::Trend};
use driftscope::plot::{self, Run};
use driftscope::ranks::{self, MultiRank};
use driftscope::replay;
use driftscope::report::{self, table, Exporter};
use driftscope::session;
use driftscope::shard;
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
        Command::Replay(a) => run_replay(a),
        Command::Check(a) => run_check(a),
        Command::Baseline(a) => run_baseline(a),
        Command::Trend(a) => run_trend(a),
        Command::Report(a) => run_report(a),
        Command::Plot(a) => run_plot(a),
        Command::Export(a) => run_export(a),
        Command::Merge(a) => run_merge(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("driftscope: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The two dumps, and what the mapping options paired or fused (`Remap`).
fn open_both(a: &DumpArgs) -> anyhow::Result<(Dump, Dump, Remap)> {
    // Opening a dump is single-threaded (dump.json, file checks): both at once. A broken
    // reference is reported first, as when they were opened in turn.
    let (r, d) = rayon::join(
        || Dump::open(&a.reference, &open_options(a)),
        || Dump::open(&a.candidate, &device_options(a)),
    );
    let r = r?;
    let mut d = d?;
    let fused = remap(&a.mapping, &r, &mut d)?;
    Ok((r, d, fused))
}

/// Pairs made by mapping files or `--fuzzy` say so; covered reference tensors are fused, not
/// unmatched.
fn print_fused(m: &Remap) {
    if !m.fused.is_empty() {
        println!(
            "fused: {} reference tensor(s) covered by fused device ops",
            m.fused.len()
        );
    }
}

/// `--data-mapping`, `--layer-mapping`, `--fuzzy`: renames device entries to the reference
/// names they pair with.
fn remap(a: &MappingArgs, r: &Dump, d: &mut Dump) -> anyhow::Result<Remap> {
    if a.data_mapping.is_none() && a.layer_mapping.is_none() && !a.fuzzy && a.fusion_map.is_none() {
        return Ok(Remap::default());
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
    let m = driftscope::align::remap_dumps(r, d, &o);
    for w in &m.warnings {
        eprintln!("driftscope: warning: {w}");
    }
    eprintln!(
        "driftscope: {} paired by mapping files, {} by --fuzzy ({})",
        m.mapped.len(),
        m.fuzzy.len(),
        d.path.display()
    );
    Ok(m)
}

/// Options from the command line; `--noise` compares its calibration run with `reference`.
fn compare_options(a: &DumpArgs, reference: &Dump) -> anyhow::Result<CompareOptions> {
    let mut o = options(&a.read)?;
    if let Some(p) = &a.noise {
        let cal = Dump::open(p, &open_options(a))?;
        let c = compare(reference, &cal, &o, &|| {});
        o.calibration = Some(std::sync::Arc::new(Calibration::from_comparison(&c)));
    }
    Ok(o)
}

fn open_options(a: &DumpArgs) -> OpenOptions {
    read_options(&a.read)
}

fn read_options(a: &ReadArgs) -> OpenOptions {
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
/// Exit code after a comparison: 2 when any pair could not be read or compared (shapes that
/// do not fit), or when nothing could be compared at all: a broken input never looks like
/// success.
fn input_errors(c: &Comparison) -> ExitCode {
    let errs: Vec<_> = c
        .pairs
        .iter()
        .filter(|p| p.status == Status::Error)
        .collect();
    let shapes: Vec<_> = c
        .pairs
        .iter()
        .filter(|p| p.status == Status::ShapeMismatch)
        .collect();
    if let Some(p) = errs.first() {
        eprintln!(
            "driftscope: error: {} pair(s) could not be read; first: {}",
            errs.len(),
            p.error.as_deref().unwrap_or("")
        );
    } else if let Some(p) = shapes.first() {
        eprintln!(
            "driftscope: error: {} pair(s) have shapes that do not fit; first: {} ({:?} vs {:?})",
            shapes.len(),
            p.name,
            p.shape_ref.as_deref().unwrap_or_default(),
            p.shape_dev.as_deref().unwrap_or_default()
        );
    } else if c.pairs.is_empty() {
        eprintln!(
            "driftscope: error: nothing could be compared: no tensor of {} pairs with one of {}",
            c.reference.path.display(),
            c.candidate.path.display()
        );
    } else {
        return ExitCode::SUCCESS;
    }
    ExitCode::from(2)
}

fn run_compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    if is_multi_rank(&a.dumps) {
        return run_compare_ranks(a);
    }
    let (r, d, remapped) = open_both(&a.dumps)?;
    let opts = compare_options(&a.dumps, &r)?;
    let bar = driftscope::progress::bar(r.entries.len() as u64, "comparing");
    let c = session::compare(&r, &d, &opts, &remapped, &|| bar.inc(1));
    bar.finish_and_clear();
    print_fused(&remapped);
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &report::json::Json.serialize(&c)?, &inputs)?;
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
                rows: table_rows(&a),
            }
        )
    );
    Ok(input_errors(&c))
}

/// Which table rows `compare` prints.
fn table_rows(a: &CompareArgs) -> table::Rows {
    match (a.all, a.only_failing) {
        (true, _) => table::Rows::All,
        (_, true) => table::Rows::Failing,
        _ => table::Rows::Matter,
    }
}

/// Both sides (or either) are msprobe roots with `rankN` folders.
fn is_multi_rank(a: &DumpArgs) -> bool {
    matches!(
        a.read.format,
        None | Some(driftscope::dump::Format::Msprobe)
    ) && (ranks::find_ranks(&a.reference).is_some() || ranks::find_ranks(&a.candidate).is_some())
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
        let broken = |p: &driftscope::compare::PairReport| {
            matches!(p.status, Status::Error | Status::ShapeMismatch)
        };
        if r.report.pairs.is_empty() || r.report.pairs.iter().any(broken) {
            eprint!("rank {}: ", r.rank);
            code = input_errors(&r.report);
        }
    }
    code
}

/// The ranks `--ranks` and `--shard` choose, compared by `each`; with `--part`, that part
/// file written for `driftscope merge`.
fn compare_rank_set<F>(
    d: &DumpArgs,
    p: &PartArgs,
    command: shard::PartCommand,
    options: Vec<(&str, String)>,
    each: F,
) -> anyhow::Result<MultiRank>
where
    F: Fn(u32, &Path, &Path) -> anyhow::Result<(Comparison, Vec<String>)> + Sync,
{
    let plan = ranks::RankPlan::of(&d.reference, &d.candidate)?;
    let sh = p
        .shard
        .map(|s| s.resolve(|k| std::env::var(k).ok()))
        .transpose()?;
    let only = shard::selection(&plan.all(), p.ranks.as_ref().map(|r| &r.0[..]), sh)?;
    let m = plan.compare(&only, each)?;
    if let Some(path) = &p.part {
        let mut fp = d.fingerprint()?;
        fp.extend(options.into_iter().map(|(k, v)| (k.to_string(), v)));
        let h = shard::PartHeader::new(command, fp, &plan, only, sh);
        let inputs = [d.reference.clone(), d.candidate.clone()];
        report::write_atomic(path, &shard::part_bytes(&h, &m)?, &inputs)?;
    }
    Ok(m)
}

fn run_compare_ranks(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let cmd = shard::PartCommand::Compare;
    let m = compare_rank_set(&a.dumps, &a.parts, cmd, vec![], |k, rp, dp| {
        let ra = rank_args(&a.dumps, k, rp, dp)?;
        let (r, d, remapped) = open_both(&ra)?;
        let opts = compare_options(&ra, &r)?;
        let c = session::compare(&r, &d, &opts, &remapped, &|| {});
        print_fused(&remapped);
        Ok((c, remapped.fused))
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
                    rows: table_rows(&a),
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
    let (r, d, remapped) = open_both(&a.dumps)?;
    let c = bisect_dumps(
        &a.dumps,
        &r,
        &d,
        &remapped,
        a.baseline.as_deref(),
        a.exhaustive,
    )?;
    let replayed = if a.replay {
        Some(replay_suspects(&r, &d, &c)?)
    } else {
        None
    };
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
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

fn bisect_one(
    a: &DumpArgs,
    baseline: Option<&Path>,
    exhaustive: bool,
) -> anyhow::Result<(Comparison, Remap)> {
    let (r, d, remapped) = open_both(a)?;
    let c = bisect_dumps(a, &r, &d, &remapped, baseline, exhaustive)?;
    Ok((c, remapped))
}

/// `bisect` of two opened dumps (with `--baseline` opened as a device run).
fn bisect_dumps(
    a: &DumpArgs,
    r: &Dump,
    d: &Dump,
    remapped: &Remap,
    baseline: Option<&Path>,
    exhaustive: bool,
) -> anyhow::Result<Comparison> {
    let opts = compare_options(a, r)?;
    let baseline = match baseline {
        Some(p) => {
            let mut b = Dump::open(p, &device_options(a))?;
            remap(&a.mapping, r, &mut b)?;
            Some(b)
        }
        None => None,
    };
    let c = session::bisect(r, d, baseline.as_ref(), &opts, remapped, exhaustive)?;
    print_fused(remapped);
    Ok(c)
}

fn run_bisect_ranks(a: BisectArgs) -> anyhow::Result<ExitCode> {
    let opts = vec![
        ("baseline", a.baseline.is_some().to_string()),
        ("exhaustive", a.exhaustive.to_string()),
    ];
    let cmd = shard::PartCommand::Bisect;
    let m = compare_rank_set(&a.dumps, &a.parts, cmd, opts, |k, rp, dp| {
        let ra = rank_args(&a.dumps, k, rp, dp)?;
        let base = match &a.baseline {
            Some(b) => Some(ranks::rank_dir(b, k).context("--baseline")?),
            None => None,
        };
        bisect_one(&ra, base.as_deref(), a.exhaustive).map(|(c, m)| (c, m.fused))
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

fn options(a: &ReadArgs) -> anyhow::Result<CompareOptions> {
    Ok(CompareOptions {
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
    })
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

/// Opens and compares the dumps for `check`/`baseline` with the config's noise options.
/// `Err(code)` when a pair could not be read (input errors win over everything else).
fn nightly_compare(
    a: &DumpArgs,
    cfg: &Config,
) -> anyhow::Result<Result<(Comparison, NoiseOptions), ExitCode>> {
    let (r, d, remapped) = open_both(a)?;
    if !remapped.warnings.is_empty() {
        anyhow::bail!("mapping files: {}", remapped.warnings.join("; "));
    }
    let mut opts = compare_options(a, &r)?;
    opts.noise = cfg.noise_options(a.read.fp32_matmul);
    let bar = driftscope::progress::bar(r.entries.len() as u64, "comparing");
    let c = session::compare(&r, &d, &opts, &remapped, &|| bar.inc(1));
    bar.finish_and_clear();
    print_fused(&remapped);
    let code = input_errors(&c);
    if code != ExitCode::SUCCESS {
        return Ok(Err(code));
    }
    Ok(Ok((c, opts.noise)))
}

fn load_config(p: Option<&std::path::Path>) -> anyhow::Result<Config> {
    p.map(Config::load)
        .transpose()
        .map(Option::unwrap_or_default)
}

fn run_check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(a.config.as_deref())?.compile()?;
    let baseline = a.baseline.as_deref().map(Baseline::load).transpose()?;
    let (c, noise) = match nightly_compare(&a.dumps, &cfg.config)? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let r = nightly::check(&c, &cfg, &noise, baseline.as_ref());
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    if let Some(p) = &a.json {
        report::write_atomic(p, &report::json::Json.serialize(&c)?, &inputs)?;
    }
    if let Some(p) = &a.junit {
        let stamp = nightly::utc_now().trim_end_matches('Z').to_string();
        let base = a.baseline.as_ref().map(|b| b.display().to_string());
        let xml = nightly::junit::render(&r, &cfg, base.as_deref(), &stamp);
        report::write_atomic(p, xml.as_bytes(), &inputs)?;
    }
    if let Some(p) = &a.markdown {
        let link = a
            .report_url
            .clone()
            .or_else(|| a.json.as_ref().map(|j| j.display().to_string()));
        let md = nightly::markdown::render(&r, link.as_deref());
        report::write_atomic(p, md.as_bytes(), &inputs)?;
    }
    if let Some(p) = &a.history {
        let line = history::Record::of(&r, a.run_id.as_deref());
        report::write_atomic(p, &history::appended(p, &line)?, &inputs)?;
    }
    print!("{}", r.text());
    Ok(ExitCode::from(r.exit_code()))
}

fn run_baseline(a: BaselineArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(a.config.as_deref())?;
    let (c, _) = match nightly_compare(&a.dumps, &cfg)? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    if let Some(f) = &c.analysis.first_divergence {
        eprintln!(
            "driftscope: warning: accepting a run that diverges at {} as the baseline",
            f.name
        );
    }
    let b = Baseline::from_comparison(&c);
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    report::write_atomic(&a.output, &b.to_json()?, &inputs)?;
    println!(
        "wrote baseline {} ({} places; {})",
        a.output.display(),
        b.places.len(),
        c.analysis.summary
    );
    Ok(ExitCode::SUCCESS)
}

fn run_trend(a: TrendArgs) -> anyhow::Result<ExitCode> {
    let runs = history::load(&a.history)?;
    if runs.is_empty() {
        anyhow::bail!("history {} holds no runs", a.history.display());
    }
    let t = Trend::new(&runs, &a.place, a.top);
    report::write_atomic(&a.output, t.html().as_bytes(), &[])?;
    report::write_atomic(&a.output.with_extension("svg"), t.svg()?.as_bytes(), &[])?;
    report::write_atomic(&a.output.with_extension("png"), &t.png()?, &[])?;
    println!(
        "wrote {} and its .png/.svg ({} runs{})",
        a.output.display(),
        runs.len(),
        t.regression_start
            .map(|i| format!("; regression started at {}", t.labels[i]))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Legend label of a dump: its folder or file name.
fn label(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn run_report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let o = read_options(&a.read);
    let opts = options(&a.read)?;
    let r = Dump::open(&a.reference, &o)?;
    // Each device run (and the baseline) with its mapping options applied.
    let open_dev = |p: &std::path::PathBuf| -> anyhow::Result<(Dump, Remap)> {
        let mut d = Dump::open(p, &o)?;
        let m = remap(&a.mapping, &r, &mut d)?;
        Ok((d, m))
    };
    let devs = a
        .candidates
        .iter()
        .map(open_dev)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let base = a.baseline.as_ref().map(open_dev).transpose()?;
    let mut runs = Vec::new();
    let mut used: Vec<&Dump> = Vec::new();
    for (p, (d, m)) in a.candidates.iter().zip(&devs) {
        let c = session::bisect(&r, d, base.as_ref().map(|b| &b.0), &opts, m, true)?;
        print_fused(m);
        runs.push(Run {
            label: label(p),
            comparison: c,
        });
        used.push(d);
    }
    if let (Some(p), Some((b, m))) = (&a.baseline, &base) {
        let c = session::compare(&r, b, &opts, m, &|| {});
        print_fused(m);
        runs.push(Run {
            label: format!("{} (baseline)", label(p)),
            comparison: c,
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
    if a.dumps.noise.is_some() {
        anyhow::bail!("plot draws one tensor pair: --noise applies to compare, bisect and report");
    }
    let opts = options(&a.dumps.read)?;
    if opts.filter.as_ref().is_some_and(|f| !f.is_match(&a.tensor)) {
        anyhow::bail!("--filter excludes the tensor `{}`", a.tensor);
    }
    if opts.noise.fp32_matmul != driftscope::verdict::Fp32Matmul::Auto {
        anyhow::bail!(
            "plot draws values and errors, no noise allowance: --fp32-matmul does not apply"
        );
    }
    let (r, d, _fused) = open_both(&a.dumps)?;
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

fn run_export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    if is_multi_rank(&a.dumps) {
        anyhow::bail!("export reads one rank: pass the two rankN folders");
    }
    let (r, d, remapped) = open_both(&a.dumps)?;
    let opts = compare_options(&a.dumps, &r)?;
    let c = session::compare(&r, &d, &opts, &remapped, &|| {});
    print_fused(&remapped);
    let tree = driftscope::hierarchy::Hierarchy::of(&r);
    if let Some(n) = &tree.note {
        eprintln!("driftscope: warning: {n}");
    }
    let inputs = [a.dumps.reference.clone(), a.dumps.candidate.clone()];
    let files = report::model_explorer::files(&c, &tree, &r)?;
    for (name, bytes) in &files {
        report::write_atomic(&a.model_explorer.join(name), bytes, &inputs)?;
    }
    println!(
        "wrote {} ({}) for Model Explorer; {}",
        a.model_explorer.display(),
        files.iter().map(|f| f.0).collect::<Vec<_>>().join(", "),
        c.analysis.summary
    );
    Ok(input_errors(&c))
}

fn run_merge(a: MergeArgs) -> anyhow::Result<ExitCode> {
    let plan = shard::plan(&a.parts)?;
    let out = std::fs::canonicalize(&a.output).ok();
    if a.parts
        .iter()
        .any(|p| std::fs::canonicalize(p).ok() == out && out.is_some())
    {
        anyhow::bail!("-o {} is one of the parts", a.output.display());
    }
    let mut merged = None;
    report::write_atomic_with(&a.output, &[], |w| {
        merged = Some(plan.write(w)?);
        Ok(())
    })?;
    let m = merged.context("merge wrote nothing")?;
    println!("merged {} part(s) into {}", m.parts, a.output.display());
    println!("ranks: {}", m.summary.text);
    let mut code = ExitCode::SUCCESS;
    if !m.missing_ranks_reference.is_empty() || !m.missing_ranks_candidate.is_empty() {
        eprintln!(
            "driftscope: error: ranks missing in the reference: [{}], in the candidate: [{}]",
            ranks::join(&m.missing_ranks_reference),
            ranks::join(&m.missing_ranks_candidate)
        );
        code = ExitCode::from(2);
    }
    if !m.broken.is_empty() {
        eprintln!(
            "driftscope: error: rank(s) {}: pairs that could not be read or compared (see their \
             reports)",
            shard::fmt_ranks(&m.broken)
        );
        code = ExitCode::from(2);
    }
    Ok(code)
}
