//! The library's entry point: from two dump paths and typed [`Options`] to what `driftscope
//! compare`, `bisect`, `check` and `report` compute. Open a [`Session`] (both dumps read, the
//! mapping files applied, a `--noise` calibration run measured), then ask it for a
//! [`Comparison`]: every pair measured and judged, suspects judged by their own error where the
//! dumps record each call's inputs, structural changes put first when no number departs.
//!
//! ```
//! use driftscope::session::{Options, Session};
//! let runs = std::path::Path::new("reference_dumps/h200/llama/msprobe");
//! let s = Session::open(
//!     &runs.join("cpu_fp32"),
//!     &runs.join("cuda_fp16_fault_silu_l1"),
//!     &Options::default(),
//! )?;
//! let c = s.compare(&|| {});
//! let f = c.analysis.first_divergence.as_ref().expect("the injected fault");
//! assert_eq!(f.name, "Functional.silu.1.forward");
//! println!("first divergence: {} ({})", f.name, f.reason);
//! # anyhow::Ok(())
//! ```
//!
//! `examples/first_divergence.rs` adds `bisect` and `check`.

use crate::align::{self, Remap};
use crate::bisect;
use crate::compare::{self, CompareOptions, Comparison, PairReport};
use crate::comparison::{Divergence, DivergenceKind};
use crate::dump::{Dump, OpenOptions, Role};
use crate::metrics::Histograms;
use crate::nightly::{self, baseline::Baseline, config::Compiled, CheckReport};
use crate::own_error;
use crate::plot::heatmap::{self, Heat};
use crate::plot::Run;
use crate::ranks::{self, MultiRank, RankPlan};
use crate::replay::{self, ReplayReport};
use crate::shard::{self, PartCommand, PartHeader, Shard};
use crate::verdict::calibrate::Calibration;
use crate::verdict::NoiseOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// msprobe's mapping options, as files: how device names that differ pair with reference
/// names. Read when a session opens.
#[derive(Clone, Debug, Default)]
pub struct MappingFiles {
    /// `--data-mapping`: candidate name -> reference name, for tensors or places.
    pub data_mapping: Option<PathBuf>,
    /// `--layer-mapping`: module class -> {candidate child: reference child}.
    pub layer_mapping: Option<PathBuf>,
    /// `--fuzzy`: pair leftovers by API name without call counters, in order.
    pub fuzzy: bool,
    /// `--fusion-map`: fused device place -> the reference places it covers.
    pub fusion_map: Option<PathBuf>,
}

impl MappingFiles {
    /// True when no mapping option is set: names pair as they are.
    pub fn is_empty(&self) -> bool {
        self.data_mapping.is_none()
            && self.layer_mapping.is_none()
            && !self.fuzzy
            && self.fusion_map.is_none()
    }

    fn read(&self) -> anyhow::Result<align::MappingOptions> {
        Ok(align::MappingOptions {
            data_mapping: match &self.data_mapping {
                Some(p) => align::read_data_mapping(p)?,
                None => Default::default(),
            },
            layer_mapping: match &self.layer_mapping {
                Some(p) => align::read_layer_mapping(p)?,
                None => Default::default(),
            },
            fuzzy: self.fuzzy,
            fusion: match &self.fusion_map {
                Some(p) => align::read_fusion_map(p)?,
                None => Default::default(),
            },
        })
    }
}

/// Everything that decides how two dumps are read and compared.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// How to read every dump; its `layout` applies to device runs only (the candidate and
    /// any baseline), never to the reference.
    pub open: OpenOptions,
    /// Which pairs, and the noise model.
    pub compare: CompareOptions,
    /// A calibration run (a second reference run, or a trusted clean device run): its error
    /// against the reference is each tensor's observed noise floor (`--noise`).
    pub noise_run: Option<PathBuf>,
    /// msprobe's mapping options.
    pub mapping: MappingFiles,
}

impl Options {
    /// What changes a rank's result besides the dumps, for part files: the read and noise
    /// options, and digests of the mapping files (paths may differ between nodes, contents
    /// must not).
    pub fn fingerprint(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let o = &self.open;
        let mut m = BTreeMap::new();
        let filter = self.compare.filter.as_ref().map(|f| f.as_str());
        let read = format!(
            "{:?} {:?} {} {filter:?} {:?}",
            o.format, o.npy_dtype, o.allow_symlinks, self.compare.noise
        );
        m.insert("read".into(), read);
        m.insert("layout".into(), format!("{:?}", o.layout));
        m.insert("noise".into(), self.noise_run.is_some().to_string());
        m.insert("fuzzy".into(), self.mapping.fuzzy.to_string());
        for (k, f) in [
            ("data_mapping", &self.mapping.data_mapping),
            ("layer_mapping", &self.mapping.layer_mapping),
            ("fusion_map", &self.mapping.fusion_map),
        ] {
            let v = f.as_deref().map(shard::file_digest).transpose()?;
            m.insert(k.into(), v.unwrap_or_else(|| "-".into()));
        }
        Ok(m)
    }

    fn reference_open(&self) -> OpenOptions {
        OpenOptions {
            layout: None,
            ..self.open.clone()
        }
    }
}

/// Two opened dumps, paired as the mapping options say, and the options they are compared
/// with (including the calibration of `--noise`).
pub struct Session {
    /// The reference run.
    pub reference: Dump,
    /// The candidate (device) run, its entries renamed where the mapping options paired them.
    pub candidate: Dump,
    /// What the mapping options paired or fused.
    pub remap: Remap,
    /// The comparison options, with the calibration of `--noise` when one was given.
    pub options: CompareOptions,
    open: Options,
    mapping: align::MappingOptions,
}

impl Session {
    /// Opens both dumps (at once: opening is single-threaded), applies the mapping files and
    /// measures the `--noise` run. A broken reference is reported before a broken candidate.
    pub fn open(reference: &Path, candidate: &Path, o: &Options) -> anyhow::Result<Session> {
        let (r, d) = rayon::join(
            || Dump::open(reference, &o.reference_open()),
            || Dump::open(candidate, &o.open),
        );
        let reference = r?;
        let mut candidate = d?;
        candidate.share_strings(&reference);
        let mapping = o.mapping.read()?;
        let remap = remap(&o.mapping, &mapping, &reference, &mut candidate);
        let mut options = o.compare.clone();
        if let Some(p) = &o.noise_run {
            let cal = Dump::open(p, &o.reference_open())?;
            let c = compare::compare(&reference, &cal, &options, &|| {});
            options.calibration = Some(Arc::new(Calibration::from_comparison(&c)));
        }
        Ok(Session {
            reference,
            candidate,
            remap,
            options,
            open: o.clone(),
            mapping,
        })
    }

    /// Another device run against the same reference (a baseline, a further candidate), read
    /// and mapped as the candidate was.
    pub fn open_device(&self, p: &Path) -> anyhow::Result<(Dump, Remap)> {
        let mut d = Dump::open(p, &self.open.open)?;
        d.share_strings(&self.reference);
        let m = remap(&self.open.mapping, &self.mapping, &self.reference, &mut d);
        Ok((d, m))
    }

    /// `driftscope compare`: every pair measured and judged. `progress` is called once per
    /// measured pair.
    pub fn compare(&self, progress: &(dyn Fn() + Sync)) -> Comparison {
        compare_dumps(
            &self.reference,
            &self.candidate,
            &self.options,
            &self.remap,
            progress,
        )
    }

    /// `driftscope bisect`: the first divergence of the candidate against the reference, or
    /// against the known-good device run `baseline` (see [`Session::open_device`]), reading
    /// few tensors unless `exhaustive`.
    pub fn bisect(&self, baseline: Option<&Dump>, exhaustive: bool) -> anyhow::Result<Comparison> {
        bisect_dumps(
            &self.reference,
            &self.candidate,
            baseline,
            &self.options,
            &self.remap,
            exhaustive,
        )
    }

    /// One pair close up for `driftscope plot`: its metrics and the values and errors the
    /// histograms and heatmap draw. `tensor` is the reference tensor's name.
    pub fn closeup(&self, tensor: &str) -> anyhow::Result<(PairReport, Heat)> {
        let (r, d) = (&self.reference, &self.candidate);
        let al = align::align(r, d);
        let p = al
            .pairs
            .iter()
            .find(|p| &*r.entries[p.reference].name == tensor)
            .ok_or_else(|| anyhow::anyhow!("no tensor `{tensor}` in both dumps"))?;
        let (re, de) = (&r.entries[p.reference], &d.entries[p.candidate]);
        let pair = compare::measure_pair(r, re, d, de, p.kind, Histograms::Count);
        if let Some(e) = &pair.error {
            anyhow::bail!("{tensor}: {e}");
        }
        let heat = heatmap::load(r, re, d, de)?;
        Ok((pair, heat))
    }

    /// `bisect --replay`: the first divergence and the five top ranked places of `c`,
    /// recomputed in float64 from each side's own inputs; kept in `c.replay`.
    pub fn replay_suspects(&self, c: &mut Comparison) -> anyhow::Result<()> {
        let mut places: Vec<String> = Vec::new();
        let first = c.analysis.first_divergence.iter().map(|f| f.name.as_str());
        for p in first.chain(c.analysis.ranked.iter().take(5).map(|x| &*x.name)) {
            if !places.iter().any(|q| q == p) {
                places.push(p.to_string());
            }
        }
        c.replay = Some(if places.is_empty() {
            ReplayReport::default()
        } else {
            let (ds, rs) = (
                replay::Side::for_places(&self.candidate, &places)?,
                replay::Side::for_places(&self.reference, &places)?,
            );
            replay::replay(&ds, Some(&rs), &places)
        });
        Ok(())
    }
}

/// The runs of `driftscope report`: each device run judged by where it departs from the
/// reference (or from `baseline`, exhaustively), and the baseline against the reference.
pub struct Report {
    /// The reference run.
    pub reference: Dump,
    /// Each device run, mapped as the options say, in the order given.
    pub devices: Vec<(Dump, Remap)>,
    /// The known-good device run, if one was given.
    pub baseline: Option<(Dump, Remap)>,
    /// One run per device, then the baseline's (labelled `NAME (baseline)`).
    pub runs: Vec<Run>,
}

impl Report {
    /// The device dumps of [`Report::runs`], in the same order.
    pub fn run_dumps(&self) -> Vec<&Dump> {
        self.devices
            .iter()
            .chain(&self.baseline)
            .map(|(d, _)| d)
            .collect()
    }
}

/// Compares every device run in `candidates` (and `baseline`) with `reference` for the HTML
/// report and drift plots.
pub fn report(
    reference: &Path,
    candidates: &[PathBuf],
    baseline: Option<&Path>,
    o: &Options,
) -> anyhow::Result<Report> {
    let r = Dump::open(reference, &o.reference_open())?;
    let mapping = o.mapping.read()?;
    let open_device = |p: &PathBuf| -> anyhow::Result<(Dump, Remap)> {
        let mut d = Dump::open(p, &o.open)?;
        let m = remap(&o.mapping, &mapping, &r, &mut d);
        Ok((d, m))
    };
    let devices = candidates
        .iter()
        .map(open_device)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let base = baseline
        .map(|p| open_device(&p.to_path_buf()))
        .transpose()?;
    let mut runs = Vec::new();
    for (p, (d, m)) in candidates.iter().zip(&devices) {
        let b = base.as_ref().map(|b| &b.0);
        runs.push(Run {
            label: label(p),
            comparison: bisect_dumps(&r, d, b, &o.compare, m, true)?,
        });
    }
    if let (Some(p), Some((b, m))) = (baseline, &base) {
        runs.push(Run {
            label: format!("{} (baseline)", label(p)),
            comparison: compare_dumps(&r, b, &o.compare, m, &|| {}),
        });
    }
    Ok(Report {
        reference: r,
        devices,
        baseline: base,
        runs,
    })
}

/// Legend label of a dump: its folder or file name.
fn label(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// What [`check`] found: the comparison and the nightly verdict on it.
pub struct Checked {
    /// The comparison the verdict judged (the `--json` report).
    pub comparison: Comparison,
    /// Pass or fail, place by place.
    pub report: CheckReport,
}

/// `driftscope check`: compares `s` with the config's noise model and judges the comparison
/// against its limits and an optional baseline. Unreadable or unpaired input is an error, never
/// a verdict; so are mapping files that paired nothing.
pub fn check(
    s: &Session,
    cfg: &Compiled,
    baseline: Option<&Baseline>,
    progress: &(dyn Fn() + Sync),
) -> anyhow::Result<Checked> {
    let (comparison, noise) = nightly_compare(s, &cfg.config, progress)?;
    let report = nightly::check(&comparison, cfg, &noise, baseline);
    Ok(Checked { comparison, report })
}

/// The comparison `check` and `baseline` judge, and the noise model it was judged with: the
/// config's. Unreadable input and mapping files that paired nothing are errors.
pub fn nightly_compare(
    s: &Session,
    cfg: &nightly::config::Config,
    progress: &(dyn Fn() + Sync),
) -> anyhow::Result<(Comparison, crate::verdict::NoiseOptions)> {
    if !s.remap.warnings.is_empty() {
        anyhow::bail!("mapping files: {}", s.remap.warnings.join("; "));
    }
    let mut options = s.options.clone();
    options.noise = cfg.noise_options(s.options.noise.fp32_matmul);
    let c = compare_dumps(&s.reference, &s.candidate, &options, &s.remap, progress);
    if let Some(problem) = c.input_problem() {
        anyhow::bail!(problem);
    }
    Ok((c, options.noise))
}

/// Which ranks of a multi-rank run to compare: all of them, a list (`--ranks`), and/or one
/// shard of them (`--shard I/N`).
#[derive(Clone, Debug, Default)]
pub struct RankSelection {
    /// Only these ranks.
    pub ranks: Option<Vec<u32>>,
    /// Shard I of N of the (listed) ranks.
    pub shard: Option<Shard>,
    /// The run has ranks `0..N` on both sides, of which this machine holds some (node-local
    /// disks); without `ranks` and `shard`, the ranks found here are compared.
    pub world_size: Option<u32>,
}

/// A multi-rank comparison of the selected ranks, with what a part file for `merge` records.
pub struct RankRun {
    /// The ranks compared, as one machine reports them.
    pub result: MultiRank,
    command: PartCommand,
    fingerprint: BTreeMap<String, String>,
    plan: RankPlan,
    covered: Vec<u32>,
    shard: Option<Shard>,
    /// The noise model the ranks were compared with.
    pub noise: NoiseOptions,
}

impl RankRun {
    /// The part file of this shard: a header naming the whole run, its options and the ranks
    /// covered, then the rank reports (docs/cluster.md).
    pub fn write_part(&self, w: &mut dyn std::io::Write) -> anyhow::Result<()> {
        let h = PartHeader::new(
            self.command,
            self.fingerprint.clone(),
            &self.plan,
            self.covered.clone(),
            self.shard,
            self.noise.clone(),
        );
        shard::write_part(&h, &self.result, w)
    }
}

/// `compare` of two multi-rank roots (`rankN` folders), rank by rank in parallel; `--noise`
/// is narrowed to the same rank. `opened` sees each rank's session before it is compared.
pub fn compare_ranks(
    reference: &Path,
    candidate: &Path,
    o: &Options,
    sel: &RankSelection,
    opened: &(dyn Fn(u32, &Session) + Sync),
) -> anyhow::Result<RankRun> {
    rank_run(
        reference,
        candidate,
        o,
        sel,
        RankJob {
            command: PartCommand::Compare,
            extra: vec![],
            noise: o.compare.noise.clone(),
        },
        opened,
        |_, s| Ok((s.compare(&|| {}), s.remap.fused)),
    )
}

/// `bisect` of two multi-rank roots, rank by rank; `baseline` is a root too.
pub fn bisect_ranks(
    reference: &Path,
    candidate: &Path,
    baseline: Option<&Path>,
    o: &Options,
    exhaustive: bool,
    sel: &RankSelection,
    opened: &(dyn Fn(u32, &Session) + Sync),
) -> anyhow::Result<RankRun> {
    let extra = vec![
        ("baseline", baseline.is_some().to_string()),
        ("exhaustive", exhaustive.to_string()),
    ];
    rank_run(
        reference,
        candidate,
        o,
        sel,
        RankJob {
            command: PartCommand::Bisect,
            extra,
            noise: o.compare.noise.clone(),
        },
        opened,
        |k, s| {
            let base = match baseline {
                Some(b) => {
                    let dir = ranks::rank_dir(b, k).map_err(|e| e.context("--baseline"))?;
                    Some(s.open_device(&dir)?.0)
                }
                None => None,
            };
            Ok((s.bisect(base.as_ref(), exhaustive)?, s.remap.fused))
        },
    )
}

/// `check` of two multi-rank roots: each rank compared as [`check`] compares one dump (the
/// config's noise model; unreadable input or mapping files that paired nothing fail the run,
/// naming the rank). Judge the result with [`ranks::check::judge`].
pub fn check_ranks(
    reference: &Path,
    candidate: &Path,
    o: &Options,
    cfg: &nightly::config::Config,
    sel: &RankSelection,
    opened: &(dyn Fn(u32, &Session) + Sync),
) -> anyhow::Result<RankRun> {
    rank_run(
        reference,
        candidate,
        o,
        sel,
        RankJob {
            command: PartCommand::Check,
            extra: vec![],
            noise: cfg.noise_options(o.compare.noise.fp32_matmul),
        },
        opened,
        |_, s| {
            let (c, _) = nightly_compare(&s, cfg, &|| {})?;
            Ok((c, s.remap.fused))
        },
    )
}

/// What a multi-rank run computes, as its part file records it.
struct RankJob {
    command: PartCommand,
    /// Options of the command beyond [`Options::fingerprint`].
    extra: Vec<(&'static str, String)>,
    /// The noise model of the comparisons.
    noise: NoiseOptions,
}

fn rank_run<F>(
    reference: &Path,
    candidate: &Path,
    o: &Options,
    sel: &RankSelection,
    job: RankJob,
    opened: &(dyn Fn(u32, &Session) + Sync),
    each: F,
) -> anyhow::Result<RankRun>
where
    F: Fn(u32, Session) -> anyhow::Result<(Comparison, Vec<String>)> + Sync,
{
    let plan = match sel.world_size {
        Some(n) => RankPlan::local(reference, candidate, n)?,
        None => RankPlan::of(reference, candidate)?,
    };
    let covered = match (sel.world_size, &sel.ranks, sel.shard) {
        (Some(_), None, None) => plan.local_ranks(),
        _ => shard::selection(&plan.all(), sel.ranks.as_deref(), sel.shard)?,
    };
    plan.require_local(&covered)?;
    // Each rank's session is opened here (`--noise` narrowed to the rank) and shown to `opened`.
    let result = plan.compare(&covered, |k, rp, dp| {
        let s = Session::open(rp, dp, &rank_options(o, k)?)?;
        opened(k, &s);
        each(k, s)
    })?;
    let mut fingerprint = o.fingerprint()?;
    fingerprint.extend(job.extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    Ok(RankRun {
        result,
        command: job.command,
        fingerprint,
        plan,
        covered,
        shard: sel.shard,
        noise: job.noise,
    })
}

/// True when `reference` or `candidate` is an msprobe root of `rankN` folders (and no other
/// format was forced).
pub fn is_multi_rank(reference: &Path, candidate: &Path, o: &Options) -> bool {
    matches!(o.open.format, None | Some(crate::dump::Format::Msprobe))
        && (ranks::find_ranks(reference).is_some() || ranks::find_ranks(candidate).is_some())
}

fn rank_options(o: &Options, rank: u32) -> anyhow::Result<Options> {
    let mut r = o.clone();
    if let Some(n) = &o.noise_run {
        r.noise_run = Some(ranks::rank_dir(n, rank).map_err(|e| e.context("--noise"))?);
    }
    Ok(r)
}

/// Renames `d`'s entries as the mapping options pair them with `r`'s.
fn remap(files: &MappingFiles, m: &align::MappingOptions, r: &Dump, d: &mut Dump) -> Remap {
    if files.is_empty() {
        return Remap::default();
    }
    align::remap_dumps(r, d, m)
}

/// [`Session::compare`] on dumps opened by the caller; `remap` is what the mapping options
/// paired or fused ([`crate::align::remap`], default when none were given).
pub fn compare_dumps(
    r: &Dump,
    d: &Dump,
    opts: &CompareOptions,
    remap: &Remap,
    progress: &(dyn Fn() + Sync),
) -> Comparison {
    let mut c = compare::compare(r, d, opts, progress);
    own_error::apply(&mut c, r, d);
    c.mark_remapped(remap);
    structural_first(&mut c);
    c
}

/// [`Session::bisect`] on dumps opened by the caller.
pub fn bisect_dumps(
    r: &Dump,
    d: &Dump,
    d0: Option<&Dump>,
    opts: &CompareOptions,
    remap: &Remap,
    exhaustive: bool,
) -> anyhow::Result<Comparison> {
    let mut c = bisect::run(r, d, d0, opts, exhaustive)?;
    if d0.is_none() {
        own_error::apply(&mut c, r, d);
    }
    c.mark_remapped(remap);
    structural_first(&mut c);
    Ok(c)
}

/// A run whose numbers never depart but whose call streams differ is not clean: the first
/// structural change becomes the first divergence (kind `control_flow`). Where a number does
/// depart, that stays the first divergence and the structural changes are listed beside it
/// (`structure.changes`; `check` fails on them too).
fn structural_first(c: &mut Comparison) {
    if c.analysis.first_divergence.is_some() {
        return;
    }
    let Some(ch) = c.structure.first_difference(None) else {
        return;
    };
    let call = ch.calls.first().cloned().unwrap_or_default();
    let f = Divergence {
        kind: DivergenceKind::ControlFlow,
        name: call.clone(),
        tensor: call,
        role: Role::Other,
        op_type: ch.apis.first().map(|a| a.0.clone()),
        order: ch.order,
        stack: None,
        reason: ch.message.clone(),
        advice: DivergenceKind::ControlFlow.advice().map(str::to_string),
        rel_l2_err: 0.0,
        expected_err: 0.0,
        inherited_err: 0.0,
        z_score: None,
        p_value: None,
    };
    c.analysis.set_first_divergence(f);
}
