//! msprobe's layer mapping (`--layer-mapping`), as its `compare` does it: every call and module
//! of a dump gets a *scope*, the path of modules it ran in (`construct.json`, each place's
//! parent module) followed by the framework function it was called from (`stack.json`, the
//! last framework frame above msprobe's hook) and its API or module name. The scopes of a dump
//! form a tree; a device (NPU) place is looked up in the reference (bench) tree under its scope
//! rewritten by the mapping rules, and the n-th place of a scope pairs with the n-th place of
//! the rewritten scope (same pass, forward or backward). Rules are `Class: {child: child}`:
//! below a module of class `Class`, the child `child` (a module attribute or an API name, or a
//! dotted path of several levels) is called `child` on the bench side; `TopLayer` is the model
//! itself (the legacy key `Cell` means the same).
//!
//! Without `construct.json` and `stack.json` msprobe maps nothing; driftscope then falls back
//! to renaming module paths by the classes named in the places themselves (`super::remap`).

use super::normalize;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// One rule of a layer mapping file, preprocessed as msprobe does.
#[derive(Clone, Debug)]
struct Rule {
    /// The dotted device path it replaces (`reduce_from_mp_region.all_reduce`).
    origin: String,
    /// What the bench calls it (`all_reduce`); anything from a `(` on is dropped.
    target: String,
    /// Components in `origin`.
    level: usize,
}

/// A layer mapping file's rules: module class -> first component of a child path -> rules,
/// longest first.
#[derive(Clone, Debug, Default)]
pub struct LayerRules {
    by_class: HashMap<String, HashMap<String, Vec<Rule>>>,
}

impl LayerRules {
    /// Rules from `class -> {child: child}` (`Cell` is read as `TopLayer`, as msprobe does).
    pub fn new(mapping: &HashMap<String, HashMap<String, String>>) -> LayerRules {
        let mut by_class: HashMap<String, HashMap<String, Vec<Rule>>> = HashMap::new();
        // msprobe replaces the legacy `Cell` key by `TopLayer` (its `TopLayer` then loses).
        let has_cell = mapping.contains_key("Cell");
        for (class, rules) in mapping {
            if has_cell && class == "TopLayer" {
                continue;
            }
            let class = if class == "Cell" { "TopLayer" } else { class };
            let m = by_class.entry(class.to_string()).or_default();
            for (k, v) in rules {
                let prefix = k.split('.').next().unwrap_or(k).to_string();
                m.entry(prefix).or_default().push(Rule {
                    origin: k.clone(),
                    target: v.split('(').next().unwrap_or(v).to_string(),
                    level: k.split('.').count(),
                });
            }
        }
        for m in by_class.values_mut() {
            for rules in m.values_mut() {
                rules.sort_by(|a, b| b.level.cmp(&a.level).then(a.origin.cmp(&b.origin)));
            }
        }
        LayerRules { by_class }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.by_class
            .values()
            .flat_map(|m| m.values())
            .map(Vec::len)
            .sum()
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every rule as `Class: origin`.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_class
            .iter()
            .flat_map(|(c, m)| {
                m.values()
                    .flatten()
                    .map(move |r| format!("{c}: {}", r.origin))
            })
            .collect();
        v.sort();
        v
    }
}

/// What a dump's folder says about where each place ran: `construct.json` and `stack.json`.
#[derive(Clone, Debug, Default)]
pub struct ScopeInfo {
    /// Place -> its parent module's place (`""` at the top).
    construct: HashMap<String, String>,
    /// Place -> its stack lines, innermost first.
    stacks: HashMap<String, Vec<String>>,
}

impl ScopeInfo {
    /// Reads `construct.json` and `stack.json` from a dump's folder; `None` when either is
    /// missing, unreadable or empty (msprobe then maps nothing).
    pub fn read(root: &Path) -> Option<ScopeInfo> {
        let read = |n: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&std::fs::read(root.join(n)).ok()?).ok()
        };
        let construct: HashMap<String, String> = read("construct.json")?
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        let mut stacks = HashMap::new();
        for (k, v) in read("stack.json")?.as_object()? {
            let Some(a) = v.as_array() else { continue };
            let lines = |x: &serde_json::Value| -> Vec<String> {
                x.as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            match a.first() {
                // Current msprobe: `{id: [[places], [lines]]}`.
                Some(serde_json::Value::Array(places)) => {
                    let l = a.get(1).map(lines).unwrap_or_default();
                    for p in places.iter().filter_map(|p| p.as_str()) {
                        stacks.insert(p.to_string(), l.clone());
                    }
                }
                // Older msprobe: `{place: [lines]}`.
                _ => {
                    stacks.insert(k.clone(), lines(v));
                }
            }
        }
        (!construct.is_empty() && !stacks.is_empty()).then_some(ScopeInfo { construct, stacks })
    }
}

/// One place of a dump, as msprobe's `DumpDataItem` describes it.
#[derive(Clone, Debug)]
struct Item {
    place: String,
    class: String,
    state: String,
    scope: Vec<String>,
}

/// Framework file paths whose frames name the function an API was called from.
const FRAME_FILES: [&str; 4] = [
    "site-packages/torch",
    "package/torch",
    "site-packages/mindspore",
    "package/mindspore",
];

/// The framework function an API call came from: the last framework frame (outermost first,
/// until the first user frame) between msprobe's hook (`...Template`) and the enclosing
/// `construct` (MindSpore) or `forward`/`backward` (PyTorch).
fn frame_function(lines: &[String], mindspore: bool) -> Option<String> {
    let end_sign = |l: &str| {
        if mindspore {
            l.contains("construct")
        } else {
            l.contains("in forward,") || l.contains("in backward,")
        }
    };
    let mut start = None;
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("Template") {
            start = Some(i);
        } else if start.is_some() && end_sign(l) {
            end = i;
            break;
        }
    }
    let from = start.map_or(0, |s| s + 1);
    let mut frame = None;
    for l in lines.get(from..end).unwrap_or_default() {
        let file = l.split(',').next().unwrap_or("");
        if FRAME_FILES.iter().any(|f| file.contains(f)) {
            frame = Some(l);
        } else {
            break;
        }
    }
    let l = frame?;
    let fields: Vec<&str> = l.split(',').collect();
    if ["msprobe", "MindSpeed"]
        .iter()
        .any(|s| fields[0].contains(s))
    {
        return None;
    }
    let func = fields.get(2)?;
    if ["construct", "__call__"].iter().any(|s| func.contains(s)) {
        return None;
    }
    func.split_whitespace().nth(1).map(str::to_string)
}

/// The items of a dump's places (in execution order), with msprobe's scopes.
fn items(places: &[&str], info: &ScopeInfo) -> Vec<Item> {
    let mindspore = places.iter().any(|p| {
        ["Cell.", "Mint.", "MintFunctional.", "Primitive.", "Jit."]
            .iter()
            .any(|x| p.starts_with(x))
    });
    let mut out: Vec<Item> = Vec::with_capacity(places.len());
    for &place in places {
        let parts: Vec<&str> = place.split('.').collect();
        let n = parts.len();
        if n < 4 {
            continue;
        }
        let layer = matches!(parts[0], "Cell" | "Module");
        let (name, class, state, layer_scope): (&str, &str, &str, Vec<&str>) =
            if parts[n - 1] == "parameters_grad" {
                (
                    parts[n - 3],
                    parts[n - 2],
                    "parameters_grad",
                    parts[..n - 3].to_vec(),
                )
            } else if parts[n - 2] == "parameters_grad" && parts[n - 1].parse::<u64>().is_ok() {
                (
                    parts[n - 4],
                    parts[n - 3],
                    "parameters_grad",
                    parts[..n - 4].to_vec(),
                )
            } else if layer {
                (
                    parts[n - 4],
                    parts[n - 3],
                    parts[n - 2],
                    parts[..n - 4].to_vec(),
                )
            } else {
                let parent = info.construct.get(place).map(String::as_str).unwrap_or("");
                let p: Vec<&str> = parent.split('.').collect();
                let scope = if parent.is_empty() {
                    vec!["TopLayer"]
                } else {
                    p[..p.len().saturating_sub(3)].to_vec()
                };
                (parts[n - 3], parts[n - 3], parts[n - 1], scope)
            };
        let mut scope: Vec<String> = layer_scope.iter().map(|s| s.to_string()).collect();
        if !layer && !matches!(parts[0], "Primitive" | "Jit") {
            if let Some(f) = info
                .stacks
                .get(place)
                .and_then(|l| frame_function(l, mindspore))
            {
                scope.push(f);
            }
        }
        scope.push(name.to_string());
        out.push(Item {
            place: place.to_string(),
            class: class.to_string(),
            state: state.to_string(),
            scope,
        });
    }
    // A backward place has no stack: it takes its forward place's scope.
    let by_place: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, it)| (it.place.clone(), i))
        .collect();
    for i in 0..out.len() {
        let parts: Vec<&str> = out[i].place.split('.').collect();
        let n = parts.len();
        if !parts[n - 2..].contains(&"backward") {
            continue;
        }
        let fwd: Vec<&str> = parts[..n - 2]
            .iter()
            .copied()
            .chain(
                parts[n - 2..]
                    .iter()
                    .map(|s| if *s == "backward" { "forward" } else { s }),
            )
            .collect();
        if let Some(&j) = by_place.get(&fwd.join(".")) {
            out[i].scope = out[j].scope.clone();
        }
    }
    out
}

/// A scope tree: child name -> node; each node the class of the last place inserted there and
/// its places per pass.
#[derive(Default, Debug)]
struct Node {
    class: Option<String>,
    children: HashMap<String, Node>,
    places: HashMap<String, Vec<usize>>,
}

impl Node {
    fn insert(&mut self, items: &[Item]) {
        for (i, it) in items.iter().enumerate() {
            let mut node = &mut *self;
            for c in &it.scope[1..] {
                node = node.children.entry(c.clone()).or_default();
            }
            node.places.entry(it.state.clone()).or_default().push(i);
            node.class = Some(it.class.clone());
        }
    }
}

/// Device place -> the bench place msprobe's layer mapping pairs it with (`None`: no bench
/// place), for every device place with a scope; and the rules that were used.
pub fn place_mapping(
    dev_places: &[&str],
    dev_info: &ScopeInfo,
    ref_places: &[&str],
    ref_info: &ScopeInfo,
    rules: &LayerRules,
) -> (HashMap<String, Option<String>>, HashSet<String>) {
    let dev = items(dev_places, dev_info);
    let bench = items(ref_places, ref_info);
    let (mut dev_tree, mut bench_tree) = (Node::default(), Node::default());
    dev_tree.insert(&dev);
    bench_tree.insert(&bench);
    let mut used = HashSet::new();
    let mut out = HashMap::new();
    for (i, it) in dev.iter().enumerate() {
        let s = &it.scope;
        let mut target: Vec<&str> = Vec::new();
        let mut node = &dev_tree;
        let mut k = 0;
        while k + 1 < s.len() {
            let child = &s[k + 1];
            // An intermediate node with no place of its own is "classed" by its own name.
            let class = node
                .class
                .as_deref()
                .unwrap_or(if k == 0 { "TopLayer" } else { &s[k] });
            let mut step = 1;
            let mut name: &str = child;
            if let Some(rs) = rules
                .by_class
                .get(class)
                .and_then(|m| m.get(child.as_str()))
            {
                for r in rs {
                    if k + 1 + r.level <= s.len() && s[k + 1..k + 1 + r.level].join(".") == r.origin
                    {
                        used.insert(format!("{class}: {}", r.origin));
                        name = &r.target;
                        step = r.level;
                        break;
                    }
                }
            }
            target.push(name);
            for _ in 0..step {
                k += 1;
                node = &node.children[&s[k]];
            }
        }
        let index = node.places[&it.state].iter().position(|&j| j == i);
        let found = index.and_then(|index| {
            let mut b = &bench_tree;
            for c in target.iter().flat_map(|t| t.split('.')) {
                b = b.children.get(c)?;
            }
            let j = *b.places.get(&it.state)?.get(index)?;
            Some(bench[j].place.clone())
        });
        out.insert(it.place.clone(), found);
    }
    (out, used)
}

/// Rules of `rules` not in `used`, as `Class: origin`.
pub fn unused_rules(rules: &LayerRules, used: &HashSet<String>) -> Vec<String> {
    rules
        .names()
        .into_iter()
        .filter(|n| !used.contains(n))
        .collect()
}

/// The reference tensor that a device tensor pairs with once its place is mapped: the same
/// suffix (`.input.0`, `.output.1`) after the bench place, matched as named or normalised.
pub fn tensor_target(
    dev_name: &str,
    dev_place: &str,
    bench_place: &str,
    ref_names: &HashMap<String, String>,
) -> Option<String> {
    let suffix = dev_name.get(dev_place.len()..)?;
    let t = format!("{bench_place}{suffix}");
    ref_names.get(&normalize(&t)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_function_is_the_last_framework_frame_above_the_hook() {
        let l = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ms = l(&[
            "File /x/site-packages/mindspore/nn/cell.py, line 1, in __call__, \n a",
            "File /x/msprobe/wrap_api.py, line 2, in api_function, \n ApiTemplate(x)",
            "File /x/site-packages/mindspore/ops/utils.py, line 3, in pick, \n b",
            "File /x/site-packages/mindspore/common/tensor.py, line 4, in __getitem__, \n c",
            "File /net/train.py, line 5, in step, \n d",
        ]);
        assert_eq!(frame_function(&ms, true).as_deref(), Some("__getitem__"));
        let user = l(&[
            "File /x/msprobe/wrap_tensor.py, line 2, in t, \n TensorOPTemplate(x)",
            "File /net/train.py, line 5, in step, \n d",
        ]);
        assert_eq!(frame_function(&user, false), None);
    }

    #[test]
    fn cell_is_the_legacy_name_of_top_layer() {
        let m: HashMap<String, HashMap<String, String>> = [(
            "Cell".to_string(),
            [("a".to_string(), "b(x)".to_string())].into(),
        )]
        .into();
        let r = LayerRules::new(&m);
        assert_eq!(r.by_class["TopLayer"]["a"][0].target, "b");
        assert_eq!(r.names(), vec!["TopLayer: a"]);
    }
}
