//! `.npy` and `.npz` files (numpy's formats). The data of an `.npy` is borrowed from the memory
//! map; Fortran-ordered arrays and deflated `.npz` members are copied once.

use super::dtype::DType;
use super::error::{err, DumpError, ErrorKind, Result};
use super::tensor::{checked_numel, map_file, Bytes, Tensor};
use std::io::{Cursor, Read};
use std::path::Path;

/// Largest header accepted (numpy itself caps headers at 64 KiB for version 1).
const MAX_HEADER: usize = 1 << 20;

/// Maps a numpy type string to a dtype. `<V2`/`<i2` may really be bf16 and `|V1` fp8: numpy
/// cannot say, so `hint` (from a manifest or `--npy-dtype`) overrides same-sized types.
fn dtype_of(descr: &str, hint: Option<DType>) -> std::result::Result<DType, ErrorKind> {
    let d = match descr {
        "<f8" => DType::Float64,
        "<f4" => DType::Float32,
        "<f2" => DType::Float16,
        "<i8" => DType::Int64,
        "<i4" => DType::Int32,
        "<i2" => DType::Int16,
        "|i1" | "<i1" => DType::Int8,
        "|u1" | "<u1" => DType::Uint8,
        "|b1" | "<b1" => DType::Bool,
        "<V2" | "|V2" => match hint {
            Some(h) if h.size() == 2 => h,
            _ => DType::Bfloat16, // ml_dtypes' bfloat16 is the only common 2-byte void type
        },
        "<V1" | "|V1" => match hint {
            Some(h) if h.size() == 1 => h,
            _ => {
                return Err(ErrorKind::Dtype(
                    "|V1 (fp8 from ml_dtypes): pass --npy-dtype float8_e4m3fn or float8_e5m2"
                        .into(),
                ))
            }
        },
        d if d.starts_with('>') => {
            return Err(ErrorKind::Unsupported(format!("big-endian array `{d}`")))
        }
        d => return Err(ErrorKind::Dtype(d.to_string())),
    };
    // Integer arrays of the right width are how people store bf16/fp8 bits (`.view(int16)`).
    Ok(match hint {
        Some(h)
            if h.size() == d.size() && matches!(d, DType::Int16 | DType::Int8 | DType::Uint8) =>
        {
            h
        }
        _ => d,
    })
}

/// A plain array's header is one dict literal holding one shape tuple. npyz's literal parser
/// backtracks exponentially on deeply nested brackets (found by fuzzing: 120 `{` took 45 s),
/// so anything with more than a dict, a tuple and a list is refused before it gets there.
fn check_header_shape(bytes: &[u8]) -> std::result::Result<(), ErrorKind> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(ErrorKind::Header(
            "not an .npy file (no \\x93NUMPY magic)".into(),
        ));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(ErrorKind::Header(format!("npy version {v}"))),
    };
    let text = &bytes[start..(start + len).min(bytes.len()).min(MAX_HEADER)];
    let opens = text
        .iter()
        .filter(|&&c| matches!(c, b'{' | b'(' | b'['))
        .count();
    if opens > 3 {
        return Err(ErrorKind::Header(format!(
            "npy header has {opens} brackets; a plain array's has 2"
        )));
    }
    Ok(())
}

/// Parses an `.npy` image held in `map[start..start+len]` (a file or a stored npz member).
fn parse(path: &Path, map: Bytes, hint: Option<DType>) -> std::result::Result<Tensor, ErrorKind> {
    let bytes: &[u8] = &map;
    check_header_shape(bytes)?;
    let mut reader = &bytes[..bytes.len().min(MAX_HEADER)];
    let header = npyz::NpyHeader::from_reader(&mut reader)
        .map_err(|e| ErrorKind::Header(format!("npy header: {e}")))?;
    let consumed = bytes.len().min(MAX_HEADER) - reader.len();
    let descr = match header.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => {
            return Err(ErrorKind::Dtype(format!(
                "structured array {}",
                other.descr()
            )))
        }
    };
    let dtype = dtype_of(&descr, hint)?;
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| ErrorKind::Bounds("dimension".into())))
        .collect::<std::result::Result<_, _>>()?;
    let numel = checked_numel(&shape)
        .ok_or_else(|| ErrorKind::Bounds(format!("shape {shape:?} overflows")))?;
    let len = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| ErrorKind::Bounds(format!("shape {shape:?} overflows")))?;
    if bytes.len() - consumed < len {
        return Err(ErrorKind::Truncated(format!(
            "{} data bytes for shape {shape:?} of {dtype}, {} present",
            len,
            bytes.len() - consumed
        )));
    }
    let data = match map {
        Bytes::Mapped { map, start, .. } => Bytes::Mapped {
            map,
            start: start + consumed,
            len,
        },
        Bytes::Owned(v) => Bytes::Owned(v[consumed..consumed + len].to_vec()),
    };
    if header.order() == npyz::Order::Fortran && shape.len() > 1 {
        // Fortran order is C order of the reversed shape; transpose by strides.
        let mut strides = vec![0i64; shape.len()];
        let mut s = 1i64;
        for (k, &d) in shape.iter().enumerate() {
            strides[k] = s;
            s = s.saturating_mul(d as i64);
        }
        return Tensor::strided(path, dtype, shape, &strides, 0, data).map_err(|e| e.kind);
    }
    Ok(Tensor { dtype, shape, data })
}

/// Reads one `.npy` file.
pub fn read_npy(path: &Path, hint: Option<DType>) -> Result<Tensor> {
    let map = map_file(path)?;
    let len = map.len();
    parse(path, Bytes::Mapped { map, start: 0, len }, hint).map_err(|k| DumpError::new(path, k))
}

/// Reads every array of an `.npz` file as `(member name without .npy, tensor)`.
pub fn read_npz(path: &Path, hint: Option<DType>) -> Result<Vec<(String, Tensor)>> {
    let map = map_file(path)?;
    let zerr = |e: zip::result::ZipError| DumpError::new(path, ErrorKind::Zip(e.to_string()));
    let mut zip = zip::ZipArchive::new(Cursor::new(&map[..])).map_err(zerr)?;
    let mut out = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(zerr)?;
        let name = f.name().map_err(zerr)?.to_string();
        let Some(stem) = name.strip_suffix(".npy") else {
            continue;
        };
        let bytes = if f.compression() == zip::CompressionMethod::Stored {
            let start = f.data_start().unwrap_or(0) as usize;
            let len = f.size() as usize;
            if start.checked_add(len).is_none_or(|e| e > map.len()) {
                return err(path, ErrorKind::Truncated(format!("npz member {name}")))
                    .map_err(|e: DumpError| e.with_entry(stem));
            }
            Bytes::Mapped {
                map: map.clone(),
                start,
                len,
            }
        } else {
            // Deflated: bounded by the declared size, itself bounded by a sane multiple of the
            // compressed size (a zip bomb declares tiny compressed data and a huge size).
            let declared = f.size();
            // The compressed size is itself a claim: never trust more than the file holds.
            let compressed = f.compressed_size().min(map.len() as u64);
            if declared > compressed.saturating_mul(1032).max(1 << 20) {
                return Err(DumpError::new(
                    path,
                    ErrorKind::Zip(format!("member {name} declares an implausible size")),
                )
                .with_entry(stem));
            }
            let mut v = Vec::with_capacity(declared as usize);
            (&mut f).take(declared).read_to_end(&mut v).map_err(|e| {
                DumpError::new(path, ErrorKind::Zip(e.to_string())).with_entry(stem)
            })?;
            Bytes::Owned(v)
        };
        let t = parse(path, bytes, hint).map_err(|k| DumpError::new(path, k).with_entry(stem))?;
        out.push((stem.to_string(), t));
    }
    Ok(out)
}
