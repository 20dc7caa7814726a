//! The terminal table: the rows that matter (or every row) in execution order, then a summary.
//!
//! By default a comparison of 100k pairs prints a few dozen lines: the pairs that drift,
//! diverge, differ or failed, the worst pairs by relative L2 error and the first divergence,
//! at most [`MAX_DEFAULT_ROWS`] of them; `--all` prints every row.

use super::{fmt_f, fmt_p};
use crate::compare::{Comparison, PairReport, Status};
use crate::verdict::{Overall, Verdict};
use std::fmt::Write;

/// Which rows to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rows {
    /// The rows that matter: failing pairs, the worst ones, the first divergence (capped).
    #[default]
    Matter,
    /// Only pairs that drift, diverge, differ or failed, all of them.
    Failing,
    /// Every pair.
    All,
}

/// How to draw the table.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableOptions {
    /// ANSI colours.
    pub color: bool,
    /// Which rows.
    pub rows: Rows,
}

/// Pairs shown by default besides the failing ones: the worst by relative L2 error.
pub const WORST_ROWS: usize = 10;
/// At most this many rows by default (a 100k-pair comparison must not flood the terminal).
pub const MAX_DEFAULT_ROWS: usize = 40;
/// The name column never gets wider than this; longer names are shortened in the middle.
const MAX_NAME_WIDTH: usize = 60;

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

/// `name` in at most `w` characters: the start and the end kept, `…` in the middle (the
/// call counter and the tensor role at the end are what tells rows apart).
pub fn middle_ellipsis(name: &str, w: usize) -> String {
    let n = name.chars().count();
    if n <= w {
        return name.to_string();
    }
    if w <= 1 {
        return "…".chars().take(w).collect();
    }
    let keep = w - 1;
    let head = keep / 2;
    let tail = keep - head;
    let mut s: String = name.chars().take(head).collect();
    s.push('…');
    s.extend(name.chars().skip(n - tail));
    s
}

/// True when a pair belongs in `--only-failing` output.
pub fn is_failing(p: &PairReport) -> bool {
    matches!(
        p.verdict,
        Some(Verdict::Drift) | Some(Verdict::Diverged) | Some(Verdict::Changed)
    ) || matches!(p.status, Status::Error | Status::ShapeMismatch)
}

/// Relative L2 error for ranking (NaN counts as the worst).
fn rank_err(p: &PairReport) -> Option<f64> {
    let e = p.metrics.as_ref()?.rel_l2_err;
    Some(if e.is_nan() { f64::INFINITY } else { e })
}

/// The `k` largest of `(error, index)` in descending `total_cmp` order of the error, ties in
/// index order: a full sort's first `k` (as stable sorts of the pairs gave), without sorting
/// 100k pairs for ten rows.
fn worst_first(mut v: Vec<(f64, usize)>, k: usize) -> impl Iterator<Item = (f64, usize)> {
    let order = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if v.len() > k {
        v.select_nth_unstable_by(k, order);
        v.truncate(k);
    }
    v.sort_unstable_by(order);
    v.into_iter()
}

/// Indices of the pairs to print, in execution order, and how many rows that matter were left
/// out by the cap.
pub fn selected_rows(c: &Comparison, rows: Rows) -> (Vec<usize>, usize) {
    let n = c.pairs.len();
    match rows {
        Rows::All => return ((0..n).collect(), 0),
        Rows::Failing => return ((0..n).filter(|&i| is_failing(&c.pairs[i])).collect(), 0),
        Rows::Matter => {}
    }
    // Priority: the first divergence, the worst pairs, then failing pairs in execution order.
    let mut keep = vec![false; n];
    let mut taken = 0;
    let first = c
        .analysis
        .first_divergence
        .as_ref()
        .map(|f| f.tensor.as_str());
    if let Some(i) = first.and_then(|t| c.pairs.iter().position(|p| &*p.name == t)) {
        keep[i] = true;
        taken += 1;
    }
    let worst: Vec<(f64, usize)> = (0..n)
        .filter_map(|i| Some((rank_err(&c.pairs[i])?, i)))
        .collect();
    for (_, i) in worst_first(worst, WORST_ROWS) {
        if !keep[i] {
            keep[i] = true;
            taken += 1;
        }
    }
    let mut left_out = 0;
    for (i, p) in c.pairs.iter().enumerate() {
        if keep[i] || !is_failing(p) {
            continue;
        }
        if taken < MAX_DEFAULT_ROWS {
            keep[i] = true;
            taken += 1;
        } else {
            left_out += 1;
        }
    }
    ((0..n).filter(|&i| keep[i]).collect(), left_out)
}

/// Renders the table and the summary.
pub fn render(c: &Comparison, o: TableOptions) -> String {
    let mut s = String::new();
    let (idx, left_out) = selected_rows(c, o.rows);
    let w = idx
        .iter()
        .map(|&i| c.pairs[i].name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, MAX_NAME_WIDTH);
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
    );
    let _ = writeln!(s, "{}", paint(&head, "1", o.color));
    for &i in &idx {
        let p = &c.pairs[i];
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
                    .and_then(|d| d.max_abs())
                    .map(fmt_f)
                    .unwrap_or("-".into()),
                p.stats_diff
                    .and_then(|d| d.norm_rel_diff())
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
            middle_ellipsis(&p.name, w),
            middle_ellipsis(p.role.name(), 9),
            dt,
            middle_ellipsis(&shape, 16),
            cos,
            mx,
            l2,
            mr,
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
    if o.rows == Rows::Matter && idx.len() < c.pairs.len() {
        let _ = writeln!(
            s,
            "rows shown: the first divergence, the {WORST_ROWS} worst by relative L2 error and \
             pairs that drift, diverge, differ or failed{}; --all prints all {} rows",
            if left_out > 0 {
                format!(" ({left_out} more of those left out)")
            } else {
                String::new()
            },
            c.pairs.len()
        );
    }
    s.push_str(&summary(c, o.color, idx.len()));
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
    let worst: Vec<(f64, usize)> = c
        .pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((p.metrics.as_ref()?.rel_l2_err, i)))
        .collect();
    let worst: Vec<&PairReport> = worst_first(worst, 5).map(|(_, i)| &c.pairs[i]).collect();
    if !worst.is_empty() {
        let _ = writeln!(s, "worst by relative L2 error:");
        for p in &worst {
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
        if let Some(a) = &f.advice {
            let _ = writeln!(s, "  advice: {a}");
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

#[cfg(test)]
mod tests {
    use super::{middle_ellipsis, worst_first};

    #[test]
    fn worst_first_is_a_stable_sorts_prefix() {
        // Ties, NaN of both signs and infinities, against the stable full sort it replaces.
        let pool = [
            0.5,
            0.5,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            0.0,
            -0.0,
            1e-9,
            0.5,
            2.0,
        ];
        let v: Vec<(f64, usize)> = (0..200)
            .map(|i| (pool[(i * 7 + i / 13) % pool.len()], i))
            .collect();
        let mut full = v.clone();
        full.sort_by(|a, b| b.0.total_cmp(&a.0));
        for k in [0, 1, 5, 10, 199, 200, 300] {
            let got: Vec<usize> = worst_first(v.clone(), k).map(|x| x.1).collect();
            let want: Vec<usize> = full.iter().take(k).map(|x| x.1).collect();
            assert_eq!(got, want, "k = {k}");
        }
    }

    #[test]
    fn long_names_keep_both_ends() {
        let n = "Module.features.1.block.1.SqueezeExcitation.forward.0.output.0";
        let s = middle_ellipsis(n, 30);
        assert_eq!(s.chars().count(), 30);
        assert!(s.starts_with("Module.feature"), "{s}");
        assert!(s.ends_with("ward.0.output.0"), "{s}");
        assert!(s.contains('…'));
        assert_eq!(middle_ellipsis("short", 30), "short");
    }
}
