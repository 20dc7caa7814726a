//! `driftscope._driftscope`: the native half of the `driftscope` Python package. It turns
//! Python arguments into [`pipeline`] calls (run with the GIL released) and hands back the
//! library's own results; `driftscope/__init__.py` wraps them in the documented Python API.

mod pipeline;

use driftscope::compare::Comparison;
use driftscope::nightly::CheckReport;
use driftscope::plot::{self, Run};
use driftscope::report::{self, Exporter};
use pipeline::{Failure, Options};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A comparison as the library made it: its JSON report and its plots.
#[pyclass(frozen, module = "driftscope._driftscope")]
struct Report {
    c: Comparison,
}

#[pymethods]
impl Report {
    /// The JSON report (docs/report-schema.md), as `driftscope compare --json` writes it.
    fn json(&self) -> PyResult<String> {
        let bytes = report::json::Json.serialize(&self.c).map_err(other)?;
        String::from_utf8(bytes).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The drift-along-the-network chart (SVG), the run labelled `label`.
    fn drift_svg(&self, label: String) -> PyResult<String> {
        let runs = [Run {
            label,
            comparison: self.c.clone(),
        }];
        plot::drift::svg(&runs).map_err(other)
    }
}

/// The result of `check`: the check report (JSON) and the comparison it judged.
#[pyclass(frozen, module = "driftscope._driftscope")]
struct CheckOutcome {
    check: CheckReport,
    #[pyo3(get)]
    report: Py<Report>,
}

#[pymethods]
impl CheckOutcome {
    /// The check report as JSON (passed, places with their failures, run failures).
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&self.check).map_err(|e| other(e.into()))
    }

    /// The text `driftscope check` prints.
    fn text(&self) -> String {
        self.check.text()
    }
}

/// A Python exception for a failure: `driftscope.DumpError(message, file, entry, report)` for a
/// broken input, `driftscope.Error(message)` otherwise (both defined in `driftscope/_errors.py`).
fn to_pyerr(py: Python<'_>, f: Failure) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let errors = py.import("driftscope._errors")?;
        let value = match f {
            Failure::Input(e) => {
                let report = e
                    .report
                    .map(|c| Py::new(py, Report { c: *c }))
                    .transpose()?;
                errors
                    .getattr("DumpError")?
                    .call1((e.message, e.file, e.entry, report))?
            }
            Failure::Other(e) => errors.getattr("Error")?.call1((format!("{e:#}"),))?,
        };
        Ok(PyErr::from_value(value))
    })();
    made.unwrap_or_else(|e| e)
}

fn other(e: anyhow::Error) -> PyErr {
    Python::attach(|py| to_pyerr(py, Failure::Other(e)))
}

/// A closed set's value by the name the CLI gives it (`ieee`, `msprobe`): its serde name.
fn parse<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> PyResult<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| PyValueError::new_err(format!("{what}: unknown value `{s}`")))
}

/// Options from the Python keywords; names as the CLI spells its values.
fn options(
    format: Option<&str>,
    allow_symlinks: bool,
    fp32_matmul: &str,
    filter: Option<&str>,
    noise: Option<PathBuf>,
) -> PyResult<Options> {
    Ok(Options {
        format: format.map(|f| parse("format", f)).transpose()?,
        allow_symlinks,
        fp32_matmul: parse("fp32_matmul", fp32_matmul)?,
        filter: filter.map(regex::Regex::new).transpose().map_err(|e| {
            PyValueError::new_err(format!("filter is not a valid regular expression: {e}"))
        })?,
        noise,
    })
}

/// Calls `progress(done, total)` about a hundred times, from whichever worker thread measured
/// the pair (each call takes the GIL briefly). `total` is the reference's entry count, an upper
/// bound of the pairs; [`Progress::finish`] ends with `done == total`.
struct Progress {
    callback: Option<Py<PyAny>>,
    total: u64,
    done: AtomicU64,
}

impl Progress {
    fn tick(&self) {
        let Some(cb) = &self.callback else { return };
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let step = (self.total / 100).max(1);
        if n.is_multiple_of(step) {
            Self::call(cb, n, self.total);
        }
    }

    fn finish(&self) {
        if let Some(cb) = &self.callback {
            let n = self.done.load(Ordering::Relaxed);
            Self::call(cb, n, n);
        }
    }

    /// A failing callback is reported (sys.unraisablehook) and does not stop the comparison.
    fn call(cb: &Py<PyAny>, done: u64, total: u64) {
        Python::attach(|py| {
            if let Err(e) = cb.call1(py, (done, total)) {
                e.write_unraisable(py, Some(cb.bind(py)));
            }
        });
    }
}

/// Compares `reference` with `candidate`: every pair measured and judged.
#[pyfunction]
#[pyo3(signature = (reference, candidate, *, filter=None, noise=None, fp32_matmul="auto", format=None, allow_symlinks=false, progress=None))]
#[allow(clippy::too_many_arguments)]
fn compare(
    py: Python<'_>,
    reference: PathBuf,
    candidate: PathBuf,
    filter: Option<&str>,
    noise: Option<PathBuf>,
    fp32_matmul: &str,
    format: Option<&str>,
    allow_symlinks: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<Report> {
    let o = options(format, allow_symlinks, fp32_matmul, filter, noise)?;
    let c = py.detach(|| {
        let (r, d, opts) = pipeline::open_pair(&reference, &candidate, &o)?;
        let p = Progress {
            callback: progress,
            total: r.entries.len() as u64,
            done: AtomicU64::new(0),
        };
        let c = pipeline::compare(&r, &d, &opts, &|| p.tick());
        p.finish();
        c
    });
    c.map(|c| Report { c }).map_err(|f| to_pyerr(py, f))
}

/// The first divergence of `candidate` against `reference` (or against the known-good run
/// `baseline`), reading few tensors unless `exhaustive`.
#[pyfunction]
#[pyo3(signature = (reference, candidate, *, baseline=None, exhaustive=false, filter=None, noise=None, fp32_matmul="auto", format=None, allow_symlinks=false))]
#[allow(clippy::too_many_arguments)]
fn bisect(
    py: Python<'_>,
    reference: PathBuf,
    candidate: PathBuf,
    baseline: Option<PathBuf>,
    exhaustive: bool,
    filter: Option<&str>,
    noise: Option<PathBuf>,
    fp32_matmul: &str,
    format: Option<&str>,
    allow_symlinks: bool,
) -> PyResult<Report> {
    let o = options(format, allow_symlinks, fp32_matmul, filter, noise)?;
    let c = py.detach(|| {
        let (r, d, opts) = pipeline::open_pair(&reference, &candidate, &o)?;
        pipeline::bisect(&r, &d, baseline.as_deref(), &opts, &o, exhaustive)
    });
    c.map(|c| Report { c }).map_err(|f| to_pyerr(py, f))
}

/// The nightly check: the comparison judged against `config` (driftscope.toml) and an
/// optional `baseline` (BASELINE.json from `driftscope baseline`).
#[pyfunction]
#[pyo3(signature = (reference, candidate, *, config=None, baseline=None, filter=None, noise=None, fp32_matmul="auto", format=None, allow_symlinks=false, progress=None))]
#[allow(clippy::too_many_arguments)]
fn check(
    py: Python<'_>,
    reference: PathBuf,
    candidate: PathBuf,
    config: Option<PathBuf>,
    baseline: Option<PathBuf>,
    filter: Option<&str>,
    noise: Option<PathBuf>,
    fp32_matmul: &str,
    format: Option<&str>,
    allow_symlinks: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<CheckOutcome> {
    let o = options(format, allow_symlinks, fp32_matmul, filter, noise)?;
    let done = py.detach(|| {
        let (r, d, opts) = pipeline::open_pair(&reference, &candidate, &o)?;
        let p = Progress {
            callback: progress,
            total: r.entries.len() as u64,
            done: AtomicU64::new(0),
        };
        let done = pipeline::run_check(
            &r,
            &d,
            &opts,
            config.as_deref(),
            baseline.as_deref(),
            &|| p.tick(),
        );
        p.finish();
        done
    });
    let (c, check) = done.map_err(|f| to_pyerr(py, f))?;
    Ok(CheckOutcome {
        check,
        report: Py::new(py, Report { c })?,
    })
}

#[pymodule]
fn _driftscope(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Report>()?;
    m.add_class::<CheckOutcome>()?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(bisect, m)?)?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    Ok(())
}
