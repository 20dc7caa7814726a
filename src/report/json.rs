//! The JSON report (schema in docs/report-schema.md). JSON has no NaN or infinity: such
//! values are written as `null` (the schema says which fields can be).

use super::Exporter;
use crate::compare::Comparison;
use std::io::Write;

/// Pretty-printed JSON of the whole comparison.
pub struct Json;

impl Json {
    /// Writes the report to `w` as it is serialised, never holding it whole (a million
    /// statistics pairs make ~1.2 GB of JSON): the bytes of [`Exporter::serialize`].
    pub fn write(&self, c: &Comparison, w: &mut dyn Write) -> anyhow::Result<()> {
        serde_json::to_writer_pretty(&mut *w, c)?;
        w.write_all(b"\n")?;
        Ok(())
    }
}

impl Exporter for Json {
    fn serialize(&self, c: &Comparison) -> anyhow::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write(c, &mut v)?;
        Ok(v)
    }
}
