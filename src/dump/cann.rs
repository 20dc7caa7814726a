//! CANN offline dump files (graph mode, ATC-compiled OM models): one binary file per op
//! execution, `{op type}.{op name}.{task id}.{stream id}.{timestamp}`, holding a u64
//! little-endian header length, a protobuf `DumpData` header (op name, and per input/output
//! its dtype, format, stored and logical shapes, byte size), then the raw data of every input
//! and then every output. The schema is vendored as `dump_data.proto` next to this file and
//! written below as prost structs (no protoc at build time). Tensors in NPU private layouts are
//! converted to their logical shape (`ascend_layout`).

use super::ascend_layout::{self, NpuFormat};
use super::error::{err, DumpError, ErrorKind, Result};
use super::tensor::{checked_numel, map_file, Bytes, Tensor};
use super::{DType, Dump, Entry, Format, OpenOptions, Role, Source, Task};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Largest header accepted (op headers are a few KB).
const MAX_HEADER: u64 = 64 << 20;

/// `Shape` (dump_data.proto).
#[derive(Clone, PartialEq, Message)]
pub struct Shape {
    /// Dimensions.
    #[prost(uint64, repeated, tag = "1")]
    pub dim: Vec<u64>,
}

/// `OriginalOp` (dump_data.proto): the framework op a fused output stands for.
#[derive(Clone, PartialEq, Message)]
pub struct OriginalOp {
    /// Original op name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its output index.
    #[prost(uint32, tag = "2")]
    pub output_index: u32,
    /// Its data type.
    #[prost(int32, tag = "3")]
    pub data_type: i32,
    /// Its format.
    #[prost(int32, tag = "4")]
    pub format: i32,
}

/// `OpOutput` (dump_data.proto).
#[derive(Clone, PartialEq, Message)]
pub struct OpOutput {
    /// `OutputDataType`.
    #[prost(int32, tag = "1")]
    pub data_type: i32,
    /// `OutputFormat` (aclFormat codes).
    #[prost(int32, tag = "2")]
    pub format: i32,
    /// Stored shape.
    #[prost(message, optional, tag = "3")]
    pub shape: Option<Shape>,
    /// Original op.
    #[prost(message, optional, tag = "4")]
    pub original_op: Option<OriginalOp>,
    /// Inline data (old files).
    #[prost(bytes = "vec", tag = "5")]
    pub data: Vec<u8>,
    /// Bytes in the data segment.
    #[prost(uint64, tag = "6")]
    pub size: u64,
    /// Logical shape.
    #[prost(message, optional, tag = "7")]
    pub original_shape: Option<Shape>,
    /// Sub-format.
    #[prost(int32, tag = "8")]
    pub sub_format: i32,
}

/// `OpInput` (dump_data.proto).
#[derive(Clone, PartialEq, Message)]
pub struct OpInput {
    /// `OutputDataType`.
    #[prost(int32, tag = "1")]
    pub data_type: i32,
    /// `OutputFormat` (aclFormat codes).
    #[prost(int32, tag = "2")]
    pub format: i32,
    /// Stored shape.
    #[prost(message, optional, tag = "3")]
    pub shape: Option<Shape>,
    /// Inline data (old files).
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
    /// Bytes in the data segment.
    #[prost(uint64, tag = "5")]
    pub size: u64,
    /// Logical shape.
    #[prost(message, optional, tag = "6")]
    pub original_shape: Option<Shape>,
    /// Sub-format.
    #[prost(int32, tag = "7")]
    pub sub_format: i32,
}

/// `DumpData` (dump_data.proto): the header.
#[derive(Clone, PartialEq, Message)]
pub struct DumpData {
    /// Dump format version.
    #[prost(string, tag = "1")]
    pub version: String,
    /// Microseconds since the epoch.
    #[prost(uint64, tag = "2")]
    pub dump_time: u64,
    /// Outputs.
    #[prost(message, repeated, tag = "3")]
    pub output: Vec<OpOutput>,
    /// Inputs.
    #[prost(message, repeated, tag = "4")]
    pub input: Vec<OpInput>,
    /// Op name.
    #[prost(string, tag = "6")]
    pub op_name: String,
}

/// Where a CANN tensor's bytes are and how they are laid out.
#[derive(Clone, Debug)]
pub struct CannTensor {
    /// The dump file.
    pub file: PathBuf,
    /// First byte in the file.
    pub offset: u64,
    /// Byte count.
    pub len: u64,
    /// Stored layout (aclFormat code).
    pub format: i64,
}

/// The dtype of an `OutputDataType` code.
pub fn dtype(code: i32) -> Option<DType> {
    Some(match code {
        1 => DType::Float32,
        2 => DType::Float16,
        3 => DType::Int8,
        4 => DType::Uint8,
        5 => DType::Int16,
        7 => DType::Int32,
        8 => DType::Int64,
        11 => DType::Bool,
        12 => DType::Float64,
        27 => DType::Bfloat16,
        _ => return None,
    })
}

/// Reads a file's header: `(header, data segment start)`.
pub fn read_header(path: &Path) -> Result<(DumpData, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| DumpError::new(path, e.into()))?;
    let size = f
        .metadata()
        .map_err(|e| DumpError::new(path, e.into()))?
        .len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| DumpError::new(path, ErrorKind::Truncated("no CANN header length".into())))?;
    let h = u64::from_le_bytes(len);
    if h > MAX_HEADER || h.checked_add(8).is_none_or(|e| e > size) {
        return err(
            path,
            ErrorKind::Header(format!(
                "CANN header length {h} does not fit a {size}-byte file"
            )),
        );
    }
    let mut buf = vec![0u8; h as usize];
    f.read_exact(&mut buf)
        .map_err(|e| DumpError::new(path, e.into()))?;
    let d = DumpData::decode(&buf[..])
        .map_err(|e| DumpError::new(path, ErrorKind::Header(format!("CANN header: {e}"))))?;
    if d.op_name.is_empty() {
        return err(
            path,
            ErrorKind::Header("CANN header without op name".into()),
        );
    }
    Ok((d, 8 + h))
}

/// True when `path` is a file that parses as a CANN dump file.
pub fn is_cann_file(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    !matches!(
        ext,
        "npy" | "npz" | "json" | "pt" | "safetensors" | "csv" | "txt"
    ) && read_header(path).is_ok()
}

/// msprobe's ordering key of a CANN dump file name (msaccucmp `dump_utils.SortMode`): the
/// timestamp, a 16-digit field, is the last field of `{op type}.{op name}.{task id}[.{stream
/// id}].{timestamp}` and the fifth of the longer names CANN writes for FFTS+ tasks,
/// `{op type}.{op name}.{task id}.{stream id}.{timestamp}.{task type}.{..}.{context id}.{thread
/// id}`. Files of one FFTS+ op then follow their thread id (automatic mode) or their slice
/// number (`..._lxsliceN`, manual mode). `None` when the name holds no valid timestamp.
pub fn order_key(p: &Path) -> Option<(u64, u64)> {
    let name = p.file_name()?.to_str()?;
    let f: Vec<&str> = name.split('.').collect();
    let ts = |s: &str| -> Option<u64> {
        (s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let n = f.len();
    if n > 5 {
        let t = ts(f[4])?;
        // Task type 4 is FFTS+ (msaccucmp `TASK_TYPE_MAP`).
        let sub = if f[n - 4] != "4" {
            0
        } else if name.contains("_lxslice") {
            f[1].chars()
                .last()
                .and_then(|c| c.to_digit(10))
                .map_or(0, u64::from)
        } else {
            f[n - 2].parse().unwrap_or(0)
        };
        Some((t, sub))
    } else if n >= 4 {
        Some((ts(f[n - 1])?, 0))
    } else {
        None
    }
}

/// Opens a CANN dump file or a folder of them (searched recursively).
pub fn open(path: &Path, options: &OpenOptions) -> Result<Dump> {
    let (root, files) = if path.is_file() {
        (
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            vec![path.to_path_buf()],
        )
    } else {
        let files: Vec<PathBuf> = super::walk(path, 8)
            .into_iter()
            .filter(|f| is_cann_file(f))
            .collect();
        (path.to_path_buf(), files)
    };
    if files.is_empty() {
        return err(path, ErrorKind::Layout("no CANN dump files".into()));
    }
    let mut ops = Vec::with_capacity(files.len());
    for f in files {
        let (h, data) = read_header(&f)?;
        ops.push((order_key(&f).unwrap_or((h.dump_time, 0)), f, h, data));
    }
    ops.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut entries = Vec::new();
    for (order, (_, file, h, data_start)) in ops.into_iter().enumerate() {
        let op_type = file
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
            .map(str::to_string);
        let fsize = std::fs::metadata(&file)
            .map_err(|e| DumpError::new(&file, e.into()))?
            .len();
        let mut offset = data_start;
        let tensors = h
            .input
            .iter()
            .map(|i| {
                (
                    "input",
                    i.data_type,
                    i.format,
                    &i.shape,
                    &i.original_shape,
                    &i.data,
                    i.size,
                )
            })
            .chain(h.output.iter().map(|o| {
                (
                    "output",
                    o.data_type,
                    o.format,
                    &o.shape,
                    &o.original_shape,
                    &o.data,
                    o.size,
                )
            }));
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (role, dt, fmt, shape, original, inline, size) in tensors {
            let k = index.entry(role).or_default();
            let i = *k;
            *k += 1;
            let dims = |s: &Option<Shape>| {
                s.as_ref()
                    .filter(|s| !s.dim.is_empty())
                    .map(|s| s.dim.iter().map(|&d| d as usize).collect::<Vec<_>>())
            };
            let private = NpuFormat::from_acl(fmt as i64)
                .map(|f| f.is_some_and(NpuFormat::is_private))
                .unwrap_or(true);
            // The logical shape: the original shape for private layouts, else the shape.
            let logical = if private {
                dims(original)
            } else {
                dims(shape).or_else(|| dims(original))
            };
            let name = format!("{}.{role}.{i}", h.op_name);
            let dtype = dtype(dt);
            let source = if inline.is_empty() {
                let end = offset.checked_add(size).filter(|&e| e <= fsize);
                let Some(end) = end else {
                    return err(
                        &file,
                        ErrorKind::Truncated(format!(
                            "{name}: {size} bytes at {offset} run past the end ({fsize} bytes)"
                        )),
                    );
                };
                let s = CannTensor {
                    file: file.clone(),
                    offset,
                    len: size,
                    format: fmt as i64,
                };
                offset = end;
                match (dtype, &logical) {
                    (None, _) => Source::Absent(format!("unsupported CANN data type {dt}").into()),
                    (_, None) => Source::Absent(
                        format!("format {fmt} without an original (logical) shape").into(),
                    ),
                    _ => Source::Cann(Box::new(s)),
                }
            } else {
                match (dtype, &logical) {
                    (Some(d), Some(l)) => Source::Mapped(Box::new(
                        to_tensor(&file, fmt as i64, d, l, Bytes::Owned(inline.clone()))
                            .map_err(|e| e.with_entry(&name))?,
                    )),
                    _ => Source::Absent(format!("unsupported CANN data type {dt} or shape").into()),
                }
            };
            entries.push(Entry {
                name: name.into(),
                place: h.op_name.as_str().into(),
                role: Role::from_key(role),
                index: i.to_string().into(),
                order,
                op_type: op_type.as_deref().map(Into::into),
                dtype,
                shape: logical.map(Into::into),
                stats: None,
                checksum: None,
                source,
            });
        }
    }
    Ok(Dump {
        path: path.to_path_buf(),
        root,
        format: Format::Cann,
        task: Task::Tensor,
        level: Some("op".into()),
        entries,
        stacks: HashMap::new(),
        run: None,
        options: options.clone(),
    })
}

/// A tensor of logical shape `logical` from bytes stored in format `format`.
fn to_tensor(
    path: &Path,
    format: i64,
    dtype: DType,
    logical: &[usize],
    bytes: Bytes,
) -> Result<Tensor> {
    let f =
        NpuFormat::from_acl(format).map_err(|m| DumpError::new(path, ErrorKind::Unsupported(m)))?;
    if let Some(f) = f.filter(|f| f.is_private()) {
        let data = ascend_layout::unpack(f, dtype, logical, &bytes)
            .map_err(|m| DumpError::new(path, ErrorKind::Header(m)))?;
        return Ok(Tensor {
            dtype,
            shape: logical.to_vec(),
            data: Bytes::Owned(data),
        });
    }
    let need = checked_numel(logical).and_then(|n| n.checked_mul(dtype.size()));
    if need != Some(bytes.len()) {
        return err(
            path,
            ErrorKind::Header(format!(
                "{} bytes do not hold shape {logical:?} of {}",
                bytes.len(),
                dtype.name()
            )),
        );
    }
    Ok(Tensor {
        dtype,
        shape: logical.to_vec(),
        data: bytes,
    })
}

/// Loads a CANN tensor (memory-mapped; copied only when its layout is converted).
pub fn load(t: &CannTensor, entry: &Entry) -> Result<Tensor> {
    let map = map_file(&t.file)?;
    let (start, len) = (t.offset as usize, t.len as usize);
    if start.checked_add(len).is_none_or(|e| e > map.len()) {
        return err(
            &t.file,
            ErrorKind::Truncated("tensor past the end of the file".into()),
        );
    }
    let (Some(dtype), Some(shape)) = (entry.dtype, &entry.shape) else {
        return err(&t.file, ErrorKind::Header("no dtype or shape".into()));
    };
    to_tensor(
        &t.file,
        t.format,
        dtype,
        shape,
        Bytes::Mapped { map, start, len },
    )
}
