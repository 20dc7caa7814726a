//! `check` of a multi-rank run (docs/nightly.md, "Multi-rank runs"): every rank is judged as
//! `check` judges one dump, with the same config, and the run passes when every rank passes.
//! [`RankVerdicts`] takes the ranks one at a time (a merge streams them): it writes each
//! rank's JUnit suite as it comes and keeps one row per rank for the text, Markdown, history
//! line and HTML page, so a thousand ranks never sit in memory together.

use super::{MultiRank, RankSummary};
use crate::compare::Comparison;
use crate::nightly::{self, config::Compiled, history, junit, markdown::cell, CheckReport};
use crate::plot::html::{base64, escape};
use crate::plot::ranks::{self as heat, HeatRow};
use crate::report::fmt_f;
use crate::verdict::{NoiseOptions, Overall};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

/// Failing ranks listed in the text and Markdown summaries.
const SHOWN: usize = 20;

/// What the check found on one rank.
#[derive(Clone, Debug, Serialize)]
pub struct RankRow {
    /// Rank id.
    pub rank: u32,
    /// Every check passed on this rank.
    pub passed: bool,
    /// The rank's comparison verdict.
    pub overall: Overall,
    /// Failed checks.
    pub failures: usize,
    /// First divergent place.
    pub first_divergence: Option<String>,
    /// The first failure, `place: message`.
    pub first_failure: Option<String>,
}

/// The ranks judged so far; [`RankVerdicts::finish`] gives the run's [`RankChecks`].
pub struct RankVerdicts<'a> {
    cfg: &'a Compiled,
    noise: NoiseOptions,
    timestamp: String,
    junit: Option<&'a mut dyn Write>,
    rows: Vec<RankRow>,
    heat: Vec<HeatRow>,
    worst: BTreeMap<String, Option<f64>>,
    final_output: Option<String>,
}

impl<'a> RankVerdicts<'a> {
    /// Judges with `cfg` ranks compared with the noise model `noise` (the config's); each
    /// rank's JUnit suite goes to `junit`, stamped `timestamp` (`YYYY-MM-DDTHH:MM:SS`, UTC).
    pub fn new(
        cfg: &'a Compiled,
        noise: NoiseOptions,
        timestamp: &str,
        mut junit: Option<&'a mut dyn Write>,
    ) -> anyhow::Result<RankVerdicts<'a>> {
        if let Some(w) = junit.as_mut() {
            w.write_all(junit::MULTI_OPEN.as_bytes())?;
        }
        Ok(RankVerdicts {
            cfg,
            noise,
            timestamp: timestamp.to_string(),
            junit,
            rows: Vec::new(),
            heat: Vec::new(),
            worst: BTreeMap::new(),
            final_output: None,
        })
    }

    /// Judges rank `rank`, compared as `c` (ranks come in ascending order).
    pub fn add(&mut self, rank: u32, c: &Comparison) -> anyhow::Result<()> {
        let r: CheckReport = nightly::check(c, self.cfg, &self.noise, None);
        if let Some(w) = self.junit.as_mut() {
            let s = junit::suite(
                &r,
                self.cfg,
                None,
                &self.timestamp,
                &format!("rank {rank}"),
                rank,
            );
            w.write_all(s.xml.as_bytes())?;
        }
        for p in r.places.iter().filter(|p| !p.ignored) {
            // A place's worst error across ranks; one rank with no finite error makes it null.
            let e = p.metrics.rel_l2_err;
            self.worst
                .entry(p.name.clone())
                .and_modify(|w| *w = w.zip(e).map(|(a, b)| a.max(b)))
                .or_insert(e);
        }
        if self.final_output.is_none() {
            self.final_output = r.final_output.clone();
        }
        self.rows.push(RankRow {
            rank,
            passed: r.passed,
            overall: r.overall,
            failures: r.failures().count(),
            first_divergence: r.first_divergence.as_ref().map(|f| f.name.clone()),
            first_failure: r.failures().next().map(|(p, f)| match p {
                Some(p) => format!("{}: {}", p.name, f.message),
                None => f.message.clone(),
            }),
        });
        let errs: Vec<Option<f64>> = nightly::place_summaries(c)
            .iter()
            .map(|p| p.raw_err)
            .collect();
        self.heat.push(heat::row(rank, &errs));
        Ok(())
    }

    /// The run's result, given the summary across ranks and the two roots' paths.
    pub fn finish(
        mut self,
        summary: RankSummary,
        reference: String,
        candidate: String,
    ) -> anyhow::Result<RankChecks> {
        if let Some(w) = self.junit.as_mut() {
            w.write_all(junit::CLOSE.as_bytes())?;
        }
        Ok(RankChecks {
            rows: self.rows,
            heat: self.heat,
            worst: self.worst,
            final_output: self.final_output,
            summary,
            reference,
            candidate,
        })
    }
}

/// Judges every rank of `m`, compared with the noise model `noise` (the config's), as
/// [`RankVerdicts`] does; `reference` and `candidate` are the roots.
pub fn judge<'a>(
    m: &MultiRank,
    cfg: &'a Compiled,
    noise: NoiseOptions,
    timestamp: &str,
    junit: Option<&'a mut dyn Write>,
    reference: String,
    candidate: String,
) -> anyhow::Result<RankChecks> {
    let mut v = RankVerdicts::new(cfg, noise, timestamp, junit)?;
    let mut ranks: Vec<&super::RankReport> = m.ranks.iter().collect();
    ranks.sort_by_key(|r| r.rank);
    for r in ranks {
        v.add(r.rank, &r.report)?;
    }
    v.finish(m.summary.clone(), reference, candidate)
}

/// The check of a whole multi-rank run.
pub struct RankChecks {
    /// One row per rank, ascending.
    pub rows: Vec<RankRow>,
    /// The HTML page's map, one row per rank.
    pub heat: Vec<HeatRow>,
    /// Per checked place, its worst relative L2 error across ranks (`None`: not finite or not
    /// measurable on some rank).
    pub worst: BTreeMap<String, Option<f64>>,
    /// The last place in execution order (of the first rank).
    pub final_output: Option<String>,
    /// Across ranks, as the JSON report has it.
    pub summary: RankSummary,
    /// Reference root.
    pub reference: String,
    /// Candidate root.
    pub candidate: String,
}

impl RankChecks {
    /// Every rank passed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed)
    }

    /// Ranks with a failure, ascending.
    pub fn failed_ranks(&self) -> Vec<u32> {
        self.rows
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.rank)
            .collect()
    }

    fn failures(&self) -> usize {
        self.rows.iter().map(|r| r.failures).sum()
    }

    /// The exit code, as `check` of one dump gives it.
    pub fn exit_code(&self) -> u8 {
        if self.passed() {
            nightly::EXIT_PASS
        } else {
            nightly::EXIT_REGRESSION
        }
    }

    fn tally(&self) -> String {
        format!(
            "{} rank(s) checked, {} failing, {} failure(s)",
            self.rows.len(),
            self.failed_ranks().len(),
            self.failures()
        )
    }

    /// Text printed by `check` (and `merge --check`).
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "ranks: {}", self.summary.text);
        let failing: Vec<&RankRow> = self.rows.iter().filter(|r| !r.passed).collect();
        for r in failing.iter().take(SHOWN) {
            let _ = writeln!(
                s,
                "  FAIL rank {}: {} failure(s); first: {}",
                r.rank,
                r.failures,
                r.first_failure.as_deref().unwrap_or("-")
            );
        }
        if failing.len() > SHOWN {
            let _ = writeln!(
                s,
                "  ... and {} more failing rank(s)",
                failing.len() - SHOWN
            );
        }
        let _ = writeln!(
            s,
            "{}: {}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.tally()
        );
        s
    }

    /// The Markdown summary; `report` links the full report.
    pub fn markdown(&self, report: Option<&str>) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## driftscope check: {}\n",
            if self.passed() {
                "✅ pass"
            } else {
                "❌ accuracy regression"
            }
        );
        let _ = writeln!(s, "{}\n", cell(&self.summary.text));
        let _ = writeln!(
            s,
            "{}; reference `{}`, candidate `{}`.\n",
            self.tally(),
            self.reference,
            self.candidate
        );
        let failing: Vec<&RankRow> = self.rows.iter().filter(|r| !r.passed).collect();
        if !failing.is_empty() {
            let _ = writeln!(s, "| rank | failures | first divergence | first failure |");
            let _ = writeln!(s, "|---|---|---|---|");
            for r in failing.iter().take(SHOWN) {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    r.rank,
                    r.failures,
                    r.first_divergence
                        .as_deref()
                        .map(|p| format!("`{p}`"))
                        .unwrap_or_else(|| "-".into()),
                    cell(r.first_failure.as_deref().unwrap_or("-"))
                );
            }
            if failing.len() > SHOWN {
                let _ = writeln!(s, "\n… and {} more failing rank(s).", failing.len() - SHOWN);
            }
            s.push('\n');
        }
        if let Some(out) = &self.final_output {
            let _ = writeln!(
                s,
                "Final output `{out}`: worst relative L2 error across ranks {}.\n",
                self.worst
                    .get(out)
                    .copied()
                    .flatten()
                    .map(fmt_f)
                    .unwrap_or_else(|| "-".into())
            );
        }
        if let Some(l) = report {
            let _ = writeln!(s, "Full report: [{l}]({l})");
        }
        s
    }

    /// The history line: the run passes when every rank does; each place's error is its worst
    /// across ranks.
    pub fn history(&self, run_id: Option<&str>) -> history::Record {
        let first = self.summary.diverged.first();
        history::Record {
            schema: history::SCHEMA.into(),
            version: history::VERSION,
            date: nightly::utc_now(),
            run_id: run_id.map(str::to_string),
            passed: self.passed(),
            overall: worst_overall(self.rows.iter().map(|r| r.overall)),
            first_divergence: first.map(|d| d.place.clone()),
            failures: self.failures(),
            final_output: self.final_output.clone(),
            rel_l2_err: self.worst.clone(),
            ranks: Some(history::RankTally {
                compared: self.rows.len(),
                failed: self.failed_ranks(),
                first: self.summary.first_ranks.clone(),
            }),
        }
    }

    /// A self-contained HTML page: the verdict, the rank-by-place error map and a table of
    /// ranks (a box filters it to the failing ones).
    pub fn html(&self) -> anyhow::Result<String> {
        let png = heat::png(&self.heat)?;
        let mut h = String::new();
        let verdict = if self.passed() {
            "pass"
        } else {
            "accuracy regression"
        };
        let _ = write!(
            h,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\">\n<title>driftscope check: {verdict}</title>\n<style>{STYLE}</style></head>\n<body>\n<h1>driftscope check: <span class=\"{}\">{verdict}</span></h1>\n<p>{}</p>\n<p>{}; reference <code>{}</code>, candidate <code>{}</code>.</p>\n",
            if self.passed() { "ok" } else { "bad" },
            escape(&self.summary.text),
            escape(&self.tally()),
            escape(&self.reference),
            escape(&self.candidate)
        );
        let _ = writeln!(
            h,
            "<img id=\"map\" alt=\"relative L2 error by rank and place\" src=\"data:image/png;base64,{}\">",
            base64(&png)
        );
        h.push_str(
            "<p><label><input type=\"checkbox\" id=\"failing\"> failing ranks only</label></p>\n",
        );
        h.push_str("<table id=\"ranks\">\n<tr><th>rank</th><th>result</th><th>verdict</th><th>failures</th><th>first divergence</th><th>first failure</th></tr>\n");
        for r in &self.rows {
            let _ = writeln!(
                h,
                "<tr class=\"{}\" id=\"rank{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                if r.passed { "pass" } else { "fail" },
                r.rank,
                r.rank,
                if r.passed { "pass" } else { "FAIL" },
                r.overall.name(),
                r.failures,
                escape(r.first_divergence.as_deref().unwrap_or("")),
                escape(r.first_failure.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>\n");
        let _ = write!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
        Ok(h)
    }
}

/// The worst of the ranks' verdicts: nothing compared, then diverged, changed, within noise,
/// identical.
fn worst_overall(all: impl Iterator<Item = Overall>) -> Overall {
    all.max_by_key(|o| match o {
        Overall::Identical => 0,
        Overall::WithinNoise => 1,
        Overall::Changed => 2,
        Overall::Diverged => 3,
        Overall::Empty => 4,
    })
    .unwrap_or(Overall::Empty)
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1100px}\
.ok{color:#1a7f37}.bad{color:#cf222e}img{max-width:100%;border:1px solid #ddd}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}\
tr.fail td{background:#fff0f0}body.failing tr.pass{display:none}";

const SCRIPT: &str = "document.getElementById('failing').addEventListener('change',\
e=>document.body.classList.toggle('failing',e.target.checked));";
