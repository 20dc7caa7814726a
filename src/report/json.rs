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
        to_writer(&mut *w, c)?;
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
