//! Export for Google's Model Explorer (`google-ai-edge/model-explorer`): a graph in its JSON
//! graph format and node-data files it overlays on that graph (docs/plots.md).
//!
//! The graph file is a `GraphCollection` (`{label, graphs: [{id, nodes}]}`), the shape its
//! `loadGraphsJson` accepts; each node (`id`, `label`, `namespace`, `attrs`, `incomingEdges`,
//! `outputsMetadata`, `config`) follows `GraphNode` in its `input_graph.ts`. Node-data files
//! follow `NodeDataProviderData` (`{graph id: {results: {node id: {value, bgColor?}},
//! thresholds?}}`) in its `types.ts`.
//!
//! One node per place (API call or module call). Namespaces are the [`Hierarchy`] path of the
//! place; a module call that has children is pinned to the top of its own group. Edges follow
//! data flow where the dump lets us derive it: an input whose recorded dtype, shape and
//! statistics (max, min, mean, norm) equal an earlier place's output comes from that output.
//! A place with no such input is linked to the place before it in execution order.

use crate::compare::{Comparison, PairReport, Status};
use crate::dump::{Dump, Entry, Role};
use crate::hierarchy::Hierarchy;
use crate::verdict::{pair_err, Verdict};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Id of the one graph written.
pub const GRAPH_ID: &str = "driftscope";
/// File names written into the output folder.
pub const GRAPH_FILE: &str = "graph.json";
/// Node data: the worst verdict of each place (a string per node, coloured per node).
pub const VERDICT_FILE: &str = "node_data_verdict.json";
/// Node data: the largest relative L2 error of each place's outputs (a number per node).
pub const ERROR_FILE: &str = "node_data_rel_l2_err.json";

/// The files of an export: (file name, bytes).
pub fn files(
    c: &Comparison,
    tree: &Hierarchy,
    reference: &Dump,
) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let places = places(c);
    let mut out = Vec::new();
    for (name, v) in [
        (GRAPH_FILE, graph(c, tree, reference, &places)),
        (VERDICT_FILE, verdict_data(c, &places)),
        (ERROR_FILE, error_data(&places)),
    ] {
        let mut b = serde_json::to_vec_pretty(&v)?;
        b.push(b'\n');
        out.push((name, b));
    }
    Ok(out)
}

/// What the export says about one place.
struct Place<'a> {
    name: &'a str,
    order: usize,
    op_type: Option<&'a str>,
    /// Its pairs, outputs first.
    pairs: Vec<&'a PairReport>,
    verdict: Option<PlaceVerdict>,
    err: Option<f64>,
}

/// Verdict of a place: the worst of its pairs (unreadable pairs count as `error`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum PlaceVerdict {
    Identical,
    Ok,
    Drift,
    Changed,
    Error,
    Diverged,
}

impl PlaceVerdict {
    fn of(p: &PairReport) -> Option<PlaceVerdict> {
        if matches!(p.status, Status::Error | Status::ShapeMismatch) {
            return Some(PlaceVerdict::Error);
        }
        Some(match p.verdict? {
            Verdict::Identical => PlaceVerdict::Identical,
            Verdict::Ok => PlaceVerdict::Ok,
            Verdict::Drift => PlaceVerdict::Drift,
            Verdict::Changed => PlaceVerdict::Changed,
            Verdict::Diverged => PlaceVerdict::Diverged,
        })
    }

    fn name(self) -> &'static str {
        match self {
            PlaceVerdict::Identical => "identical",
            PlaceVerdict::Ok => "ok",
            PlaceVerdict::Drift => "drift",
            PlaceVerdict::Changed => "changed",
            PlaceVerdict::Error => "error",
            PlaceVerdict::Diverged => "diverged",
        }
    }

    fn color(self) -> &'static str {
        match self {
            PlaceVerdict::Identical => "#d9d9d9",
            PlaceVerdict::Ok => "#a8e0a0",
            PlaceVerdict::Drift | PlaceVerdict::Changed => "#ffc46b",
            PlaceVerdict::Error => "#c9a0dc",
            PlaceVerdict::Diverged => "#f08080",
        }
    }
}

/// The places of a comparison in execution order; a place's verdict and error come from its
/// outputs (inputs carry what it inherited), or from all its pairs when it has no output.
fn places(c: &Comparison) -> Vec<Place<'_>> {
    let mut by: HashMap<&str, usize> = HashMap::new();
    let mut v: Vec<Place> = Vec::new();
    for p in &c.pairs {
        let k = *by.entry(&*p.place).or_insert_with(|| {
            v.push(Place {
                name: &p.place,
                order: p.order,
                op_type: p.op_type.as_deref(),
                pairs: Vec::new(),
                verdict: None,
                err: None,
            });
            v.len() - 1
        });
        v[k].pairs.push(p);
    }
    for pl in &mut v {
        pl.pairs.sort_by_key(|p| p.role != Role::Output);
        let outs: Vec<&PairReport> = pl
            .pairs
            .iter()
            .copied()
            .filter(|p| p.role == Role::Output)
            .collect();
        let judged = if outs.is_empty() { &pl.pairs } else { &outs };
        pl.verdict = judged.iter().filter_map(|p| PlaceVerdict::of(p)).max();
        pl.err = judged
            .iter()
            .filter_map(|p| pair_err(p))
            .fold(None, |a: Option<f64>, e| {
                Some(match a {
                    Some(a) if !(e > a || e.is_nan()) => a,
                    _ => e,
                })
            });
    }
    v.sort_by_key(|p| p.order);
    v
}

/// A namespace component may not hold `/` (Model Explorer's separator).
fn ns_part(s: &str) -> String {
    s.replace('/', "∕")
}

fn kv(k: &str, v: impl ToString) -> Value {
    json!({"key": k, "value": v.to_string()})
}

fn fmt(x: f64) -> String {
    super::fmt_f(x)
}

/// The `GraphCollection`.
fn graph(c: &Comparison, tree: &Hierarchy, reference: &Dump, places: &[Place]) -> Value {
    let first = c
        .analysis
        .first_divergence
        .as_ref()
        .map(|f| f.name.as_str());
    let has_kids: Vec<bool> = {
        let mut k = vec![false; tree.nodes.len()];
        for n in &tree.nodes {
            if let Some(p) = n.parent {
                k[p] = true;
            }
        }
        k
    };
    let edges = edges(reference, places);
    let mut nodes = Vec::with_capacity(places.len());
    for pl in places {
        let node = tree.place_node.get(pl.name).copied().unwrap_or(0);
        let path = tree.label_path(node);
        let (label, ns_len, pinned) = match path.split_last() {
            Some((last, _)) if has_kids[node] => (last.to_string(), path.len(), true),
            Some((last, _)) => (last.to_string(), path.len() - 1, false),
            None => (pl.name.to_string(), 0, false),
        };
        let namespace = path[..ns_len]
            .iter()
            .map(|s| ns_part(s))
            .collect::<Vec<_>>()
            .join("/");
        let mut attrs = vec![kv("place", pl.name), kv("order", pl.order)];
        if let Some(op) = pl.op_type {
            attrs.push(kv("op_type", op));
        }
        if let Some(v) = pl.verdict {
            attrs.push(kv("verdict", v.name()));
        }
        if let Some(e) = pl.err {
            attrs.push(kv("rel_l2_err", fmt(e)));
        }
        if first == Some(pl.name) {
            attrs.push(kv("first_divergence", "yes"));
        }
        let (incoming, how) = match edges.get(pl.name) {
            Some(e) => (e.0.clone(), e.1),
            None => (Vec::new(), "none (first place)"),
        };
        attrs.push(kv("incoming_edges", how));
        let outputs: Vec<Value> = pl
            .pairs
            .iter()
            .filter(|p| p.role == Role::Output)
            .map(|p| {
                let mut a = vec![kv("tensor_name", &p.name)];
                if let Some(s) = &p.shape_ref {
                    a.push(kv("shape", format!("{s:?}")));
                }
                if let (Some(r), Some(d)) = (p.dtype_ref, p.dtype_dev) {
                    a.push(kv("dtype", format!("{}/{}", r.name(), d.name())));
                }
                if let Some(e) = pair_err(p) {
                    a.push(kv("rel_l2_err", fmt(e)));
                }
                if let Some(m) = &p.metrics {
                    a.push(kv("cosine", format!("{:.8}", m.cosine)));
                    a.push(kv("max_abs_err", fmt(m.max_abs_err)));
                }
                if let Some(v) = PlaceVerdict::of(p) {
                    a.push(kv("verdict", v.name()));
                }
                json!({"id": p.index, "attrs": a})
            })
            .collect();
        let mut n = Map::new();
        n.insert("id".into(), pl.name.into());
        n.insert("label".into(), label.into());
        n.insert("namespace".into(), namespace.into());
        n.insert("attrs".into(), attrs.into());
        n.insert("incomingEdges".into(), incoming.into());
        n.insert("outputsMetadata".into(), outputs.into());
        if pinned {
            n.insert("config".into(), json!({"pinToGroupTop": true}));
        }
        nodes.push(Value::Object(n));
    }
    json!({
        "label": format!(
            "driftscope: {} vs {}",
            c.reference.path.display(),
            c.candidate.path.display()
        ),
        "graphs": [{"id": GRAPH_ID, "nodes": nodes}],
    })
}

/// Recorded statistics that identify a tensor: dtype, shape and the bits of max/min/mean/norm.
type Fingerprint = (String, std::sync::Arc<[usize]>, [u64; 4]);

fn fingerprint(e: &Entry) -> Option<Fingerprint> {
    let s = e.stats?;
    let f = |x: Option<f64>| x.map(f64::to_bits);
    Some((
        e.dtype?.name().to_string(),
        e.shape.clone()?,
        [f(s.max())?, f(s.min())?, f(s.mean())?, f(s.norm())?],
    ))
}

/// Incoming edges of each place and how they were found.
fn edges(reference: &Dump, places: &[Place]) -> HashMap<String, (Vec<Value>, &'static str)> {
    let mut by_place: HashMap<&str, Vec<&Entry>> = HashMap::new();
    for e in &reference.entries {
        by_place.entry(&*e.place).or_default().push(e);
    }
    let mut produced: HashMap<Fingerprint, (&str, &str)> = HashMap::new();
    let mut out = HashMap::new();
    let mut prev: Option<&str> = None;
    for pl in places {
        let entries = by_place.get(pl.name).map(Vec::as_slice).unwrap_or(&[]);
        let mut inc = Vec::new();
        for e in entries.iter().filter(|e| e.role != Role::Output) {
            if let Some(&(src, idx)) = fingerprint(e).and_then(|k| produced.get(&k)) {
                if src != pl.name {
                    inc.push(json!({
                        "sourceNodeId": src,
                        "sourceNodeOutputId": idx,
                        "targetNodeInputId": format!("{}.{}", e.role, e.index),
                    }));
                }
            }
        }
        let how = if !inc.is_empty() {
            "data flow (an input's recorded statistics equal an earlier output's)"
        } else if let Some(p) = prev {
            inc.push(
                json!({"sourceNodeId": p, "sourceNodeOutputId": "0", "targetNodeInputId": "0"}),
            );
            "execution order (no input traced to an earlier output)"
        } else {
            "none (first place)"
        };
        out.insert(pl.name.to_string(), (inc, how));
        for e in entries.iter().filter(|e| e.role == Role::Output) {
            if let Some(k) = fingerprint(e) {
                produced.insert(k, (pl.name, &*e.index));
            }
        }
        prev = Some(pl.name);
    }
    out
}

/// Node data: each place's verdict, coloured; the first divergence says so.
fn verdict_data(c: &Comparison, places: &[Place]) -> Value {
    let first = c
        .analysis
        .first_divergence
        .as_ref()
        .map(|f| f.name.as_str());
    let mut results = Map::new();
    for pl in places {
        let Some(v) = pl.verdict else { continue };
        let value = if first == Some(pl.name) {
            "diverged (first divergence)".to_string()
        } else {
            v.name().to_string()
        };
        let color = if first == Some(pl.name) {
            "#d62728"
        } else {
            v.color()
        };
        results.insert(pl.name.into(), json!({"value": value, "bgColor": color}));
    }
    json!({ GRAPH_ID: {"name": "driftscope verdict", "results": results} })
}

/// Node data: each place's relative L2 error, with thresholds at decades.
fn error_data(places: &[Place]) -> Value {
    let mut results = Map::new();
    for pl in places {
        if let Some(e) = pl.err.filter(|e| e.is_finite()) {
            results.insert(pl.name.into(), json!({ "value": e }));
        }
    }
    json!({ GRAPH_ID: {
        "name": "driftscope relative L2 error",
        "results": results,
        "thresholds": [
            {"value": 1e-6, "bgColor": "#e8f5e9"},
            {"value": 1e-4, "bgColor": "#a8e0a0"},
            {"value": 1e-3, "bgColor": "#fff3b0"},
            {"value": 1e-2, "bgColor": "#ffc46b"},
            {"value": 1e300, "bgColor": "#f08080"},
        ],
    }})
}
