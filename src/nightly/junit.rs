//! JUnit XML of a check: one test case per place (or per op type, or per pattern match, see
//! `[junit]` in the config) plus one `coverage` case for the run, in the
//! `testsuites/testsuite/testcase/failure` form CI servers read.

use super::config::{Compiled, Grouping};
use super::{CheckReport, Failure, FailureKind, PlaceCheck};
use std::fmt::Write;

/// Escapes text for XML content and attribute values, dropping characters XML 1.0 forbids.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' => o.push_str("&#10;"),
            '\t' | '\r' => o.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => o.push(c),
        }
    }
    o
}

/// One test case: a name and the places in it.
struct Case<'a> {
    name: String,
    places: Vec<&'a PlaceCheck>,
}

fn group_of(p: &PlaceCheck, cfg: &Compiled) -> String {
    match cfg.config.junit.group_by {
        Grouping::Place => p.name.clone(),
        Grouping::OpType => p
            .metrics
            .op_type
            .clone()
            .unwrap_or_else(|| "unknown".into()),
        Grouping::Pattern => cfg
            .group_pattern
            .as_ref()
            .and_then(|r| r.find(&p.name))
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| "other".into()),
    }
}

fn cases<'a>(r: &'a CheckReport, cfg: &Compiled) -> Vec<Case<'a>> {
    let mut out: Vec<Case> = Vec::new();
    for p in &r.places {
        let g = group_of(p, cfg);
        match out.iter_mut().find(|c| c.name == g) {
            Some(c) => c.places.push(p),
            None => out.push(Case {
                name: g,
                places: vec![p],
            }),
        }
    }
    out
}

fn kind_name(k: FailureKind) -> &'static str {
    match k {
        FailureKind::Divergence => "divergence",
        FailureKind::Limit => "limit",
        FailureKind::Baseline => "baseline",
        FailureKind::Shape => "shape",
        FailureKind::Coverage => "coverage",
    }
}

fn write_case(
    x: &mut String,
    class: &str,
    name: &str,
    failures: &[(&str, &Failure)],
    skipped: bool,
) {
    let _ = write!(
        x,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"0\"",
        escape(name),
        escape(class)
    );
    if failures.is_empty() && !skipped {
        x.push_str("/>\n");
        return;
    }
    x.push_str(">\n");
    if let Some((place, first)) = failures.first() {
        let body: Vec<String> = failures
            .iter()
            .map(|(p, f)| {
                if p.is_empty() {
                    f.message.clone()
                } else {
                    format!("{p}: {}", f.message)
                }
            })
            .collect();
        let msg = if place.is_empty() || *place == name {
            first.message.clone()
        } else {
            format!("{place}: {}", first.message)
        };
        let _ = writeln!(
            x,
            "      <failure message=\"{}\" type=\"{}\">{}</failure>",
            escape(&msg),
            kind_name(first.kind),
            escape(&body.join("\n"))
        );
    } else {
        x.push_str("      <skipped message=\"ignored by the config\"/>\n");
    }
    x.push_str("    </testcase>\n");
}

/// One `<testsuite>` of a check, with its counts.
pub struct Suite {
    /// The element, indented for a `<testsuites>` document.
    pub xml: String,
    /// Test cases.
    pub tests: usize,
    /// Failed cases.
    pub failures: usize,
    /// Skipped (ignored) cases.
    pub skipped: usize,
}

/// Opening of a document of several suites (one per rank): each suite carries its own counts,
/// so suites can be written as they come.
pub const MULTI_OPEN: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"driftscope check\">\n";
/// End of a document.
pub const CLOSE: &str = "</testsuites>\n";

/// The JUnit XML of a check. `timestamp` is `YYYY-MM-DDTHH:MM:SS` (UTC, no zone).
pub fn render(r: &CheckReport, cfg: &Compiled, baseline: Option<&str>, timestamp: &str) -> String {
    let s = suite(r, cfg, baseline, timestamp, "driftscope", 0);
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"driftscope check\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"0\">",
        s.tests, s.failures, s.skipped
    );
    x.push_str(&s.xml);
    x.push_str(CLOSE);
    x
}

/// The `<testsuite>` element `name` (numbered `id`) of a check.
pub fn suite(
    r: &CheckReport,
    cfg: &Compiled,
    baseline: Option<&str>,
    timestamp: &str,
    name: &str,
    id: u32,
) -> Suite {
    let cs = cases(r, cfg);
    let mut body = String::new();
    let (mut failed, mut skipped) = (0, 0);
    for c in &cs {
        let fails: Vec<(&str, &Failure)> = c
            .places
            .iter()
            .flat_map(|p| p.failures.iter().map(move |f| (p.name.as_str(), f)))
            .collect();
        let all_ignored = c.places.iter().all(|p| p.ignored);
        failed += usize::from(!fails.is_empty());
        skipped += usize::from(fails.is_empty() && all_ignored);
        let class = match cfg.config.junit.group_by {
            Grouping::Place => "driftscope.place",
            Grouping::OpType => "driftscope.op_type",
            Grouping::Pattern => "driftscope.group",
        };
        write_case(&mut body, class, &c.name, &fails, all_ignored);
    }
    let run: Vec<(&str, &Failure)> = r.run_failures.iter().map(|f| ("", f)).collect();
    failed += usize::from(!run.is_empty());
    write_case(&mut body, "driftscope.run", "coverage", &run, false);
    let tests = cs.len() + 1;
    let mut x = String::new();
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" package=\"driftscope\" id=\"{id}\" hostname=\"localhost\" tests=\"{tests}\" failures=\"{failed}\" errors=\"0\" skipped=\"{skipped}\" time=\"0\" timestamp=\"{}\">",
        escape(name),
        escape(timestamp)
    );
    x.push_str("    <properties>\n");
    let mut props = vec![
        ("reference", r.reference.clone()),
        ("candidate", r.candidate.clone()),
        ("verdict", r.summary.clone()),
    ];
    if let Some(b) = baseline {
        props.push(("baseline", b.to_string()));
    }
    for (k, v) in props {
        let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", escape(&v));
    }
    x.push_str("    </properties>\n");
    x.push_str(&body);
    x.push_str("    <system-out/>\n    <system-err/>\n  </testsuite>\n");
    Suite {
        xml: x,
        tests,
        failures: failed,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(
            super::escape("a<b & \"c\" 'd'>\u{1}\ne"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;&#10;e"
        );
    }
}
