//! Replay: recompute an API call in float64 from the inputs a dump recorded, to separate the
//! error an op makes itself from the error it inherited (docs/replay.md).
//!
//! The device's output is compared with a float64 recomputation from the device's own inputs:
//! that is the op's *own* error. Within a small multiple of the output dtype's unit roundoff the
//! op is fine and any difference from the reference was inherited; beyond it the op itself is
//! wrong on the device. Calls that cannot be recomputed faithfully are reported as such.

mod args;
mod attention;
mod conv;
mod elementwise;
mod linalg;
mod norm;
mod pool;
#[cfg(feature = "torch")]
pub mod torch;

pub use args::{Arg, Arr, Call};

use crate::dump::{msprobe, DType, Dump, Format};
use crate::noise::expected_err;
use crate::noise::Fp32Matmul;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Own error allowed, in units of the output precision's expected rounding error.
pub const NOISE_FACTOR: f64 = 16.0;

/// Why a call cannot be replayed (a sentence).
pub type NotReplayable = String;

/// Result of an op's recomputation.
pub type R<T> = std::result::Result<T, NotReplayable>;

/// What replay concludes about one call.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayVerdict {
    /// The device's output is beyond rounding noise of a float64 recomputation from its own
    /// inputs: this op is wrong on the device.
    WrongOnDevice,
    /// The op is right on the device; its output differs from the reference's (beyond the
    /// allowance), so that error was inherited from its inputs. Also used without a reference.
    Inherited,
    /// The op is right on the device and its output agrees with the reference's.
    Ok,
    /// The reference's own output disagrees with the recomputation as well: the replay may not
    /// reproduce the op's semantics, so nothing is concluded.
    Inconclusive,
    /// Not recomputed (see `reason`).
    NotReplayable,
}

impl ReplayVerdict {
    /// Name as printed.
    pub fn name(self) -> &'static str {
        match self {
            ReplayVerdict::WrongOnDevice => "wrong on device",
            ReplayVerdict::Inherited => "inherited",
            ReplayVerdict::Ok => "ok",
            ReplayVerdict::Inconclusive => "inconclusive",
            ReplayVerdict::NotReplayable => "not replayable",
        }
    }
}

/// The replay of one call on both sides.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallReplay {
    /// The call (`Functional.silu.1.forward`).
    pub name: String,
    /// Whether the device side was recomputed.
    pub replayed: bool,
    /// Why it was not (or why the reference side was not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Relative L2 error of the device output against the float64 recomputation from the
    /// device's inputs.
    pub device_own_rel_l2: Option<f64>,
    /// The same for the reference side (when a reference was given and it replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_own_rel_l2: Option<f64>,
    /// Relative L2 error of the device output against the reference output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_rel_l2: Option<f64>,
    /// Own error allowed on the device side (NOISE_FACTOR x expected rounding error).
    pub allowance: Option<f64>,
    /// Device output dtype.
    pub dtype: Option<String>,
    /// What recomputed the device side: `driftscope` (pure Rust) or `libtorch <ATen schema>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_by: Option<String>,
    /// Conclusion.
    pub verdict: ReplayVerdict,
}

/// Replays of many calls.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct ReplayReport {
    /// One per call, in execution order.
    pub calls: Vec<CallReplay>,
    /// Calls recomputed.
    pub replayed: usize,
    /// Calls that could not be.
    pub not_replayable: usize,
}

/// A dump opened for replay: its entries by tensor name and its raw `dump.json` records.
pub struct Side<'a> {
    dump: &'a Dump,
    by_name: HashMap<&'a str, usize>,
    records: serde_json::Map<String, serde_json::Value>,
}

impl<'a> Side<'a> {
    /// Prepares an msprobe dump (API level: `L1` or `mix`) for replay.
    pub fn new(dump: &'a Dump) -> anyhow::Result<Side<'a>> {
        Side::with_places(dump, None)
    }

    /// [`Side::new`] for the calls at `places` only (the others' records are not kept).
    pub fn for_places(dump: &'a Dump, places: &[String]) -> anyhow::Result<Side<'a>> {
        Side::with_places(dump, Some(places))
    }

    fn with_places(dump: &'a Dump, places: Option<&[String]>) -> anyhow::Result<Side<'a>> {
        if dump.format != Format::Msprobe {
            anyhow::bail!(
                "{}: replay needs an msprobe dump (dump.json records each call's arguments)",
                dump.path.display()
            );
        }
        let records = msprobe::raw_records(&dump.root.join("dump.json"), places)?;
        let by_name = dump
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (&*e.name, i))
            .collect();
        Ok(Side {
            dump,
            by_name,
            records,
        })
    }

    /// Places in execution order.
    pub fn places(&self) -> Vec<String> {
        self.records.keys().cloned().collect()
    }

    /// Loads a call's arguments and outputs.
    pub fn call(&self, place: &str) -> R<Call> {
        let rec = self
            .records
            .get(place)
            .ok_or_else(|| format!("no call named `{place}` in the dump"))?;
        args::load_call(place, rec, &|data_name: &str| {
            let stem = data_name
                .strip_suffix(".pt")
                .or_else(|| data_name.strip_suffix(".npy"))
                .unwrap_or(data_name);
            let i = *self
                .by_name
                .get(stem)
                .ok_or_else(|| format!("tensor `{data_name}` is not in the dump"))?;
            let e = &self.dump.entries[i];
            let t = self
                .dump
                .load(e)
                .map_err(|err| format!("cannot read `{data_name}`: {err}"))?;
            let data = ArrayD::from_shape_vec(t.shape.clone(), t.to_f64_vec())
                .map_err(|err| format!("`{data_name}`: {err}"))?;
            Ok(Arr {
                data,
                dtype: t.dtype,
            })
        })
    }
}

/// Recomputes a call's first output in float64 from its recorded arguments.
pub fn recompute(call: &Call) -> R<ArrayD<f64>> {
    recompute_by(call).map(|(a, _)| a)
}

/// [`recompute`], also naming what computed it: `driftscope` for the pure-Rust ops, the ATen
/// schema for libtorch (`--features torch`), which is tried for ops the pure-Rust list lacks.
pub fn recompute_by(call: &Call) -> R<(ArrayD<f64>, String)> {
    if call.name.starts_with("Module.") || call.name.starts_with("Cell.") {
        return Err(
            "module-level record: a module's configuration (stride, eps, ...) is not \
                    recorded; dump at API level (L1 or mix) to replay"
                .into(),
        );
    }
    if call.name.contains(".backward") {
        return Err("backward calls are not replayed".into());
    }
    let op = call.op.as_str();
    let rust = elementwise::dispatch(op, call)
        .or_else(|| linalg::dispatch(op, call))
        .or_else(|| norm::dispatch(op, call))
        .or_else(|| conv::dispatch(op, call))
        .or_else(|| attention::dispatch(op, call))
        .or_else(|| pool::dispatch(op, call));
    if let Some(r) = rust {
        return r.map(|a| (a, "driftscope".to_string()));
    }
    #[cfg(feature = "torch")]
    {
        torch::recompute(call).map(|(a, schema)| (a, format!("libtorch {schema}")))
    }
    #[cfg(not(feature = "torch"))]
    Err(format!(
        "no float64 replay for `{op}` (build with `--features torch` for ATen ops)"
    ))
}

/// Relative L2 error of `got` against `want`: NaN/Inf at the same places with the same value
/// count as agreement, a mismatch as infinite error.
pub fn rel_l2(got: &ArrayD<f64>, want: &ArrayD<f64>) -> R<f64> {
    if got.shape() != want.shape() {
        return Err(format!(
            "recomputed shape {:?} differs from the recorded {:?}",
            want.shape(),
            got.shape()
        ));
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want.iter()) {
        if !g.is_finite() || !w.is_finite() {
            let same = (g.is_nan() && w.is_nan()) || g == w;
            if !same {
                return Ok(f64::INFINITY);
            }
            continue;
        }
        num += (g - w) * (g - w);
        den += w * w;
    }
    Ok(if num == 0.0 {
        0.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        (num / den).sqrt()
    })
}

fn rms(a: &ArrayD<f64>) -> Option<f64> {
    let (s, n) = a
        .iter()
        .filter(|x| x.is_finite())
        .fold((0.0, 0usize), |(s, n), x| (s + x * x, n + 1));
    (n > 0).then(|| (s / n as f64).sqrt())
}

/// One side's own error: (own rel L2, allowance, output dtype, output, what recomputed it).
fn own(call: &Call) -> R<(f64, f64, DType, ArrayD<f64>, String)> {
    let out = call.output().ok_or("the call recorded no output tensor")?;
    let (mut want, by) = recompute_by(call)?;
    // Correct rounding to the output dtype overflows to ±inf beyond its largest finite value
    // (a logit plus fp16's -65504 mask is -inf in fp16): that is not the op's own error.
    if out.dtype.is_float() {
        // Round to nearest overflows past the largest finite value plus half its spacing.
        let max = out.dtype.max_finite();
        let limit = max + 2f64.powi(max.log2().floor() as i32) * out.dtype.unit_roundoff();
        want.mapv_inplace(|w| {
            if w.abs() >= limit {
                w.signum() * f64::INFINITY
            } else {
                w
            }
        });
    }
    let e = rel_l2(&out.data, &want)?;
    let op = call.op.trim_matches('_');
    let allow =
        NOISE_FACTOR * expected_err(out.dtype, out.dtype, Some(op), Fp32Matmul::Auto, rms(&want));
    Ok((e, allow, out.dtype, out.data.clone(), by))
}

/// Replays `place` on the device side and, when given, the reference side.
pub fn replay_call(dev: &Side, reference: Option<&Side>, place: &str) -> CallReplay {
    let mut r = CallReplay {
        name: place.to_string(),
        replayed: false,
        reason: None,
        device_own_rel_l2: None,
        reference_own_rel_l2: None,
        output_rel_l2: None,
        allowance: None,
        dtype: None,
        replayed_by: None,
        verdict: ReplayVerdict::NotReplayable,
    };
    let (e, allow, dtype, dev_out, by) = match dev.call(place).and_then(|c| own(&c)) {
        Ok(x) => x,
        Err(why) => {
            r.reason = Some(why);
            return r;
        }
    };
    r.replayed = true;
    r.device_own_rel_l2 = Some(e);
    r.allowance = Some(allow);
    r.dtype = Some(dtype.name().to_string());
    r.replayed_by = Some(by);
    let mut ref_suspect = false;
    if let Some(rs) = reference {
        match rs.call(place).and_then(|c| own(&c)) {
            Ok((re, rallow, _, ref_out, _)) => {
                r.reference_own_rel_l2 = Some(re);
                ref_suspect = re > rallow;
                r.output_rel_l2 = rel_l2(&dev_out, &ref_out).ok();
            }
            Err(why) => r.reason = Some(format!("reference side not replayed: {why}")),
        }
    }
    r.verdict = if e > allow {
        if ref_suspect {
            r.reason = Some(
                "the reference's own output disagrees with the float64 replay too: the replay \
                 may not reproduce this op's semantics"
                    .into(),
            );
            ReplayVerdict::Inconclusive
        } else {
            ReplayVerdict::WrongOnDevice
        }
    } else {
        match r.output_rel_l2 {
            Some(o) if o <= allow => ReplayVerdict::Ok,
            _ => ReplayVerdict::Inherited,
        }
    };
    r
}

/// Replays the given places (all of them when `places` is empty).
pub fn replay(dev: &Side, reference: Option<&Side>, places: &[String]) -> ReplayReport {
    let all;
    let places = if places.is_empty() {
        all = dev.places();
        &all
    } else {
        places
    };
    let calls: Vec<CallReplay> = places
        .iter()
        .map(|p| replay_call(dev, reference, p))
        .collect();
    let replayed = calls.iter().filter(|c| c.replayed).count();
    ReplayReport {
        not_replayable: calls.len() - replayed,
        replayed,
        calls,
    }
}

/// Human-readable lines.
pub fn render(rep: &ReplayReport) -> String {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.3e}"));
    let mut s = String::new();
    for c in &rep.calls {
        s += &format!(
            "{:<40} device own {:>10}  reference own {:>10}  allowance {:>10}  {}",
            c.name,
            f(c.device_own_rel_l2),
            f(c.reference_own_rel_l2),
            f(c.allowance),
            c.verdict.name()
        );
        if let Some(by) = c
            .replayed_by
            .as_deref()
            .and_then(|b| b.strip_prefix("libtorch "))
        {
            s += &format!(" [libtorch {}]", by.split('(').next().unwrap_or(by));
        }
        if let Some(why) = &c.reason {
            s += &format!(" ({why})");
        }
        s.push('\n');
    }
    s += &format!(
        "{} call(s) replayed, {} not replayable\n",
        rep.replayed, rep.not_replayable
    );
    s
}
