//! Every call the bindings make into the driftscope library, in one place: opening the two
//! dumps and running compare, bisect and check as the commands do. It uses
//! `session::compare_dumps`/`bisect_dumps` rather than `Session::open` so that a pair that
//! cannot be read comes back located (file and entry) for `DumpError`; mapping files and
//! `--layout`, which `Session` handles, are not exposed yet.

use driftscope::align::Remap;
use driftscope::compare::{CompareOptions, Comparison, Status};
use driftscope::dump::{Dump, DumpError, Format, OpenOptions};
use driftscope::nightly::{self, baseline::Baseline, config::Config, CheckReport};
use driftscope::verdict::calibrate::Calibration;
use driftscope::verdict::{Fp32Matmul, NoiseOptions};
use driftscope::{ranks, session};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to read and compare the dumps (the CLI's `ReadArgs` plus `--noise`).
#[derive(Default)]
pub struct Options {
    /// `--format`: a forced layout.
    pub format: Option<Format>,
    /// `--allow-symlinks`.
    pub allow_symlinks: bool,
    /// `--fp32-matmul`.
    pub fp32_matmul: Fp32Matmul,
    /// `--filter`: only tensors whose name matches.
    pub filter: Option<regex::Regex>,
    /// `--noise REF2`: a calibration run.
    pub noise: Option<PathBuf>,
}

/// A broken input, located: the file (or dump) and the entry in it. `report` is what could be
/// compared, when the failure came after the comparison.
pub struct InputError {
    /// The broken file, or the dump when no one file is to blame.
    pub file: PathBuf,
    /// The tensor within the dump, when known.
    pub entry: Option<String>,
    /// What the command prints before exiting with 2.
    pub message: String,
    /// What could be compared, when the failure came after the comparison.
    pub report: Option<Box<Comparison>>,
}

/// Why a call failed: a broken input, or anything else (config, baseline, options).
pub enum Failure {
    Input(InputError),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast_ref::<DumpError>() {
            Some(d) => Failure::Input(InputError {
                file: d.path.clone(),
                entry: d.entry.clone(),
                message: format!("{e:#}"),
                report: None,
            }),
            None => Failure::Other(e),
        }
    }
}

impl From<DumpError> for Failure {
    fn from(e: DumpError) -> Self {
        anyhow::Error::from(e).into()
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// Both dumps opened, and the comparison options (with the `noise` calibration applied).
pub fn open_pair(
    reference: &Path,
    candidate: &Path,
    o: &Options,
) -> Result<(Dump, Dump, CompareOptions)> {
    for p in [reference, candidate] {
        if matches!(o.format, None | Some(Format::Msprobe)) && ranks::find_ranks(p).is_some() {
            return Err(Failure::Other(anyhow::anyhow!(
                "{} holds rank folders: the Python API compares one rank, pass the two rankN \
                 folders (the `driftscope` command compares all ranks)",
                p.display()
            )));
        }
    }
    let open = OpenOptions {
        format: o.format,
        allow_symlinks: o.allow_symlinks,
        ..OpenOptions::default()
    };
    let (r, d) = rayon::join(
        || Dump::open(reference, &open),
        || Dump::open(candidate, &open),
    );
    let (r, d) = (r?, d?);
    let mut opts = CompareOptions {
        filter: o.filter.clone(),
        noise: NoiseOptions {
            fp32_matmul: o.fp32_matmul,
            ..NoiseOptions::default()
        },
        calibration: None,
        // Notebooks plot the pairs' histograms.
        ..CompareOptions::default()
    };
    if let Some(p) = &o.noise {
        let cal = Dump::open(p, &open)?;
        let c = driftscope::compare::compare(&r, &cal, &opts, &|| {});
        opts.calibration = Some(Arc::new(Calibration::from_comparison(&c)));
    }
    Ok((r, d, opts))
}

/// `driftscope compare`; `tick` is called once per measured pair.
pub fn compare(
    r: &Dump,
    d: &Dump,
    opts: &CompareOptions,
    tick: &(dyn Fn() + Sync),
) -> Result<Comparison> {
    let c = session::compare_dumps(r, d, opts, &Remap::default(), tick);
    checked(r, d, c)
}

/// `driftscope bisect [--baseline B] [--exhaustive]`.
pub fn bisect(
    r: &Dump,
    d: &Dump,
    baseline: Option<&Path>,
    opts: &CompareOptions,
    o: &Options,
    exhaustive: bool,
) -> Result<Comparison> {
    let b = match baseline {
        Some(p) => Some(Dump::open(
            p,
            &OpenOptions {
                format: o.format,
                allow_symlinks: o.allow_symlinks,
                ..OpenOptions::default()
            },
        )?),
        None => None,
    };
    let c = session::bisect_dumps(r, d, b.as_ref(), opts, &Remap::default(), exhaustive)?;
    checked(r, d, c)
}

/// `driftscope check [--config C] [--baseline B]`: the comparison and its check.
pub fn run_check(
    r: &Dump,
    d: &Dump,
    opts: &CompareOptions,
    config: Option<&Path>,
    baseline: Option<&Path>,
    tick: &(dyn Fn() + Sync),
) -> Result<(Comparison, CheckReport)> {
    let cfg = config
        .map(Config::load)
        .transpose()?
        .unwrap_or_default()
        .compile()?;
    let baseline = baseline.map(Baseline::load).transpose()?;
    let mut opts = opts.clone();
    opts.noise = cfg.config.noise_options(opts.noise.fp32_matmul);
    let c = compare(r, d, &opts, tick)?;
    let report = nightly::check(&c, &cfg, &opts.noise, baseline.as_ref());
    Ok((c, report))
}

/// The comparison, or the first pair that could not be read or compared (the CLI's exit 2):
/// a broken input never comes back as a result.
fn checked(r: &Dump, d: &Dump, c: Comparison) -> Result<Comparison> {
    let e = if let Some(p) = c.pairs.iter().find(|p| p.status == Status::Error) {
        let n = c.pairs.iter().filter(|p| p.status == Status::Error).count();
        let located = unreadable(r, d, &p.name, p.name_dev.as_deref().unwrap_or(&p.name));
        InputError {
            file: located
                .as_ref()
                .map_or_else(|| d.path.clone(), |e| e.path.clone()),
            entry: Some(p.name.to_string()),
            message: format!(
                "{n} pair(s) could not be read; first: {}",
                p.error.as_deref().unwrap_or("")
            ),
            report: None,
        }
    } else if let Some(p) = c.pairs.iter().find(|p| p.status == Status::ShapeMismatch) {
        InputError {
            file: d.path.clone(),
            entry: Some(p.name.to_string()),
            message: format!(
                "{}: shapes do not fit ({:?} vs {:?})",
                p.name,
                p.shape_ref.as_deref().unwrap_or_default(),
                p.shape_dev.as_deref().unwrap_or_default()
            ),
            report: None,
        }
    } else if c.pairs.is_empty() {
        InputError {
            file: d.path.clone(),
            entry: None,
            message: format!(
                "nothing could be compared: no tensor of {} pairs with one of {}",
                r.path.display(),
                d.path.display()
            ),
            report: None,
        }
    } else {
        return Ok(c);
    };
    Err(Failure::Input(InputError {
        report: Some(Box::new(c)),
        ..e
    }))
}

/// The reader's own error for a pair that could not be read, naming the broken file.
fn unreadable(r: &Dump, d: &Dump, name_ref: &str, name_dev: &str) -> Option<DumpError> {
    let load = |dump: &Dump, name: &str| {
        let e = dump.entries.iter().find(|e| &*e.name == name)?;
        dump.load(e).err()
    };
    load(r, name_ref).or_else(|| load(d, name_dev))
}
