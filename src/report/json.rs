//! The JSON report (schema in docs/report-schema.md). JSON has no NaN or infinity: such
//! values are written as `null` (the schema says which fields can be).

use super::Exporter;
use crate::compare::Comparison;
use rayon::prelude::*;
use serde::Serialize;
use std::io::Write;

/// Pretty-printed JSON of the whole comparison.
pub struct Json;

impl Json {
    /// Writes the report to `w` as it is serialised, never holding it whole (a million
    /// statistics pairs make ~1.2 GB of JSON): the bytes of [`Exporter::serialize`].
    ///
    /// The pairs are most of a report and each is written on its own, so they are rendered in
    /// parallel, a window at a time, and spliced into the text of the rest where it has an
    /// empty `pairs` (byte for byte what [`to_writer`] writes for the whole).
    pub fn write(&self, c: &Comparison, w: &mut dyn Write) -> anyhow::Result<()> {
        let rest = Comparison {
            schema_version: c.schema_version,
            tool_version: c.tool_version.clone(),
            reference: c.reference.clone(),
            candidate: c.candidate.clone(),
            mode: c.mode,
            pairs: Vec::new(),
            unmatched_reference: c.unmatched_reference.clone(),
            unmatched_candidate: c.unmatched_candidate.clone(),
            structure: c.structure.clone(),
            analysis: c.analysis.clone(),
            fused_reference: c.fused_reference.clone(),
            replay: c.replay.clone(),
        };
        let mut text = Vec::new();
        to_writer(&mut text, &rest)?;
        // Only the top level's `pairs` can be preceded by a line break and two spaces: line
        // breaks inside strings are escaped.
        const EMPTY_PAIRS: &[u8] = b"\n  \"pairs\": []";
        let Some(at) = memchr::memmem::find(&text, EMPTY_PAIRS) else {
            anyhow::bail!("internal error: the report has no top-level `pairs`");
        };
        let close = at + EMPTY_PAIRS.len() - 1; // the `]`
        w.write_all(&text[..close])?;
        for (k, window) in c.pairs.chunks(PAIRS_PER_WINDOW).enumerate() {
            let parts = window
                .par_chunks(PAIRS_PER_TASK)
                .enumerate()
                .map(|(j, chunk)| {
                    let mut buf = Vec::new();
                    for (i, pair) in chunk.iter().enumerate() {
                        if k + j + i > 0 {
                            buf.push(b',');
                        }
                        // An element of the top level's array: two levels in.
                        buf.extend_from_slice(b"\n    ");
                        let layout = Layout {
                            depth: 2,
                            ..Layout::default()
                        };
                        pair.serialize(&mut serde_json::Serializer::with_formatter(
                            &mut buf, layout,
                        ))?;
                    }
                    Ok(buf)
                })
                .collect::<serde_json::Result<Vec<_>>>()?;
            for part in parts {
                w.write_all(&part)?;
            }
        }
        if !c.pairs.is_empty() {
            w.write_all(b"\n  ")?;
        }
        w.write_all(&text[close..])?;
        w.write_all(b"\n")?;
        Ok(())
    }
}

/// Pairs rendered before any is written: ~20 MB of text for pairs of small tensors.
const PAIRS_PER_WINDOW: usize = 8192;
/// Pairs per parallel task within a window.
const PAIRS_PER_TASK: usize = 256;

impl Exporter for Json {
    fn serialize(&self, c: &Comparison) -> anyhow::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write(c, &mut v)?;
        Ok(v)
    }
}

/// Writes `value` as JSON in serde_json's pretty layout, except that an array whose first
/// element is a number, a boolean or null is written on one line (`[0, 3, 17]`): a pair's two
/// 64-bin histograms took 128 lines, half of its bytes indentation, and most of the time of
/// a report of many small pairs went to writing them.
pub fn to_writer<W: Write, T: serde::Serialize + ?Sized>(
    w: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, Layout::default());
    value.serialize(&mut ser)
}

/// [`to_writer`] into a `String`.
pub fn to_string<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut v = Vec::new();
    to_writer(&mut v, value)?;
    Ok(String::from_utf8(v).expect("serde_json writes UTF-8"))
}

/// How an open array is laid out: decided at its first element.
#[derive(Clone, Copy, PartialEq)]
enum ArrayLayout {
    Undecided,
    OneLine,
    Lines,
}

/// The formatter of [`to_writer`]: serde_json's `PrettyFormatter` (two spaces) with one-line
/// arrays of scalars.
#[derive(Default)]
struct Layout {
    depth: usize,
    /// Whether the innermost open array or object has a value yet.
    has_value: bool,
    arrays: Vec<ArrayLayout>,
    /// The first element of the innermost array is about to be written: its layout, and so
    /// the line break before it, depend on what it is.
    first_pending: bool,
}

impl Layout {
    fn newline<W: ?Sized + Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    /// Called before every value: settles the layout of an array at its first element.
    fn value<W: ?Sized + Write>(&mut self, w: &mut W, scalar: bool) -> std::io::Result<()> {
        if std::mem::take(&mut self.first_pending) {
            let layout = if scalar {
                ArrayLayout::OneLine
            } else {
                ArrayLayout::Lines
            };
            if let Some(a) = self.arrays.last_mut() {
                *a = layout;
            }
            if !scalar {
                self.newline(w)?;
            }
        }
        Ok(())
    }
}

macro_rules! scalar {
    ($($name:ident($t:ty)),*) => {$(
        fn $name<W: ?Sized + Write>(&mut self, w: &mut W, v: $t) -> std::io::Result<()> {
            self.value(w, true)?;
            serde_json::ser::CompactFormatter.$name(w, v)
        }
    )*};
}

impl serde_json::ser::Formatter for Layout {
    scalar!(
        write_bool(bool),
        write_i8(i8),
        write_i16(i16),
        write_i32(i32),
        write_i64(i64),
        write_i128(i128),
        write_u8(u8),
        write_u16(u16),
        write_u32(u32),
        write_u64(u64),
        write_u128(u128),
        write_f32(f32),
        write_f64(f64),
        write_number_str(&str)
    );

    fn write_null<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.value(w, true)?;
        w.write_all(b"null")
    }

    fn begin_string<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.value(w, false)?;
        w.write_all(b"\"")
    }

    fn write_raw_fragment<W: ?Sized + Write>(&mut self, w: &mut W, f: &str) -> std::io::Result<()> {
        self.value(w, false)?;
        w.write_all(f.as_bytes())
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.value(w, false)?;
        self.depth += 1;
        self.has_value = false;
        self.arrays.push(ArrayLayout::Undecided);
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        self.first_pending = false;
        if self.arrays.pop() == Some(ArrayLayout::Lines) && self.has_value {
            self.newline(w)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            self.first_pending = true;
            return Ok(());
        }
        match self.arrays.last() {
            Some(ArrayLayout::OneLine) => w.write_all(b", "),
            _ => {
                w.write_all(b",")?;
                self.newline(w)
            }
        }
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.value(w, false)?;
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Session;

    /// The spliced, parallel report is byte for byte the serial serialisation of the whole,
    /// with no pairs, one pair, and more pairs than a window holds.
    #[test]
    fn spliced_report_is_the_whole_serialised() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("reference_dumps/h200/llama/msprobe");
        let s = Session::open(
            &root.join("cpu_fp32"),
            &root.join("cuda_fp16_fault_silu_l1"),
            &Default::default(),
        )
        .unwrap();
        let c = s.compare(&|| {});
        assert!(c.pairs.len() > 10);
        let mut many = c.clone();
        while many.pairs.len() <= PAIRS_PER_WINDOW + PAIRS_PER_TASK {
            many.pairs.extend(c.pairs.iter().cloned());
        }
        let mut one = c.clone();
        one.pairs.truncate(1);
        let mut none = c.clone();
        none.pairs.clear();
        for c in [c, many, one, none] {
            let mut whole = Vec::new();
            to_writer(&mut whole, &c).unwrap();
            whole.push(b'\n');
            let mut spliced = Vec::new();
            Json.write(&c, &mut spliced).unwrap();
            assert!(whole == spliced, "{} pairs", c.pairs.len());
        }
    }
}
