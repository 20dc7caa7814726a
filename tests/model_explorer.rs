//! `driftscope export --model-explorer` on the real dumps, checked against the structure Model
//! Explorer's own code reads: `loadGraphsJson` (src/ui/src/common/utils.ts) takes an object
//! with `label` and `graphs`; each graph needs `id` and `nodes`; each `GraphNode`
//! (components/visualizer/common/input_graph.ts) has string `id`, `label`, `namespace`,
//! optional `attrs` ({key, value}), `incomingEdges` ({sourceNodeId, sourceNodeOutputId,
//! targetNodeInputId}), `outputsMetadata` ({id, attrs}); node data (`NodeDataProviderData`
//! in common/types.ts) maps graph ids to `{results: {node id: {value, bgColor?}}}`.

use crate::common;
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::process::Command;

fn export(r: &str, d: &str) -> (tempfile::TempDir, Value, Value, Value) {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["export", r, d, "--model-explorer"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |f: &str| -> Value {
        serde_json::from_slice(&std::fs::read(out.path().join(f)).unwrap()).unwrap()
    };
    let (g, v, e) = (
        read("graph.json"),
        read("node_data_verdict.json"),
        read("node_data_rel_l2_err.json"),
    );
    (out, g, v, e)
}

fn attr<'a>(n: &'a Value, k: &str) -> Option<&'a str> {
    n["attrs"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == k)?
        .get("value")?
        .as_str()
}

/// Checks the graph and node-data files against Model Explorer's types; returns the nodes.
fn check_structure(g: &Value, data: &[&Value]) -> Vec<Value> {
    assert!(g["label"].is_string());
    let graphs = g["graphs"].as_array().unwrap();
    assert_eq!(graphs.len(), 1);
    let id = graphs[0]["id"].as_str().unwrap();
    let nodes = graphs[0]["nodes"].as_array().unwrap().clone();
    let ids: HashSet<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), nodes.len(), "node ids are unique");
    for n in &nodes {
        assert!(n["label"].is_string() && n["namespace"].is_string());
        for a in n["attrs"].as_array().unwrap() {
            assert!(a["key"].is_string() && a["value"].is_string(), "{a}");
        }
        for e in n["incomingEdges"].as_array().unwrap() {
            let src = e["sourceNodeId"].as_str().unwrap();
            assert!(ids.contains(src), "edge from unknown node {src}");
            assert!(e["sourceNodeOutputId"].is_string() && e["targetNodeInputId"].is_string());
        }
        for m in n["outputsMetadata"].as_array().unwrap() {
            assert!(m["id"].is_string() && m["attrs"].is_array());
        }
    }
    for d in data {
        let obj = d.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), vec![id]);
        let results = obj[id]["results"].as_object().unwrap();
        assert!(!results.is_empty());
        for (k, r) in results {
            assert!(ids.contains(k.as_str()), "node data for unknown node {k}");
            assert!(r.get("value").is_some());
        }
    }
    nodes
}

#[test]
fn llama_fault_export_names_the_fault_and_places_it_under_its_call_sites() {
    let (_t, g, v, e) = export(
        llama("cpu_fp32").to_str().unwrap(),
        llama("cuda_fp16_fault_silu_l1").to_str().unwrap(),
    );
    let nodes = check_structure(&g, &[&v, &e]);
    // One node per place of the 158 places of the L1 dump.
    assert_eq!(nodes.len(), 158);
    let silu = nodes
        .iter()
        .find(|n| n["id"] == "Functional.silu.1.forward")
        .unwrap();
    assert_eq!(attr(silu, "first_divergence"), Some("yes"));
    assert_eq!(attr(silu, "verdict"), Some("diverged"));
    // L1 with an empty construct.json: the namespace is the chain of call sites in stack.json.
    let ns = silu["namespace"].as_str().unwrap();
    assert!(ns.contains("self.mlp(hidden_states)"), "{ns}");
    assert!(ns.ends_with("return nn.functional.silu(input)"), "{ns}");
    assert_eq!(silu["label"], "Functional.silu.1");
    let results = &v["driftscope"]["results"];
    assert_eq!(
        results["Functional.silu.1.forward"]["value"],
        "diverged (first divergence)"
    );
    let diverged = results
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["value"].as_str().unwrap().starts_with("diverged"))
        .count();
    assert_eq!(diverged, 1);
    let err = e["driftscope"]["results"]["Functional.silu.1.forward"]["value"]
        .as_f64()
        .unwrap();
    assert!((err - 0.044).abs() < 1e-3, "{err}");
    // The silu's input is the gate projection's output: traced by their recorded statistics.
    let edges = silu["incomingEdges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["sourceNodeId"], "Functional.linear.11.forward");
    assert!(attr(silu, "incoming_edges")
        .unwrap()
        .starts_with("data flow"));
}

#[test]
fn mobilenet_l0_export_nests_modules_by_construct_json() {
    let m = |r: &str| h200(&format!("mobilenet/msprobe/{r}"));
    let (_t, g, v, e) = export(
        m("cpu_fp32").to_str().unwrap(),
        m("cuda_fp16").to_str().unwrap(),
    );
    let nodes = check_structure(&g, &[&v, &e]);
    let conv = nodes
        .iter()
        .find(|n| n["id"] == "Module.features.1.block.1.fc1.Conv2d.forward.0")
        .unwrap();
    assert_eq!(conv["label"], "fc1: Conv2d");
    assert_eq!(
        conv["namespace"],
        "features: Sequential/1: InvertedResidual/block: Sequential/1: SqueezeExcitation"
    );
    // A module with children is its own group, pinned to its top.
    let se = nodes
        .iter()
        .find(|n| n["id"] == "Module.features.1.block.1.SqueezeExcitation.forward.0")
        .unwrap();
    assert_eq!(se["config"]["pinToGroupTop"], true);
    assert!(se["namespace"]
        .as_str()
        .unwrap()
        .ends_with("1: SqueezeExcitation"));
}

#[test]
fn a_malformed_construct_json_is_named_and_the_tree_falls_back() {
    let t = tempfile::tempdir().unwrap();
    let proc = llama_rank("cuda_fp16_fault_silu_l1");
    let dst = t.path().join("step0/proc0");
    std::fs::create_dir_all(dst.join("dump_tensor_data")).unwrap();
    for f in ["dump.json", "stack.json"] {
        std::fs::copy(proc.join(f), dst.join(f)).unwrap();
    }
    std::fs::write(dst.join("construct.json"), b"{\"Module.a\": ").unwrap();
    for e in std::fs::read_dir(proc.join("dump_tensor_data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("dump_tensor_data").join(e.file_name())).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .arg("export")
        .arg(t.path())
        .arg(llama("cuda_fp16_fault_silu_l1"))
        .arg("--model-explorer")
        .arg(out.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("construct.json"), "{err}");
    let g: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("graph.json")).unwrap()).unwrap();
    let nodes = g["graphs"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 158);
    // Still placed by the call sites of stack.json.
    assert!(nodes
        .iter()
        .all(|n| n["namespace"].as_str().unwrap().contains("self.model(")
            || n["id"]
                .as_str()
                .unwrap()
                .starts_with("Functional.linear.28")));
}
