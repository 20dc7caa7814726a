//! The JSON report (schema in docs/report-schema.md). JSON has no NaN or infinity: such
//! values are written as `null` (the schema says which fields can be).

use super::Exporter;
use crate::compare::Comparison;

/// Pretty-printed JSON of the whole comparison.
pub struct Json;

impl Exporter for Json {
    fn serialize(&self, c: &Comparison) -> anyhow::Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(c)?;
        v.push(b'\n');
        Ok(v)
    }
}
