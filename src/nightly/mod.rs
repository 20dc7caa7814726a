//! The nightly accuracy-regression job: `check` a run against limits, a config and a baseline,
//! write JUnit, Markdown and a history line, and plot the trend (docs/nightly.md).
//!
//! - [`config`]: the TOML configuration.
//! - [`baseline`]: accepted runs' metrics.
//! - [`junit`], [`markdown`]: CI outputs of a [`CheckReport`].
//! - [`history`], [`trend`]: one JSON line per run, and its plots.
//!
//! Exit codes of `driftscope check`: [`EXIT_PASS`], [`EXIT_REGRESSION`], [`EXIT_INPUT`].

pub mod baseline;
pub mod config;
pub mod history;
pub mod junit;
pub mod markdown;
pub mod trend;

use crate::bisect::baseline::BASELINE_FACTOR;
use crate::compare::{Comparison, PairReport, Status};
use crate::dump::Role;
use crate::report::fmt_f;
use crate::verdict::{self, Divergence, NoiseOptions, Overall, Ranked, Verdict};
use baseline::{Baseline, PlaceMetrics};
use config::{Compiled, Limits};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};

/// Exit code: every check passed.
pub const EXIT_PASS: u8 = 0;
/// Exit code: an accuracy regression (divergence, limit, baseline or coverage failure).
pub const EXIT_REGRESSION: u8 = 1;
/// Exit code: usage or input error (missing, broken or truncated dump, bad config). Input
/// errors win over regressions.
pub const EXIT_INPUT: u8 = 2;

/// A finite value, `None` for NaN or infinity (JSON cannot hold them).
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// One place of a comparison, summarised by its worst output.
#[derive(Clone, Debug)]
pub struct PlaceSummary {
    /// Place name.
    pub name: String,
    /// Its metrics.
    pub metrics: PlaceMetrics,
    /// Worst verdict among its pairs.
    pub verdict: Option<Verdict>,
    /// Some pair's shapes differ.
    pub shape_mismatch: bool,
    /// Raw (possibly NaN) relative L2 error of the worst output.
    pub raw_err: Option<f64>,
}

/// Summaries of every place of a comparison, in execution order.
pub fn place_summaries(c: &Comparison) -> Vec<PlaceSummary> {
    verdict::places(&c.pairs)
        .into_iter()
        .map(|g| {
            let pairs: Vec<&PairReport> = g.iter().map(|&i| &c.pairs[i]).collect();
            let outs: Vec<&PairReport> = if pairs.iter().any(|p| p.role == Role::Output) {
                pairs
                    .iter()
                    .copied()
                    .filter(|p| p.role == Role::Output)
                    .collect()
            } else {
                pairs.clone()
            };
            let worst = outs
                .iter()
                .copied()
                .filter(|p| verdict::pair_err(p).is_some())
                .max_by(|a, b| {
                    let e = |p: &PairReport| verdict::pair_err(p).unwrap_or(0.0);
                    // NaN sorts above everything: a NaN error is the worst.
                    e(a).total_cmp(&e(b))
                })
                .unwrap_or(outs[0]);
            let m = worst.metrics.as_ref();
            PlaceSummary {
                name: worst.place.to_string(),
                metrics: PlaceMetrics {
                    order: worst.order,
                    tensor: worst.name.to_string(),
                    op_type: worst.op_type.as_deref().map(str::to_string),
                    rel_l2_err: verdict::pair_err(worst).and_then(finite),
                    cosine: m.and_then(|m| finite(m.cosine)),
                    max_abs_err: m.and_then(|m| finite(m.max_abs_err)),
                    dtype_ref: worst.dtype_ref.map(|d| d.name().to_string()),
                    dtype_dev: worst.dtype_dev.map(|d| d.name().to_string()),
                    expected_err: worst.expected_err.and_then(finite),
                },
                verdict: pairs.iter().filter_map(|p| p.verdict).max(),
                shape_mismatch: pairs.iter().any(|p| p.status == Status::ShapeMismatch),
                raw_err: verdict::pair_err(worst),
            }
        })
        .collect()
}

/// What failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The first place that introduces error beyond noise.
    Divergence,
    /// A configured limit.
    Limit,
    /// Worse than the baseline beyond the noise margin.
    Baseline,
    /// Shapes differ.
    Shape,
    /// Too little of the reference was compared.
    Coverage,
}

/// One failed check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    /// What failed.
    pub kind: FailureKind,
    /// The metric (`rel_l2_err`, `cosine`, `max_abs_err`, `unmatched_reference`, ...).
    pub metric: String,
    /// Its value.
    pub value: Option<f64>,
    /// The limit it broke.
    pub limit: Option<f64>,
    /// The baseline's value, when a baseline was given.
    pub baseline: Option<f64>,
    /// One line for humans naming metric, value, limit and baseline.
    pub message: String,
}

/// The check of one place.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlaceCheck {
    /// Place name.
    pub name: String,
    /// Its metrics in this run.
    pub metrics: PlaceMetrics,
    /// Its verdict.
    pub verdict: Option<Verdict>,
    /// Ignored by the config (not checked).
    pub ignored: bool,
    /// Its metrics in the baseline.
    pub baseline: Option<PlaceMetrics>,
    /// Failed checks (empty: passed).
    pub failures: Vec<Failure>,
}

/// The result of `driftscope check`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReport {
    /// No check failed.
    pub passed: bool,
    /// The comparison's verdict.
    pub overall: Overall,
    /// The comparison's one-sentence summary.
    pub summary: String,
    /// First divergence, as `compare` reports it.
    pub first_divergence: Option<Divergence>,
    /// Every place in execution order.
    pub places: Vec<PlaceCheck>,
    /// Failures of the run as a whole (coverage, nothing compared).
    pub run_failures: Vec<Failure>,
    /// Places in this run but not in the baseline.
    pub new_places: Vec<String>,
    /// Baseline places missing from this run.
    pub vanished_places: Vec<String>,
    /// Places adding the most error (ignored ones left out).
    pub ranked: Vec<Ranked>,
    /// The last place in execution order: the model's output.
    pub final_output: Option<String>,
    /// Reference dump.
    pub reference: String,
    /// Candidate dump.
    pub candidate: String,
}

impl CheckReport {
    /// Every failure, run-level first, then places in execution order.
    pub fn failures(&self) -> impl Iterator<Item = (Option<&PlaceCheck>, &Failure)> {
        self.run_failures.iter().map(|f| (None, f)).chain(
            self.places
                .iter()
                .flat_map(|p| p.failures.iter().map(move |f| (Some(p), f))),
        )
    }

    /// The exit code (input errors are decided before a report exists).
    pub fn exit_code(&self) -> u8 {
        if self.passed {
            EXIT_PASS
        } else {
            EXIT_REGRESSION
        }
    }

    /// Text printed by `driftscope check`.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let n = self.failures().count();
        let _ = writeln!(s, "{}", self.summary);
        for (p, f) in self.failures().take(20) {
            match p {
                Some(p) => {
                    let _ = writeln!(s, "  FAIL {}: {}", p.name, f.message);
                }
                None => {
                    let _ = writeln!(s, "  FAIL {}", f.message);
                }
            }
        }
        if n > 20 {
            let _ = writeln!(s, "  ... and {} more failure(s)", n - 20);
        }
        for (what, list) in [
            ("new", &self.new_places),
            ("vanished", &self.vanished_places),
        ] {
            if !list.is_empty() {
                let _ = writeln!(
                    s,
                    "{} {what} place(s) vs the baseline: {}{}",
                    list.len(),
                    list.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                    if list.len() > 5 { ", ..." } else { "" }
                );
            }
        }
        let checked = self.places.iter().filter(|p| !p.ignored).count();
        let _ = writeln!(
            s,
            "{}: {checked} place(s) checked, {n} failure(s)",
            if self.passed { "PASS" } else { "FAIL" }
        );
        s
    }
}

fn with_baseline(msg: String, b: Option<f64>) -> String {
    match b {
        Some(b) => format!("{msg} (baseline {})", fmt_f(b)),
        None => msg,
    }
}

fn limit_failures(s: &PlaceSummary, l: &Limits, base: Option<&PlaceMetrics>) -> Vec<Failure> {
    let mut out = Vec::new();
    let m = &s.metrics;
    let mut test = |metric: &str, value: Option<f64>, limit: Option<f64>, above: bool, b| {
        let (Some(limit), Some(v)) = (limit, value) else {
            return;
        };
        // NaN breaks every limit.
        let bad = v.is_nan() || if above { v > limit } else { v < limit };
        if bad {
            out.push(Failure {
                kind: FailureKind::Limit,
                metric: metric.to_string(),
                value: finite(v),
                limit: Some(limit),
                baseline: b,
                message: with_baseline(
                    format!(
                        "{metric} {} {} limit {}",
                        fmt_f(v),
                        if above { "exceeds" } else { "is below" },
                        fmt_f(limit)
                    ),
                    b,
                ),
            });
        }
    };
    test(
        "rel_l2_err",
        s.raw_err,
        l.max_rel_l2_err,
        true,
        base.and_then(|b| b.rel_l2_err),
    );
    test(
        "cosine",
        m.cosine,
        l.min_cosine,
        false,
        base.and_then(|b| b.cosine),
    );
    test(
        "max_abs_err",
        m.max_abs_err,
        l.max_max_abs_err,
        true,
        base.and_then(|b| b.max_abs_err),
    );
    out
}

/// Largest error a place may have given its baseline error `base` and the rounding `expected`
/// its precision explains: `max(4 * base, base + noise_factor * expected)`.
pub fn baseline_allowed(base: f64, expected: f64, noise: &NoiseOptions) -> f64 {
    (BASELINE_FACTOR * base).max(base + noise.noise_factor * expected)
}

/// Checks a comparison (made with the noise options `noise`) against a config and,
/// optionally, a baseline.
pub fn check(
    c: &Comparison,
    cfg: &Compiled,
    noise: &NoiseOptions,
    baseline: Option<&Baseline>,
) -> CheckReport {
    let summaries = place_summaries(c);
    let seen: HashSet<&str> = summaries.iter().map(|s| s.name.as_str()).collect();
    let first = c.analysis.first_divergence.as_ref();
    let run_u = verdict::run_roundoff(&c.pairs, noise.fp32_matmul);
    let mut places = Vec::with_capacity(summaries.len());
    let mut new_places = Vec::new();
    for s in &summaries {
        let rules = cfg.rules(&s.name, s.metrics.op_type.as_deref());
        let base = baseline.and_then(|b| b.places.get(&s.name)).cloned();
        let mut failures = Vec::new();
        if !rules.ignored {
            if baseline.is_some() && base.is_none() {
                new_places.push(s.name.clone());
            }
            let b_err = base.as_ref().and_then(|b| b.rel_l2_err);
            if let Some(f) = first.filter(|f| f.name == s.name) {
                let allowed = (noise.noise_factor * f.expected_err)
                    .max(noise.amplification * f.inherited_err);
                failures.push(Failure {
                    kind: FailureKind::Divergence,
                    metric: "rel_l2_err".into(),
                    value: finite(f.rel_l2_err),
                    limit: finite(allowed),
                    baseline: b_err,
                    message: with_baseline(
                        format!("first divergence at {}: {}", f.tensor, f.reason),
                        b_err,
                    ),
                });
            }
            if s.shape_mismatch {
                failures.push(Failure {
                    kind: FailureKind::Shape,
                    metric: "shape".into(),
                    value: None,
                    limit: None,
                    baseline: None,
                    message: "reference and candidate shapes differ".into(),
                });
            }
            failures.extend(limit_failures(s, &rules.limits, base.as_ref()));
            if let (Some(b), Some(e)) = (b_err, s.raw_err) {
                // A place's error moves from run to run with the rounding noise of the whole
                // run, not only its own op's: an fp32 op inside an fp16 run inherits fp16 noise.
                let expected = s
                    .metrics
                    .expected_err
                    .or(base.as_ref().and_then(|b| b.expected_err))
                    .unwrap_or(0.0)
                    .max(run_u);
                let allowed = baseline_allowed(b, expected, noise);
                if e.is_nan() || e > allowed {
                    failures.push(Failure {
                        kind: FailureKind::Baseline,
                        metric: "rel_l2_err".into(),
                        value: finite(e),
                        limit: Some(allowed),
                        baseline: Some(b),
                        message: format!(
                            "rel_l2_err {} regressed beyond baseline {}: allowed {} = max({BASELINE_FACTOR}x baseline, baseline + {}x rounding {})",
                            fmt_f(e),
                            fmt_f(b),
                            fmt_f(allowed),
                            noise.noise_factor,
                            fmt_f(expected)
                        ),
                    });
                }
            }
        }
        places.push(PlaceCheck {
            name: s.name.clone(),
            metrics: s.metrics.clone(),
            verdict: s.verdict,
            ignored: rules.ignored,
            baseline: base,
            failures,
        });
    }
    let vanished_places: Vec<String> = baseline
        .map(|b| {
            b.places
                .keys()
                .filter(|k| !seen.contains(k.as_str()))
                .filter(|k| !cfg.rules(k, b.places[*k].op_type.as_deref()).ignored)
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    let mut run_failures = Vec::new();
    let mut coverage = |metric: &str, value: usize, limit: Option<usize>, what: &str| {
        if let Some(l) = limit.filter(|&l| value > l) {
            run_failures.push(Failure {
                kind: FailureKind::Coverage,
                metric: metric.into(),
                value: Some(value as f64),
                limit: Some(l as f64),
                baseline: None,
                message: format!("{metric} {value} exceeds limit {l}: {what}"),
            });
        }
    };
    coverage(
        "unmatched_reference",
        c.unmatched_reference.len(),
        cfg.config.coverage.max_unmatched_reference,
        "reference tensors with no candidate counterpart",
    );
    coverage(
        "structural_changes",
        c.structure.changes.len(),
        Some(cfg.config.coverage.max_structural_changes.unwrap_or(0)),
        c.structure
            .first_change()
            .map_or("", |ch| ch.message.as_str()),
    );
    if baseline.is_some() {
        coverage(
            "vanished",
            vanished_places.len(),
            cfg.config.coverage.max_vanished,
            "baseline places missing from this run",
        );
    }
    if c.analysis.overall == Overall::Empty || !places.iter().any(|p| !p.ignored) {
        run_failures.push(Failure {
            kind: FailureKind::Coverage,
            metric: "compared".into(),
            value: Some(0.0),
            limit: None,
            baseline: None,
            message: "nothing could be compared".into(),
        });
    }
    let passed = run_failures.is_empty() && places.iter().all(|p| p.failures.is_empty());
    let ranked = c
        .analysis
        .ranked
        .iter()
        .filter(|k| !places.iter().any(|p| p.ignored && *p.name == *k.name))
        .cloned()
        .collect();
    CheckReport {
        passed,
        overall: c.analysis.overall,
        summary: c.analysis.summary.clone(),
        first_divergence: c.analysis.first_divergence.clone(),
        final_output: summaries.last().map(|s| s.name.clone()),
        places,
        run_failures,
        new_places,
        vanished_places,
        ranked,
        reference: c.reference.path.display().to_string(),
        candidate: c.candidate.path.display().to_string(),
    }
}

/// The current time, UTC, RFC 3339 (`2026-11-27T16:43:06Z`).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    utc(secs)
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_795_797_786), "2026-11-27T16:43:06Z");
    }

    #[test]
    fn baseline_margin() {
        let n = crate::verdict::NoiseOptions::default();
        assert_eq!(super::baseline_allowed(1e-3, 1e-4, &n), 4e-3);
        assert!((super::baseline_allowed(1e-4, 1e-4, &n) - 1.7e-3).abs() < 1e-12);
    }
}
