//! Ascend NPU private layouts (NC1HWC0, NDC1HWC0, FRACTAL_Z, FRACTAL_NZ) converted to the
//! logical ND/NCHW layout, padding removed. Diagrams and sources in docs/ascend.md.
//!
//! Format codes are CANN's `aclFormat` values (`acl_base.h`; hicann/runtime
//! `docs/api_docs/aclFormat.md`), which torch_npu records as the storage format of a tensor
//! (`_rebuild_npu_tensor`'s last argument). C0, the innermost block, is 32 bytes of elements
//! (`C0 = 32B / itemsize`: 16 for fp16/bf16, 32 for int8, 8 for fp32); older CANN releases pad
//! fp32 to C0 = 16, so when a stored size does not fit the default C0 the other candidates are
//! tried and the one that matches the stored size exactly is used.

use super::DType;
use ndarray::{ArrayD, ArrayViewD, IxDyn, Slice};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// A storage layout of an NPU tensor.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NpuFormat {
    /// `ACL_FORMAT_NCHW` (0): plain.
    Nchw,
    /// `ACL_FORMAT_ND` (2): plain.
    Nd,
    /// `ACL_FORMAT_NCDHW` (30): plain.
    Ncdhw,
    /// `ACL_FORMAT_NC1HWC0` (3): (N, C1, H, W, C0) for a logical (N, C, H, W).
    Nc1hwc0,
    /// `ACL_FORMAT_FRACTAL_Z` (4): (C1·H·W, N1, N0=16, C0) for a conv weight (N, C, H, W).
    FractalZ,
    /// `ACL_FORMAT_FRACTAL_NZ` (29): (..., N1, M1, M0=16, N0=C0) for a logical (..., M, N).
    FractalNz,
    /// `ACL_FORMAT_NDC1HWC0` (32): (N, D, C1, H, W, C0) for a logical (N, C, D, H, W).
    Ndc1hwc0,
}

/// Rows of a fractal block (M0 of FRACTAL_NZ, N0 of FRACTAL_Z).
pub const BLOCK: usize = 16;

impl NpuFormat {
    /// Every layout.
    pub const ALL: [NpuFormat; 7] = [
        NpuFormat::Nchw,
        NpuFormat::Nd,
        NpuFormat::Ncdhw,
        NpuFormat::Nc1hwc0,
        NpuFormat::FractalZ,
        NpuFormat::FractalNz,
        NpuFormat::Ndc1hwc0,
    ];

    /// The name `--layout` takes (`fractal_nz` is accepted for `fractal-nz`).
    pub fn name(self) -> &'static str {
        match self {
            NpuFormat::Nchw => "nchw",
            NpuFormat::Nd => "nd",
            NpuFormat::Ncdhw => "ncdhw",
            NpuFormat::Nc1hwc0 => "nc1hwc0",
            NpuFormat::FractalZ => "fractal-z",
            NpuFormat::FractalNz => "fractal-nz",
            NpuFormat::Ndc1hwc0 => "ndc1hwc0",
        }
    }

    /// The format of an `aclFormat` code: `Ok(None)` for codes that need no conversion
    /// (unknown = -1), an error naming the code for layouts driftscope does not convert.
    pub fn from_acl(code: i64) -> Result<Option<NpuFormat>, String> {
        Ok(Some(match code {
            -1 => return Ok(None),
            0 => NpuFormat::Nchw,
            2 => NpuFormat::Nd,
            30 => NpuFormat::Ncdhw,
            3 => NpuFormat::Nc1hwc0,
            4 => NpuFormat::FractalZ,
            29 => NpuFormat::FractalNz,
            32 => NpuFormat::Ndc1hwc0,
            c => {
                let name = match c {
                    1 => "NHWC",
                    12 => "NC1HWC0_C04",
                    16 => "HWCN",
                    27 => "NDHWC",
                    33 => "FRACTAL_Z_3D",
                    35 => "NC",
                    47 => "NCL",
                    _ => "unknown",
                };
                return Err(format!(
                    "NPU storage format {c} ({name}) is not converted by driftscope: save the \
                     tensor in ND/NCHW (torch_npu.npu_format_cast(t, 2)) or open an issue"
                ));
            }
        }))
    }

    /// The `aclFormat` code.
    pub fn acl(self) -> i64 {
        match self {
            NpuFormat::Nchw => 0,
            NpuFormat::Nd => 2,
            NpuFormat::Ncdhw => 30,
            NpuFormat::Nc1hwc0 => 3,
            NpuFormat::FractalZ => 4,
            NpuFormat::FractalNz => 29,
            NpuFormat::Ndc1hwc0 => 32,
        }
    }

    /// True for the blocked layouts that need converting.
    pub fn is_private(self) -> bool {
        !matches!(self, NpuFormat::Nchw | NpuFormat::Nd | NpuFormat::Ncdhw)
    }

    /// Whether a logical shape of this rank can be stored in this format.
    pub fn fits_rank(self, rank: usize) -> bool {
        match self {
            NpuFormat::Nc1hwc0 | NpuFormat::FractalZ => rank == 4,
            NpuFormat::Ndc1hwc0 => rank == 5,
            NpuFormat::FractalNz => rank >= 1,
            _ => true,
        }
    }
}

/// One rule of `--layout`: tensors whose name matches `filter` (all, without one) are stored
/// in `format`.
#[derive(Clone, Debug)]
pub struct LayoutRule {
    /// The stored layout (a plain one, `nd`, keeps matching tensors as they are).
    pub format: NpuFormat,
    /// Only tensors whose name matches.
    pub filter: Option<Regex>,
}

/// `--layout`: read the candidate's tensors as stored in an NPU layout. One rule,
/// `FORMAT[:REGEX]`, or a list of `REGEX=FORMAT` rules (`;`-separated, or one per line in
/// `@FILE`, `#` comments), the first whose REGEX matches a tensor's name deciding; tensors whose
/// logical rank the format cannot hold are left alone.
#[derive(Clone, Debug)]
pub struct LayoutOverride {
    /// The rules, in order.
    pub rules: Vec<LayoutRule>,
}

/// A format by name (`nc1hwc0`, `fractal-nz`, `fractal_nz`, ...) or aclFormat code.
fn parse_format(f: &str) -> Result<NpuFormat, String> {
    let f = f.trim();
    match f.parse::<i64>() {
        Ok(code) => NpuFormat::from_acl(code)?.ok_or_else(|| "format -1 is not a layout".into()),
        Err(_) => {
            let name = f.replace('_', "-");
            NpuFormat::ALL
                .into_iter()
                .find(|n| n.name().eq_ignore_ascii_case(&name))
                .ok_or_else(|| format!("invalid variant: {name}"))
        }
    }
}

fn parse_regex(r: &str) -> Result<Regex, String> {
    Regex::new(r).map_err(|e| format!("--layout regex: {e}"))
}

impl LayoutOverride {
    /// Parses `FORMAT[:REGEX]`, `REGEX=FORMAT;REGEX=FORMAT...` or `@FILE` (FORMAT as
    /// `nc1hwc0`, `fractal-nz`, ... or an aclFormat code).
    pub fn parse(s: &str) -> Result<LayoutOverride, String> {
        if let Some(path) = s.strip_prefix('@') {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--layout: cannot read {path}: {e}"))?;
            let lines: Vec<(usize, &str)> = text
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.trim()))
                .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
                .collect();
            let rules = lines
                .iter()
                .map(|&(n, l)| Self::rule(l).map_err(|e| format!("{path}: line {n}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(LayoutOverride { rules });
        }
        if s.contains('=') {
            let rules = s
                .split(';')
                .filter(|r| !r.trim().is_empty())
                .map(Self::rule)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(LayoutOverride { rules });
        }
        let (f, re) = match s.split_once(':') {
            Some((f, r)) => (f, Some(r)),
            None => (s, None),
        };
        let format = parse_format(f)?;
        let filter = re.map(parse_regex).transpose()?;
        Ok(LayoutOverride {
            rules: vec![LayoutRule { format, filter }],
        })
    }

    /// One `REGEX=FORMAT` rule (split at the last `=`: formats hold none).
    fn rule(r: &str) -> Result<LayoutRule, String> {
        let (re, f) = r
            .rsplit_once('=')
            .ok_or_else(|| format!("`{r}`: expected REGEX=FORMAT"))?;
        Ok(LayoutRule {
            format: parse_format(f)?,
            filter: Some(parse_regex(re.trim())?),
        })
    }

    /// The private format to apply to the tensor `name`, if any: the first rule that matches
    /// decides (the reader still skips tensors whose logical rank the format does not fit).
    pub fn for_tensor(&self, name: &str) -> Option<NpuFormat> {
        self.rules
            .iter()
            .find(|r| r.filter.as_ref().is_none_or(|f| f.is_match(name)))
            .map(|r| r.format)
            .filter(|f| f.is_private())
    }
}

/// Default C0 for a dtype: 32 bytes of elements.
pub fn default_c0(dtype: DType) -> usize {
    (32 / dtype.size()).max(1)
}

fn ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// How a format splits, permutes and merges: the stored array seen with `split` dims, permuted
/// by `perm`, is the padded logical array with `merged` dims.
struct Plan {
    split: Vec<usize>,
    perm: Vec<usize>,
    merged: Vec<usize>,
}

fn plan(f: NpuFormat, logical: &[usize], c0: usize) -> Result<Plan, String> {
    if !f.fits_rank(logical.len()) {
        return Err(format!(
            "{f:?} cannot hold a tensor of shape {logical:?} (rank {})",
            logical.len()
        ));
    }
    Ok(match f {
        NpuFormat::Nc1hwc0 => {
            let [n, c, h, w] = logical.try_into().unwrap();
            let c1 = ceil(c, c0);
            Plan {
                split: vec![n, c1, h, w, c0],
                perm: vec![0, 1, 4, 2, 3],
                merged: vec![n, c1 * c0, h, w],
            }
        }
        NpuFormat::Ndc1hwc0 => {
            let [n, c, d, h, w] = logical.try_into().unwrap();
            let c1 = ceil(c, c0);
            Plan {
                split: vec![n, d, c1, h, w, c0],
                perm: vec![0, 2, 5, 1, 3, 4],
                merged: vec![n, c1 * c0, d, h, w],
            }
        }
        NpuFormat::FractalZ => {
            let [n, c, h, w] = logical.try_into().unwrap();
            let (c1, n1) = (ceil(c, c0), ceil(n, BLOCK));
            // Stored (C1·H·W, N1, N0, C0), seen as (C1, H, W, N1, N0, C0).
            Plan {
                split: vec![c1, h, w, n1, BLOCK, c0],
                perm: vec![3, 4, 0, 5, 1, 2],
                merged: vec![n1 * BLOCK, c1 * c0, h, w],
            }
        }
        NpuFormat::FractalNz => {
            let (batch, m, n) = match logical {
                [n] => (&[][..], 1, *n),
                [b @ .., m, n] => (b, *m, *n),
                [] => unreachable!(),
            };
            let (m1, n1) = (ceil(m, BLOCK), ceil(n, c0));
            let k = batch.len();
            let mut split = batch.to_vec();
            split.extend([n1, m1, BLOCK, c0]);
            let mut perm: Vec<usize> = (0..k).collect();
            perm.extend([k + 1, k + 2, k, k + 3]);
            let mut merged = batch.to_vec();
            merged.extend([m1 * BLOCK, n1 * c0]);
            Plan {
                split,
                perm,
                merged,
            }
        }
        _ => Plan {
            split: logical.to_vec(),
            perm: (0..logical.len()).collect(),
            merged: logical.to_vec(),
        },
    })
}

/// Number of stored elements of a logical shape in format `f` with block `c0`.
pub fn stored_numel(f: NpuFormat, logical: &[usize], c0: usize) -> Result<usize, String> {
    Ok(plan(f, logical, c0)?.split.iter().product())
}

/// The logical shape as the padded arrays see it (`[1, N]` for a 1-D FRACTAL_NZ tensor).
fn logical_view(f: NpuFormat, logical: &[usize]) -> Vec<usize> {
    if f == NpuFormat::FractalNz && logical.len() == 1 {
        vec![1, logical[0]]
    } else {
        logical.to_vec()
    }
}

fn unpack_t<T: bytemuck::Pod + Default>(p: &Plan, logical: &[usize], stored: &[T]) -> Vec<T> {
    let view = ArrayViewD::from_shape(IxDyn(&p.split), stored).expect("sizes checked");
    let permuted = view.permuted_axes(IxDyn(&p.perm));
    let merged = permuted
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&p.merged))
        .expect("same element count");
    merged
        .slice_each_axis(|ax| Slice::from(0..logical[ax.axis.index()]))
        .iter()
        .copied()
        .collect()
}

fn pack_t<T: bytemuck::Pod + Default>(p: &Plan, logical: &[usize], data: &[T]) -> Vec<T> {
    let mut padded = ArrayD::<T>::default(IxDyn(&p.merged));
    let src = ArrayViewD::from_shape(IxDyn(logical), data).expect("sizes checked");
    padded
        .slice_each_axis_mut(|ax| Slice::from(0..logical[ax.axis.index()]))
        .assign(&src);
    let permuted_split: Vec<usize> = p.perm.iter().map(|&a| p.split[a]).collect();
    let mut inverse = vec![0; p.perm.len()];
    for (i, &a) in p.perm.iter().enumerate() {
        inverse[a] = i;
    }
    padded
        .into_shape_with_order(IxDyn(&permuted_split))
        .expect("same element count")
        .permuted_axes(IxDyn(&inverse))
        .iter()
        .copied()
        .collect()
}

macro_rules! dispatch {
    ($size:expr, $bytes:expr, $f:ident, $($args:expr),*) => {
        match $size {
            1 => Ok(bytemuck::cast_slice::<u8, u8>(&$f($($args,)* &bytemuck::pod_collect_to_vec::<u8, u8>($bytes))).to_vec()),
            2 => Ok(bytemuck::cast_slice::<u16, u8>(&$f($($args,)* &bytemuck::pod_collect_to_vec::<u8, u16>($bytes))).to_vec()),
            4 => Ok(bytemuck::cast_slice::<u32, u8>(&$f($($args,)* &bytemuck::pod_collect_to_vec::<u8, u32>($bytes))).to_vec()),
            8 => Ok(bytemuck::cast_slice::<u64, u8>(&$f($($args,)* &bytemuck::pod_collect_to_vec::<u8, u64>($bytes))).to_vec()),
            s => Err(format!("elements of {s} bytes cannot be in an NPU layout")),
        }
    };
}

/// The C0 that explains `stored_elems` stored elements of `logical` in format `f`: the dtype's
/// default when it fits exactly, else another candidate (16, 32, 8) that fits exactly, else
/// the default when the storage is at least that large.
pub fn infer_c0(
    f: NpuFormat,
    dtype: DType,
    logical: &[usize],
    stored_elems: usize,
) -> Result<usize, String> {
    let d = default_c0(dtype);
    let lv = logical_view(f, logical);
    for c0 in [d, 16, 32, 8] {
        if stored_numel(f, &lv, c0)? == stored_elems {
            return Ok(c0);
        }
    }
    let need = stored_numel(f, &lv, d)?;
    if stored_elems >= need {
        Ok(d)
    } else {
        Err(format!(
            "{f:?} storage of {stored_elems} elements is too small for shape {logical:?} \
             ({need} needed with C0 = {d})"
        ))
    }
}

/// Converts `stored` (little-endian elements of `dtype` in format `f`, possibly longer than
/// needed) to the C-ordered bytes of the logical shape `logical`, padding removed.
pub fn unpack(
    f: NpuFormat,
    dtype: DType,
    logical: &[usize],
    stored: &[u8],
) -> Result<Vec<u8>, String> {
    let size = dtype.size();
    let elems = stored.len() / size;
    let c0 = infer_c0(f, dtype, logical, elems)?;
    let lv = logical_view(f, logical);
    let p = plan(f, &lv, c0)?;
    let need: usize = p.split.iter().product();
    let bytes = &stored[..need * size];
    dispatch!(size, bytes, unpack_t, &p, &lv)
}

/// Converts C-ordered bytes of the logical shape `logical` into format `f` with block `c0`
/// (padding zero-filled): the inverse of [`unpack`], used to build test data and CANN files.
pub fn pack(
    f: NpuFormat,
    dtype: DType,
    logical: &[usize],
    data: &[u8],
    c0: usize,
) -> Result<Vec<u8>, String> {
    let size = dtype.size();
    let lv = logical_view(f, logical);
    let numel: usize = lv.iter().product();
    if data.len() != numel * size {
        return Err(format!(
            "{} bytes do not hold shape {logical:?} of {}",
            data.len(),
            dtype.name()
        ));
    }
    let p = plan(f, &lv, c0)?;
    dispatch!(size, data, pack_t, &p, &lv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_codes_round_trip() {
        for f in NpuFormat::ALL {
            assert_eq!(NpuFormat::from_acl(f.acl()).unwrap(), Some(f));
        }
        assert!(NpuFormat::from_acl(33)
            .unwrap_err()
            .contains("FRACTAL_Z_3D"));
    }

    #[test]
    fn nc1hwc0_places_channel_blocks_innermost() {
        // N=1, C=2, H=1, W=2, C0=4: stored (1, 1, 1, 2, 4).
        let data: Vec<u8> = vec![1, 2, 3, 4]; // c0: (w0, w1) = (1, 2); c1: (3, 4)
        let s = pack(NpuFormat::Nc1hwc0, DType::Uint8, &[1, 2, 1, 2], &data, 4).unwrap();
        assert_eq!(s, vec![1, 3, 0, 0, 2, 4, 0, 0]);
        let u = unpack(NpuFormat::Nc1hwc0, DType::Uint8, &[1, 2, 1, 2], &s).unwrap_err();
        assert!(u.contains("too small"), "{u}"); // default C0 for u8 is 32
    }

    #[test]
    fn layout_override_parses_names_codes_and_regex() {
        let l = LayoutOverride::parse("fractal_nz:linear").unwrap();
        assert_eq!(l.rules[0].format, NpuFormat::FractalNz);
        assert_eq!(
            l.for_tensor("Functional.linear.0.forward.output.0"),
            Some(NpuFormat::FractalNz)
        );
        assert_eq!(l.for_tensor("Functional.silu.0.forward.output.0"), None);
        assert_eq!(
            LayoutOverride::parse("3").unwrap().rules[0].format,
            NpuFormat::Nc1hwc0
        );
        // Rules, first match wins; a plain format keeps a tensor as it is.
        let l = LayoutOverride::parse("norm=nd; conv=nc1hwc0;linear|matmul=29").unwrap();
        assert_eq!(
            l.for_tensor("Module.conv1.Conv2d"),
            Some(NpuFormat::Nc1hwc0)
        );
        assert_eq!(
            l.for_tensor("Functional.matmul.0"),
            Some(NpuFormat::FractalNz)
        );
        assert_eq!(l.for_tensor("Module.conv_norm.BatchNorm2d"), None);
        assert!(LayoutOverride::parse("conv=bogus").is_err());
        assert_eq!(LayoutOverride::parse("nd").unwrap().for_tensor("x"), None);
        assert!(LayoutOverride::parse("bogus").is_err());
    }
}
