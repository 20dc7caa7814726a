//! Baseline files: the metrics of an accepted run (no tensors), one entry per place, as small
//! diffable JSON with a versioned schema (docs/nightly.md).

use super::{place_summaries, utc_now};
use crate::compare::Comparison;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// `schema` field of a baseline file.
pub const SCHEMA: &str = "driftscope-baseline";
/// Current baseline schema version.
pub const VERSION: u32 = 1;

/// Metrics of one place in the accepted run (its worst output). JSON has no NaN or infinity:
/// such values are `null`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlaceMetrics {
    /// Execution order of the place.
    pub order: usize,
    /// The place's worst output tensor.
    pub tensor: String,
    /// Operator or module class.
    pub op_type: Option<String>,
    /// Relative L2 error.
    pub rel_l2_err: Option<f64>,
    /// Cosine similarity.
    pub cosine: Option<f64>,
    /// Maximum absolute error.
    pub max_abs_err: Option<f64>,
    /// Reference dtype.
    pub dtype_ref: Option<String>,
    /// Candidate dtype.
    pub dtype_dev: Option<String>,
    /// Error rounding alone explains.
    pub expected_err: Option<f64>,
}

/// A baseline file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Baseline {
    /// Always `driftscope-baseline`.
    pub schema: String,
    /// Schema version.
    pub version: u32,
    /// When it was made (UTC, RFC 3339).
    pub created: String,
    /// driftscope version that made it.
    pub tool_version: String,
    /// Reference dump path.
    pub reference: String,
    /// Candidate dump path.
    pub candidate: String,
    /// Per place, sorted by name.
    pub places: BTreeMap<String, PlaceMetrics>,
}

impl Baseline {
    /// The baseline of a comparison.
    pub fn from_comparison(c: &Comparison) -> Baseline {
        Baseline {
            schema: SCHEMA.to_string(),
            version: VERSION,
            created: utc_now(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            reference: c.reference.path.display().to_string(),
            candidate: c.candidate.path.display().to_string(),
            places: place_summaries(c)
                .into_iter()
                .map(|s| (s.name.clone(), s.metrics))
                .collect(),
        }
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> anyhow::Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Parses a baseline, refusing other schemas and newer versions.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Baseline> {
        let v: serde_json::Value = serde_json::from_slice(bytes).context("not JSON")?;
        let schema = v.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if schema != SCHEMA {
            anyhow::bail!("not a driftscope baseline (schema `{schema}`, want `{SCHEMA}`)");
        }
        let version = v.get("version").and_then(|s| s.as_u64()).unwrap_or(0);
        if version == 0 || version > VERSION as u64 {
            anyhow::bail!("baseline schema version {version} is not supported (this driftscope reads 1..={VERSION})");
        }
        Ok(serde_json::from_value(v)?)
    }

    /// Reads a baseline file.
    pub fn load(path: &Path) -> anyhow::Result<Baseline> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read baseline {}", path.display()))?;
        Baseline::parse(&bytes).with_context(|| format!("invalid baseline {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_schemas_and_versions() {
        assert!(Baseline::parse(br#"{"schema":"x","version":1}"#).is_err());
        let e = Baseline::parse(br#"{"schema":"driftscope-baseline","version":9}"#).unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
        let ok = br#"{"schema":"driftscope-baseline","version":1,"created":"c","tool_version":"t",
            "reference":"r","candidate":"d","places":{"a":{"order":0,"tensor":"a.output.0",
            "op_type":null,"rel_l2_err":null,"cosine":1.0,"max_abs_err":0.0,"dtype_ref":"float32",
            "dtype_dev":"float16","expected_err":0.0005}}}"#;
        let b = Baseline::parse(ok).unwrap();
        assert_eq!(b.places["a"].cosine, Some(1.0));
        assert_eq!(
            Baseline::parse(&b.to_json().unwrap()).unwrap().places,
            b.places
        );
    }
}
