//! `.safetensors` files: an 8-byte header length, a JSON header, then the tensors' bytes.
//! Validated before use (as the reference implementation does): offsets in bounds, sizes
//! matching shapes, no overlaps.

use super::dtype::DType;
use super::error::{err, ErrorKind, Result};
use super::tensor::{checked_numel, map_file, Tensor};
use std::path::Path;

/// Largest JSON header accepted.
const MAX_HEADER: u64 = 100 << 20;

/// A tensor of a safetensors file with its name.
pub struct Named {
    /// Tensor name in the header.
    pub name: String,
    /// The tensor, borrowed from the memory map.
    pub tensor: Tensor,
}

fn dtype(s: &str) -> Option<DType> {
    Some(match s {
        "F64" => DType::Float64,
        "F32" => DType::Float32,
        "F16" => DType::Float16,
        "BF16" => DType::Bfloat16,
        "F8_E4M3" => DType::Float8E4m3fn,
        "F8_E5M2" => DType::Float8E5m2,
        "I64" => DType::Int64,
        "I32" => DType::Int32,
        "I16" => DType::Int16,
        "I8" => DType::Int8,
        "U8" => DType::Uint8,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// Reads every tensor, in `__metadata__["order"]` when present, else in data order.
pub fn read(path: &Path) -> Result<Vec<Named>> {
    let map = map_file(path)?;
    let hdr = |m: String| super::DumpError::new(path, ErrorKind::Header(m));
    if map.len() < 8 {
        return err(
            path,
            ErrorKind::Truncated("shorter than the 8-byte header length".into()),
        );
    }
    let n = u64::from_le_bytes(map[..8].try_into().unwrap());
    if n > MAX_HEADER || 8 + n > map.len() as u64 {
        return err(
            path,
            ErrorKind::Truncated(format!("header of {n} bytes in a file of {}", map.len())),
        );
    }
    let data_start = 8 + n as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&map[8..data_start]).map_err(|e| hdr(e.to_string()))?;
    let data_len = map.len() - data_start;
    let mut order: Option<Vec<String>> = None;
    let mut items = Vec::with_capacity(header.len());
    for (name, v) in &header {
        if name == "__metadata__" {
            if let Some(o) = v.get("order").and_then(|o| o.as_str()) {
                order = Some(serde_json::from_str(o).map_err(|e| {
                    hdr(format!(
                        "__metadata__.order is not a JSON list of names: {e}"
                    ))
                })?);
            }
            continue;
        }
        let bad = |m: &str| hdr(format!("tensor {name}: {m}"));
        let dt = v
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no dtype"))?;
        let dt = dtype(dt).ok_or_else(|| {
            super::DumpError::new(path, ErrorKind::Dtype(dt.to_string())).with_entry(name)
        })?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape is not a list of sizes"))?;
        let off = v
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()? as usize, o[1].as_u64()? as usize)))
            .ok_or_else(|| bad("data_offsets is not [begin, end]"))?;
        let expect = checked_numel(&shape)
            .and_then(|n| n.checked_mul(dt.size()))
            .ok_or_else(|| bad("shape overflows"))?;
        if off.0 > off.1 || off.1 > data_len || off.1 - off.0 != expect {
            return Err(super::DumpError::new(
                path,
                ErrorKind::Bounds(format!(
                    "data_offsets {off:?} do not hold {expect} bytes within {data_len}"
                )),
            )
            .with_entry(name));
        }
        items.push((name.clone(), dt, shape, off));
    }
    items.sort_by_key(|i| i.3);
    for w in items.windows(2) {
        if w[0].3 .1 > w[1].3 .0 {
            return err(
                path,
                ErrorKind::Bounds(format!("{} overlaps {}", w[0].0, w[1].0)),
            );
        }
    }
    if let Some(order) = order {
        let pos: std::collections::HashMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        // Names missing from the order keep data order after the listed ones.
        items.sort_by_key(|i| (pos.get(i.0.as_str()).copied().unwrap_or(usize::MAX), i.3));
    }
    items
        .into_iter()
        .map(|(name, dt, shape, off)| {
            let tensor = Tensor::contiguous(
                path,
                dt,
                shape,
                map.clone(),
                data_start + off.0,
                data_start + off.1,
            )
            .map_err(|e| e.with_entry(&name))?;
            Ok(Named { name, tensor })
        })
        .collect()
}
