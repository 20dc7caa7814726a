//! The run history: one JSON line per `check` (JSON Lines), appended by `--history`.

use super::{utc_now, CheckReport};
use crate::verdict::Overall;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// `schema` field of each history line.
pub const SCHEMA: &str = "driftscope-history";
/// Current history line version.
pub const VERSION: u32 = 1;

/// One run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Always `driftscope-history`.
    pub schema: String,
    /// Line version.
    pub version: u32,
    /// When the check ran (UTC, RFC 3339).
    pub date: String,
    /// Build or run id (`--run-id`).
    pub run_id: Option<String>,
    /// The check passed.
    pub passed: bool,
    /// The comparison's verdict.
    pub overall: Overall,
    /// First divergent place.
    pub first_divergence: Option<String>,
    /// Failed checks.
    pub failures: usize,
    /// The final output's place.
    pub final_output: Option<String>,
    /// Relative L2 error of every checked place (`null`: not measurable or not finite). For a
    /// multi-rank run, its worst across ranks (`null` when so on any rank).
    pub rel_l2_err: BTreeMap<String, Option<f64>>,
    /// For a multi-rank run: how many ranks were checked and which failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<RankTally>,
}

/// The ranks of a multi-rank run's history line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RankTally {
    /// Ranks checked.
    pub compared: usize,
    /// Ranks with a failure.
    pub failed: Vec<u32>,
    /// Ranks that diverge first (at the earliest place of all).
    pub first: Vec<u32>,
}

impl Record {
    /// The history line of a check.
    pub fn of(r: &CheckReport, run_id: Option<&str>) -> Record {
        Record {
            schema: SCHEMA.into(),
            version: VERSION,
            date: utc_now(),
            run_id: run_id.map(str::to_string),
            passed: r.passed,
            overall: r.overall,
            first_divergence: r.first_divergence.as_ref().map(|f| f.name.clone()),
            failures: r.failures().count(),
            final_output: r.final_output.clone(),
            rel_l2_err: r
                .places
                .iter()
                .filter(|p| !p.ignored)
                .map(|p| (p.name.clone(), p.metrics.rel_l2_err))
                .collect(),
            ranks: None,
        }
    }

    /// The final output's error.
    pub fn final_err(&self) -> Option<f64> {
        self.rel_l2_err
            .get(self.final_output.as_ref()?)
            .copied()
            .flatten()
    }

    /// A label for plots: the run id, else the date.
    pub fn label(&self) -> String {
        self.run_id.clone().unwrap_or_else(|| self.date.clone())
    }
}

/// Parses a history (blank lines skipped; errors name the line).
pub fn parse(text: &str) -> anyhow::Result<Vec<Record>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let r: Record = serde_json::from_str(l)
                .with_context(|| format!("history line {} is not a run record", i + 1))?;
            if r.schema != SCHEMA || r.version == 0 || r.version > VERSION {
                anyhow::bail!(
                    "history line {}: unsupported schema {} version {}",
                    i + 1,
                    r.schema,
                    r.version
                );
            }
            Ok(r)
        })
        .collect()
}

/// Reads a history file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read history {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid history {}", path.display()))
}

/// The history file's bytes with `r` appended (the file may not exist yet).
pub fn appended(path: &Path, r: &Record) -> anyhow::Result<Vec<u8>> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse(std::str::from_utf8(&bytes).context("history is not UTF-8")?)
        .with_context(|| format!("refusing to append to {}", path.display()))?;
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    serde_json::to_writer(&mut bytes, r)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Index of the run where the current regression started: the first failing run after the
/// last passing one, when the latest run fails. `None` when the latest run passes.
pub fn regression_start(runs: &[Record]) -> Option<usize> {
    let last = runs.iter().rposition(|r| r.passed);
    match last {
        Some(i) if i + 1 < runs.len() => Some(i + 1),
        Some(_) => None,
        None if runs.is_empty() => None,
        None => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(passed: bool) -> Record {
        Record {
            schema: SCHEMA.into(),
            version: VERSION,
            date: "d".into(),
            run_id: None,
            passed,
            overall: Overall::WithinNoise,
            first_divergence: None,
            failures: 0,
            final_output: None,
            rel_l2_err: BTreeMap::new(),
            ranks: None,
        }
    }

    #[test]
    fn regression_starts_after_the_last_pass() {
        let r = |p: &[bool]| regression_start(&p.iter().map(|&b| rec(b)).collect::<Vec<_>>());
        assert_eq!(r(&[true, false, true, false, false]), Some(3));
        assert_eq!(r(&[true, false, true]), None);
        assert_eq!(r(&[false, false]), Some(0));
        assert_eq!(r(&[]), None);
    }

    #[test]
    fn round_trips_and_names_bad_lines() {
        let line = serde_json::to_string(&rec(true)).unwrap();
        let text = format!("{line}\n\n{line}\n");
        assert_eq!(parse(&text).unwrap().len(), 2);
        let e = parse(&format!("{line}\nnot json\n")).unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }
}
