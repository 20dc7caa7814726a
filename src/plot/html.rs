//! The interactive report: one self-contained HTML page (no network, no server) holding the
//! data as JSON, the page script and style written for it (`assets/`), and small PNG close-ups
//! pre-rendered for the worst places and the first divergence of each run. The data carries the
//! reference's module tree ([`Hierarchy`]) and each pair's node in it.

use super::{heatmap, histogram, place_points, Run};
use crate::align;
use crate::compare::{Comparison, Status};
use crate::dump::Dump;
use crate::hierarchy::Hierarchy;
use crate::verdict::NoiseOptions;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

const TEMPLATE: &str = include_str!("assets/report.html");
const SCRIPT: &str = include_str!("assets/report.js");
const STYLE: &str = include_str!("assets/report.css");

/// Pairs per run that get pre-rendered close-ups (besides the first divergence).
pub const WORST_N: usize = 6;
/// Size of the embedded histogram images.
const HIST_SIZE: (u32, u32) = (680, 230);
/// Size of the embedded heatmap images.
const HEAT_SIZE: (u32, u32) = (680, 300);

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for ch in bytes.chunks(3) {
        let b = [ch[0], *ch.get(1).unwrap_or(&0), *ch.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for k in 0..4 {
            if k <= ch.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn png_uri(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64(png))
}

/// Compact JSON of a comparison's pairs: every field but the raw histograms, nulls left out,
/// plus `node`: the module-tree node of the pair's place.
fn pairs_json(c: &Comparison, tree: &Hierarchy) -> Vec<Value> {
    c.pairs
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.remove("hist_abs_err");
                m.remove("hist_rel_err");
                m.retain(|_, x| !x.is_null());
                let node = tree.place_node.get(&*p.place).copied().unwrap_or(0);
                m.insert("node".into(), node.into());
            }
            v
        })
        .collect()
}

/// The module tree for the page: `[parent or -1, label, key]` per node, in preorder.
fn tree_json(tree: &Hierarchy) -> Value {
    let nodes: Vec<Value> = tree
        .nodes
        .iter()
        .map(|n| json!([n.parent.map(|p| p as i64).unwrap_or(-1), n.label, n.key]))
        .collect();
    json!({
        "sources": tree.sources().iter().map(|s| s.describe()).collect::<Vec<_>>(),
        "note": tree.note,
        "nodes": nodes,
    })
}

/// Indices of the pairs of `c` that get close-ups: the first divergence and the worst pairs.
fn closeup_pairs(c: &Comparison) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..c.pairs.len())
        .filter(|&i| c.pairs[i].status == Status::Compared && c.pairs[i].metrics.is_some())
        .collect();
    let err = |i: usize| {
        c.pairs[i]
            .metrics
            .as_ref()
            .map(|m| {
                if m.rel_l2_err.is_nan() {
                    f64::INFINITY
                } else {
                    m.rel_l2_err
                }
            })
            .unwrap_or(0.0)
    };
    idx.sort_by(|&a, &b| err(b).total_cmp(&err(a)));
    idx.truncate(WORST_N);
    if let Some(f) = &c.analysis.first_divergence {
        if let Some(i) = c.pairs.iter().position(|p| *p.name == *f.tensor) {
            if !idx.contains(&i) {
                idx.insert(0, i);
            }
        }
    }
    idx
}

/// Renders the report page for `runs` (run `i` compared `reference` with `devs[i]`).
pub fn render(reference: &Dump, runs: &[Run], devs: &[&Dump]) -> anyhow::Result<String> {
    let mut images = Map::new();
    let mut runs_json = Vec::new();
    let tree = Hierarchy::of(reference);
    for (i, run) in runs.iter().enumerate() {
        let c = &run.comparison;
        if let Some(dev) = devs.get(i) {
            let al = align::align(reference, dev);
            let by_name: HashMap<&str, (usize, usize)> = al
                .pairs
                .iter()
                .map(|p| {
                    (
                        &*reference.entries[p.reference].name,
                        (p.reference, p.candidate),
                    )
                })
                .collect();
            for k in closeup_pairs(c) {
                let p = &c.pairs[k];
                let hist = histogram::png(p, HIST_SIZE).map(|b| png_uri(&b));
                let heat = by_name
                    .get(&*p.name)
                    .ok_or_else(|| anyhow::anyhow!("{} is not in the dumps", p.name))
                    .and_then(|&(a, b)| {
                        heatmap::load(reference, &reference.entries[a], dev, &dev.entries[b])
                    })
                    .and_then(|h| heatmap::png(&h, HEAT_SIZE))
                    .map(|b| png_uri(&b));
                let mut o = Map::new();
                match hist {
                    Ok(u) => o.insert("hist".into(), u.into()),
                    Err(e) => o.insert("hist_error".into(), e.to_string().into()),
                };
                match heat {
                    Ok(u) => o.insert("heat".into(), u.into()),
                    Err(e) => o.insert("heat_error".into(), e.to_string().into()),
                };
                images.insert(format!("{i}:{k}"), Value::Object(o));
            }
        }
        let points: Vec<usize> = place_points(c).iter().map(|p| p.pair).collect();
        runs_json.push(json!({
            "label": run.label,
            "candidate": c.candidate.path,
            "summary": c.analysis.summary,
            "overall": c.analysis.overall,
            "method": c.analysis.method,
            "first": c.analysis.first_divergence,
            "structure": c.structure.changes.iter().map(|ch| &ch.message).collect::<Vec<_>>(),
            "points": points,
            "pairs": pairs_json(c, &tree),
        }));
    }
    let data = json!({
        "tool_version": env!("CARGO_PKG_VERSION"),
        "reference": runs.first().map(|r| r.comparison.reference.path.display().to_string()),
        "noise_factor": NoiseOptions::default().noise_factor,
        "closeups": WORST_N,
        "runs": runs_json,
        "images": images,
        "tree": tree_json(&tree),
    });
    let data = serde_json::to_string(&data)?
        .replace("</", "<\\/")
        .replace("<!--", "<\\u0021--");
    let title = format!(
        "driftscope report: {}",
        runs.iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut out = String::with_capacity(TEMPLATE.len() + data.len() + SCRIPT.len());
    for (k, piece) in TEMPLATE.split("{{").enumerate() {
        if k == 0 {
            out.push_str(piece);
            continue;
        }
        let (key, rest) = piece.split_once("}}").unwrap_or(("", piece));
        match key {
            "TITLE" => out.push_str(&escape(&title)),
            "STYLE" => out.push_str(STYLE),
            "SCRIPT" => out.push_str(SCRIPT),
            "DATA" => out.push_str(&data),
            other => {
                out.push_str("{{");
                out.push_str(other);
                out.push_str("}}");
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
