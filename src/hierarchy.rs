//! The model's structure as far as a dump knows it: a tree whose leaves and inner nodes are the
//! places (API calls, modules) of the dump, used by the HTML report's module tree and by the
//! Model Explorer export.
//!
//! Where the structure comes from, best first ([`TreeSource`]):
//! 1. msprobe's `construct.json` (levels L0 and mix): each module call and, at mix level, each
//!    API call names its parent module call.
//! 2. msprobe `Module.{path}.{Class}.forward.{n}` / MindSpore `Cell.` names: the module path.
//! 3. msprobe API calls (level L1, empty `construct.json`) with `stack.json`: the chain of
//!    `forward` frames that led to the call, outermost first, each labelled by its source line
//!    (the call site, e.g. `hidden_states = self.mlp(hidden_states)`). Calls from the same lines
//!    share nodes, so the four decoder layers of a model appear as one subtree: the stack does
//!    not say which layer a call ran in.
//! 4. Other API calls: grouped by API (`Functional.silu` holds `Functional.silu.0`, ...).
//! 5. Module paths of plain, native, npy and safetensors dumps (`model.layers.1.mlp.act_fn`,
//!    or `/`-separated scopes of CANN op names).

use crate::dump::{Dump, Format};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// Larger `construct.json` / `stack.json` files are not read (the tree falls back).
const MAX_SIDE_FILE: u64 = 1 << 30;
/// Longest parent chain followed in `construct.json` (a cycle or a broken file stops there).
const MAX_DEPTH: usize = 256;
/// Call-site labels are cut to this many characters.
const MAX_LABEL: usize = 72;

/// Where a node's position came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeSource {
    /// msprobe `construct.json` parent links.
    Construct,
    /// msprobe `Module.*` / `Cell.*` names.
    ModuleNames,
    /// msprobe `stack.json` call sites.
    CallStacks,
    /// API calls grouped by API name.
    ApiNames,
    /// Module paths (`a.b.c`) or scopes (`a/b/c`) of the place names.
    Paths,
}

impl TreeSource {
    /// Short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            TreeSource::Construct => "msprobe construct.json parent links",
            TreeSource::ModuleNames => "msprobe Module.* names",
            TreeSource::CallStacks => {
                "call sites from msprobe stack.json (calls from the same source lines share a \
                 node: the stack does not say which layer instance ran them)"
            }
            TreeSource::ApiNames => "API calls grouped by API name",
            TreeSource::Paths => "module paths of the place names",
        }
    }
}

/// One node of the tree.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// Parent node (`None` for the root, node 0).
    pub parent: Option<usize>,
    /// What the tree shows.
    pub label: String,
    /// Unique key among its siblings, and the full name for search (a module call, a module
    /// path, `file:line` of a call site).
    pub key: String,
    /// Which source placed it.
    pub source: TreeSource,
}

/// The tree of a dump's places.
#[derive(Clone, Debug, Serialize)]
pub struct Hierarchy {
    /// Nodes in preorder (children after their parent, siblings in execution order); node 0
    /// is the root.
    pub nodes: Vec<Node>,
    /// The node of each place.
    pub place_node: HashMap<String, usize>,
    /// Why a better source was not used (a malformed `construct.json`, say), if one was not.
    pub note: Option<String>,
}

/// A segment of a place's path from the root.
struct Seg {
    key: String,
    label: String,
    source: TreeSource,
}

impl Seg {
    fn new(key: impl Into<String>, label: impl Into<String>, source: TreeSource) -> Seg {
        Seg {
            key: key.into(),
            label: label.into(),
            source,
        }
    }
}

impl Hierarchy {
    /// The tree of `dump`'s places (their order is the dump's execution order).
    pub fn of(dump: &Dump) -> Hierarchy {
        let mut places: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut entries: Vec<_> = dump.entries.iter().collect();
        entries.sort_by_key(|e| e.order);
        for e in entries {
            if seen.insert(&*e.place) {
                places.push(&e.place);
            }
        }
        let mut note = None;
        let (construct, stacks) = if dump.format == Format::Msprobe {
            let c = match read_json(&dump.root.join("construct.json")) {
                Ok(Some(Value::Object(m))) => m
                    .into_iter()
                    .map(|(k, v)| (k, v.as_str().map(str::to_string)))
                    .collect(),
                Ok(Some(_)) => {
                    note = Some("construct.json is not a JSON object; not used".to_string());
                    HashMap::new()
                }
                Ok(None) => HashMap::new(),
                Err(e) => {
                    note = Some(format!("construct.json not used: {e}"));
                    HashMap::new()
                }
            };
            let s = match read_json(&dump.root.join("stack.json")) {
                Ok(Some(v)) => call_sites(&v),
                Ok(None) => HashMap::new(),
                Err(e) => {
                    note.get_or_insert(format!("stack.json not used: {e}"));
                    HashMap::new()
                }
            };
            (c, s)
        } else {
            (HashMap::new(), HashMap::new())
        };
        let mut b = Builder::default();
        for p in &places {
            let path = if dump.format != Format::Msprobe {
                path_segments(p)
            } else if construct.contains_key(*p) {
                construct_segments(p, &construct)
            } else if is_module(p) {
                module_segments(p)
            } else if let Some(frames) = stacks.get(*p) {
                let mut v: Vec<Seg> = frames
                    .iter()
                    .map(|(k, l)| Seg::new(k.clone(), l.clone(), TreeSource::CallStacks))
                    .collect();
                v.push(Seg::new(*p, api_label(p), TreeSource::CallStacks));
                v
            } else {
                api_segments(p)
            };
            let n = b.insert(&path);
            b.place_node.insert(p.to_string(), n);
        }
        b.finish(note)
    }

    /// The path of labels from the root (excluded) to `n` (included).
    pub fn label_path(&self, mut n: usize) -> Vec<&str> {
        let mut v = Vec::new();
        while let Some(p) = self.nodes[n].parent {
            v.push(self.nodes[n].label.as_str());
            n = p;
        }
        v.reverse();
        v
    }

    /// The sources the nodes came from, in order of first use (for the report's legend).
    pub fn sources(&self) -> Vec<TreeSource> {
        let mut v: Vec<TreeSource> = Vec::new();
        for n in self.nodes.iter().skip(1) {
            if !v.contains(&n.source) {
                v.push(n.source);
            }
        }
        v
    }
}

/// Builds the tree by inserting paths; nodes are renumbered in preorder at the end.
#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    children: Vec<Vec<usize>>,
    index: HashMap<(usize, String), usize>,
    place_node: HashMap<String, usize>,
}

impl Builder {
    fn insert(&mut self, path: &[Seg]) -> usize {
        if self.nodes.is_empty() {
            self.nodes.push(Node {
                parent: None,
                label: "model".into(),
                key: String::new(),
                source: TreeSource::Paths,
            });
            self.children.push(Vec::new());
        }
        let mut cur = 0;
        for s in path {
            cur = match self.index.get(&(cur, s.key.clone())) {
                Some(&n) => n,
                None => {
                    let n = self.nodes.len();
                    self.nodes.push(Node {
                        parent: Some(cur),
                        label: s.label.clone(),
                        key: s.key.clone(),
                        source: s.source,
                    });
                    self.children.push(Vec::new());
                    self.children[cur].push(n);
                    self.index.insert((cur, s.key.clone()), n);
                    n
                }
            };
        }
        cur
    }

    fn finish(mut self, note: Option<String>) -> Hierarchy {
        if self.nodes.is_empty() {
            self.insert(&[]);
        }
        // Preorder renumbering: a subtree is a contiguous range (the report filters by it).
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![0usize];
        while let Some(n) = stack.pop() {
            order.push(n);
            stack.extend(self.children[n].iter().rev());
        }
        let mut new_id = vec![0usize; self.nodes.len()];
        for (i, &n) in order.iter().enumerate() {
            new_id[n] = i;
        }
        let nodes = order
            .iter()
            .map(|&n| {
                let mut x = self.nodes[n].clone();
                x.parent = x.parent.map(|p| new_id[p]);
                x
            })
            .collect();
        let place_node = self
            .place_node
            .into_iter()
            .map(|(k, v)| (k, new_id[v]))
            .collect();
        Hierarchy {
            nodes,
            place_node,
            note,
        }
    }
}

/// `Ok(None)` when the file is absent.
fn read_json(p: &std::path::Path) -> Result<Option<Value>, String> {
    let md = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(_) => return Ok(None),
    };
    if md.len() > MAX_SIDE_FILE {
        return Err(format!("{} is larger than 1 GiB", p.display()));
    }
    let b = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    crate::dump::msprobe::parse_json(&b)
        .map(Some)
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn is_module(place: &str) -> bool {
    place.starts_with("Module.") || place.starts_with("Cell.")
}

/// `Module.{path}.{Class}.{forward|backward}.{n}` -> (path, Class).
fn module_parts(place: &str) -> Option<(&str, &str)> {
    let rest = place
        .strip_prefix("Module.")
        .or_else(|| place.strip_prefix("Cell."))?;
    let parts: Vec<&str> = rest.split('.').collect();
    let n = parts.len();
    // ...{Class}.forward.{n} or ...{Class}.parameters_grad
    let class_at = if parts.last() == Some(&"parameters_grad") {
        n.checked_sub(2)?
    } else {
        n.checked_sub(3)?
    };
    if class_at == 0 {
        return None;
    }
    let path_len: usize = parts[..class_at].iter().map(|s| s.len() + 1).sum::<usize>() - 1;
    Some((&rest[..path_len], parts[class_at]))
}

/// The label of a module call or an API call.
fn place_label(place: &str) -> String {
    match module_parts(place) {
        Some((path, class)) => {
            let last = path.rsplit('.').next().unwrap_or(path);
            let call = place.rsplit('.').next().unwrap_or("");
            let dir = if place.contains(".backward.") {
                " backward"
            } else {
                ""
            };
            let n = if call.chars().all(|c| c.is_ascii_digit()) && call != "0" {
                format!(" #{call}")
            } else {
                String::new()
            };
            format!("{last}: {class}{dir}{n}")
        }
        None => api_label(place),
    }
}

/// `Functional.silu.1.forward` -> `Functional.silu.1`.
fn api_label(place: &str) -> String {
    place.strip_suffix(".forward").unwrap_or(place).to_string()
}

/// Ancestors from `construct.json`, outermost first, then the place itself.
fn construct_segments(place: &str, parents: &HashMap<String, Option<String>>) -> Vec<Seg> {
    let mut chain = vec![place.to_string()];
    let mut seen = std::collections::HashSet::from([place]);
    let mut cur = place;
    while let Some(Some(p)) = parents.get(cur) {
        if chain.len() >= MAX_DEPTH || !seen.insert(p.as_str()) {
            break;
        }
        chain.push(p.clone());
        cur = p;
    }
    chain
        .into_iter()
        .rev()
        .map(|k| {
            let label = place_label(&k);
            Seg::new(k, label, TreeSource::Construct)
        })
        .collect()
}

/// A module call under its module path; every call of one module shares its node.
fn module_segments(place: &str) -> Vec<Seg> {
    let Some((path, class)) = module_parts(place) else {
        return api_segments(place);
    };
    let parts: Vec<&str> = path.split('.').collect();
    let mut v = Vec::with_capacity(parts.len());
    for (i, s) in parts.iter().enumerate() {
        let key = parts[..=i].join(".");
        let label = if i + 1 == parts.len() {
            format!("{s}: {class}")
        } else {
            s.to_string()
        };
        v.push(Seg::new(key, label, TreeSource::ModuleNames));
    }
    v
}

/// An API call under its API (`Functional.silu`).
fn api_segments(place: &str) -> Vec<Seg> {
    let label = api_label(place);
    let group = match label.rsplit_once('.') {
        Some((g, n)) if n.chars().all(|c| c.is_ascii_digit()) => g.to_string(),
        _ => label.clone(),
    };
    if group == label {
        return vec![Seg::new(place, label, TreeSource::ApiNames)];
    }
    vec![
        Seg::new(group.clone(), group, TreeSource::ApiNames),
        Seg::new(place, label, TreeSource::ApiNames),
    ]
}

/// A module path (`a.b.c`) or scope (`a/b/c`), one node per component.
fn path_segments(place: &str) -> Vec<Seg> {
    let sep = if place.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = place.split(sep).filter(|s| !s.is_empty()).collect();
    let mut key = String::new();
    parts
        .iter()
        .map(|s| {
            if !key.is_empty() {
                key.push(sep);
            }
            key.push_str(s);
            Seg::new(key.clone(), *s, TreeSource::Paths)
        })
        .collect()
}

/// From `stack.json` (`{id: [[places], [frames]]}`, innermost frame first): for each place,
/// the `forward` frames outermost first as (`file:line`, source line) pairs.
fn call_sites(v: &Value) -> HashMap<String, Vec<(String, String)>> {
    let mut out = HashMap::new();
    let Value::Object(m) = v else { return out };
    for v in m.values() {
        let Some(a) = v.as_array() else { continue };
        let (Some(names), Some(frames)) = (
            a.first().and_then(Value::as_array),
            a.get(1).and_then(Value::as_array),
        ) else {
            continue;
        };
        let mut chain: Vec<(String, String)> = frames
            .iter()
            .filter_map(|f| parse_frame(f.as_str()?))
            .filter(|f| f.func == "forward")
            .map(|f| {
                let file = f.file.rsplit('/').next().unwrap_or(f.file);
                let key = format!("{file}:{}", f.line);
                let mut label: String = f.code.chars().take(MAX_LABEL).collect();
                if f.code.chars().count() > MAX_LABEL {
                    label.push('…');
                }
                if label.is_empty() {
                    label = key.clone();
                }
                (key, label)
            })
            .collect();
        chain.reverse();
        for n in names.iter().filter_map(Value::as_str) {
            out.insert(n.to_string(), chain.clone());
        }
    }
    out
}

/// One frame of msprobe's `stack.json`.
struct Frame<'a> {
    file: &'a str,
    line: &'a str,
    func: &'a str,
    code: &'a str,
}

/// `File /a/b.py, line 175, in forward, \n down_proj = ...`.
fn parse_frame(s: &str) -> Option<Frame<'_>> {
    let s = s.strip_prefix("File ")?;
    let (file, rest) = s.split_once(", line ")?;
    let (line, rest) = rest.split_once(", in ")?;
    let (func, code) = match rest.split_once(',') {
        Some((f, c)) => (f, c.trim()),
        None => (rest, ""),
    };
    Some(Frame {
        file,
        line,
        func: func.trim(),
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_split_into_path_and_class() {
        assert_eq!(
            module_parts("Module.features.0.0.Conv2d.forward.0"),
            Some(("features.0.0", "Conv2d"))
        );
        assert_eq!(
            module_parts("Module.fc.Linear.parameters_grad"),
            Some(("fc", "Linear"))
        );
        assert_eq!(
            place_label("Module.features.1.block.Sequential.forward.0"),
            "block: Sequential"
        );
        assert_eq!(module_parts("Module.Conv2d.forward.0"), None);
    }

    #[test]
    fn frames_parse() {
        let f = parse_frame(
            "File /x/modeling_llama.py, line 322, in forward, \n hidden_states = self.mlp(hidden_states)",
        )
        .unwrap();
        assert_eq!(f.line, "322");
        assert_eq!(f.func, "forward");
        assert_eq!(f.code, "hidden_states = self.mlp(hidden_states)");
    }

    #[test]
    fn a_cycle_in_construct_json_ends_the_chain() {
        let parents: HashMap<String, Option<String>> = [
            ("Module.a.A.forward.0", Some("Module.b.B.forward.0")),
            ("Module.b.B.forward.0", Some("Module.a.A.forward.0")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect();
        let s = construct_segments("Module.a.A.forward.0", &parents);
        let keys: Vec<&str> = s.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["Module.b.B.forward.0", "Module.a.A.forward.0"]);
    }

    #[test]
    fn api_calls_group_by_api() {
        let s = api_segments("Functional.silu.1.forward");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label, "Functional.silu");
        assert_eq!(s[1].label, "Functional.silu.1");
    }
}
