//! msprobe (Huawei `mindstudio-probe`) dumps: `dump.json` + `dump_tensor_data/`.

use super::error::{err, DumpError, ErrorKind, Result};
use super::paths::resolve_inside;
use super::{DType, Dump, Entry, Format, OpenOptions, RecordedStats, Source, Task};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Largest `dump.json` accepted (a 100k-entry LLM op-level dump is ~100 MB).
const MAX_DUMP_JSON: u64 = 4 << 30;

/// `dump.json` files under `dir`, at most `depth` folders down (step/rank/proc levels).
pub fn find_dump_jsons(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, k)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_file() && e.file_name() == "dump.json" {
                out.push(p);
            } else if ft.is_dir() && k < depth && e.file_name() != "dump_tensor_data" {
                stack.push((p, k + 1));
            }
        }
    }
    out.sort();
    out
}

/// Locates the one `dump.json` a path designates.
fn locate(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.join("dump.json").is_file() {
        return Ok(path.join("dump.json"));
    }
    let found = find_dump_jsons(path, 4);
    match found.len() {
        0 => err(
            path,
            ErrorKind::Layout("no dump.json below this folder".into()),
        ),
        1 => Ok(found.into_iter().next().unwrap()),
        n => err(
            path,
            ErrorKind::Layout(format!(
                "{n} dump.json files below this folder (steps or ranks): point at one of {}",
                found
                    .iter()
                    .take(4)
                    .map(|p| p.parent().unwrap_or(p).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
    }
}

/// Python's `json` writes NaN/Infinity as bare words, which JSON parsers refuse: quote them
/// (outside strings) so statistics of tensors holding NaN still load.
fn quote_nonfinite(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // One pass; the bare words are recognised by their first byte before any comparison.
    let mut out = Vec::with_capacity(b.len() + 64);
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
            out.push(c);
        } else if c == b'-' && b[i..].starts_with(b"-Infinity") {
            out.extend_from_slice(b"\"-Infinity\"");
            i += 8;
        } else if c == b'I' && b[i..].starts_with(b"Infinity") {
            out.extend_from_slice(b"\"Infinity\"");
            i += 7;
        } else if c == b'N' && b[i..].starts_with(b"NaN") {
            out.extend_from_slice(b"\"NaN\"");
            i += 2;
        } else {
            out.push(c);
        }
        i += 1;
    }
    if out.len() == b.len() {
        return std::borrow::Cow::Borrowed(b); // nothing was quoted
    }
    std::borrow::Cow::Owned(out)
}

/// Parses a `dump.json` as Python's `json` writes it (bare `NaN`/`Infinity` become strings).
pub fn parse_json(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(&quote_nonfinite(bytes))
}

/// A number as msprobe records it: a JSON number, or a string (`"NaN"`, `"inf"`, `"1e-3"`).
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

/// Operator or module class of a place name.
pub fn op_type(place: &str) -> Option<String> {
    let parts: Vec<&str> = place.split('.').collect();
    let n = parts.len();
    if matches!(parts.first(), Some(&"Module") | Some(&"Cell")) {
        if parts.last() == Some(&"parameters_grad") {
            // Module.{path}.{Class}.parameters_grad
            return (n >= 3).then(|| parts[n - 2].to_string());
        }
        // Module.{path}.{Class}.{forward|backward}.{call}
        (n >= 4).then(|| parts[n - 3].to_string())
    } else {
        // {Prefix}.{api}.{call}.{forward|backward}
        (n >= 4).then(|| parts[1..n - 2].join("."))
    }
}

/// Opens the msprobe dump designated by `path`.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Dump> {
    let json_path = locate(path)?;
    let root = json_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let md = std::fs::metadata(&json_path).map_err(|e| DumpError::new(&json_path, e.into()))?;
    if md.len() > MAX_DUMP_JSON {
        return err(
            &json_path,
            ErrorKind::Json("dump.json larger than 4 GiB".into()),
        );
    }
    let bytes = std::fs::read(&json_path).map_err(|e| DumpError::new(&json_path, e.into()))?;
    let doc: Value = parse_json(&bytes)
        .map_err(|e| DumpError::new(&json_path, ErrorKind::Json(e.to_string())))?;
    let data = doc
        .get("data")
        .and_then(|d| d.as_object())
        .ok_or_else(|| DumpError::new(&json_path, ErrorKind::Json("no `data` object".into())))?;
    let task_field = doc.get("task").and_then(|t| t.as_str()).unwrap_or("tensor");
    let data_dir = root.join("dump_tensor_data");
    let mut entries = Vec::new();
    let mut any_md5 = false;
    for (order, (place, rec)) in data.iter().enumerate() {
        let rec = rec.as_object().ok_or_else(|| {
            DumpError::new(&json_path, ErrorKind::Json("entry is not an object".into()))
                .with_entry(place)
        })?;
        let op = op_type(place);
        for (key, v) in rec {
            let role = match key.as_str() {
                "input_args" => "input",
                "input_kwargs" => "kwargs",
                k => k,
            };
            let mut ctx = Walk {
                json_path: &json_path,
                data_dir: &data_dir,
                place,
                role,
                order,
                op: &op,
                options,
                out: &mut entries,
                any_md5: &mut any_md5,
            };
            ctx.walk(v, String::new(), 0)?;
        }
    }
    let task = match task_field {
        "tensor" => Task::Tensor,
        _ if any_md5 => Task::Md5,
        _ => Task::Statistics,
    };
    Ok(Dump {
        path: path.to_path_buf(),
        root: root.clone(),
        format: Format::Msprobe,
        task,
        level: doc
            .get("level")
            .and_then(|l| l.as_str())
            .map(str::to_string),
        entries,
        stacks: read_stacks(&root),
        run: super::read_run_info(root.parent().and_then(Path::parent)),
        options: options.clone(),
    })
}

/// The raw `data` records of a `dump.json` (Python's NaN/Infinity quoted), keyed by place.
/// Entries skip non-tensor arguments (ints, floats, bools, dtypes); replay needs them.
pub fn raw_records(dump_json: &Path) -> Result<serde_json::Map<String, Value>> {
    let bytes = std::fs::read(dump_json).map_err(|e| DumpError::new(dump_json, e.into()))?;
    let doc: Value = serde_json::from_slice(&quote_nonfinite(&bytes))
        .map_err(|e| DumpError::new(dump_json, ErrorKind::Json(e.to_string())))?;
    match doc {
        Value::Object(mut o) => match o.remove("data") {
            Some(Value::Object(d)) => Ok(d),
            _ => err(dump_json, ErrorKind::Json("no `data` object".into())),
        },
        _ => err(dump_json, ErrorKind::Json("not an object".into())),
    }
}

/// The raw record of one place (`Functional.silu.1.forward`), `None` when the dump has none.
pub fn raw_record(dump_json: &Path, place: &str) -> Result<Option<Value>> {
    Ok(raw_records(dump_json)?.remove(place))
}

struct Walk<'a> {
    json_path: &'a Path,
    data_dir: &'a Path,
    place: &'a str,
    role: &'a str,
    order: usize,
    op: &'a Option<String>,
    options: &'a OpenOptions,
    out: &'a mut Vec<Entry>,
    any_md5: &'a mut bool,
}

impl Walk<'_> {
    fn walk(&mut self, v: &Value, index: String, depth: usize) -> Result<()> {
        if depth > 32 {
            return Err(DumpError::new(
                self.json_path,
                ErrorKind::Json("nested too deeply".into()),
            )
            .with_entry(self.place));
        }
        let sub = |i: &str| {
            if index.is_empty() {
                i.to_string()
            } else {
                format!("{index}.{i}")
            }
        };
        match v {
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    self.walk(x, sub(&i.to_string()), depth + 1)?;
                }
            }
            Value::Object(o) if o.contains_key("dtype") && o.contains_key("shape") => {
                self.tensor(o, if index.is_empty() { "0".into() } else { index })?;
            }
            Value::Object(o) if o.get("type").is_some() => {} // int, slice, dtype, ... : not tensors
            Value::Object(o) => {
                for (k, x) in o {
                    self.walk(x, sub(k), depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn tensor(&mut self, o: &serde_json::Map<String, Value>, index: String) -> Result<()> {
        let fallback = format!("{}.{}.{}", self.place, self.role, index);
        let bad = |m: String| {
            DumpError::new(self.json_path, ErrorKind::Json(m)).with_entry(fallback.clone())
        };
        let dtype_s = o.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let dtype = DType::parse(dtype_s);
        let shape: Option<Vec<usize>> = o.get("shape").and_then(|s| s.as_array()).and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect()
        });
        if shape.is_none() {
            return Err(bad("`shape` is not a list of sizes".into()));
        }
        let stats = RecordedStats {
            max: o.get("Max").and_then(json_f64),
            min: o.get("Min").and_then(json_f64),
            mean: o.get("Mean").and_then(json_f64),
            norm: o.get("Norm").and_then(json_f64),
        };
        let checksum = o.get("md5").and_then(|m| m.as_str()).map(str::to_string);
        *self.any_md5 |= checksum.is_some();
        let (name, source) = match o.get("data_name").and_then(|d| d.as_str()) {
            Some(dn) => {
                let file = resolve_inside(self.data_dir, dn, self.options.allow_symlinks)
                    .map_err(|e| e.with_entry(fallback.clone()))?;
                let (stem, src) = if let Some(s) = dn.strip_suffix(".pt") {
                    (s, Source::Pt(file))
                } else if let Some(s) = dn.strip_suffix(".npy") {
                    (s, Source::Npy(file))
                } else {
                    return Err(bad(format!("data_name `{dn}` is neither .pt nor .npy")));
                };
                (stem.to_string(), src)
            }
            None => (
                fallback.clone(),
                Source::Absent("statistics-only dump".into()),
            ),
        };
        if dtype.is_none() && matches!(source, Source::Pt(_) | Source::Npy(_)) {
            return Err(
                DumpError::new(self.json_path, ErrorKind::Dtype(dtype_s.to_string()))
                    .with_entry(name),
            );
        }
        self.out.push(Entry {
            name,
            place: self.place.to_string(),
            role: self.role.to_string(),
            index,
            order: self.order,
            op_type: self.op.clone(),
            dtype,
            shape,
            stats: Some(stats),
            checksum,
            source,
        });
        Ok(())
    }
}

/// First stack line per place from `stack.json` (`{id: [[places], [lines]]}`); a missing or
/// malformed file just means no stack lines.
fn read_stacks(root: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(b) = std::fs::read(root.join("stack.json")) else {
        return out;
    };
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&b) else {
        return out;
    };
    for (_, v) in m {
        let Some(a) = v.as_array() else { continue };
        let (Some(names), Some(lines)) = (
            a.first().and_then(|x| x.as_array()),
            a.get(1).and_then(|x| x.as_array()),
        ) else {
            continue;
        };
        let Some(line) = lines.first().and_then(|l| l.as_str()) else {
            continue;
        };
        let line = line.split(", \n").next().unwrap_or(line).trim().to_string();
        for n in names.iter().filter_map(|n| n.as_str()) {
            out.insert(n.to_string(), line.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_types() {
        assert_eq!(
            op_type("Functional.silu.1.forward").as_deref(),
            Some("silu")
        );
        assert_eq!(
            op_type("Tensor.__add__.0.forward").as_deref(),
            Some("__add__")
        );
        assert_eq!(
            op_type("Module.features.0.0.Conv2d.forward.0").as_deref(),
            Some("Conv2d")
        );
        assert_eq!(
            op_type("Module.features.0.Conv2d.backward.1").as_deref(),
            Some("Conv2d")
        );
        assert_eq!(
            op_type("Module.features.0.Conv2d.parameters_grad").as_deref(),
            Some("Conv2d")
        );
        assert_eq!(
            op_type("Functional.silu.1.backward").as_deref(),
            Some("silu")
        );
    }

    #[test]
    fn quotes_python_nonfinite_outside_strings() {
        let s = br#"{"a": NaN, "b": -Infinity, "c": "NaN here", "d": Infinity}"#;
        let v: Value = serde_json::from_slice(&quote_nonfinite(s)).unwrap();
        assert!(v.get("a").and_then(json_f64).unwrap().is_nan());
        assert_eq!(v.get("b").and_then(json_f64), Some(f64::NEG_INFINITY));
        assert_eq!(v["c"], "NaN here");
        assert_eq!(v.get("d").and_then(json_f64), Some(f64::INFINITY));
    }
}
