//! Pairing the entries of two dumps: exact names first, then msprobe-aware names, O(n) with
//! hash maps; when the two call streams disagree (an extra, missing or renumbered call), by
//! sequence alignment of the calls ([`structure`], docs/alignment.md).

pub mod diff;
pub mod padding;
pub mod structure;

pub mod layer;

use crate::dump::{Dump, Entry, Role};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How two entries were paired.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// Same tensor name.
    Exact,
    /// Same name after msprobe-aware normalisation (MindSpore `Cell.` vs PyTorch `Module.`,
    /// `input_args`/`input`, case of the framework prefix).
    Normalized,
    /// Paired by `--data-mapping` or `--layer-mapping`.
    Mapped,
    /// Paired by `--fuzzy` (API name without call counters, in order).
    Fuzzy,
    /// Paired by aligning the call streams: the names differ (counters renumbered by an extra
    /// or missing call).
    Structural,
}

/// A reference entry and its candidate counterpart (indices into each dump's entries).
#[derive(Copy, Clone, Debug)]
pub struct Pair {
    /// Index into the reference dump's entries.
    pub reference: usize,
    /// Index into the candidate dump's entries.
    pub candidate: usize,
    /// How they were matched.
    pub kind: MatchKind,
}

/// The pairing of two dumps.
#[derive(Clone, Debug, Default)]
pub struct Alignment {
    /// Pairs in the reference's execution order.
    pub pairs: Vec<Pair>,
    /// Reference entries with no counterpart, in order.
    pub unmatched_reference: Vec<usize>,
    /// Candidate entries with no counterpart, in order.
    pub unmatched_candidate: Vec<usize>,
    /// What the alignment of the call streams found (extra and missing calls).
    pub structure: structure::Structure,
}

/// Name normalisation for the second matching round. Keyword arguments are inputs, as in
/// msprobe's compare (`...kwargs.attn_mask`, a tensor file's name, is `...input.attn_mask`).
pub fn normalize(name: &str) -> String {
    // Most names hold none of the spellings (every rule below needs `args.`, `Mint` or a
    // `Cell.` prefix): five searches and copies each are a tenth of opening a 100k-call dump.
    let has = |pat: &[u8]| name.as_bytes().windows(pat.len()).any(|w| w == pat);
    if !name.starts_with("Cell.") && !has(b"args.") && !has(b"Mint") {
        return name.to_string();
    }
    let n = name
        .strip_prefix("Cell.")
        .map(|r| format!("Module.{r}"))
        .unwrap_or_else(|| name.to_string());
    n.replace(".input_args.", ".input.")
        .replace(".input_kwargs.", ".input.")
        .replace(".kwargs.", ".input.")
        .replace("Mint.", "Torch.")
        .replace("MintFunctional.", "Functional.")
}

/// Pairs `reference` and `candidate` entries: by name when their call streams agree, by
/// structure otherwise ([`structure::align`]).
pub fn align(reference: &Dump, candidate: &Dump) -> Alignment {
    structure::align(&reference.entries, &candidate.entries)
}

/// Pairs two entry lists by name alone: exact, then normalised.
pub fn align_entries(reference: &[Entry], candidate: &[Entry]) -> Alignment {
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(candidate.len());
    for (i, e) in candidate.iter().enumerate() {
        by_name.entry(&*e.name).or_insert(i);
    }
    let mut used = vec![false; candidate.len()];
    let mut found: Vec<Option<(usize, MatchKind)>> = reference
        .iter()
        .map(|e| {
            by_name.get(&*e.name).and_then(|&i| {
                (!used[i]).then(|| {
                    used[i] = true;
                    (i, MatchKind::Exact)
                })
            })
        })
        .collect();
    if found.iter().any(Option::is_none) {
        let mut by_norm: HashMap<String, usize> = HashMap::new();
        for (i, e) in candidate.iter().enumerate() {
            if !used[i] {
                by_norm.entry(normalize(&e.name)).or_insert(i);
            }
        }
        for (k, f) in found.iter_mut().enumerate() {
            if f.is_none() {
                if let Some(&i) = by_norm.get(&normalize(&reference[k].name)) {
                    if !used[i] {
                        used[i] = true;
                        *f = Some((i, MatchKind::Normalized));
                    }
                }
            }
        }
    }
    let mut out = Alignment::default();
    for (k, f) in found.into_iter().enumerate() {
        match f {
            Some((i, kind)) => out.pairs.push(Pair {
                reference: k,
                candidate: i,
                kind,
            }),
            None => out.unmatched_reference.push(k),
        }
    }
    out.unmatched_candidate = (0..candidate.len()).filter(|&i| !used[i]).collect();
    out
}

/// msprobe's mapping options, applied by [`remap`] before pairing.
#[derive(Clone, Debug, Default)]
pub struct MappingOptions {
    /// `--data-mapping`: candidate (NPU) name -> reference (bench) name, for tensors or places.
    pub data_mapping: HashMap<String, String>,
    /// `--layer-mapping`: module class -> (candidate child name -> reference child name).
    pub layer_mapping: HashMap<String, HashMap<String, String>>,
    /// `--fuzzy`: pair leftovers by API name without call counters, in order.
    pub fuzzy: bool,
    /// `--fusion-map`: fused candidate place -> the reference places it covers, in order.
    pub fusion: HashMap<String, Vec<String>>,
}

/// What [`remap`] did: `(candidate name before, reference name now)` per renamed entry.
#[derive(Clone, Debug, Default)]
pub struct Remap {
    /// Paired by `--data-mapping` or `--layer-mapping`.
    pub mapped: Vec<(String, String)>,
    /// Paired by `--fuzzy`.
    pub fuzzy: Vec<(String, String)>,
    /// Reference tensors covered by a fused candidate op (`--fusion-map`) and left unpaired:
    /// they are "fused", not "unmatched".
    pub fused: Vec<String>,
    /// `(name now, own name)` of device tensors that `--layer-mapping` leaves unpaired although
    /// the reference has a tensor of their name (msprobe pairs that one elsewhere, or nowhere).
    pub unpaired: Vec<(String, String)>,
    /// Mapping files or keys that paired nothing, with counts (`check` treats them as errors).
    pub warnings: Vec<String>,
}

/// A place without its call counter: `Functional.linear.3.forward` -> `Functional.linear.forward`,
/// `Module.layers.0.mlp.MLP.forward.2` -> `Module.layers.0.mlp.MLP.forward`, and the harness's
/// op level `torch.nn.functional.linear.3` -> `torch.nn.functional.linear` (its ops are named
/// by their torch path; module path indices are kept).
pub fn strip_counter(place: &str) -> String {
    if place.starts_with("torch.") || place.starts_with("torch_npu.") {
        if let Some((op, n)) = place.rsplit_once('.') {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return op.to_string();
            }
        }
    }
    let parts: Vec<&str> = place.split('.').collect();
    let n = parts.len();
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let pass = |s: &str| s == "forward" || s == "backward";
    if n >= 2 && is_num(parts[n - 1]) && pass(parts[n - 2]) {
        parts[..n - 1].join(".")
    } else if n >= 3 && pass(parts[n - 1]) && is_num(parts[n - 2]) {
        let mut v = parts[..n - 2].to_vec();
        v.push(parts[n - 1]);
        v.join(".")
    } else {
        place.to_string()
    }
}

/// The candidate name `--layer-mapping` gives a module entry: each path component `c` whose
/// parent module's class has a `c: other` entry becomes `other` (classes come from the
/// candidate's own places, `{Module|Cell}.{path}.{Class}.{pass}.{call}`; the top-level model
/// is `TopLayer`, as in msprobe's layer mapping files).
fn layer_mapped(
    e: &Entry,
    classes: &HashMap<String, String>,
    opts: &MappingOptions,
) -> Option<String> {
    let rest = e
        .name
        .strip_prefix("Module.")
        .or_else(|| e.name.strip_prefix("Cell."))?;
    let place_rest = e
        .place
        .strip_prefix("Module.")
        .or_else(|| e.place.strip_prefix("Cell."))?;
    let parts: Vec<&str> = place_rest.split('.').collect();
    if parts.len() < 4 {
        return None;
    }
    let path = &parts[..parts.len() - 3];
    let mut out = Vec::with_capacity(path.len());
    let mut changed = false;
    for i in 0..path.len() {
        let parent = path[..i].join(".");
        // msprobe names the top-level model's class `TopLayer`.
        let class = match classes.get(&parent) {
            Some(c) => Some(c.as_str()),
            None if parent.is_empty() => Some("TopLayer"),
            None => None,
        };
        let renamed = class
            .and_then(|c| opts.layer_mapping.get(c))
            .and_then(|m| m.get(path[i]));
        match renamed {
            Some(r) => {
                changed = true;
                out.push(r.as_str());
            }
            None => out.push(path[i]),
        }
    }
    let suffix = &rest[path.join(".").len()..];
    changed.then(|| format!("Module.{}{suffix}", out.join(".")))
}

/// Applies `--data-mapping`, `--layer-mapping` and `--fuzzy` to the candidate's entries: each
/// candidate entry that no reference entry matches by name (or normalised name) and that a
/// mapping (or fuzzy match) pairs with a still-unmatched reference entry is renamed to that
/// reference name, so that the comparison pairs them. O(n log n): hash maps and, for `--fuzzy`,
/// one group per API name without counters, zipped in execution order. `--layer-mapping` here
/// renames module paths only; [`remap_dumps`] does msprobe's full layer mapping.
pub fn remap(reference: &[Entry], candidate: &mut [Entry], opts: &MappingOptions) -> Remap {
    remap_with(reference, candidate, opts, None)
}

/// [`remap`] for two opened dumps. When both folders hold `construct.json` and `stack.json`,
/// `--layer-mapping` pairs places as msprobe's compare does ([`layer`]) and decides every
/// device place it scopes, even one whose name matches a reference place: msprobe's answer.
pub fn remap_dumps(reference: &Dump, candidate: &mut Dump, opts: &MappingOptions) -> Remap {
    let scope = if opts.layer_mapping.is_empty() {
        None
    } else {
        match (
            layer::ScopeInfo::read(&reference.root),
            layer::ScopeInfo::read(&candidate.root),
        ) {
            (Some(r), Some(c)) => Some((r, c)),
            (r, _) => {
                let missing = if r.is_none() {
                    &reference.root
                } else {
                    &candidate.root
                };
                let mut m = remap_with(&reference.entries, &mut candidate.entries, opts, None);
                m.warnings.insert(
                    0,
                    format!(
                        "--layer-mapping: no construct.json and stack.json in {}: only module \
                         paths are renamed (msprobe maps nothing without them)",
                        missing.display()
                    ),
                );
                return m;
            }
        }
    };
    remap_with(
        &reference.entries,
        &mut candidate.entries,
        opts,
        scope.as_ref().map(|(r, c)| (r, c)),
    )
}

/// Distinct places in first-seen order.
fn places_of(entries: &[Entry]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .map(|e| &*e.place)
        .filter(|p| seen.insert(*p))
        .collect()
}

/// Marks a device name that `--layer-mapping` leaves unpaired although the reference has the
/// same name (restored in reports by [`crate::comparison::Comparison::mark_remapped`]).
const UNPAIRED: &str = " (left unpaired by --layer-mapping)";

fn remap_with(
    reference: &[Entry],
    candidate: &mut [Entry],
    opts: &MappingOptions,
    scope: Option<(&layer::ScopeInfo, &layer::ScopeInfo)>,
) -> Remap {
    let mut out = Remap::default();
    // Reference names by normalised name (first one wins, as in pairing).
    let mut ref_norm: HashMap<String, String> = HashMap::new();
    for e in reference {
        ref_norm
            .entry(normalize(&e.name))
            .or_insert_with(|| e.name.to_string());
    }
    // msprobe's layer mapping decides every device place it scopes.
    let mut decided = std::collections::HashSet::new();
    let mut by_layer = 0;
    if let Some((ri, ci)) = scope {
        let rules = layer::LayerRules::new(&opts.layer_mapping);
        let (places, used) =
            layer::place_mapping(&places_of(candidate), ci, &places_of(reference), ri, &rules);
        let mut claimed = std::collections::HashSet::new();
        let mut unpaired = Vec::new();
        for (i, e) in candidate.iter_mut().enumerate() {
            let Some(bench) = places.get(&*e.place) else {
                continue;
            };
            decided.insert(i);
            let t = bench
                .as_ref()
                .and_then(|b| layer::tensor_target(&e.name, &e.place, b, &ref_norm))
                .filter(|t| claimed.insert(t.clone()));
            match t {
                Some(t) => {
                    by_layer += 1;
                    if *t != *e.name {
                        out.mapped.push((e.name.to_string(), t.clone()));
                        e.name = t.into();
                    }
                }
                None => unpaired.push(i),
            }
        }
        for i in unpaired {
            let e = &mut candidate[i];
            if ref_norm.contains_key(&normalize(&e.name)) {
                let marked = format!("{}{UNPAIRED}", e.name);
                out.unpaired.push((marked.clone(), e.name.to_string()));
                e.name = marked.into();
            }
        }
        let unused = layer::unused_rules(&rules, &used);
        if !unused.is_empty() {
            out.warnings.push(format!(
                "--layer-mapping: {} of {} rules matched no device place: {}",
                unused.len(),
                rules.len(),
                unused.join(", ")
            ));
        }
    }
    let cand_names: std::collections::HashSet<String> =
        candidate.iter().map(|e| e.name.to_string()).collect();
    let cand_norm: std::collections::HashSet<String> =
        candidate.iter().map(|e| normalize(&e.name)).collect();
    // Reference entries nobody pairs yet, by name and by normalised name.
    let mut free: HashMap<&str, usize> = HashMap::new();
    for (i, e) in reference.iter().enumerate() {
        if !cand_names.contains(&*e.name) && !cand_norm.contains(&normalize(&e.name)) {
            free.entry(&*e.name).or_insert(i);
        }
    }
    let free_norm: HashMap<String, String> =
        free.keys().map(|n| (normalize(n), n.to_string())).collect();
    let ref_names: std::collections::HashSet<&str> = reference.iter().map(|e| &*e.name).collect();
    let open: Vec<usize> = (0..candidate.len())
        .filter(|&i| {
            let n = &candidate[i].name;
            !decided.contains(&i)
                && !ref_names.contains(&**n)
                && !ref_norm.contains_key(&normalize(n))
        })
        .collect();
    let mut classes = HashMap::new();
    if scope.is_none() {
        for e in candidate.iter() {
            if let Some(r) = e
                .place
                .strip_prefix("Module.")
                .or_else(|| e.place.strip_prefix("Cell."))
            {
                let p: Vec<&str> = r.split('.').collect();
                if p.len() >= 4 {
                    classes.insert(p[..p.len() - 3].join("."), p[p.len() - 3].to_string());
                }
            }
        }
    }
    // msprobe's data mapping keys name tensors as its compare does (`input.attn_mask`).
    let data_norm: HashMap<String, &String> = opts
        .data_mapping
        .iter()
        .map(|(k, v)| (normalize(k), v))
        .collect();
    // A fused op: its inputs meet the first covered place's inputs, its outputs the last's.
    let mut covered: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for i in &open {
        let e = &candidate[*i];
        if let Some(places) = opts.fusion.get(&*e.place) {
            covered.extend(places.iter().map(String::as_str));
        }
    }
    let mut by_data = 0;
    let mut left = Vec::new();
    for i in open {
        let e = &candidate[i];
        let fused_target = opts.fusion.get(&*e.place).and_then(|places| {
            let boundary = if e.role == Role::Output {
                places.last()
            } else {
                places.first()
            }?;
            Some(format!("{boundary}{}", &e.name[e.place.len()..]))
        });
        let data_target = || {
            data_norm
                .get(&normalize(&e.name))
                .map(|s| s.to_string())
                .or_else(|| {
                    let m = data_norm.get(&normalize(&e.place))?;
                    Some(format!("{m}{}", &e.name[e.place.len()..]))
                })
        };
        let (target, source) = match fused_target {
            Some(t) => (Some(t), 0),
            None => match data_target() {
                Some(t) => (Some(t), 1),
                None if scope.is_none() => (layer_mapped(e, &classes, opts), 2),
                None => (None, 0),
            },
        };
        let target = target.and_then(|t| {
            if free.contains_key(t.as_str()) {
                Some(t)
            } else {
                free_norm.get(&normalize(&t)).cloned()
            }
        });
        match target.filter(|t| free.contains_key(t.as_str())) {
            Some(t) => {
                free.remove(t.as_str());
                match source {
                    1 => by_data += 1,
                    2 => by_layer += 1,
                    _ => {}
                }
                out.mapped.push((e.name.to_string(), t.clone()));
                candidate[i].name = t.into();
            }
            None => left.push(i),
        }
    }
    if !opts.data_mapping.is_empty() {
        let names: std::collections::HashSet<String> = candidate
            .iter()
            .flat_map(|e| [normalize(&e.name), normalize(&e.place)])
            .chain(out.mapped.iter().map(|(d, _)| normalize(d)))
            .collect();
        let mut unused: Vec<&String> = opts
            .data_mapping
            .keys()
            .filter(|k| !names.contains(&normalize(k)))
            .collect();
        unused.sort();
        if !unused.is_empty() {
            out.warnings.push(format!(
                "--data-mapping: {} of {} keys match no device tensor or place (first: {})",
                unused.len(),
                opts.data_mapping.len(),
                unused[0]
            ));
        }
        if by_data == 0 {
            out.warnings
                .push("--data-mapping pairs no tensor that names did not pair already".into());
        }
    }
    if !opts.layer_mapping.is_empty() && by_layer == 0 {
        out.warnings.push("--layer-mapping pairs no tensor".into());
    }
    if !covered.is_empty() {
        // Every covered tensor the fused op's boundary did not take is fused, also one whose
        // name a device call has: a fused op renumbers the later calls of the APIs it
        // replaced, and such a name is then a later call's (structural alignment pairs it).
        let boundary: std::collections::HashSet<&str> =
            out.mapped.iter().map(|(_, r)| r.as_str()).collect();
        for e in reference {
            if covered.contains(&*e.place) && !boundary.contains(&*e.name) {
                free.remove(&*e.name);
                out.fused.push(e.name.to_string());
            }
        }
    }
    if opts.fuzzy {
        let key = |e: &Entry| {
            format!(
                "{}{}",
                normalize(&strip_counter(&e.place)),
                &e.name[e.place.len().min(e.name.len())..]
            )
        };
        let mut groups: HashMap<String, std::collections::VecDeque<usize>> = HashMap::new();
        let mut free_idx: Vec<usize> = free.values().copied().collect();
        free_idx.sort_unstable();
        for i in free_idx {
            groups.entry(key(&reference[i])).or_default().push_back(i);
        }
        for i in left {
            if let Some(r) = groups
                .get_mut(&key(&candidate[i]))
                .and_then(|q| q.pop_front())
            {
                let t = reference[r].name.clone();
                out.fuzzy
                    .push((candidate[i].name.to_string(), t.to_string()));
                candidate[i].name = t;
            }
        }
    }
    out
}

/// Reads a `--data-mapping` file: a YAML (msprobe's format) or JSON mapping of candidate (NPU)
/// names to reference (bench) names.
pub fn read_data_mapping(path: &std::path::Path) -> anyhow::Result<HashMap<String, String>> {
    let v = read_mapping_file(path)?;
    let o = v.as_object().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: expected a mapping of NPU names to bench names",
            path.display()
        )
    })?;
    o.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => anyhow::bail!("{}: value of `{k}` is not a name", path.display()),
        })
        .collect()
}

/// Reads a `--fusion-map` file: fused candidate place -> covered reference places, as a JSON
/// list or a YAML scalar of comma-separated places.
pub fn read_fusion_map(path: &std::path::Path) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let v = read_mapping_file(path)?;
    let bad = || anyhow::anyhow!("{}: expected fused op: [covered places]", path.display());
    let o = v.as_object().ok_or_else(bad)?;
    let mut out = HashMap::new();
    for (k, v) in o {
        let places: Vec<String> = match v {
            serde_json::Value::String(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|p| p.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<anyhow::Result<_>>()?,
            _ => return Err(bad()),
        };
        if places.is_empty() || places.iter().any(String::is_empty) {
            return Err(bad());
        }
        out.insert(k.clone(), places);
    }
    Ok(out)
}

/// Reads a `--layer-mapping` file: class -> {candidate child name: reference child name}.
pub fn read_layer_mapping(
    path: &std::path::Path,
) -> anyhow::Result<HashMap<String, HashMap<String, String>>> {
    let v = read_mapping_file(path)?;
    let bad = || {
        anyhow::anyhow!(
            "{}: expected class: {{child: child}} mappings",
            path.display()
        )
    };
    let o = v.as_object().ok_or_else(bad)?;
    let mut out = HashMap::new();
    for (class, m) in o {
        let m = m.as_object().ok_or_else(bad)?;
        let mut inner = HashMap::new();
        for (k, v) in m {
            inner.insert(k.clone(), v.as_str().ok_or_else(bad)?.to_string());
        }
        out.insert(class.clone(), inner);
    }
    // msprobe's legacy top key `Cell` is `TopLayer` (its `update_keys_in_place`).
    if let Some(c) = out.remove("Cell") {
        out.insert("TopLayer".into(), c);
    }
    Ok(out)
}

fn read_mapping_file(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    parse_yaml_mapping(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The YAML subset msprobe's mapping files use: block mappings (nested by indentation) of
/// plain or quoted scalar keys and values, `#` comments. Anything else (lists, anchors, flow
/// collections, multi-line scalars) is refused with its line number.
pub fn parse_yaml_mapping(text: &str) -> Result<serde_json::Value, String> {
    use serde_json::{Map, Value};
    let scalar = |s: &str, line: usize| -> Result<String, String> {
        let s = s.trim();
        let q = |c: char| s.len() >= 2 && s.starts_with(c) && s.ends_with(c);
        if q('"') || q('\'') {
            return Ok(s[1..s.len() - 1].to_string());
        }
        if s.is_empty() || s.starts_with(['[', '{', '&', '*', '!', '|', '>', '-', '@', '`']) {
            return Err(format!(
                "line {line}: unsupported YAML `{s}` (mappings of names only)"
            ));
        }
        Ok(s.to_string())
    };
    // Stack of (indent, map) being filled; the key awaiting a nested map.
    let mut stack: Vec<(usize, Map<String, Value>, Option<String>)> = vec![(0, Map::new(), None)];
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let body = match raw.find(" #") {
            Some(i) => &raw[..i],
            None => raw,
        };
        if body.trim().is_empty() || body.trim_start().starts_with('#') || body.trim() == "---" {
            continue;
        }
        if body.contains('\t') {
            return Err(format!(
                "line {line}: tabs are not allowed in YAML indentation"
            ));
        }
        let indent = body.len() - body.trim_start().len();
        let (k, v) = body
            .trim()
            .split_once(": ")
            .or_else(|| body.trim().strip_suffix(':').map(|k| (k, "")))
            .ok_or_else(|| format!("line {line}: expected `key: value`"))?;
        let k = scalar(k, line)?;
        // Open a nested map under the pending key, or close finished ones.
        let top = stack.last().unwrap();
        if top.2.is_some() && indent > top.0 {
            stack.push((indent, Map::new(), None));
        } else {
            while stack.len() > 1 && indent < stack.last().unwrap().0 {
                let (_, m, _) = stack.pop().unwrap();
                let parent = stack.last_mut().unwrap();
                let key = parent.2.take().unwrap();
                parent.1.insert(key, Value::Object(m));
            }
            let top = stack.last_mut().unwrap();
            if indent != top.0 {
                return Err(format!("line {line}: inconsistent indentation"));
            }
            if let Some(p) = top.2.take() {
                return Err(format!("line {line}: `{p}` has no value"));
            }
        }
        let top = stack.last_mut().unwrap();
        if v.trim().is_empty() {
            top.2 = Some(k);
        } else {
            top.1.insert(k, Value::String(scalar(v, line)?));
        }
    }
    while stack.len() > 1 {
        let (_, m, _) = stack.pop().unwrap();
        let parent = stack.last_mut().unwrap();
        let key = parent.2.take().unwrap();
        parent.1.insert(key, Value::Object(m));
    }
    let (_, m, pending) = stack.pop().unwrap();
    if let Some(p) = pending {
        return Err(format!("`{p}` has no value"));
    }
    Ok(Value::Object(m))
}

/// Shapes are comparable when they hold the same elements up to size-1 dimensions.
pub fn shapes_compatible(a: &[usize], b: &[usize]) -> bool {
    let sq = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    sq(a) == sq(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeezed_shapes() {
        assert!(shapes_compatible(&[1, 32, 64], &[32, 64]));
        assert!(shapes_compatible(&[], &[1]));
        assert!(!shapes_compatible(&[32, 64], &[64, 32]));
    }

    fn entry(place: &str, rest: &str) -> Entry {
        Entry {
            name: format!("{place}.{rest}").into(),
            place: place.into(),
            role: Role::from_key(rest.split('.').next().unwrap()),
            index: "0".into(),
            order: 0,
            op_type: None,
            dtype: None,
            shape: None,
            stats: None,
            checksum: None,
            source: crate::dump::Source::Absent("test".into()),
        }
    }

    #[test]
    fn strips_call_counters_but_not_module_indices() {
        assert_eq!(
            strip_counter("Functional.linear.3.forward"),
            "Functional.linear.forward"
        );
        assert_eq!(
            strip_counter("Module.layers.0.mlp.MLP.forward.2"),
            "Module.layers.0.mlp.MLP.forward"
        );
        assert_eq!(strip_counter("model.layers.0"), "model.layers.0");
        assert_eq!(strip_counter("torch.Tensor.sub.1"), "torch.Tensor.sub");
        assert_eq!(strip_counter("torch.tanh"), "torch.tanh");
    }

    #[test]
    fn fuzzy_pairs_in_order_per_api_and_mappings_rename() {
        let r = vec![
            entry("Functional.linear.0.forward", "output.0"),
            entry("Functional.silu.0.forward", "output.0"),
            entry("Functional.linear.1.forward", "output.0"),
            entry("Module.net.attention.Attention.forward.0", "output.0"),
            entry("Torch.matmul.0.forward", "output.0"),
            entry("Module.module.net.attention.Attention.forward.0", "input.0"),
        ];
        let mut d = vec![
            entry("Functional.linear.5.forward", "output.0"),
            entry("Functional.silu.7.forward", "output.0"),
            entry("Functional.linear.6.forward", "output.0"),
            entry("Cell.net.attn.Attention.forward.0", "output.0"),
            entry("Cell.net.Net.forward.0", "output.0"),
            entry("NPU.npu_fusion_matmul.0.forward", "output.0"),
            entry(
                "Cell.network_with_loss.net.attn.Attention.forward.0",
                "input.0",
            ),
            entry("Cell.network_with_loss.net.Net.forward.0", "output.0"),
        ];
        let mut o = MappingOptions {
            fuzzy: true,
            ..Default::default()
        };
        o.data_mapping.insert(
            "NPU.npu_fusion_matmul.0.forward".into(),
            "Torch.matmul.0.forward".into(),
        );
        o.layer_mapping.insert(
            "Net".into(),
            [("attn".to_string(), "attention".to_string())].into(),
        );
        o.layer_mapping.insert(
            "TopLayer".into(),
            [("network_with_loss".to_string(), "module".to_string())].into(),
        );
        let m = remap(&r, &mut d, &o);
        let names: Vec<&str> = d.iter().map(|e| &*e.name).collect();
        assert_eq!(names[0], "Functional.linear.0.forward.output.0");
        assert_eq!(names[1], "Functional.silu.0.forward.output.0");
        assert_eq!(names[2], "Functional.linear.1.forward.output.0");
        assert_eq!(
            names[3],
            "Module.net.attention.Attention.forward.0.output.0"
        );
        assert_eq!(names[5], "Torch.matmul.0.forward.output.0");
        assert_eq!(
            names[6],
            "Module.module.net.attention.Attention.forward.0.input.0"
        );
        assert_eq!((m.mapped.len(), m.fuzzy.len()), (3, 3));
        let al = align_entries(&r, &d);
        assert_eq!(al.pairs.len(), 6);
        assert_eq!(al.unmatched_candidate, vec![4, 7]);
    }

    #[test]
    fn fused_ops_meet_the_boundary_places_and_cover_the_rest() {
        let r = vec![
            entry("Functional.linear.0.forward", "input.0"),
            entry("Functional.linear.0.forward", "output.0"),
            entry("Functional.gelu.0.forward", "input.0"),
            entry("Functional.gelu.0.forward", "output.0"),
            entry("Functional.dropout.0.forward", "output.0"),
        ];
        let mut d = vec![
            entry("NPU.npu_linear_gelu.0.forward", "input.0"),
            entry("NPU.npu_linear_gelu.0.forward", "output.0"),
        ];
        let mut o = MappingOptions::default();
        o.fusion.insert(
            "NPU.npu_linear_gelu.0.forward".into(),
            vec![
                "Functional.linear.0.forward".into(),
                "Functional.gelu.0.forward".into(),
            ],
        );
        let m = remap(&r, &mut d, &o);
        assert_eq!(&*d[0].name, "Functional.linear.0.forward.input.0");
        assert_eq!(&*d[1].name, "Functional.gelu.0.forward.output.0");
        assert_eq!(
            m.fused,
            vec![
                "Functional.linear.0.forward.output.0",
                "Functional.gelu.0.forward.input.0"
            ]
        );
        assert_eq!(m.mapped.len(), 2);
    }

    #[test]
    fn yaml_subset_of_msprobe_mapping_files() {
        let v = parse_yaml_mapping(
            "# msprobe layer_mapping\nTopLayer:\n  network_with_loss: module\nEmbedding:\n  dropout: \"embedding_dropout\"  # why\nFlat: x\n",
        )
        .unwrap();
        assert_eq!(v["TopLayer"]["network_with_loss"], "module");
        assert_eq!(v["Embedding"]["dropout"], "embedding_dropout");
        assert_eq!(v["Flat"], "x");
        assert!(parse_yaml_mapping("a:\n  - b\n")
            .unwrap_err()
            .contains("line 2"));
        assert!(parse_yaml_mapping("a: b\n   c: d\n").is_err());
    }

    #[test]
    fn normalizes_mindspore_names() {
        assert_eq!(
            normalize("Cell.net.conv.Conv2d.forward.0.input.0"),
            "Module.net.conv.Conv2d.forward.0.input.0"
        );
    }
}
