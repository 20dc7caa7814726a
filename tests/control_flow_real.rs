//! One real run per branch of a data-dependent branch (reference_dumps/control_flow/): the
//! same tiny model and input on the CPU, in float32 (the reference) and float16 (the device),
//! dumped by msprobe (L1) and by driftscope's harness (op level). A threshold on the largest
//! |score| sits between the two runs' values, so the float32 run takes the "stable" softmax
//! (amax, sub, exp, sum, div) and the float16 run one `F.softmax`; every other call is the
//! same, and the float32 run's second `sub` is the float16 run's first.

use crate::common;
use common::*;
use driftscope::align::structure::{api, AlignMethod, ChangeKind};
use driftscope::align::MatchKind;
use driftscope::bisect;
use driftscope::compare::{compare, CompareOptions, Comparison};
use driftscope::verdict::{DivergenceKind, Overall, Verdict};
use std::path::PathBuf;

fn run_dir(layout: &str, run: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("reference_dumps/control_flow")
        .join(layout)
        .join(run)
}

/// What the two layouts name the calls that matter here.
struct Names {
    layout: &'static str,
    /// The five calls of the stable softmax, in order.
    stable: [&'static str; 5],
    softmax: &'static str,
    /// The call both branches end on.
    max: &'static str,
    /// The centring `sub` after the branch: the reference's and the device's name.
    sub: (&'static str, &'static str),
    /// Calls in the reference and in the device run.
    calls: (usize, usize),
}

const LAYOUTS: [Names; 2] = [
    Names {
        layout: "msprobe",
        stable: [
            "Tensor.amax.0.forward",
            "Tensor.__sub__.0.forward",
            "Torch.exp.0.forward",
            "Tensor.sum.0.forward",
            "Tensor.__truediv__.0.forward",
        ],
        softmax: "Functional.softmax.0.forward",
        max: "Tensor.max.0.forward",
        sub: ("Tensor.__sub__.1.forward", "Tensor.__sub__.0.forward"),
        calls: (19, 15),
    },
    Names {
        layout: "native",
        stable: [
            "torch.Tensor.amax.0",
            "torch.Tensor.sub.0",
            "torch.exp.0",
            "torch.Tensor.sum.0",
            "torch.Tensor.div.0",
        ],
        softmax: "torch.nn.functional.softmax.0",
        max: "torch.Tensor.max.0",
        sub: ("torch.Tensor.sub.1", "torch.Tensor.sub.0"),
        calls: (20, 16),
    },
];

/// The place of a tensor name `{place}.{role}.{index}` (indices here have one component).
fn place_of(name: &str) -> &str {
    let mut it = name.rsplitn(3, '.');
    let (_, _) = (it.next(), it.next());
    it.next().unwrap()
}

/// The branch is reported as what it is, and every other call is paired with its twin.
fn assert_branch(c: &Comparison, n: &Names) {
    let s = &c.structure;
    assert_eq!(s.method, AlignMethod::Signatures, "{}", n.layout);
    assert_eq!(
        (s.calls_reference, s.calls_candidate, s.paired),
        (n.calls.0, n.calls.1, n.calls.1 - 1),
        "{}",
        n.layout
    );
    assert_eq!(s.renumbered, 1);
    let got: Vec<_> = s
        .changes
        .iter()
        .map(|ch| (ch.kind, ch.calls.clone(), ch.after.clone()))
        .collect();
    let after = Some(n.max.to_string());
    assert_eq!(
        got,
        vec![
            (
                ChangeKind::Missing,
                n.stable.iter().map(|p| p.to_string()).collect(),
                after.clone()
            ),
            (ChangeKind::Extra, vec![n.softmax.to_string()], after),
        ],
        "{}",
        n.layout
    );
    // Every pair meets the device call of the same API, in the same order; the centring `sub`
    // meets its renumbered twin.
    let mut last = 0;
    for p in &c.pairs {
        let dev = p.name_dev.as_deref().unwrap_or(&p.name);
        assert_eq!(
            api(&p.place),
            api(place_of(dev)),
            "{}: {}",
            n.layout,
            p.name
        );
        assert!(p.order >= last);
        last = p.order;
        if &*p.place == n.sub.0 {
            assert_eq!(place_of(dev), n.sub.1);
            assert_eq!(p.matched_by, MatchKind::Structural);
        } else {
            assert_eq!(p.matched_by, MatchKind::Exact, "{}", p.name);
        }
    }
    assert!(c.pairs.iter().any(|p| &*p.place == n.sub.0));
    // Left over: exactly the tensors of the calls on one side only.
    assert!(!c.unmatched_reference.is_empty());
    for t in &c.unmatched_reference {
        assert!(n.stable.contains(&place_of(t)), "{t}");
    }
    assert_eq!(c.unmatched_candidate.len(), 2);
    for t in &c.unmatched_candidate {
        assert_eq!(place_of(t), n.softmax);
    }
}

#[test]
fn a_branch_taken_differently_is_the_first_divergence_and_the_rest_pairs() {
    let o = CompareOptions::default();
    let none = Default::default();
    for n in &LAYOUTS {
        let (r, d) = (
            open(&run_dir(n.layout, "fp32")),
            open(&run_dir(n.layout, "fp16")),
        );
        let plain = compare(&r, &d, &o, &|| {});
        assert_branch(&plain, n);
        // Every paired number is fp16 rounding of the reference's: no place diverges.
        assert_eq!(
            plain.analysis.overall,
            Overall::WithinNoise,
            "{}: {}",
            n.layout,
            plain.analysis.summary
        );
        assert!(plain
            .pairs
            .iter()
            .all(|p| matches!(p.verdict, Some(Verdict::Ok | Verdict::Identical))));
        let b = bisect::run(&r, &d, None, &o, false).unwrap();
        assert_eq!(b.structure, plain.structure);
        assert_eq!(b.analysis.first_divergence, None);
        // As the commands run it, the branch is the first divergence.
        for c in [
            driftscope::session::compare_dumps(&r, &d, &o, &none, &|| {}),
            driftscope::session::bisect_dumps(&r, &d, None, &o, &none, false).unwrap(),
        ] {
            assert_branch(&c, n);
            let f = c.analysis.first_divergence.as_ref().unwrap();
            assert_eq!(f.kind, DivergenceKind::ControlFlow);
            assert_eq!(f.name, n.stable[0]);
            assert!(
                f.reason.starts_with("the device skipped 5 calls"),
                "{}",
                f.reason
            );
        }
        // The other way round, the device ran the five calls the reference did not.
        let c = driftscope::session::compare_dumps(&d, &r, &o, &none, &|| {});
        let f = c.analysis.first_divergence.as_ref().unwrap();
        assert_eq!(f.kind, DivergenceKind::ControlFlow, "{}", f.reason);
        assert_eq!(f.name, n.softmax);
        assert!(
            c.structure
                .changes
                .iter()
                .any(|ch| ch.kind == ChangeKind::Extra && ch.calls.len() == 5),
            "{:?}",
            c.structure.changes
        );
    }
}

#[test]
fn the_softmax_is_proposed_for_the_stable_path_and_confirmed_it_compares_clean() {
    let o = CompareOptions::default();
    for n in &LAYOUTS {
        let (r, mut d) = (
            open(&run_dir(n.layout, "fp32")),
            open(&run_dir(n.layout, "fp16")),
        );
        let c = compare(&r, &d, &o, &|| {});
        let want: Vec<String> = n.stable.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            c.structure.fusion_proposal.get(n.softmax),
            Some(&want),
            "{:?}",
            c.structure.fusion_proposal
        );
        let opts = driftscope::align::MappingOptions {
            fusion: c.structure.fusion_proposal.clone().into_iter().collect(),
            ..Default::default()
        };
        let m = driftscope::align::remap(&r.entries, &mut d.entries, &opts);
        let c = driftscope::session::compare_dumps(&r, &d, &o, &m, &|| {});
        assert!(c.structure.changes.is_empty(), "{:?}", c.structure.changes);
        assert_eq!(
            c.analysis.overall,
            Overall::WithinNoise,
            "{}",
            c.analysis.summary
        );
        // The softmax's input and output met the stable path's first input and last output.
        let mapped: Vec<&str> = c
            .pairs
            .iter()
            .filter(|p| p.matched_by == MatchKind::Mapped)
            .map(|p| &*p.name)
            .collect();
        assert_eq!(mapped.len(), 2, "{mapped:?}");
        assert!(mapped[0].starts_with(n.stable[0]) && mapped[1].starts_with(n.stable[4]));
    }
}

#[test]
fn check_fails_on_the_branch() {
    for n in &LAYOUTS {
        let o = std::process::Command::new(bin())
            .arg("check")
            .arg(run_dir(n.layout, "fp32"))
            .arg(run_dir(n.layout, "fp16"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(
            out.contains("FAIL structural_changes 2 exceeds limit 0: the device skipped 5 calls"),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "diverged (control_flow): first at {}",
                n.stable[0]
            )),
            "{out}"
        );
    }
}
