//! A tensor's bytes, borrowed from a memory map whenever the layout allows it.

use super::dtype::DType;
use super::error::{err, ErrorKind, Result};
use memmap2::Mmap;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

/// Contiguous little-endian element bytes: a window into a memory-mapped file, or an owned
/// copy when the stored layout had to be gathered (strided views, Fortran order, deflate).
#[derive(Clone)]
pub enum Bytes {
    /// `len` bytes at `start` of a mapped file.
    Mapped {
        /// The whole mapped file, shared between the tensors that live in it.
        map: Arc<Mmap>,
        /// First byte of the tensor.
        start: usize,
        /// Length in bytes.
        len: usize,
    },
    /// Bytes owned by the tensor.
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, start, len } => &map[*start..*start + *len],
            Bytes::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len())
    }
}

/// A file's bytes, shared by the tensors that live in it: mapped read-only, or read when it
/// is small or still being written (see [`super::guard`]: a file that shrinks under a map
/// ends the run with an error naming it, never with a crash or wrong numbers).
pub fn map_file(path: &Path) -> Result<Arc<Mmap>> {
    let io = |e: std::io::Error| super::DumpError::new(path, e.into());
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let map = super::guard::map(&mut file, len, path).map_err(io)?;
    #[cfg(unix)]
    {
        let _ = map.advise(memmap2::Advice::Sequential);
    }
    Ok(Arc::new(map))
}

/// A dense, C-ordered tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Logical shape (`[]` for a 0-d tensor).
    pub shape: Vec<usize>,
    /// `numel * dtype.size()` bytes, little-endian.
    pub data: Bytes,
}

/// Number of elements of `shape`, or `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// A contiguous tensor over `len = numel * itemsize` bytes of `storage` at `byte_start`,
    /// validated against the storage's size.
    pub fn contiguous(
        path: &Path,
        dtype: DType,
        shape: Vec<usize>,
        map: Arc<Mmap>,
        byte_start: usize,
        storage_end: usize,
    ) -> Result<Tensor> {
        let numel = checked_numel(&shape)
            .ok_or_else(|| bounds(path, format!("shape {shape:?} overflows")))?;
        let len = numel
            .checked_mul(dtype.size())
            .ok_or_else(|| bounds(path, format!("shape {shape:?} overflows")))?;
        let end = byte_start
            .checked_add(len)
            .ok_or_else(|| bounds(path, "offset overflows".into()))?;
        if end > storage_end || storage_end > map.len() {
            return err(
                path,
                ErrorKind::Truncated(format!(
                    "tensor needs bytes {byte_start}..{end} but its storage ends at {storage_end}"
                )),
            );
        }
        Ok(Tensor {
            dtype,
            shape,
            data: Bytes::Mapped {
                map,
                start: byte_start,
                len,
            },
        })
    }

    /// A tensor viewing `storage` (elements of `dtype`) with an element offset and strides, as
    /// `torch.Tensor.as_strided` does. Zero-copy when the view is C-contiguous; otherwise the
    /// elements are gathered into an owned buffer.
    pub fn strided(
        path: &Path,
        dtype: DType,
        shape: Vec<usize>,
        strides: &[i64],
        offset: usize,
        storage: Bytes,
    ) -> Result<Tensor> {
        if strides.len() != shape.len() {
            return err(
                path,
                ErrorKind::Header(format!(
                    "shape {shape:?} and stride {strides:?} differ in rank"
                )),
            );
        }
        let item = dtype.size();
        let storage_elems = storage.len() / item;
        let numel = checked_numel(&shape)
            .ok_or_else(|| bounds(path, format!("shape {shape:?} overflows")))?;
        // Largest element index the view touches (negative strides are not produced by torch).
        let mut max_index = offset as u128;
        for (&d, &s) in shape.iter().zip(strides) {
            if s < 0 {
                return err(path, ErrorKind::Unsupported(format!("negative stride {s}")));
            }
            if d > 0 {
                // Each term is below 2^127; saturate so many huge dimensions cannot overflow.
                max_index = max_index.saturating_add((d as u128 - 1) * s as u128);
            }
        }
        if numel == 0 {
            // Nothing to read: do not let an arbitrary offset reach the byte arithmetic below.
            return Ok(Tensor {
                dtype,
                shape,
                data: Bytes::Owned(Vec::new()),
            });
        }
        if max_index >= storage_elems as u128 {
            return err(
                path,
                ErrorKind::Bounds(format!(
                    "view (offset {offset}, shape {shape:?}, stride {strides:?}) reaches element \
                     {max_index} of a storage of {storage_elems}"
                )),
            );
        }
        if is_c_contiguous(&shape, strides) {
            let start = offset * item;
            let len = numel * item;
            let data = match storage {
                Bytes::Mapped { map, start: s0, .. } => Bytes::Mapped {
                    map: map.clone(),
                    start: s0 + start,
                    len,
                },
                // The view's bytes kept in place (moved only when the view starts later).
                Bytes::Owned(mut v) => {
                    v.truncate(start + len);
                    v.drain(..start);
                    Bytes::Owned(v)
                }
            };
            return Ok(Tensor { dtype, shape, data });
        }
        let mut out = Vec::with_capacity(numel * item);
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..numel {
            let e: usize = offset
                + idx
                    .iter()
                    .zip(strides)
                    .map(|(&i, &s)| i * s as usize)
                    .sum::<usize>();
            out.extend_from_slice(&storage[e * item..(e + 1) * item]);
            for k in (0..shape.len()).rev() {
                idx[k] += 1;
                if idx[k] < shape[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        Ok(Tensor {
            dtype,
            shape,
            data: Bytes::Owned(out),
        })
    }

    /// All elements as f64 (for plots and replay; the metric kernels stream instead).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.numel()];
        super::decode::decode_f64(self.dtype, &self.data, &mut out);
        out
    }
}

fn bounds(path: &Path, msg: String) -> super::DumpError {
    super::DumpError::new(path, ErrorKind::Bounds(msg))
}

/// C-contiguous up to dimensions of size 1 (whose stride is irrelevant).
pub fn is_c_contiguous(shape: &[usize], strides: &[i64]) -> bool {
    let mut expected: i64 = 1;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d == 0 {
            return true;
        }
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d as i64);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dims() {
        assert!(is_c_contiguous(&[2, 3], &[3, 1]));
        assert!(is_c_contiguous(&[1, 3], &[99, 1]));
        assert!(!is_c_contiguous(&[2, 3], &[1, 2]));
        assert!(is_c_contiguous(&[], &[]));
    }

    #[test]
    fn strided_view_is_gathered() {
        // storage [0,1,2,3,4,5] as 2x3; the transpose view is 3x2 with strides (1,3).
        let storage = Bytes::Owned((0..6u32).flat_map(|v| (v as f32).to_le_bytes()).collect());
        let t = Tensor::strided(
            Path::new("x"),
            DType::Float32,
            vec![3, 2],
            &[1, 3],
            0,
            storage.clone(),
        )
        .unwrap();
        assert_eq!(t.to_f64_vec(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let e = Tensor::strided(
            Path::new("x"),
            DType::Float32,
            vec![3, 3],
            &[1, 3],
            0,
            storage,
        );
        assert!(e.is_err());
    }
}
