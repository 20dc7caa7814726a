//! driftscope's own layout (docs/formats.md): `driftscope.json` plus raw tensor files.

use super::error::{err, DumpError, ErrorKind, Result};
use super::paths::Resolver;
use super::tensor::{checked_numel, map_file, Tensor};
use super::{DType, Dump, Entry, Format, OpenOptions, RecordedStats, Role, Source, Task};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    run: Option<serde_json::Value>,
    entries: Vec<ManifestEntry>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    order: usize,
    place: String,
    #[serde(default)]
    op_type: Option<String>,
    role: String,
    index: String,
    name: String,
    dtype: String,
    shape: Vec<usize>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    nbytes: Option<u64>,
    #[serde(default)]
    skipped: Option<String>,
    #[serde(default)]
    stats: Option<Stats>,
}

#[derive(Deserialize)]
struct Stats {
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    norm: Option<f64>,
}

/// Opens a native dump (the folder holding `driftscope.json`, or the manifest itself).
pub fn open(path: &Path, options: &OpenOptions) -> Result<Dump> {
    let manifest_path = if path.is_file() {
        path.to_path_buf()
    } else {
        path.join("driftscope.json")
    };
    let root = manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let bytes =
        std::fs::read(&manifest_path).map_err(|e| DumpError::new(&manifest_path, e.into()))?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| DumpError::new(&manifest_path, ErrorKind::Json(e.to_string())))?;
    if m.format != "driftscope-native" || m.version != 1 {
        return err(
            &manifest_path,
            ErrorKind::Header(format!(
                "format `{}` version {}: expected driftscope-native version 1",
                m.format, m.version
            )),
        );
    }
    let files = Resolver::new(root.clone(), options.allow_symlinks);
    let mut seen = HashMap::with_capacity(m.entries.len());
    let mut entries = Vec::with_capacity(m.entries.len());
    for e in m.entries {
        let fail = |k: ErrorKind| DumpError::new(&manifest_path, k).with_entry(&e.name);
        if seen.insert(e.name.clone(), ()).is_some() {
            return Err(fail(ErrorKind::Header("duplicate entry name".into())));
        }
        let dtype =
            DType::parse(&e.dtype).ok_or_else(|| fail(ErrorKind::Dtype(e.dtype.clone())))?;
        let nbytes = checked_numel(&e.shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| fail(ErrorKind::Bounds(format!("shape {:?} overflows", e.shape))))?;
        if e.nbytes.is_some_and(|n| n != nbytes as u64) {
            return Err(fail(ErrorKind::Header(format!(
                "nbytes {} does not match shape {:?} of {dtype} ({nbytes})",
                e.nbytes.unwrap(),
                e.shape
            ))));
        }
        let source = match (&e.file, &e.skipped) {
            (Some(f), _) => Source::Raw(files.resolve(f).map_err(|x| x.with_entry(&e.name))?),
            (None, Some(why)) => Source::Absent(why.clone().into()),
            (None, None) => Source::Absent("no file recorded".into()),
        };
        entries.push(Entry {
            name: e.name.into(),
            place: e.place.into(),
            role: Role::from_key(&e.role),
            index: e.index.into(),
            order: e.order,
            op_type: e.op_type.map(Into::into),
            dtype: Some(dtype),
            shape: Some(e.shape.into()),
            stats: e
                .stats
                .map(|s| RecordedStats::new(s.max, s.min, s.mean, s.norm)),
            checksum: None,
            source,
        });
    }
    // Stable: entries of one place keep the manifest's role order.
    entries.sort_by_key(|e| e.order);
    Ok(Dump {
        path: path.to_path_buf(),
        root,
        format: Format::Native,
        task: Task::Tensor,
        level: m.level,
        entries,
        stacks: HashMap::new(),
        run: m.run,
        options: options.clone(),
    })
}

/// Maps a raw tensor file, checking its size against the manifest's dtype and shape.
pub fn read_raw(path: &Path, e: &Entry) -> Result<Tensor> {
    let (Some(dtype), Some(shape)) = (e.dtype, e.shape.as_deref().map(<[usize]>::to_vec)) else {
        return err(
            path,
            ErrorKind::Header("raw tensor without dtype and shape".into()),
        );
    };
    let map = map_file(path)?;
    let len = map.len();
    let need = checked_numel(&shape)
        .unwrap_or(usize::MAX)
        .saturating_mul(dtype.size());
    if len != need {
        return err(
            path,
            ErrorKind::Truncated(format!(
                "{len} bytes, but shape {shape:?} of {dtype} needs {need}"
            )),
        );
    }
    Tensor::contiguous(path, dtype, shape, map, 0, len)
}
