//! The module tree of the real dumps: construct.json (MobileNet L0), stack.json call sites
//! (llama L1, empty construct.json), module paths (llama plain safetensors).

use crate::common;
use common::*;
use driftscope::hierarchy::{Hierarchy, TreeSource};

fn path_of(h: &Hierarchy, place: &str) -> Vec<String> {
    let n = *h
        .place_node
        .get(place)
        .unwrap_or_else(|| panic!("{place} has no node"));
    h.label_path(n).into_iter().map(String::from).collect()
}

/// Nodes are in preorder: every node's parent comes before it, so a subtree is an id range.
fn assert_preorder(h: &Hierarchy) {
    assert!(h.nodes[0].parent.is_none());
    for (i, n) in h.nodes.iter().enumerate().skip(1) {
        assert!(n.parent.unwrap() < i);
    }
    let mut end = vec![0usize; h.nodes.len()];
    for i in (0..h.nodes.len()).rev() {
        end[i] = end[i].max(i + 1);
        if let Some(p) = h.nodes[i].parent {
            end[p] = end[p].max(end[i]);
            // Contiguous: a child starts inside its parent's range.
            assert!(p < i);
        }
    }
    for (i, n) in h.nodes.iter().enumerate().skip(1) {
        let p = n.parent.unwrap();
        assert!(i < end[p], "node {i} outside its parent's range");
    }
}

#[test]
fn mobilenet_l0_nests_module_calls_by_construct_json() {
    let d = open(&h200("mobilenet/msprobe/cpu_fp32"));
    let h = Hierarchy::of(&d);
    assert_preorder(&h);
    assert_eq!(h.sources(), vec![TreeSource::Construct]);
    assert!(h.note.is_none());
    assert_eq!(
        path_of(&h, "Module.features.1.block.1.fc1.Conv2d.forward.0"),
        [
            "features: Sequential",
            "1: InvertedResidual",
            "block: Sequential",
            "1: SqueezeExcitation",
            "fc1: Conv2d"
        ]
    );
    // Every place has a node, and the parent module calls are nodes of their own.
    let places: std::collections::HashSet<&str> = d.entries.iter().map(|e| &*e.place).collect();
    assert_eq!(h.place_node.len(), places.len());
}

#[test]
fn llama_l1_places_api_calls_under_their_call_sites() {
    let d = open(&llama("cuda_fp16_fault_silu_l1"));
    let h = Hierarchy::of(&d);
    assert_preorder(&h);
    assert_eq!(h.sources(), vec![TreeSource::CallStacks]);
    let p = path_of(&h, "Functional.silu.1.forward");
    assert_eq!(
        p,
        [
            "outputs: BaseModelOutputWithPast = self.model(",
            "hidden_states = decoder_layer(",
            "hidden_states = self.mlp(hidden_states)",
            "down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj…",
            "return nn.functional.silu(input)",
            "Functional.silu.1"
        ]
    );
    // The four SiLU calls (one per decoder layer) share their call-site node.
    let parent = |pl: &str| h.nodes[h.place_node[pl]].parent;
    assert!((0..4)
        .all(|i| parent(&format!("Functional.silu.{i}.forward"))
            == parent("Functional.silu.1.forward")));
}

#[test]
fn plain_dump_nests_by_module_path() {
    let d = open(&llama_plain("cpu_fp32"));
    let h = Hierarchy::of(&d);
    assert_preorder(&h);
    assert_eq!(h.sources(), vec![TreeSource::Paths]);
    assert_eq!(
        path_of(&h, "model.layers.1.mlp.act_fn"),
        ["model", "layers", "1", "mlp", "act_fn"]
    );
    // A module that is also a place is the parent of its children's nodes.
    let mlp = h.place_node["model.layers.1.mlp"];
    assert_eq!(
        h.nodes[h.place_node["model.layers.1.mlp.act_fn"]].parent,
        Some(mlp)
    );
}
