//! Reading dumps: every layout driftscope understands becomes one [`Dump`], a list of
//! [`Entry`]s in execution order whose tensors are loaded on demand, memory-mapped.

pub mod ascend_layout;
pub mod cann;
pub mod decode;
mod dtype;
mod error;
mod guard;
mod json_tree;
pub mod msprobe;
pub mod native;
pub mod npy;
mod paths;
pub mod pickle;
pub mod pt;
pub mod safetensors;
mod tensor;
mod zipdir;

pub use dtype::DType;
pub use error::{DumpError, ErrorKind, Result};
pub use paths::resolve_inside;
pub use tensor::{checked_numel, is_c_contiguous, map_file, Bytes, Tensor};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A dump layout.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Huawei msprobe (`dump.json` + `dump_tensor_data/`).
    Msprobe,
    /// One `.safetensors` file.
    Safetensors,
    /// A folder of `.npy`/`.npz` files.
    Npy,
    /// driftscope's own layout (`driftscope.json`), written by `harness/`.
    Native,
    /// CANN offline dump files (graph mode, OM models; docs/ascend.md).
    Cann,
}

impl Format {
    /// Every layout, in the order `--format` lists them.
    pub const ALL: [Format; 5] = [
        Format::Msprobe,
        Format::Safetensors,
        Format::Npy,
        Format::Native,
        Format::Cann,
    ];

    /// The name `--format` and the JSON report use.
    pub fn name(self) -> &'static str {
        match self {
            Format::Msprobe => "msprobe",
            Format::Safetensors => "safetensors",
            Format::Npy => "npy",
            Format::Native => "native",
            Format::Cann => "cann",
        }
    }

    /// True when the layout lists tensors in execution order, so that a tensor can inherit
    /// error from the ones before it. A folder of arrays is only in name order.
    pub fn is_execution_ordered(self) -> bool {
        self != Format::Npy
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// A layout by [`Format::name`], in any case.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown dump format `{s}`"))
    }
}

/// What a dump recorded for each tensor.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Whole tensors.
    Tensor,
    /// Only statistics (max, min, mean, norm).
    Statistics,
    /// Only a checksum (msprobe's `md5` field, really a CRC-32).
    Md5,
}

/// Statistics a dump recorded for a tensor (msprobe's `Max`/`Min`/`Mean`/`Norm`), each absent
/// when the dump did not record it. JSON: `{"max", "min", "mean", "norm"}`, null when absent.
#[derive(Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StatsFields", into = "StatsFields")]
pub struct RecordedStats(OptionalQuad);

/// The JSON form of [`RecordedStats`].
#[derive(Clone, Copy, Serialize, Deserialize)]
struct StatsFields {
    max: Option<f64>,
    min: Option<f64>,
    mean: Option<f64>,
    norm: Option<f64>,
}

impl From<StatsFields> for RecordedStats {
    fn from(s: StatsFields) -> Self {
        RecordedStats::new(s.max, s.min, s.mean, s.norm)
    }
}

impl From<RecordedStats> for StatsFields {
    fn from(s: RecordedStats) -> Self {
        StatsFields {
            max: s.max(),
            min: s.min(),
            mean: s.mean(),
            norm: s.norm(),
        }
    }
}

impl std::fmt::Debug for RecordedStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedStats")
            .field("max", &self.max())
            .field("min", &self.min())
            .field("mean", &self.mean())
            .field("norm", &self.norm())
            .finish()
    }
}

impl RecordedStats {
    /// Statistics from what was recorded.
    pub fn new(max: Option<f64>, min: Option<f64>, mean: Option<f64>, norm: Option<f64>) -> Self {
        RecordedStats(OptionalQuad::new([max, min, mean, norm]))
    }

    /// Largest element.
    pub fn max(&self) -> Option<f64> {
        self.0.get(0)
    }

    /// Smallest element.
    pub fn min(&self) -> Option<f64> {
        self.0.get(1)
    }

    /// Mean.
    pub fn mean(&self) -> Option<f64> {
        self.0.get(2)
    }

    /// L2 norm.
    pub fn norm(&self) -> Option<f64> {
        self.0.get(3)
    }

    /// True when at least one statistic was recorded.
    pub fn any(&self) -> bool {
        self.0.any()
    }
}

/// Four optional floats in 40 bytes (four `Option<f64>` take 64, and `Option` of them 64
/// again; of this, 40): the values and a mask of which are present, whose high bit is always
/// set so that `Option<OptionalQuad>` needs no tag. A million-entry comparison holds five of
/// them per tensor (docs/performance.md, 1M-entry statistics dumps).
#[derive(Clone, Copy)]
pub struct OptionalQuad {
    values: [f64; 4],
    present: std::num::NonZeroU8,
}

impl OptionalQuad {
    const SET: u8 = 0x80;

    /// The four values.
    pub fn new(values: [Option<f64>; 4]) -> OptionalQuad {
        let mut q = OptionalQuad {
            values: [0.0; 4],
            present: std::num::NonZeroU8::MIN.saturating_add(Self::SET - 1),
        };
        let mut mask = Self::SET;
        for (i, v) in values.into_iter().enumerate() {
            if let Some(v) = v {
                q.values[i] = v;
                mask |= 1 << i;
            }
        }
        q.present = std::num::NonZeroU8::new(mask).unwrap_or(q.present);
        q
    }

    /// Value `i` (0..4), when present.
    pub fn get(&self, i: usize) -> Option<f64> {
        (self.present.get() & (1 << i) != 0).then(|| self.values[i])
    }

    /// All four.
    pub fn all(&self) -> [Option<f64>; 4] {
        [self.get(0), self.get(1), self.get(2), self.get(3)]
    }

    /// True when any is present.
    pub fn any(&self) -> bool {
        self.present.get() & !Self::SET != 0
    }
}

impl Default for OptionalQuad {
    fn default() -> Self {
        OptionalQuad::new([None; 4])
    }
}

/// Equal when the same values are present and equal (NaN equals nothing, as `Option<f64>`).
impl PartialEq for OptionalQuad {
    fn eq(&self, other: &Self) -> bool {
        self.all() == other.all()
    }
}

/// Where an entry's elements are.
#[derive(Clone, Debug)]
pub enum Source {
    /// A `torch.save` file holding one tensor.
    Pt(PathBuf),
    /// An `.npy` file.
    Npy(PathBuf),
    /// Raw little-endian bytes (native layout).
    Raw(PathBuf),
    /// Already mapped (safetensors, npz members).
    Mapped(Box<Tensor>),
    /// A tensor in a CANN dump file.
    Cann(Box<cann::CannTensor>),
    /// Not saved (statistics or md5 task, or skipped), with the reason. Boxed variants and a
    /// static reason keep an entry of a statistics dump small (a million of them, docs/performance.md).
    Absent(std::borrow::Cow<'static, str>),
}

/// What a tensor is to its place. Every reader normalises its own spelling to one of these
/// (msprobe `input_args` -> `Input`, native `parameter` and msprobe `parameters` -> `Parameters`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A positional input.
    Input,
    /// A keyword argument.
    Kwargs,
    /// An output.
    Output,
    /// A module's parameter (weight, bias).
    Parameters,
    /// A parameter's gradient.
    ParametersGrad,
    /// A value saved on its own (msprobe's debug task, `msprobe.save`).
    Debug,
    /// Anything else a dump records.
    Other,
}

impl Role {
    /// The role a reader's key stands for (`input_args`, `parameter`, `grad`, ...).
    pub fn from_key(key: &str) -> Role {
        match key {
            "input" | "input_args" => Role::Input,
            "kwargs" | "input_kwargs" => Role::Kwargs,
            "output" => Role::Output,
            "parameters" | "parameter" => Role::Parameters,
            "parameters_grad" | "grad" => Role::ParametersGrad,
            "debug" => Role::Debug,
            _ => Role::Other,
        }
    }

    /// Lower-case name as written in reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Kwargs => "kwargs",
            Role::Output => "output",
            Role::Parameters => "parameters",
            Role::ParametersGrad => "parameters_grad",
            Role::Debug => "debug",
            Role::Other => "other",
        }
    }

    /// True for tensors that flow into a place (inputs, keyword arguments, parameters).
    pub fn is_input(self) -> bool {
        matches!(self, Role::Input | Role::Kwargs | Role::Parameters)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a dump.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Unique tensor name: `{place}.{role}.{index}` (msprobe: the file name without extension),
    /// the module path for plain dumps.
    pub name: Arc<str>,
    /// The call or module this tensor belongs to (`Functional.silu.1.forward`).
    pub place: Arc<str>,
    /// What the tensor is to its place.
    pub role: Role,
    /// Position within the role (`0`, `1.0`, `weight`).
    pub index: Arc<str>,
    /// Execution order of the place.
    pub order: usize,
    /// Operator or module class (`silu`, `linear`, `Conv2d`), when known.
    pub op_type: Option<Arc<str>>,
    /// Element type as recorded by the dump's metadata (or read from the file).
    pub dtype: Option<DType>,
    /// Shape as recorded.
    pub shape: Option<Arc<[usize]>>,
    /// Recorded statistics.
    pub stats: Option<RecordedStats>,
    /// Recorded checksum (8 hex digits).
    pub checksum: Option<Box<str>>,
    /// Where the elements are.
    pub source: Source,
}

/// How to open a dump.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Force a layout instead of detecting it.
    pub format: Option<Format>,
    /// True dtype of `.npy` arrays numpy cannot name (bf16 saved as `<V2` or `<i2`, fp8).
    pub npy_dtype: Option<DType>,
    /// Follow symlinks that point outside the dump folder.
    pub allow_symlinks: bool,
    /// Read tensors as stored in an NPU private layout (`--layout`; see docs/ascend.md).
    pub layout: Option<ascend_layout::LayoutOverride>,
}

/// A dump: entries in execution order and the facts needed to load and describe them.
#[derive(Clone, Debug)]
pub struct Dump {
    /// The path the user gave.
    pub path: PathBuf,
    /// Folder that holds the dump's files (paths inside the dump resolve against it).
    pub root: PathBuf,
    /// Detected or forced layout.
    pub format: Format,
    /// What was recorded.
    pub task: Task,
    /// msprobe level (`L0`, `L1`, `mix`) or native level (`module`, `op`).
    pub level: Option<String>,
    /// Entries in execution order.
    pub entries: Vec<Entry>,
    /// First stack line of each place, when the dump has `stack.json`.
    pub stacks: HashMap<String, String>,
    /// Free-form run metadata (native manifest `run`, msprobe `run_info.json`).
    pub run: Option<serde_json::Value>,
    /// Options it was opened with.
    pub options: OpenOptions,
}

impl Dump {
    /// Points this dump's entry names and places at `other`'s where they are equal, entry by
    /// entry in order (two runs of one model list the same tensors in the same order), so the
    /// two dumps and the comparison rows hold one copy of each (docs/performance.md, 1M-entry
    /// dumps). Entries that do not line up keep their own copies.
    pub fn share_strings(&mut self, other: &Dump) {
        for (e, o) in self.entries.iter_mut().zip(&other.entries) {
            if e.name == o.name {
                e.name = o.name.clone();
            }
            if e.place == o.place {
                e.place = o.place.clone();
            }
        }
    }

    /// Opens the dump at `path`, detecting its layout unless `options.format` forces one.
    pub fn open(path: &Path, options: &OpenOptions) -> Result<Dump> {
        if !path.exists() {
            return Err(DumpError::new(
                path,
                ErrorKind::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or folder",
                )),
            ));
        }
        let format = match options.format {
            Some(f) => f,
            None => detect(path)?,
        };
        let mut dump = match format {
            Format::Msprobe => msprobe::open(path, options)?,
            Format::Native => native::open(path, options)?,
            Format::Safetensors => open_safetensors(path)?,
            Format::Npy => open_npy_dir(path, options)?,
            Format::Cann => cann::open(path, options)?,
        };
        dump.options = options.clone();
        // The list grew by doubling: up to half of it spare (~30% of a 100k-entry run's memory).
        dump.entries.shrink_to_fit();
        Ok(dump)
    }

    /// Loads an entry's tensor (memory-mapped where possible). Errors name the entry.
    pub fn load(&self, entry: &Entry) -> Result<Tensor> {
        self.load_as(entry, None)
    }

    /// [`Dump::load`], with the logical shape of the tensor's counterpart: an `.npy` that
    /// records no shape of its own (a plain folder) and that `--layout` says is stored in a
    /// private layout is converted to it. An array already of that shape is read as it is.
    pub fn load_as(&self, entry: &Entry, counterpart: Option<&[usize]>) -> Result<Tensor> {
        let force = self
            .options
            .layout
            .as_ref()
            .and_then(|l| l.for_tensor(&entry.name));
        let t = match &entry.source {
            Source::Pt(p) => pt::read_single_with(p, force).map(|t| t.tensor),
            Source::Npy(p) => {
                npy::read_npy(p, self.options.npy_dtype.or(entry.dtype)).and_then(|t| {
                    let logical = entry
                        .shape
                        .as_deref()
                        .or_else(|| counterpart.filter(|c| *c != t.shape.as_slice()));
                    match (force, logical) {
                        (Some(f), Some(shape)) if f.fits_rank(shape.len()) => {
                            ascend_layout::unpack(f, t.dtype, shape, &t.data)
                                .map(|data| Tensor {
                                    dtype: t.dtype,
                                    shape: shape.to_vec(),
                                    data: Bytes::Owned(data),
                                })
                                .map_err(|m| DumpError::new(p, ErrorKind::Header(m)))
                        }
                        _ => Ok(t),
                    }
                })
            }
            Source::Raw(p) => native::read_raw(p, entry),
            Source::Mapped(t) => Ok((**t).clone()),
            Source::Cann(c) => cann::load(c, entry),
            Source::Absent(why) => Err(DumpError::new(
                &self.root,
                ErrorKind::Unsupported(format!("tensor not saved: {why}")),
            )),
        }
        .map_err(|e| e.with_entry(&*entry.name))?;
        if let Some(shape) = &entry.shape {
            if checked_numel(shape) != Some(t.numel()) {
                return Err(DumpError::new(
                    &self.root,
                    ErrorKind::Header(format!(
                        "file holds shape {:?} but the dump records {shape:?}",
                        t.shape
                    )),
                )
                .with_entry(&*entry.name));
            }
        }
        Ok(t)
    }

    /// Number of distinct places (calls or modules).
    pub fn place_count(&self) -> usize {
        let mut n = 0;
        let mut last = None;
        for e in &self.entries {
            if last != Some(&e.place) {
                n += 1;
                last = Some(&e.place);
            }
        }
        n
    }
}

/// Detects the layout at `path` (see docs/formats.md).
pub fn detect(path: &Path) -> Result<Format> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if path.is_file() {
        return match name {
            "driftscope.json" => Ok(Format::Native),
            "dump.json" | "debug.json" => Ok(Format::Msprobe),
            n if n.ends_with(".safetensors") => Ok(Format::Safetensors),
            n if n.ends_with(".npy") || n.ends_with(".npz") => Ok(Format::Npy),
            _ if cann::is_cann_file(path) => Ok(Format::Cann),
            _ => Err(DumpError::new(
                path,
                ErrorKind::Layout("expected a dump folder, dump.json, debug.json, driftscope.json, .safetensors, .npy or .npz".into()),
            )),
        };
    }
    if path.join("driftscope.json").is_file() {
        return Ok(Format::Native);
    }
    if path.join("dump.json").is_file()
        || path.join("debug.json").is_file()
        || !msprobe::find_dump_jsons(path, 4).is_empty()
    {
        return Ok(Format::Msprobe);
    }
    let mut st = 0;
    let mut np = 0;
    for f in walk(path, 6) {
        match f.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => st += 1,
            Some("npy") | Some("npz") => np += 1,
            _ => {}
        }
    }
    match (st, np) {
        (1, 0) => Ok(Format::Safetensors),
        (0, n) if n > 0 => Ok(Format::Npy),
        (s, n) if s > 1 || (s > 0 && n > 0) => Err(DumpError::new(
            path,
            ErrorKind::Layout(format!(
                "{s} .safetensors and {n} .npy/.npz files: point at one file or use --format"
            )),
        )),
        _ if walk(path, 8).iter().any(|f| cann::is_cann_file(f)) => Ok(Format::Cann),
        _ => Err(DumpError::new(
            path,
            ErrorKind::Layout(
                "no dump.json, driftscope.json, .safetensors, .npy, .npz or CANN dump file found"
                    .into(),
            ),
        )),
    }
}

/// Files under `dir` (recursively, at most `depth` levels, symlinks not followed), sorted.
fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, k)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && k < depth {
                stack.push((e.path(), k + 1));
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn open_safetensors(path: &Path) -> Result<Dump> {
    let file = if path.is_file() {
        path.to_path_buf()
    } else {
        walk(path, 6)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .ok_or_else(|| DumpError::new(path, ErrorKind::Layout("no .safetensors file".into())))?
    };
    let tensors = safetensors::read(&file)?;
    let entries = tensors
        .into_iter()
        .enumerate()
        .map(|(order, t)| Entry {
            place: t.name.as_str().into(),
            role: Role::Output,
            index: "0".into(),
            order,
            op_type: None,
            dtype: Some(t.tensor.dtype),
            shape: Some(t.tensor.shape.as_slice().into()),
            stats: None,
            checksum: None,
            name: t.name.into(),
            source: Source::Mapped(Box::new(t.tensor)),
        })
        .collect();
    Ok(Dump {
        path: path.to_path_buf(),
        root: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
        format: Format::Safetensors,
        task: Task::Tensor,
        level: None,
        entries,
        stacks: HashMap::new(),
        run: read_run_info(file.parent()),
        options: OpenOptions::default(),
    })
}

fn open_npy_dir(path: &Path, options: &OpenOptions) -> Result<Dump> {
    let (root, files) = if path.is_file() {
        (
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            vec![path.to_path_buf()],
        )
    } else {
        (path.to_path_buf(), walk(path, 16))
    };
    let mut entries = Vec::new();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "npy" && ext != "npz" {
            continue;
        }
        let rel = f.strip_prefix(&root).unwrap_or(&f).with_extension("");
        let stem = rel.to_string_lossy().replace('\\', "/");
        let mk = |name: String, source: Source, t: Option<&Tensor>| Entry {
            place: name.as_str().into(),
            role: Role::Output,
            index: "0".into(),
            order: 0,
            op_type: None,
            dtype: t.map(|t| t.dtype),
            shape: t.map(|t| t.shape.as_slice().into()),
            stats: None,
            checksum: None,
            name: name.into(),
            source,
        };
        if ext == "npy" {
            entries.push(mk(stem, Source::Npy(f), None));
        } else {
            for (member, t) in npy::read_npz(&f, options.npy_dtype)? {
                entries.push(mk(
                    format!("{stem}/{member}"),
                    Source::Mapped(Box::new(t.clone())),
                    Some(&t),
                ));
            }
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, e) in entries.iter_mut().enumerate() {
        e.order = i;
    }
    Ok(Dump {
        path: path.to_path_buf(),
        run: read_run_info(Some(&root)),
        root,
        format: Format::Npy,
        task: Task::Tensor,
        level: None,
        entries,
        stacks: HashMap::new(),
        options: OpenOptions::default(),
    })
}

/// `run_info.json` next to a dump (as the h200 fixtures have), when present and valid.
fn read_run_info(dir: Option<&Path>) -> Option<serde_json::Value> {
    let dir = dir?;
    for d in [dir.to_path_buf(), dir.join("..")] {
        if let Ok(b) = std::fs::read(d.join("run_info.json")) {
            return serde_json::from_slice(&b).ok();
        }
    }
    None
}
