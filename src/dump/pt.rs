//! PyTorch `torch.save` files, read without Python or libtorch.
//!
//! Zip format (torch >= 1.6): `<archive>/data.pkl` plus one uncompressed zip entry per storage,
//! `<archive>/data/<key>`, which is sliced straight out of the memory map. Legacy format: four
//! pickles (magic, protocol, sys info, the object), a pickled list of storage keys, then each
//! storage as `u64 numel` followed by its raw bytes.

use super::ascend_layout::NpuFormat;
use super::error::{err, DumpError, ErrorKind, Result};
use super::pickle::{self, PersistentIds, TensorRef, Value};
use super::tensor::{map_file, Bytes, Tensor};
use super::zipdir;
use super::zipdir::ZipEntry;
use memmap2::Mmap;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;

/// Largest `data.pkl` accepted: tensor pickles are a few hundred bytes, state dicts a few MB.
const MAX_PICKLE_BYTES: u64 = 64 << 20;
/// Magic number that opens a legacy torch.save file (0x1950a86a20f9469cfc6c, pickled as a
/// 10-byte little-endian int).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// A tensor read from a `.pt` file, with the device string recorded for its storage.
#[derive(Debug, Clone)]
pub struct PtTensor {
    /// Key path inside the saved object (`""` for a bare tensor, `"weight"` in a state dict).
    pub key: String,
    /// The tensor.
    pub tensor: Tensor,
    /// Storage location when saved (`cpu`, `cuda:0`, `npu:0`).
    pub location: String,
    /// NPU storage-format code, when the tensor was saved by torch_npu with one.
    pub npu_format: Option<i64>,
}

/// Reads every tensor of a `torch.save` file: a bare tensor (msprobe writes one per file), or a
/// dict/list of tensors (named by their key path).
pub fn read(path: &Path) -> Result<Vec<PtTensor>> {
    read_with(path, None)
}

/// [`read`], with tensors stored in the NPU private layout `force` (`--layout`) converted to
/// their logical layout (those whose rank the layout fits). torch_npu's own `npu_format` code
/// is not a reason to convert: torch_npu writes the storage in ND order and casts it back to
/// that format on load (docs/ascend.md).
pub fn read_with(path: &Path, force: Option<NpuFormat>) -> Result<Vec<PtTensor>> {
    // Small files (msprobe's op-level dumps: 100k files of a few KiB) are read into a
    // per-thread buffer: mmap + munmap cost two syscalls, page faults and a TLB shootdown per
    // file. A first read shorter than asked ends a regular file, so most take no `stat` (a
    // quarter of the system calls per file); one that fills it is measured, and read on when
    // it is still small. Torch zips in the usual shape are indexed by `zipdir`, whose central
    // directory sits at the end, so a file cut short cannot pass for whole; anything else
    // (legacy files, zip64, compressed or odd archives, larger files) takes the mapped path
    // below. So do folders, devices and read failures, which that path reports as it always
    // did.
    let mut file = File::open(path).map_err(|e| DumpError::new(path, e.into()))?;
    let done = SMALL_BUF.with(|cell| -> Result<Option<Vec<PtTensor>>> {
        let mut buf = cell.borrow_mut();
        // One byte more than the largest small file: a full buffer means a larger file.
        buf.resize(SMALL_FILE_BYTES as usize + 1, 0);
        let Some(mut len) = read_short(&mut file, &mut buf[..FIRST_READ + 1]) else {
            return Ok(None);
        };
        if len > FIRST_READ {
            let small = file
                .metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= SMALL_FILE_BYTES);
            if !small {
                return Ok(None);
            }
            let Some(rest) = read_short(&mut file, &mut buf[len..]) else {
                return Ok(None);
            };
            len += rest;
        }
        let buf = &buf[..len];
        if len > SMALL_FILE_BYTES as usize || !buf.starts_with(b"PK\x03\x04") {
            return Ok(None);
        }
        match zipdir::index(buf) {
            Some(entries) => read_zip_entries(path, buf, &entries, force, &mut |s, n| {
                Ok(Bytes::Owned(buf[s..s + n].to_vec()))
            })
            .map(Some),
            None => Ok(None),
        }
    })?;
    if let Some(v) = done {
        return Ok(v);
    }
    drop(file);
    let map = map_file(path)?;
    if map.len() >= 4 && &map[..4] == b"PK\x03\x04" {
        read_zip(path, map, force)
    } else if map.len() >= 2 && map[0] == 0x80 {
        read_legacy(path, map, force)
    } else {
        err(
            path,
            ErrorKind::Zip("neither a torch.save zip nor a legacy torch.save file".into()),
        )
    }
}

/// Reads `file` into `buf` until a read comes back shorter than asked (the end of a regular
/// file) or `buf` is full: the bytes read. `None` on a read error.
fn read_short(file: &mut File, buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() {
        let asked = buf.len() - n;
        match file.read(&mut buf[n..]) {
            Ok(k) => {
                n += k;
                if k < asked {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(n)
}

/// Bytes of the first read of a file: a file that ends within it needs no `stat`.
const FIRST_READ: usize = 64 << 10;

/// Files up to this size are read into memory instead of mapped.
const SMALL_FILE_BYTES: u64 = 256 << 10;

thread_local! {
    /// Per-thread buffer for small files (reused: no allocation per file once warm).
    static SMALL_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads a file that must hold exactly one tensor (msprobe's layout).
pub fn read_single(path: &Path) -> Result<PtTensor> {
    read_single_with(path, None)
}

/// [`read_single`] with [`read_with`]'s layout conversion.
pub fn read_single_with(path: &Path, force: Option<NpuFormat>) -> Result<PtTensor> {
    let mut v = read_with(path, force)?;
    if v.len() != 1 {
        return err(
            path,
            ErrorKind::Unsupported(format!("expected one tensor, found {}", v.len())),
        );
    }
    Ok(v.remove(0))
}

fn zip_err(path: &Path, e: impl std::fmt::Display) -> DumpError {
    DumpError::new(path, ErrorKind::Zip(e.to_string()))
}

fn read_zip(path: &Path, map: Arc<Mmap>, force: Option<NpuFormat>) -> Result<Vec<PtTensor>> {
    let mut storage = |s: usize, n: usize| {
        Ok(Bytes::Mapped {
            map: map.clone(),
            start: s,
            len: n,
        })
    };
    if let Some(entries) = zipdir::index(&map) {
        return read_zip_entries(path, &map, &entries, force, &mut storage);
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(&map[..])).map_err(|e| zip_err(path, e))?;
    // Entries in archive order: (name, data start, size, stored?).
    let mut entries: Vec<ZipEntry<'_>> = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| zip_err(path, e))?;
        let name = f.name().map_err(|e| zip_err(path, e))?.to_string();
        let start = f
            .data_start()
            .ok_or_else(|| zip_err(path, format!("entry {name} has no data offset")))?;
        let stored = f.compression() == zip::CompressionMethod::Stored;
        entries.push(ZipEntry {
            name: name.into(),
            start,
            size: f.compressed_size(),
            stored,
        });
    }
    drop(zip);
    read_zip_entries(path, &map, &entries, force, &mut storage)
}

/// Entries by name; names are unique (the zip crate keys its entries by name, `zipdir`
/// refuses duplicates). Linear for the handful of entries a tensor file has.
struct Names<'e, 'a> {
    entries: &'e [ZipEntry<'a>],
    map: Option<HashMap<&'e str, usize>>,
}

impl<'e, 'a> Names<'e, 'a> {
    fn new(entries: &'e [ZipEntry<'a>]) -> Self {
        let map = (entries.len() > 16).then(|| {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| (&*e.name, i))
                .collect()
        });
        Names { entries, map }
    }
    fn get(&self, name: &str) -> Option<&'e ZipEntry<'a>> {
        match &self.map {
            Some(m) => m.get(name).map(|&i| &self.entries[i]),
            None => self.entries.iter().find(|e| e.name == name),
        }
    }
}

/// Reads the tensors of a torch.save zip whose entries are `entries`; `bytes` is the whole
/// file and `storage(start, len)` hands out a storage's bytes (bounds already checked).
fn read_zip_entries(
    path: &Path,
    bytes: &[u8],
    entries: &[ZipEntry<'_>],
    force: Option<NpuFormat>,
    storage: &mut dyn FnMut(usize, usize) -> Result<Bytes>,
) -> Result<Vec<PtTensor>> {
    let names = Names::new(entries);
    let pkl = entries
        .iter()
        .rev()
        .find(|e| e.name.ends_with("/data.pkl") || e.name == "data.pkl")
        .ok_or_else(|| zip_err(path, "no data.pkl entry: not a torch.save file"))?;
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    let mut key = String::with_capacity(prefix.len() + 16);
    key.push_str(prefix);
    key.push_str("byteorder");
    if let Some(e) = names.get(&key).filter(|e| e.stored) {
        let b = slice(path, bytes, e.start, e.size)?;
        if b != b"little" {
            return err(
                path,
                ErrorKind::Unsupported("big-endian torch.save file".into()),
            );
        }
    }
    if !pkl.stored || pkl.size > MAX_PICKLE_BYTES {
        return err(
            path,
            ErrorKind::Zip("data.pkl is compressed or too large".into()),
        );
    }
    let (root, _) = pickle::load(slice(path, bytes, pkl.start, pkl.size)?, PersistentIds::Zip)
        .map_err(|k| DumpError::new(path, k))?;
    let mut out = Vec::new();
    collect(
        path,
        &root,
        String::new(),
        force,
        &mut out,
        &mut |r: &TensorRef| {
            key.truncate(prefix.len());
            key.push_str("data/");
            key.push_str(&r.storage.key);
            let e = names.get(&key).ok_or_else(|| {
                DumpError::new(path, ErrorKind::Zip(format!("missing storage entry {key}")))
            })?;
            if !e.stored {
                return err(
                    path,
                    ErrorKind::Unsupported(format!("compressed storage {key}")),
                );
            }
            slice(path, bytes, e.start, e.size)?; // bounds check
            storage(e.start as usize, e.size as usize)
        },
    )?;
    Ok(out)
}

fn slice<'m>(path: &Path, map: &'m [u8], start: u64, len: u64) -> Result<&'m [u8]> {
    let end = start.checked_add(len).filter(|&e| e <= map.len() as u64);
    match end {
        Some(e) => Ok(&map[start as usize..e as usize]),
        None => err(
            path,
            ErrorKind::Truncated(format!(
                "zip entry at {start} of {len} bytes runs past the end of the file ({} bytes)",
                map.len()
            )),
        ),
    }
}

/// Walks the unpickled object, turning every tensor into a `PtTensor` named by its key path.
fn collect(
    path: &Path,
    v: &Value,
    key: String,
    force: Option<NpuFormat>,
    out: &mut Vec<PtTensor>,
    storage: &mut dyn FnMut(&TensorRef) -> Result<Bytes>,
) -> Result<()> {
    let join = |k: &str| {
        if key.is_empty() {
            k.to_string()
        } else {
            format!("{key}.{k}")
        }
    };
    match v {
        Value::Tensor(r) => {
            let bytes = storage(r)?;
            let item = r.storage.dtype.size();
            let declared = r.storage.numel.checked_mul(item as u64);
            if declared.is_none_or(|d| d > bytes.len() as u64) {
                return err(
                    path,
                    ErrorKind::Truncated(format!(
                        "storage {} declares {} elements but holds {} bytes",
                        r.storage.key,
                        r.storage.numel,
                        bytes.len()
                    )),
                );
            }
            // torch_npu saves NPU tensors in their logical (ND) layout and only records the
            // device format (`npu_format`) to restore it on load, so only `--layout` converts.
            if let Some(f) = force.filter(|f| f.is_private() && f.fits_rank(r.shape.len())) {
                let item = r.storage.dtype.size();
                let start = usize::try_from(r.offset)
                    .ok()
                    .and_then(|o| o.checked_mul(item))
                    .filter(|&s| s <= bytes.len())
                    .ok_or_else(|| DumpError::new(path, ErrorKind::Bounds("offset".into())))?;
                let data =
                    super::ascend_layout::unpack(f, r.storage.dtype, &r.shape, &bytes[start..])
                        .map_err(|m| DumpError::new(path, ErrorKind::Header(m)))?;
                out.push(PtTensor {
                    key,
                    tensor: Tensor {
                        dtype: r.storage.dtype,
                        shape: r.shape.clone(),
                        data: Bytes::Owned(data),
                    },
                    location: r.storage.location.clone(),
                    npu_format: r.npu_format,
                });
                return Ok(());
            }
            let tensor = Tensor::strided(
                path,
                r.storage.dtype,
                r.shape.clone(),
                &r.stride,
                usize::try_from(r.offset)
                    .map_err(|_| DumpError::new(path, ErrorKind::Bounds("offset".into())))?,
                bytes,
            )?;
            out.push(PtTensor {
                key,
                tensor,
                location: r.storage.location.clone(),
                npu_format: r.npu_format,
            });
        }
        Value::Dict(items) => {
            for (k, x) in items {
                let k = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                collect(path, x, join(&k), force, out, storage)?;
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, x) in items.iter().enumerate() {
                collect(path, x, join(&i.to_string()), force, out, storage)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn read_legacy(path: &Path, map: Arc<Mmap>, force: Option<NpuFormat>) -> Result<Vec<PtTensor>> {
    let pk = |k: ErrorKind| DumpError::new(path, k);
    let mut pos = 0usize;
    let next = |pos: &mut usize| -> Result<Value> {
        let (v, n) = pickle::load(&map[*pos..], PersistentIds::Legacy).map_err(pk)?;
        *pos += n;
        Ok(v)
    };
    match next(&mut pos)? {
        Value::BigInt(m) if m == LEGACY_MAGIC => {}
        _ => {
            return err(
                path,
                ErrorKind::Pickle("legacy file without torch's magic number".into()),
            )
        }
    }
    next(&mut pos)?; // protocol version
    next(&mut pos)?; // sys info
    let root = next(&mut pos)?;
    let keys = match next(&mut pos)? {
        Value::List(k) => k,
        _ => {
            return err(
                path,
                ErrorKind::Pickle("legacy storage key list missing".into()),
            )
        }
    };
    // Storages follow in key order: u64 numel, then numel * itemsize bytes. Their dtypes come
    // from the tensors that reference them.
    let mut dtypes: HashMap<String, super::DType> = HashMap::new();
    let mut refs = Vec::new();
    collect_refs(&root, &mut refs);
    for r in &refs {
        dtypes.insert(r.storage.key.clone(), r.storage.dtype);
    }
    let mut ranges: HashMap<String, (usize, usize)> = HashMap::new();
    for k in keys {
        let k = match k {
            Value::Str(s) => s,
            _ => {
                return err(
                    path,
                    ErrorKind::Pickle("legacy storage key is not a string".into()),
                )
            }
        };
        let item = dtypes.get(&k).map(|d| d.size()).unwrap_or(1);
        let hdr = slice(path, &map, pos as u64, 8)?;
        let numel = u64::from_le_bytes(hdr.try_into().unwrap());
        let len = numel
            .checked_mul(item as u64)
            .ok_or_else(|| pk(ErrorKind::Bounds("legacy storage size overflows".into())))?;
        slice(path, &map, pos as u64 + 8, len)?;
        ranges.insert(k, (pos + 8, len as usize));
        pos += 8 + len as usize;
    }
    let mut out = Vec::new();
    collect(
        path,
        &root,
        String::new(),
        force,
        &mut out,
        &mut |r: &TensorRef| {
            let &(s, n) = ranges.get(&r.storage.key).ok_or_else(|| {
                pk(ErrorKind::Truncated(format!(
                    "legacy storage {} missing",
                    r.storage.key
                )))
            })?;
            Ok(Bytes::Mapped {
                map: map.clone(),
                start: s,
                len: n,
            })
        },
    )?;
    Ok(out)
}

fn collect_refs(v: &Value, out: &mut Vec<TensorRef>) {
    match v {
        Value::Tensor(r) => out.push((**r).clone()),
        Value::Dict(items) => items.iter().for_each(|(_, x)| collect_refs(x, out)),
        Value::List(items) | Value::Tuple(items) => items.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// For the fuzz target `pt`: panics when the strict zip index disagrees with the `zip` crate
/// on `bytes` (it may decline a file, never describe it differently).
#[doc(hidden)]
pub fn zipdir_differential(bytes: &[u8]) {
    let Some(fast) = zipdir::index(bytes) else {
        return;
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .unwrap_or_else(|e| panic!("zipdir accepted what zip refuses: {e}"));
    assert_eq!(zip.len(), fast.len(), "entry count");
    for (i, e) in fast.iter().enumerate() {
        let f = zip
            .by_index_raw(i)
            .unwrap_or_else(|x| panic!("zip refuses entry {i}: {x}"));
        assert_eq!(f.name().unwrap(), e.name, "name of entry {i}");
        assert_eq!(f.data_start(), Some(e.start), "data start of {}", e.name);
        assert_eq!(f.compressed_size(), e.size, "size of {}", e.name);
        assert_eq!(
            f.compression() == zip::CompressionMethod::Stored,
            e.stored,
            "method of {}",
            e.name
        );
    }
}
