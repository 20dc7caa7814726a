//! The fault corpus (reference_dumps/corpus, issue 14): small models run on CPU with one
//! migration trap injected inside one module each, and clean fp16/bf16 runs with
//! ill-conditioned ops, in msprobe's layout and the harness's. Every case is judged by
//! `compare` and `bisect` as the commands run them; a fault counts when it is named first at the
//! measured place, a clean run when nothing is claimed. The cases kept aside (`held_out`) were
//! chosen before any rule was tuned on the rest; both scores are printed, and with
//! `DRIFTSCOPE_CORPUS_TABLE=FILE` written as the Markdown table of docs/divergence.md.

use crate::common;
use common::*;
use driftscope::compare::CompareOptions;
use driftscope::session;
use std::fmt::Write;
use std::path::PathBuf;

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    layout: String,
    reference: String,
    device: String,
    clean: bool,
    expected_place: Option<String>,
    expected_kind: Option<String>,
    split: String,
    fault: String,
}

/// What one method said about one case.
struct Outcome {
    place: Option<String>,
    kind: Option<String>,
}

impl Outcome {
    fn right(&self, c: &Case) -> bool {
        self.place == c.expected_place
    }

    fn cell(&self, c: &Case) -> String {
        let what = match (&self.place, &self.kind) {
            (Some(p), Some(k)) => format!("{k} at `{p}`"),
            _ => "no divergence".to_string(),
        };
        format!("{} {what}", if self.right(c) { "✅" } else { "❌" })
    }
}

/// `own_error` is introduced error shown by the float64 replay: it counts as `introduced`.
fn kind_matches(got: &Option<String>, want: &Option<String>) -> bool {
    got == want || (got.as_deref() == Some("own_error") && want.as_deref() == Some("introduced"))
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("reference_dumps/corpus")
}

fn judge(c: &Case) -> (Outcome, Outcome) {
    let (r, d) = (
        open(&corpus().join(&c.reference)),
        open(&corpus().join(&c.device)),
    );
    let o = CompareOptions::default();
    let outcome = |x: driftscope::compare::Comparison| {
        let f = x.analysis.first_divergence;
        Outcome {
            place: f.as_ref().map(|f| f.name.clone()),
            kind: f.map(|f| f.kind.name().to_string()),
        }
    };
    let none = Default::default();
    let full = outcome(session::compare_dumps(&r, &d, &o, &none, &|| {}));
    let bisect = outcome(session::bisect_dumps(&r, &d, None, &o, &none, false).unwrap());
    (full, bisect)
}

#[test]
fn corpus_scores() {
    let text = std::fs::read_to_string(corpus().join("cases.json")).unwrap();
    let cases: Cases = serde_json::from_str(&text).unwrap();
    assert!(cases.cases.len() >= 25);
    let mut table = String::from(
        "| case | layout | split | expected | compare | bisect |\n|---|---|---|---|---|---|\n",
    );
    // (split, clean) -> (cases, compare right, bisect right, kind right)
    let mut score: std::collections::BTreeMap<(String, bool), [usize; 4]> = Default::default();
    for c in &cases.cases {
        let (full, bisect) = judge(c);
        let s = score.entry((c.split.clone(), c.clean)).or_default();
        s[0] += 1;
        s[1] += full.right(c) as usize;
        s[2] += bisect.right(c) as usize;
        s[3] += (full.right(c) && kind_matches(&full.kind, &c.expected_kind)) as usize;
        let expected = match (&c.expected_place, &c.expected_kind) {
            (Some(p), Some(k)) => format!("{k} at `{p}`"),
            _ => "clean".to_string(),
        };
        let _ = writeln!(
            table,
            "| {} ({}) | {} | {} | {expected} | {} | {} |",
            c.name,
            c.fault.trim_end_matches('.'),
            c.layout,
            c.split,
            full.cell(c),
            bisect.cell(c)
        );
    }
    let mut summary = String::from(
        "| split | cases | compare right | bisect right | compare right with the expected kind |\n|---|---|---|---|---|\n",
    );
    for ((split, clean), [n, f, b, k]) in &score {
        let _ = writeln!(
            summary,
            "| {split}, {} | {n} | {f} | {b} | {k} |",
            if *clean { "clean runs" } else { "faults" }
        );
    }
    println!("{summary}\n{table}");
    if let Ok(p) = std::env::var("DRIFTSCOPE_CORPUS_TABLE") {
        std::fs::write(p, format!("{summary}\n{table}")).unwrap();
    }
    // What the rules reach today, kept from falling back: no clean run is ever called
    // diverged, and the faults named right first stay named (docs/divergence.md lists the
    // cases still missed).
    for ((split, clean), [n, f, b, _]) in &score {
        if *clean {
            assert_eq!(
                (*f, *b),
                (*n, *n),
                "{split}: a clean run was called diverged"
            );
        }
    }
    let faults = |split: &str| {
        score
            .get(&(split.to_string(), false))
            .copied()
            .unwrap_or_default()
    };
    let (tuned, held) = (faults("tuned"), faults("held_out"));
    assert!(
        tuned[1] >= TUNED_FLOOR,
        "tuned faults named by compare: {}",
        tuned[1]
    );
    assert!(
        held[1] >= HELD_OUT_FLOOR,
        "held-out faults named by compare: {}",
        held[1]
    );
}

/// Faults of each split named right first by `compare` when the rules were last changed.
const TUNED_FLOOR: usize = 24;
const HELD_OUT_FLOOR: usize = 13;
