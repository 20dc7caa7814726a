//! One function per subcommand: typed options in, the library's result out, written where
//! the arguments say, and the exit code.

use crate::cli::{
    BaselineArgs, BisectArgs, CheckArgs, CheckOutputs, CompareArgs, DumpArgs, ExportArgs,
    MergeArgs, PartArgs, PlotArgs, ReplayArgs, ReportArgs, TrendArgs,
};
use crate::{options, progress};
use driftscope::align::Remap;
use driftscope::compare::Comparison;
use driftscope::dump::{Dump, OpenOptions};
use driftscope::nightly::config::{Compiled, Config};
use driftscope::nightly::{self, baseline::Baseline, history, trend::Trend};
use driftscope::ranks::check::{RankChecks, RankVerdicts};
use driftscope::ranks::{self, MultiRank, RankReport};
use driftscope::report::{self, table, AtomicFile, Exporter};
use driftscope::session::{self, Options, Session};
use driftscope::verdict::Fp32Matmul;
use driftscope::{plot, replay, shard};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let mut o = options::of_dumps(&a.dumps)?;
    o.compare.histograms = options::histograms(a.json.as_deref(), &a.parts);
    let (r, d) = (&a.dumps.reference, &a.dumps.candidate);
    if a.parts.world_size.is_some() || session::is_multi_rank(r, d, &o) {
        let sel = options::rank_selection(&a.parts)?;
        let opened = |_, s: &Session| note(&o, &s.remap, &s.candidate);
        let run = session::compare_ranks(r, d, &o, &sel, &opened)?;
        write_part(&a.parts, &run, &a.dumps)?;
        return compare_ranks(&a, &run.result);
    }
    refuse_rank_options(&a.parts)?;
    let s = open(&a.dumps, &o)?;
    let bar = progress::bar(s.reference.entries.len() as u64, "comparing");
    let c = s.compare(&|| bar.inc(1));
    bar.finish_and_clear();
    print_fused(&s.remap);
    let inputs = inputs(&a.dumps);
    if let Some(p) = &a.json {
        report::write_atomic_with(p, &inputs, |w| report::json::Json.write(&c, w))?;
    }
    if let Some(p) = &a.csv {
        report::write_atomic(p, &report::csv::Csv.serialize(&c)?, &inputs)?;
    }
    if let Some(p) = &a.msprobe_csv {
        let bytes = report::msprobe_csv::MsprobeCsv.serialize(&c)?;
        report::write_atomic(p, &bytes, &inputs)?;
    }
    print!("{}", table::render(&c, table_options(&a)));
    Ok(input_errors(&c))
}

fn compare_ranks(a: &CompareArgs, m: &MultiRank) -> anyhow::Result<ExitCode> {
    let inputs = inputs(&a.dumps);
    if let Some(p) = &a.json {
        report::write_atomic_with(p, &inputs, |w| Ok(report::json::to_writer(w, m)?))?;
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
        print!("{}", table::render(&r.report, table_options(a)));
    }
    println!("ranks: {}", m.summary.text);
    Ok(rank_errors(m))
}

pub fn bisect(a: BisectArgs) -> anyhow::Result<ExitCode> {
    let mut o = options::of_dumps(&a.dumps)?;
    o.compare.histograms = options::histograms(a.json.as_deref(), &a.parts);
    let (r, d) = (&a.dumps.reference, &a.dumps.candidate);
    if a.parts.world_size.is_some() || session::is_multi_rank(r, d, &o) {
        let (base, sel) = (a.baseline.as_deref(), options::rank_selection(&a.parts)?);
        let opened = |_, s: &Session| note(&o, &s.remap, &s.candidate);
        let run = session::bisect_ranks(r, d, base, &o, a.exhaustive, &sel, &opened)?;
        write_part(&a.parts, &run, &a.dumps)?;
        return bisect_ranks(&a, &run.result);
    }
    refuse_rank_options(&a.parts)?;
    let s = open(&a.dumps, &o)?;
    let base = match &a.baseline {
        Some(p) => {
            let (b, m) = s.open_device(p)?;
            note(&o, &m, &b);
            Some(b)
        }
        None => None,
    };
    let mut c = s.bisect(base.as_ref(), a.exhaustive)?;
    print_fused(&s.remap);
    if a.replay {
        s.replay_suspects(&mut c)?;
    }
    if let Some(p) = &a.json {
        report::write_atomic_with(p, &inputs(&a.dumps), |w| report::json::Json.write(&c, w))?;
    }
    print!("{}", report::bisect_text(&c, color(a.no_color)));
    if let Some(rep) = &c.replay {
        print!(
            "\nreplay (float64, from each side's own inputs):\n{}",
            replay::render(rep)
        );
    }
    Ok(input_errors(&c))
}

fn bisect_ranks(a: &BisectArgs, m: &MultiRank) -> anyhow::Result<ExitCode> {
    if let Some(p) = &a.json {
        report::write_atomic_with(p, &inputs(&a.dumps), |w| Ok(report::json::to_writer(w, m)?))?;
    }
    for r in &m.ranks {
        println!("== rank {} ==", r.rank);
        print!("{}", report::bisect_text(&r.report, color(a.no_color)));
    }
    println!("ranks: {}", m.summary.text);
    Ok(rank_errors(m))
}

pub fn replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
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

pub fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(a.out.config.as_deref())?.compile()?;
    let mut o = options::of_dumps(&a.dumps)?;
    o.compare.histograms = options::histograms(a.json.as_deref(), &a.parts);
    let (r, d) = (&a.dumps.reference, &a.dumps.candidate);
    if a.parts.world_size.is_some() || session::is_multi_rank(r, d, &o) {
        return check_ranks(&a, &cfg, &o);
    }
    refuse_rank_options(&a.parts)?;
    if a.out.html.is_some() {
        anyhow::bail!(
            "--html draws the ranks of a multi-rank run; for one dump, `driftscope report` \
             writes the HTML report"
        );
    }
    let baseline = a.baseline.as_deref().map(Baseline::load).transpose()?;
    let s = open(&a.dumps, &o)?;
    let bar = progress::bar(s.reference.entries.len() as u64, "comparing");
    let checked = session::check(&s, &cfg, baseline.as_ref(), &|| bar.inc(1));
    bar.finish_and_clear();
    if s.remap.warnings.is_empty() {
        print_fused(&s.remap);
    }
    let session::Checked { comparison, report } = checked?;
    let inputs = inputs(&a.dumps);
    if let Some(p) = &a.json {
        report::write_atomic(p, &report::json::Json.serialize(&comparison)?, &inputs)?;
    }
    if let Some(p) = &a.out.junit {
        let base = a.baseline.as_ref().map(|b| b.display().to_string());
        let xml = nightly::junit::render(&report, &cfg, base.as_deref(), &junit_stamp());
        report::write_atomic(p, xml.as_bytes(), &inputs)?;
    }
    if let Some(p) = &a.out.markdown {
        let md =
            nightly::markdown::render(&report, report_link(&a.out, a.json.as_deref()).as_deref());
        report::write_atomic(p, md.as_bytes(), &inputs)?;
    }
    if let Some(p) = &a.out.history {
        let line = history::Record::of(&report, a.out.run_id.as_deref());
        report::write_atomic(p, &history::appended(p, &line)?, &inputs)?;
    }
    print!("{}", report.text());
    Ok(ExitCode::from(report.exit_code()))
}

/// `check` of a multi-rank run: every rank judged with the config, one verdict for the run.
fn check_ranks(a: &CheckArgs, cfg: &Compiled, o: &Options) -> anyhow::Result<ExitCode> {
    if a.baseline.is_some() {
        anyhow::bail!(
            "--baseline holds the places of one dump: a multi-rank check takes no baseline yet \
             (check each rank folder against its own baseline)"
        );
    }
    let (r, d) = (&a.dumps.reference, &a.dumps.candidate);
    let sel = options::rank_selection(&a.parts)?;
    let opened = |_, s: &Session| note(o, &s.remap, &s.candidate);
    let run = session::check_ranks(r, d, o, &cfg.config, &sel, &opened)?;
    write_part(&a.parts, &run, &a.dumps)?;
    let inputs = inputs(&a.dumps);
    if let Some(p) = &a.json {
        let m = &run.result;
        report::write_atomic_with(p, &inputs, |w| Ok(report::json::to_writer(w, m)?))?;
    }
    let m = &run.result;
    if !(m.missing_ranks_reference.is_empty() && m.missing_ranks_candidate.is_empty()) {
        return Ok(missing_ranks(
            &m.missing_ranks_reference,
            &m.missing_ranks_candidate,
        ));
    }
    let mut junit = a
        .out
        .junit
        .as_ref()
        .map(|p| AtomicFile::create(p, &inputs))
        .transpose()?;
    let checks = driftscope::ranks::check::judge(
        m,
        cfg,
        run.noise.clone(),
        &junit_stamp(),
        junit.as_mut().map(|f| f as &mut dyn Write),
        r.display().to_string(),
        d.display().to_string(),
    )?;
    rank_check_outputs(&a.out, &checks, junit, a.json.as_deref(), &inputs)
}

/// The outputs of a multi-rank check (the JUnit file was filled while judging) and its exit
/// code.
fn rank_check_outputs(
    o: &CheckOutputs,
    checks: &RankChecks,
    junit: Option<AtomicFile>,
    json: Option<&Path>,
    inputs: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    if let Some(f) = junit {
        f.commit()?;
    }
    if let Some(p) = &o.markdown {
        let md = checks.markdown(report_link(o, json).as_deref());
        report::write_atomic(p, md.as_bytes(), inputs)?;
    }
    if let Some(p) = &o.history {
        let line = checks.history(o.run_id.as_deref());
        report::write_atomic(p, &history::appended(p, &line)?, inputs)?;
    }
    if let Some(p) = &o.html {
        report::write_atomic(p, checks.html()?.as_bytes(), inputs)?;
    }
    print!("{}", checks.text());
    Ok(ExitCode::from(checks.exit_code()))
}

/// `YYYY-MM-DDTHH:MM:SS`, now, for JUnit.
fn junit_stamp() -> String {
    nightly::utc_now().trim_end_matches('Z').to_string()
}

/// The Markdown summary's link to the full report: `--report-url`, else the JSON report.
fn report_link(o: &CheckOutputs, json: Option<&Path>) -> Option<String> {
    o.report_url
        .clone()
        .or_else(|| json.map(|j| j.display().to_string()))
}

pub fn baseline(a: BaselineArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(a.config.as_deref())?;
    let s = open(&a.dumps, &options::of_dumps(&a.dumps)?)?;
    let bar = progress::bar(s.reference.entries.len() as u64, "comparing");
    let compared = session::nightly_compare(&s, &cfg, &|| bar.inc(1));
    bar.finish_and_clear();
    if s.remap.warnings.is_empty() {
        print_fused(&s.remap);
    }
    let (c, _) = compared?;
    if let Some(f) = &c.analysis.first_divergence {
        eprintln!(
            "driftscope: warning: accepting a run that diverges at {} as the baseline",
            f.name
        );
    }
    let b = Baseline::from_comparison(&c);
    report::write_atomic(&a.output, &b.to_json()?, &inputs(&a.dumps))?;
    println!(
        "wrote baseline {} ({} places; {})",
        a.output.display(),
        b.places.len(),
        c.analysis.summary
    );
    Ok(ExitCode::SUCCESS)
}

pub fn trend(a: TrendArgs) -> anyhow::Result<ExitCode> {
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

pub fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let o = options::of_report(&a.read, &a.mapping)?;
    let rep = session::report(&a.reference, &a.candidates, a.baseline.as_deref(), &o)?;
    for (d, m) in rep.devices.iter().chain(&rep.baseline) {
        note(&o, m, d);
    }
    for (_, m) in rep.devices.iter().chain(&rep.baseline) {
        print_fused(m);
    }
    let mut inputs = vec![a.reference.clone()];
    inputs.extend(a.candidates.iter().cloned());
    inputs.extend(a.baseline.iter().cloned());
    let html = plot::html::render(&rep.reference, &rep.runs, &rep.run_dumps())?;
    report::write_atomic(&a.out.join("index.html"), html.as_bytes(), &inputs)?;
    let png = plot::drift::png(&rep.runs)?;
    report::write_atomic(&a.out.join("drift.png"), &png, &inputs)?;
    let svg = plot::drift::svg(&rep.runs)?;
    report::write_atomic(&a.out.join("drift.svg"), svg.as_bytes(), &inputs)?;
    for run in &rep.runs {
        println!("{}: {}", run.label, run.comparison.analysis.summary);
    }
    println!(
        "wrote {} (index.html, drift.png, drift.svg)",
        a.out.display()
    );
    let broken = rep.runs.iter().any(|r| has_input_problem(&r.comparison));
    Ok(if broken {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn plot(a: PlotArgs) -> anyhow::Result<ExitCode> {
    let o = options::of_dumps(&a.dumps)?;
    if o.noise_run.is_some() {
        anyhow::bail!("plot draws one tensor pair: --noise applies to compare, bisect and report");
    }
    if o.compare
        .filter
        .as_ref()
        .is_some_and(|f| !f.is_match(&a.tensor))
    {
        anyhow::bail!("--filter excludes the tensor `{}`", a.tensor);
    }
    if o.compare.noise.fp32_matmul != Fp32Matmul::Auto {
        anyhow::bail!(
            "plot draws values and errors, no noise allowance: --fp32-matmul does not apply"
        );
    }
    let s = open(&a.dumps, &o)?;
    let (pair, heat) = s.closeup(&a.tensor)?;
    let inputs = inputs(&a.dumps);
    let (png, svg) = (a.out.with_extension("png"), a.out.with_extension("svg"));
    report::write_atomic(&png, &plot::closeup_png(&pair, &heat)?, &inputs)?;
    report::write_atomic(&svg, plot::closeup_svg(&pair, &heat)?.as_bytes(), &inputs)?;
    println!("wrote {} and {}", png.display(), svg.display());
    Ok(ExitCode::SUCCESS)
}

pub fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let o = options::of_dumps(&a.dumps)?;
    if session::is_multi_rank(&a.dumps.reference, &a.dumps.candidate, &o) {
        anyhow::bail!("export reads one rank: pass the two rankN folders");
    }
    let s = open(&a.dumps, &o)?;
    let c = s.compare(&|| {});
    print_fused(&s.remap);
    let tree = driftscope::hierarchy::Hierarchy::of(&s.reference);
    if let Some(n) = &tree.note {
        eprintln!("driftscope: warning: {n}");
    }
    let files = report::model_explorer::files(&c, &tree, &s.reference)?;
    for (name, bytes) in &files {
        report::write_atomic(&a.model_explorer.join(name), bytes, &inputs(&a.dumps))?;
    }
    println!(
        "wrote {} ({}) for Model Explorer; {}",
        a.model_explorer.display(),
        files.iter().map(|f| f.0).collect::<Vec<_>>().join(", "),
        c.analysis.summary
    );
    Ok(input_errors(&c))
}

pub fn merge(a: MergeArgs) -> anyhow::Result<ExitCode> {
    let o = &a.out;
    let judging_options = o.config.is_some()
        || o.junit.is_some()
        || o.markdown.is_some()
        || o.history.is_some()
        || o.run_id.is_some()
        || o.report_url.is_some()
        || o.html.is_some();
    if judging_options && !a.check {
        anyhow::bail!(
            "--config, --junit, --markdown, --history, --run-id, --report-url and --html judge \
             the merged run: add --check"
        );
    }
    let plan = shard::plan(&a.parts)?;
    let out = std::fs::canonicalize(&a.output).ok();
    if out.is_some() && a.parts.iter().any(|p| std::fs::canonicalize(p).ok() == out) {
        anyhow::bail!("-o {} is one of the parts", a.output.display());
    }
    let cfg = if a.check {
        let cfg = load_config(o.config.as_deref())?.compile()?;
        judgeable(plan.header(), &cfg)?;
        Some(cfg)
    } else {
        None
    };
    let h = plan.header().clone();
    // Parts are not dumps: outputs may sit beside them (but never be one, checked above).
    let inputs: Vec<PathBuf> = Vec::new();
    let mut junit = match (&cfg, &o.junit) {
        (Some(_), Some(p)) => Some(AtomicFile::create(p, &inputs)?),
        _ => None,
    };
    let mut verdicts = match &cfg {
        Some(c) => Some(RankVerdicts::new(
            c,
            h.noise.clone(),
            &junit_stamp(),
            junit.as_mut().map(|f| f as &mut dyn Write),
        )?),
        None => None,
    };
    let mut json = AtomicFile::create(&a.output, &inputs)?;
    let mut judge = |rank: u32, r: &RankReport| match verdicts.as_mut() {
        Some(v) => v.add(rank, &r.report),
        None => Ok(()),
    };
    let each: Option<&mut shard::Each> = if a.check { Some(&mut judge) } else { None };
    let merged = plan.write(&mut json, each);
    let m = merged.map_err(|e| e.context(format!("cannot write {}", a.output.display())))?;
    json.commit()?;
    println!("merged {} part(s) into {}", m.parts, a.output.display());
    let mut code = missing_ranks(&m.missing_ranks_reference, &m.missing_ranks_candidate);
    let missing = !(m.missing_ranks_reference.is_empty() && m.missing_ranks_candidate.is_empty());
    if !m.broken.is_empty() {
        eprintln!(
            "driftscope: error: rank(s) {}: pairs that could not be read or compared (see their \
             reports)",
            shard::fmt_ranks(&m.broken)
        );
        code = ExitCode::from(2);
    }
    match verdicts {
        // A run with a missing or broken rank gets no verdict (its JUnit file is dropped).
        Some(v) if !missing && m.broken.is_empty() => {
            let checks = v.finish(m.summary, h.reference, h.candidate)?;
            rank_check_outputs(o, &checks, junit, Some(&a.output), &inputs)
        }
        _ => {
            println!("ranks: {}", m.summary.text);
            Ok(code)
        }
    }
}

/// `merge --check` judges whole comparisons made with the config's noise model.
fn judgeable(h: &shard::PartHeader, cfg: &Compiled) -> anyhow::Result<()> {
    if h.command == shard::PartCommand::Bisect {
        anyhow::bail!(
            "merge --check judges whole comparisons: parts of `compare` or `check`, not `bisect`"
        );
    }
    let want = cfg.config.noise_options(h.noise.fp32_matmul);
    if want != h.noise {
        anyhow::bail!(
            "the parts were compared with the noise model {:?}, the config asks for {:?}: write \
             the parts with `driftscope check --config ... --part ...`",
            h.noise,
            want
        );
    }
    Ok(())
}

/// `--part`: this shard's part file, for `driftscope merge`.
fn write_part(p: &PartArgs, run: &session::RankRun, d: &DumpArgs) -> anyhow::Result<()> {
    if let Some(path) = &p.part {
        report::write_atomic_with(path, &inputs(d), |w| run.write_part(w))?;
    }
    Ok(())
}

fn refuse_rank_options(p: &PartArgs) -> anyhow::Result<()> {
    if options::wants_ranks(p) {
        anyhow::bail!(
            "--ranks, --shard and --part apply to multi-rank runs (msprobe roots of rankN folders)"
        );
    }
    Ok(())
}

/// Opens the two dumps and says what the mapping options did.
fn open(a: &DumpArgs, o: &Options) -> anyhow::Result<Session> {
    let s = Session::open(&a.reference, &a.candidate, o)?;
    note(o, &s.remap, &s.candidate);
    Ok(s)
}

/// Mapping files that paired nothing, and how many pairs the mapping options made.
fn note(o: &Options, m: &Remap, device: &Dump) {
    if o.mapping.is_empty() {
        return;
    }
    for w in &m.warnings {
        eprintln!("driftscope: warning: {w}");
    }
    eprintln!(
        "driftscope: {} paired by mapping files, {} by --fuzzy ({})",
        m.mapped.len(),
        m.fuzzy.len(),
        device.path.display()
    );
}

/// Reference tensors covered by fused device ops are fused, not unmatched.
fn print_fused(m: &Remap) {
    if !m.fused.is_empty() {
        println!(
            "fused: {} reference tensor(s) covered by fused device ops",
            m.fused.len()
        );
    }
}

/// The files a command must never write into.
fn inputs(a: &DumpArgs) -> [PathBuf; 2] {
    [a.reference.clone(), a.candidate.clone()]
}

fn color(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

fn table_options(a: &CompareArgs) -> table::TableOptions {
    table::TableOptions {
        color: color(a.no_color),
        rows: match (a.all, a.only_failing) {
            (true, _) => table::Rows::All,
            (_, true) => table::Rows::Failing,
            _ => table::Rows::Matter,
        },
    }
}

fn has_input_problem(c: &Comparison) -> bool {
    c.input_problem().is_some()
}

/// Exit 2 when any pair could not be read or compared, or nothing could be compared at all:
/// a broken input never looks like success.
fn input_errors(c: &Comparison) -> ExitCode {
    match c.input_problem() {
        Some(problem) => {
            eprintln!("driftscope: error: {problem}");
            ExitCode::from(2)
        }
        None => ExitCode::SUCCESS,
    }
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
    let mut code = missing_ranks(&m.missing_ranks_reference, &m.missing_ranks_candidate);
    for r in &m.ranks {
        if let Some(problem) = r.report.input_problem() {
            eprintln!("rank {}: driftscope: error: {problem}", r.rank);
            code = ExitCode::from(2);
        }
    }
    code
}

/// Exit 2, saying which, when a rank is present on one side only.
fn missing_ranks(in_reference: &[u32], in_candidate: &[u32]) -> ExitCode {
    if in_reference.is_empty() && in_candidate.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "driftscope: error: ranks missing in the reference: [{}], in the candidate: [{}]",
        ranks::join(in_reference),
        ranks::join(in_candidate)
    );
    ExitCode::from(2)
}

fn load_config(p: Option<&Path>) -> anyhow::Result<Config> {
    p.map(Config::load)
        .transpose()
        .map(Option::unwrap_or_default)
}
