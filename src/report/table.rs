//! The terminal table: one aligned row per pair in execution order, then a summary.

use super::{fmt_f, fmt_p};
use crate::compare::{Comparison, PairReport, Status};
use crate::verdict::{Overall, Verdict};
use std::fmt::Write;

/// How to draw the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableOptions {
    /// ANSI colours.
    pub color: bool,
    /// Only pairs that drift, diverge, differ or failed.
    pub only_failing: bool,
}

const NAME_WIDTH: usize = 52;

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn verdict_color(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Diverged) => "1;31",
        Some(Verdict::Drift) | Some(Verdict::Changed) => "33",
        Some(Verdict::Identical) => "2",
        _ => "32",
    }
}

fn short(name: &str, w: usize) -> String {
    let n = name.chars().count();
    if n <= w {
        name.to_string()
    } else {
        let tail: String = name.chars().skip(n - (w - 1)).collect();
        format!("…{tail}")
    }
}

/// True when a pair belongs in `--only-failing` output.
pub fn is_failing(p: &PairReport) -> bool {
    matches!(
        p.verdict,
        Some(Verdict::Drift) | Some(Verdict::Diverged) | Some(Verdict::Changed)
    ) || matches!(p.status, Status::Error | Status::ShapeMismatch)
}

/// Renders the table and the summary.
pub fn render(c: &Comparison, o: TableOptions) -> String {
    let mut s = String::new();
    let head = format!(
        "{:<w$} {:<9} {:<17} {:<16} {:>12} {:>10} {:>10} {:>10} {}",
        "name",
        "role",
        "dtype ref/dev",
        "shape",
        "cosine",
        "max abs",
        "rel L2",
        "max rel",
        "verdict",
        w = NAME_WIDTH
    );
    let _ = writeln!(s, "{}", paint(&head, "1", o.color));
    let mut shown = 0;
    for p in &c.pairs {
        if o.only_failing && !is_failing(p) {
            continue;
        }
        shown += 1;
        let dt = format!(
            "{}/{}",
            p.dtype_ref.map(|d| d.name()).unwrap_or("?"),
            p.dtype_dev.map(|d| d.name()).unwrap_or("?")
        );
        let shape = p
            .shape_ref
            .as_ref()
            .map(|s| format!("{s:?}").replace(' ', ""))
            .unwrap_or_default();
        let (cos, mx, l2, mr) = match (&p.metrics, p.status) {
            (Some(m), _) => (
                format!("{:.8}", m.cosine),
                fmt_f(m.max_abs_err),
                fmt_f(m.rel_l2_err),
                fmt_f(m.max_rel_err),
            ),
            (None, Status::Statistics) => (
                "-".into(),
                p.stats_diff
                    .and_then(|d| d.max_diff)
                    .map(fmt_f)
                    .unwrap_or("-".into()),
                p.stats_diff
                    .and_then(|d| d.norm_rel_diff)
                    .map(|x| format!("≥{}", fmt_f(x)))
                    .unwrap_or("-".into()),
                "-".into(),
            ),
            _ => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let verdict = match p.status {
            Status::Error => "error".to_string(),
            Status::ShapeMismatch => "shape mismatch".to_string(),
            _ => p.verdict.map(|v| v.name().to_string()).unwrap_or_default(),
        };
        let row = format!(
            "{:<w$} {:<9} {:<17} {:<16} {:>12} {:>10} {:>10} {:>10} ",
            short(&p.name, NAME_WIDTH),
            short(&p.role, 9),
            dt,
            short(&shape, 16),
            cos,
            mx,
            l2,
            mr,
            w = NAME_WIDTH
        );
        let color = if p.status == Status::Error || p.status == Status::ShapeMismatch {
            "1;31"
        } else {
            verdict_color(p.verdict)
        };
        let _ = writeln!(s, "{row}{}", paint(&verdict, color, o.color));
        if let Some(e) = &p.error {
            let _ = writeln!(s, "    {}", paint(e, "31", o.color));
        }
    }
    s.push('\n');
    s.push_str(&summary(c, o.color, shown));
    s
}

/// The summary block under the table (also printed by `bisect`).
pub fn summary(c: &Comparison, color: bool, shown: usize) -> String {
    let mut s = String::new();
    let a = &c.analysis;
    let compared = c
        .pairs
        .iter()
        .filter(|p| p.status == Status::Compared)
        .count();
    let _ = writeln!(
        s,
        "pairs: {} ({} compared{}), shown {}; unmatched: {} reference, {} candidate",
        c.pairs.len(),
        compared,
        match c.mode {
            crate::dump::Task::Statistics =>
                ", statistics only: recorded max/min/mean/norm compared",
            crate::dump::Task::Md5 => ", checksums only",
            crate::dump::Task::Tensor => "",
        },
        shown,
        c.unmatched_reference.len(),
        c.unmatched_candidate.len()
    );
    for (side, list) in [
        ("reference", &c.unmatched_reference),
        ("candidate", &c.unmatched_candidate),
    ] {
        for n in list.iter().take(10) {
            let _ = writeln!(s, "  unmatched {side}: {n}");
        }
        if list.len() > 10 {
            let _ = writeln!(
                s,
                "  ... and {} more unmatched {side} (see --json)",
                list.len() - 10
            );
        }
    }
    s.push_str(&super::structure_lines(c));
    if a.errors > 0 {
        let _ = writeln!(
            s,
            "{}",
            paint(
                &format!("{} pair(s) could not be compared", a.errors),
                "1;31",
                color
            )
        );
    }
    let mut worst: Vec<&PairReport> = c.pairs.iter().filter(|p| p.metrics.is_some()).collect();
    worst.sort_by(|a, b| {
        let e = |p: &PairReport| p.metrics.as_ref().map(|m| m.rel_l2_err).unwrap_or(0.0);
        e(b).total_cmp(&e(a))
    });
    if !worst.is_empty() {
        let _ = writeln!(s, "worst by relative L2 error:");
        for p in worst.iter().take(5) {
            let m = p.metrics.as_ref().unwrap();
            let _ = writeln!(s, "  {:>10}  {}", fmt_f(m.rel_l2_err), p.name);
        }
    }
    if !a.ranked.is_empty() {
        let _ = writeln!(
            s,
            "places adding the most error (error / max(inherited, rounding)):"
        );
        for r in a.ranked.iter().take(5) {
            let _ = writeln!(s, "  {:>8.1}x  {}  ({})", r.added, r.name, r.verdict.name());
        }
    }
    let code = match a.overall {
        Overall::Diverged => "1;31",
        Overall::Changed => "33",
        _ => "1;32",
    };
    if let Some(line) = super::calibration_line(a) {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "{}", paint(&a.summary, code, color));
    if let Some(f) = &a.first_divergence {
        if let Some(st) = &f.stack {
            let _ = writeln!(s, "  at {st}");
        }
        if let (Some(z), Some(p)) = (f.z_score, f.p_value) {
            let _ = writeln!(
                s,
                "  its error ratio is {z:.1} robust standard deviations above the other places' \
                 (one-sided p {})",
                fmt_p(p)
            );
        }
    }
    s
}
