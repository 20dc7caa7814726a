//! A short Markdown summary of a check, fit for a CI step summary or a chat message.

use super::CheckReport;
use crate::report::fmt_f;
use std::fmt::Write;

/// Escapes text for a Markdown table cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn opt(x: Option<f64>) -> String {
    x.map(fmt_f).unwrap_or_else(|| "-".into())
}

/// The summary; `report` is a link (URL or path) to the full report, when there is one.
pub fn render(r: &CheckReport, report: Option<&str>) -> String {
    let mut s = String::new();
    let n = r.failures().count();
    let checked = r.places.iter().filter(|p| !p.ignored).count();
    let _ = writeln!(
        s,
        "## driftscope check: {}\n",
        if r.passed {
            "✅ pass"
        } else {
            "❌ accuracy regression"
        }
    );
    let _ = writeln!(s, "{}\n", cell(&r.summary));
    let _ = writeln!(
        s,
        "{checked} place(s) checked, {n} failure(s); reference `{}`, candidate `{}`.\n",
        r.reference, r.candidate
    );
    if let Some(f) = &r.first_divergence {
        let _ = writeln!(
            s,
            "**First divergence ({}):** `{}` (`{}`{}): relative L2 error {}, rounding explains {}, inherited {}. {}\n",
            f.kind.name(),
            f.name,
            f.tensor,
            f.op_type.as_deref().map(|o| format!(", op {o}")).unwrap_or_default(),
            fmt_f(f.rel_l2_err),
            fmt_f(f.expected_err),
            fmt_f(f.inherited_err),
            cell(&f.reason)
        );
    }
    if n > 0 {
        let _ = writeln!(s, "| place | check | metric | value | limit | baseline |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for (p, f) in r.failures().take(10) {
            let _ = writeln!(
                s,
                "| `{}` | {:?} | {} | {} | {} | {} |",
                p.map(|p| p.name.as_str()).unwrap_or("(run)"),
                f.kind,
                f.metric,
                opt(f.value),
                opt(f.limit),
                opt(f.baseline)
            );
        }
        if n > 10 {
            let _ = writeln!(s, "\n… and {} more.", n - 10);
        }
        s.push('\n');
    }
    if !r.ranked.is_empty() {
        let _ = writeln!(s, "**Places adding the most error:**\n");
        let _ = writeln!(
            s,
            "| place | rel L2 error | × inherited/rounding | verdict |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for k in r.ranked.iter().take(5) {
            let _ = writeln!(
                s,
                "| `{}` | {} | {:.1} | {} |",
                k.name,
                fmt_f(k.rel_l2_err),
                k.added,
                k.verdict.name()
            );
        }
        s.push('\n');
    }
    if let Some(out) = r
        .final_output
        .as_ref()
        .and_then(|n| r.places.iter().find(|p| &p.name == n))
    {
        let _ = writeln!(
            s,
            "Final output `{}`: relative L2 error {}{}.\n",
            out.name,
            opt(out.metrics.rel_l2_err),
            out.baseline
                .as_ref()
                .map(|b| format!(" (baseline {})", opt(b.rel_l2_err)))
                .unwrap_or_default()
        );
    }
    for (what, list) in [("New", &r.new_places), ("Vanished", &r.vanished_places)] {
        if !list.is_empty() {
            let shown: Vec<String> = list.iter().take(5).map(|p| format!("`{p}`")).collect();
            let _ = writeln!(
                s,
                "{what} places vs the baseline ({}): {}{}\n",
                list.len(),
                shown.join(", "),
                if list.len() > 5 { ", …" } else { "" }
            );
        }
    }
    if let Some(l) = report {
        let _ = writeln!(s, "Full report: [{l}]({l})");
    }
    s
}
