//! msprobe (Huawei `mindstudio-probe`) dumps: `dump.json` + `dump_tensor_data/`.

use super::error::{err, DumpError, ErrorKind, Result};
use super::json_tree::Node;
use super::paths::Resolver;
use super::{DType, Dump, Entry, Format, OpenOptions, RecordedStats, Role, Source, Task};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest `dump.json` accepted (a 100k-entry LLM op-level dump is ~100 MB).
const MAX_DUMP_JSON: u64 = 4 << 30;

/// `dump.json` files under `dir`, at most `depth` folders down (step/rank/proc levels).
pub fn find_dump_jsons(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, k)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_file() && e.file_name() == "dump.json" {
                out.push(p);
            } else if ft.is_dir() && k < depth && e.file_name() != "dump_tensor_data" {
                stack.push((p, k + 1));
            }
        }
    }
    out.sort();
    out
}

/// Locates the one `dump.json` a path designates.
fn locate(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.join("dump.json").is_file() {
        return Ok(path.join("dump.json"));
    }
    // msprobe's debug task (`debug.json`, same records) when there is no dump.json.
    if path.join("debug.json").is_file() {
        return Ok(path.join("debug.json"));
    }
    let found = find_dump_jsons(path, 4);
    match found.len() {
        0 => err(
            path,
            ErrorKind::Layout("no dump.json below this folder".into()),
        ),
        1 => Ok(found.into_iter().next().unwrap()),
        n => err(
            path,
            ErrorKind::Layout(format!(
                "{n} dump.json files below this folder (steps or ranks): point at one of {}",
                found
                    .iter()
                    .take(4)
                    .map(|p| p.parent().unwrap_or(p).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
    }
}

/// Python's `json` writes NaN/Infinity as bare words, which JSON parsers refuse: quote them
/// (outside strings) so statistics of tensors holding NaN still load.
fn quote_nonfinite(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // Most dump.json files hold neither word anywhere: two vectorised searches settle it at
    // memory speed, where the scan below stops at every quote (~2.5k instructions a record).
    if memchr::memmem::find(b, b"NaN").is_none() && memchr::memmem::find(b, b"Infinity").is_none() {
        return std::borrow::Cow::Borrowed(b);
    }
    // Jumps between the bytes that matter (memchr): outside strings a quote or the first
    // letter of a bare word (`-Infinity` is found by its `I`), inside them a quote or a
    // backslash. Bytes are copied in runs only once a word needs quoting.
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0; // b[..copied] is in `out`
    let mut i = 0;
    // Outside a string.
    while let Some(k) = memchr::memchr3(b'"', b'I', b'N', &b[i..]) {
        i += k;
        if b[i] != b'"' {
            let word = if b[i] == b'I' && b[i..].starts_with(b"Infinity") {
                let minus = i > 0 && b[i - 1] == b'-';
                Some((i - usize::from(minus), i + 8))
            } else if b[i] == b'N' && b[i..].starts_with(b"NaN") {
                Some((i, i + 3))
            } else {
                None
            };
            if let Some((from, to)) = word {
                let o = out.get_or_insert_with(|| Vec::with_capacity(b.len() + 64));
                o.extend_from_slice(&b[copied..from]);
                o.push(b'"');
                o.extend_from_slice(&b[from..to]);
                o.push(b'"');
                copied = to;
            }
            i = word.map_or(i + 1, |(_, to)| to);
            continue;
        }
        // Inside a string, from after its opening quote.
        i += 1;
        let mut closed = false;
        while let Some(k) = memchr::memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()) {
            i += k + 1;
            if b[i - 1] == b'"' {
                closed = true;
                break;
            }
            i += 1; // the escaped byte
        }
        if !closed {
            break;
        }
    }
    match out {
        None => std::borrow::Cow::Borrowed(b), // nothing was quoted
        Some(mut o) => {
            o.extend_from_slice(&b[copied.min(b.len())..]);
            std::borrow::Cow::Owned(o)
        }
    }
}

/// Parses a `dump.json` as Python's `json` writes it (bare `NaN`/`Infinity` become strings).
pub fn parse_json(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(&quote_nonfinite(bytes))
}

/// A number as msprobe records it: a JSON number, or a string (`"NaN"`, `"inf"`, `"1e-3"`).
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

/// Operator or module class of a place name.
pub fn op_type(place: &str) -> Option<String> {
    let parts: Vec<&str> = place.split('.').collect();
    let n = parts.len();
    if matches!(parts.first(), Some(&"Module") | Some(&"Cell")) {
        if parts.last() == Some(&"parameters_grad") {
            // Module.{path}.{Class}.parameters_grad
            return (n >= 3).then(|| parts[n - 2].to_string());
        }
        // Module.{path}.{Class}.{forward|backward}.{call}
        (n >= 4).then(|| parts[n - 3].to_string())
    } else {
        // {Prefix}.{api}.{call}.{forward|backward}
        (n >= 4).then(|| parts[1..n - 2].join("."))
    }
}

/// Opens the msprobe dump designated by `path`.
pub fn open(path: &Path, options: &OpenOptions) -> Result<Dump> {
    let json_path = locate(path)?;
    let root = json_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let md = std::fs::metadata(&json_path).map_err(|e| DumpError::new(&json_path, e.into()))?;
    if md.len() > MAX_DUMP_JSON {
        return err(
            &json_path,
            ErrorKind::Json("dump.json larger than 4 GiB".into()),
        );
    }
    // Mapped, not read: the parse walks it once, giving back the pages it has passed, so a
    // 335 MB dump.json costs a window of it, not all of it, beside the entries.
    let io = |e: std::io::Error| DumpError::new(&json_path, e.into());
    let mut file = std::fs::File::open(&json_path).map_err(io)?;
    let mapped = match md.len() {
        0 => None,
        n => Some(super::guard::map_or_read(&mut file, n, &json_path).map_err(io)?),
    };
    let bytes: &[u8] = mapped.as_ref().map_or(&[], |(m, _)| m);
    let data_dir = Resolver::new(root.join("dump_tensor_data"), options.allow_symlinks);
    let quoted = quote_nonfinite(bytes);
    let mut release = mapped
        .as_ref()
        .and_then(|(m, from_file)| super::guard::ReleaseBehind::new(m, *from_file));
    if let (std::borrow::Cow::Owned(_), Some(r)) = (&quoted, &mut release) {
        // The parse reads the quoted copy: the map has been read through.
        r.reached(bytes.as_ptr_range().end);
        release = None;
    }
    let head = match stream::read(&quoted, &json_path, &data_dir, release) {
        Some(h) => h?,
        // Duplicate keys: the tree keeps the last value at the first one's place; rare enough
        // to take the slow path that does exactly that.
        None => open_tree(bytes, &json_path, &data_dir)?,
    };
    drop(quoted);
    drop(mapped);
    let task = match head.task.as_deref().unwrap_or("tensor") {
        "tensor" => Task::Tensor,
        _ if head.any_md5 => Task::Md5,
        _ => Task::Statistics,
    };
    let mut head = head;
    if task != Task::Tensor {
        // A statistics or md5 task saves no tensors, whatever `data_name` says.
        for e in &mut head.entries {
            if matches!(e.source, Source::Pt(_) | Source::Npy(_)) {
                e.source = Source::Absent(
                    format!(
                        "task `{}` saves no tensor files",
                        head.task.as_deref().unwrap_or("")
                    )
                    .into(),
                );
            }
        }
    }
    Ok(Dump {
        path: path.to_path_buf(),
        root: root.clone(),
        format: Format::Msprobe,
        task,
        level: head.level,
        entries: head.entries,
        stacks: read_stacks(&root),
        run: super::read_run_info(root.parent().and_then(Path::parent)),
        options: options.clone(),
    })
}

/// What `open` needs from a `dump.json`.
struct Parsed {
    /// `task` when it is a string.
    task: Option<String>,
    /// `level` when it is a string.
    level: Option<String>,
    entries: Vec<Entry>,
    any_md5: bool,
    shared: Interner,
    /// Where a statistics-only entry's name is spelt before its one allocation.
    scratch: String,
}

/// One copy of each index, operator type and shape of a dump, shared by its entries (a
/// million entries repeat a few hundred of them; docs/performance.md).
#[derive(Default)]
struct Interner {
    texts: HashSet<Arc<str>>,
    shapes: HashSet<Arc<[usize]>>,
}

impl Interner {
    fn text(&mut self, s: &str) -> Arc<str> {
        if let Some(t) = self.texts.get(s) {
            return t.clone();
        }
        let t: Arc<str> = s.into();
        self.texts.insert(t.clone());
        t
    }

    fn shape(&mut self, s: &[usize]) -> Arc<[usize]> {
        if let Some(t) = self.shapes.get(s) {
            return t.clone();
        }
        let t: Arc<[usize]> = s.into();
        self.shapes.insert(t.clone());
        t
    }
}

/// `dump.json` parsed whole into a tree, then walked (the reference behaviour `stream` keeps).
fn open_tree(bytes: &[u8], json_path: &Path, data_dir: &Resolver) -> Result<Parsed> {
    let doc: Value =
        parse_json(bytes).map_err(|e| DumpError::new(json_path, ErrorKind::Json(e.to_string())))?;
    let data = doc
        .get("data")
        .and_then(|d| d.as_object())
        .ok_or_else(|| DumpError::new(json_path, ErrorKind::Json("no `data` object".into())))?;
    let mut p = Parsed {
        task: doc.get("task").and_then(|t| t.as_str()).map(str::to_string),
        level: doc
            .get("level")
            .and_then(|l| l.as_str())
            .map(str::to_string),
        entries: Vec::new(),
        any_md5: false,
        shared: Interner::default(),
        scratch: String::new(),
    };
    for (order, (place, rec)) in data.iter().enumerate() {
        let rec = Node::of_value(rec);
        walk_record(json_path, data_dir, order, place, &rec, &mut p)?;
    }
    Ok(p)
}

/// Adds the tensors of one `data` record (`place` at position `order`) to `p`.
fn walk_record(
    json_path: &Path,
    data_dir: &Resolver,
    order: usize,
    place: &str,
    rec: &Node,
    p: &mut Parsed,
) -> Result<()> {
    let at = Record::new(json_path, data_dir, order, place, &mut p.shared);
    // msprobe's debug task (`debug.json`, `msprobe.save`): `{name}.{count}.debug` holds the
    // saved value itself, a tensor or a nested structure of them.
    if at.is_debug() {
        return Walk::new(&at, p, Role::Debug, "debug").walk(rec, String::new(), 0);
    }
    let Node::Object(rec) = rec else {
        return Err(at.not_an_object());
    };
    for (key, v) in rec {
        let (role, label) = at.role_of(key);
        Walk::new(&at, p, role, label).walk(v, String::new(), 0)?;
    }
    Ok(())
}

/// What the walk of one `data` record knows of the record itself.
struct Record<'a> {
    json_path: &'a Path,
    data_dir: &'a Resolver,
    order: usize,
    place: Arc<str>,
    op: Option<Arc<str>>,
}

impl<'a> Record<'a> {
    fn new(
        json_path: &'a Path,
        data_dir: &'a Resolver,
        order: usize,
        place: &str,
        shared: &mut Interner,
    ) -> Self {
        Record {
            json_path,
            data_dir,
            order,
            op: op_type(place).map(|o| shared.text(&o)),
            place: place.into(),
        }
    }

    fn is_debug(&self) -> bool {
        self.place.ends_with(".debug")
    }

    fn not_an_object(&self) -> DumpError {
        DumpError::new(
            self.json_path,
            ErrorKind::Json("entry is not an object".into()),
        )
        .with_entry(&*self.place)
    }

    /// The role of a record's key, and its spelling in tensor names (msprobe's file names say
    /// `input`, `kwargs`).
    fn role_of<'k>(&self, key: &'k str) -> (Role, &'k str) {
        let label = match key {
            "input_args" => "input",
            "input_kwargs" => "kwargs",
            k => k,
        };
        // A parameter-gradient record maps parameter names to gradients.
        let role = if self.place.ends_with(".parameters_grad") {
            Role::ParametersGrad
        } else {
            Role::from_key(key)
        };
        (role, label)
    }
}

/// Visitor methods for a value that is not an object: accepted and skipped, giving `$none`
/// (the caller decides what a missing object means); array elements are skipped as `$skip`.
macro_rules! accept_non_objects {
    ($de:lifetime, $out:ty, $none:expr, $skip:ty) => {
        fn visit_bool<E>(self, _: bool) -> std::result::Result<$out, E> {
            Ok($none)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<$out, E> {
            Ok($none)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<$out, E> {
            Ok($none)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<$out, E> {
            Ok($none)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<$out, E> {
            Ok($none)
        }
        fn visit_unit<E>(self) -> std::result::Result<$out, E> {
            Ok($none)
        }
        fn visit_seq<A: serde::de::SeqAccess<$de>>(
            self,
            mut s: A,
        ) -> std::result::Result<$out, A::Error> {
            while s.next_element::<$skip>()?.is_some() {}
            Ok($none)
        }
    };
}

/// `dump.json` read as a stream: each `data` record is walked as it is parsed, without a tree
/// (building and dropping one per record was 13% of the open's instructions), so the document
/// never exists as a tree (a 100k-entry dump.json of 33 MB made one of several hundred MB). Same
/// entries, order and errors as `open_tree`: the first walk error is kept and reported only
/// when the whole document parses, as the tree path would report the parse error first.
/// Documents whose meaning needs the tree (repeated keys: first place, last value) go to it.
mod stream {
    use super::super::guard::ReleaseBehind;
    use super::super::json_tree::Text;
    use super::{
        DumpError, ErrorKind, Interner, Keyed, Node, Parsed, Path, Record, Resolver, Result, Role,
        Value, Walk, MAX_DEPTH,
    };
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
    use std::collections::HashSet;
    use std::fmt;

    struct State<'a> {
        json_path: &'a Path,
        data_dir: &'a Resolver,
        parsed: Parsed,
        first_err: Option<DumpError>,
        /// Hashes of the places seen: a repeat (or a collision) sends us to the tree path.
        places: HashSet<u64>,
        /// The document needs the tree path (see [`Outcome::tree`]).
        needs_tree: bool,
        /// `data` was seen holding an object (the last `data` key decides in the tree).
        data_object: bool,
        data_keys: usize,
        release: Option<ReleaseBehind<'a>>,
    }

    /// `None`: the document has duplicate keys where they matter; use the tree.
    pub(super) fn read(
        bytes: &[u8],
        json_path: &Path,
        data_dir: &Resolver,
        release: Option<ReleaseBehind>,
    ) -> Option<Result<Parsed>> {
        let mut st = State {
            json_path,
            data_dir,
            parsed: Parsed {
                task: None,
                level: None,
                entries: Vec::new(),
                any_md5: false,
                shared: Interner::default(),
                scratch: String::new(),
            },
            first_err: None,
            places: HashSet::new(),
            needs_tree: false,
            data_object: false,
            data_keys: 0,
            release,
        };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parsed = Top(&mut st).deserialize(&mut de).and_then(|()| de.end());
        if let Err(e) = parsed {
            return Some(Err(DumpError::new(
                json_path,
                ErrorKind::Json(e.to_string()),
            )));
        }
        if st.needs_tree || st.data_keys > 1 {
            return None;
        }
        if !st.data_object {
            return Some(Err(DumpError::new(
                json_path,
                ErrorKind::Json("no `data` object".into()),
            )));
        }
        if let Some(e) = st.first_err {
            return Some(Err(e));
        }
        Some(Ok(st.parsed))
    }

    struct Top<'s, 'a>(&'s mut State<'a>);

    impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Top<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<(), A::Error> {
            while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                match &*k {
                    "data" => {
                        self.0.data_keys += 1;
                        m.next_value_seed(Data(self.0))?;
                    }
                    "task" | "level" => {
                        let v: Value = m.next_value()?;
                        let s = v.as_str().map(str::to_string);
                        // A repeated key: the last value counts, as in the tree.
                        if &*k == "task" {
                            self.0.parsed.task = s;
                        } else {
                            self.0.parsed.level = s;
                        }
                    }
                    _ => {
                        m.next_value::<Value>()?; // parsed as the tree would (same errors)
                    }
                }
            }
            Ok(())
        }
        // Any other top-level value: no `data` object (decided by the caller).
        accept_non_objects!('de, (), (), Value);
    }

    struct Data<'s, 'a>(&'s mut State<'a>);

    impl<'de> DeserializeSeed<'de> for Data<'_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Data<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<(), A::Error> {
            let st = self.0;
            st.data_object = true;
            let mut order = 0;
            while let Some(Text(place)) = m.next_key::<Text<'de>>()? {
                if let (Some(r), std::borrow::Cow::Borrowed(p)) = (&mut st.release, &place) {
                    r.reached(p.as_ptr());
                }
                if !st.places.insert(hash(&place)) {
                    st.needs_tree = true;
                }
                if st.first_err.is_some() || st.needs_tree {
                    // Nothing more to learn from the records, but the rest must parse.
                    m.next_value::<Node<'de>>()?;
                } else {
                    let at = Record::new(
                        st.json_path,
                        st.data_dir,
                        order,
                        &place,
                        &mut st.parsed.shared,
                    );
                    let mut out = Outcome::default();
                    m.next_value_seed(RecordSeed {
                        at: &at,
                        p: &mut st.parsed,
                        out: &mut out,
                    })?;
                    st.needs_tree = out.tree;
                    st.first_err = out.err;
                }
                order += 1;
            }
            Ok(())
        }
        accept_non_objects!('de, (), (), Value);
    }

    /// What walking one record found besides its entries.
    #[derive(Default)]
    struct Outcome {
        /// The first error of the walk, in the tree walk's order.
        err: Option<DumpError>,
        /// The record holds what only the tree reads exactly: a repeated key, a tensor key
        /// (`dtype`, `shape`, ...) holding a structure, or nesting near the tree walk's limit.
        tree: bool,
    }

    impl Outcome {
        fn fail(&mut self, e: DumpError) {
            self.err.get_or_insert(e);
        }
    }

    /// Nesting from which a record goes to the tree path, below the tree walk's limit by the
    /// two levels a tensor key's value may hold.
    const DIRECT_DEPTH: usize = MAX_DEPTH - 2;

    /// One `data` record, walked as it is parsed (what `walk_record` does to its tree).
    struct RecordSeed<'s, 'a> {
        at: &'s Record<'a>,
        p: &'s mut Parsed,
        out: &'s mut Outcome,
    }

    impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            if self.at.is_debug() {
                let mut w = Walk::new(self.at, self.p, Role::Debug, "debug");
                return ValueSeed::root(&mut w, self.out).deserialize(d);
            }
            let object = d.deserialize_any(RecordSeed {
                at: self.at,
                p: &mut *self.p,
                out: &mut *self.out,
            })?;
            if !object {
                self.out.fail(self.at.not_an_object());
            }
            Ok(())
        }
    }

    impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
        /// Whether the record was an object.
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<bool, A::Error> {
            let mut keys = Keys::default();
            while let Some(Text(key)) = m.next_key::<Text<'de>>()? {
                self.out.tree |= keys.repeated(&key);
                let (role, label) = self.at.role_of(&key);
                let mut w = Walk::new(self.at, self.p, role, label);
                m.next_value_seed(ValueSeed::root(&mut w, self.out))?;
            }
            Ok(true)
        }
        accept_non_objects!('de, bool, false, Node<'de>);
    }

    /// Where a value sits under its parent: what its index in tensor names adds.
    #[derive(Clone, Copy)]
    enum Step<'k> {
        Root,
        Item(usize),
        Key(&'k str),
    }

    /// One value inside a record, walked as it is parsed (what `Walk::walk` does to its tree).
    struct ValueSeed<'s, 'w, 'k> {
        w: &'s mut Walk<'w>,
        out: &'s mut Outcome,
        parent: &'k str,
        step: Step<'k>,
        depth: usize,
    }

    impl<'s, 'w> ValueSeed<'s, 'w, 'static> {
        fn root(w: &'s mut Walk<'w>, out: &'s mut Outcome) -> Self {
            ValueSeed {
                w,
                out,
                parent: "",
                step: Step::Root,
                depth: 0,
            }
        }
    }

    impl ValueSeed<'_, '_, '_> {
        /// This value's index: `parent.step`, as `Walk::walk` spells it.
        fn index(&self) -> String {
            let step = match self.step {
                Step::Root => return self.parent.to_string(),
                Step::Item(i) => i.to_string(),
                Step::Key(k) => k.to_string(),
            };
            if self.parent.is_empty() {
                step
            } else {
                format!("{}.{step}", self.parent)
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, '_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            if self.depth >= DIRECT_DEPTH {
                self.out.tree = true;
            }
            if self.out.tree {
                // The record goes to the tree path: parse it as the tree would, and no more.
                <Node as serde::Deserialize>::deserialize(d)?;
                return Ok(());
            }
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ValueSeed<'_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut s: A,
        ) -> std::result::Result<(), A::Error> {
            let index = self.index();
            let mut i = 0;
            while s
                .next_element_seed(ValueSeed {
                    w: &mut *self.w,
                    out: &mut *self.out,
                    parent: &index,
                    step: Step::Item(i),
                    depth: self.depth + 1,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<(), A::Error> {
            // Whether this object is a tensor (`dtype` and `shape`), skipped (`type`) or a
            // container is known only at its end: its other values are walked as they come,
            // and what they did is undone if it proves not to be a container.
            let before = (self.w.out.len(), *self.w.any_md5, self.out.err.is_some());
            let index = self.index();
            let mut fields = TensorFields::default();
            let mut keys = Keys::default();
            while let Some(Text(key)) = m.next_key::<Text<'de>>()? {
                self.out.tree |= keys.repeated(&key);
                match TensorFields::slot(&key) {
                    Some(i) => {
                        let v: Node<'de> = m.next_value()?;
                        // Read as a tensor's field, walked as a container's child: equal only
                        // for a scalar or a list of scalars.
                        self.out.tree |= !is_flat(&v);
                        fields.0[i] = Some(v);
                    }
                    None => m.next_value_seed(ValueSeed {
                        w: &mut *self.w,
                        out: &mut *self.out,
                        parent: &index,
                        step: Step::Key(&key),
                        depth: self.depth + 1,
                    })?,
                }
            }
            if self.out.tree {
                return Ok(());
            }
            let tensor = fields.get("dtype").is_some() && fields.get("shape").is_some();
            if tensor || fields.get("type").is_some() {
                self.w.out.truncate(before.0);
                *self.w.any_md5 = before.1;
                if !before.2 {
                    self.out.err = None;
                }
                if tensor && self.out.err.is_none() {
                    if let Err(e) = self.w.tensor(&fields, index) {
                        self.out.fail(e);
                    }
                }
            }
            Ok(())
        }
    }

    /// A scalar, or a list of scalars: nothing the tree walk could find a tensor in.
    fn is_flat(v: &Node) -> bool {
        match v {
            Node::Array(items) => items
                .iter()
                .all(|x| !matches!(x, Node::Array(_) | Node::Object(_))),
            Node::Object(_) => false,
            _ => true,
        }
    }

    /// The keys `Walk::tensor` reads, and `type`.
    const TENSOR_KEYS: [&str; 9] = [
        "dtype",
        "shape",
        "type",
        "Max",
        "Min",
        "Mean",
        "Norm",
        "md5",
        "data_name",
    ];

    /// An object's values for [`TENSOR_KEYS`].
    #[derive(Default)]
    struct TensorFields<'de>([Option<Node<'de>>; TENSOR_KEYS.len()]);

    impl TensorFields<'_> {
        fn slot(key: &str) -> Option<usize> {
            TENSOR_KEYS.iter().position(|k| *k == key)
        }
    }

    impl<'de> Keyed<'de> for TensorFields<'de> {
        fn get(&self, key: &str) -> Option<&Node<'de>> {
            self.0[Self::slot(key)?].as_ref()
        }
    }

    /// The keys of one object so far, to notice a repeated one, by a cheap hash kept in place
    /// while few (a tensor has ~10 keys) and in a set beyond: no allocation for a tensor's
    /// object, and a collision only sends the document to the tree path, which is always right.
    #[derive(Default)]
    struct Keys {
        few: [u64; 16],
        len: usize,
        many: HashSet<u64>,
    }

    impl Keys {
        fn repeated(&mut self, key: &str) -> bool {
            // FNV-1a: keys are short, and no input can do worse than a detour through the tree.
            let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            if self.len < self.few.len() {
                if self.few[..self.len].contains(&h) {
                    return true;
                }
                self.few[self.len] = h;
                self.len += 1;
                return false;
            }
            self.few.contains(&h) || !self.many.insert(h)
        }
    }

    fn hash(s: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(s)
    }
}

/// The raw `data` records of a `dump.json` (Python's NaN/Infinity quoted), keyed by place, in
/// the document's order: all of them, or those of the places in `only` (the others are
/// parsed without being kept: a 100k-call dump.json makes a tree of several hundred MB).
/// Entries skip non-tensor arguments (ints, floats, bools, dtypes); replay needs them.
pub fn raw_records(
    dump_json: &Path,
    only: Option<&[String]>,
) -> Result<serde_json::Map<String, Value>> {
    use super::json_tree::Text;
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    struct Top<'a>(Option<HashSet<&'a str>>);
    struct Data<'a>(&'a Option<HashSet<&'a str>>);
    type Records = Option<serde_json::Map<String, Value>>;
    impl<'de> Visitor<'de> for Top<'_> {
        type Value = Records;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Records, A::Error> {
            // The last `data` key decides, as in a parsed `Value`.
            let mut data = None;
            while let Some(k) = m.next_key::<Text<'de>>()? {
                if k.0 == "data" {
                    data = m.next_value_seed(Data(&self.0))?;
                } else {
                    m.next_value::<IgnoredAny>()?;
                }
            }
            Ok(data)
        }
    }
    impl<'de> DeserializeSeed<'de> for Data<'_> {
        type Value = Records;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Records, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Data<'_> {
        type Value = Records;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Records, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(k) = m.next_key::<Text<'de>>()? {
                if self.0.as_ref().is_none_or(|w| w.contains(&*k.0)) {
                    out.insert(k.0.into_owned(), m.next_value::<Value>()?);
                } else {
                    m.next_value::<IgnoredAny>()?;
                }
            }
            Ok(Some(out))
        }
        accept_non_objects!('de, Records, None, IgnoredAny);
    }
    impl<'de> DeserializeSeed<'de> for Top<'_> {
        type Value = Records;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Records, D::Error> {
            d.deserialize_map(self)
        }
    }
    let bytes = std::fs::read(dump_json).map_err(|e| DumpError::new(dump_json, e.into()))?;
    let quoted = quote_nonfinite(&bytes);
    let only = only.map(|o| o.iter().map(String::as_str).collect());
    let mut de = serde_json::Deserializer::from_slice(&quoted);
    let data = Top(only)
        .deserialize(&mut de)
        .and_then(|d| de.end().map(|()| d))
        .map_err(|e| DumpError::new(dump_json, ErrorKind::Json(e.to_string())))?;
    match data {
        Some(d) => Ok(d),
        None => err(dump_json, ErrorKind::Json("no `data` object".into())),
    }
}

/// An object's value for a key: what [`Walk::tensor`] reads of a tensor's object.
trait Keyed<'n> {
    fn get(&self, key: &str) -> Option<&Node<'n>>;
}

impl<'n> Keyed<'n> for Node<'n> {
    fn get(&self, key: &str) -> Option<&Node<'n>> {
        Node::get(self, key)
    }
}

/// The deepest nesting of a record's values that the walk follows; deeper is an error.
const MAX_DEPTH: usize = 32;

struct Walk<'a> {
    json_path: &'a Path,
    data_dir: &'a Resolver,
    place: &'a Arc<str>,
    role: Role,
    label: &'a str,
    order: usize,
    op: &'a Option<Arc<str>>,
    out: &'a mut Vec<Entry>,
    any_md5: &'a mut bool,
    shared: &'a mut Interner,
    scratch: &'a mut String,
}

impl<'a> Walk<'a> {
    fn new(at: &'a Record, p: &'a mut Parsed, role: Role, label: &'a str) -> Self {
        Walk {
            json_path: at.json_path,
            data_dir: at.data_dir,
            place: &at.place,
            role,
            label,
            order: at.order,
            op: &at.op,
            out: &mut p.entries,
            any_md5: &mut p.any_md5,
            shared: &mut p.shared,
            scratch: &mut p.scratch,
        }
    }

    fn walk(&mut self, v: &Node, index: String, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(DumpError::new(
                self.json_path,
                ErrorKind::Json("nested too deeply".into()),
            )
            .with_entry(&**self.place));
        }
        let sub = |i: &str| {
            if index.is_empty() {
                i.to_string()
            } else {
                format!("{index}.{i}")
            }
        };
        match v {
            Node::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    self.walk(x, sub(&i.to_string()), depth + 1)?;
                }
            }
            Node::Object(_) if v.get("dtype").is_some() && v.get("shape").is_some() => {
                self.tensor(v, index)?;
            }
            Node::Object(_) if v.get("type").is_some() => {} // int, slice, dtype, ... : not tensors
            Node::Object(o) => {
                for (k, x) in o {
                    self.walk(x, sub(k), depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn tensor<'n>(&mut self, o: &impl Keyed<'n>, index: String) -> Result<()> {
        // Named as msprobe's compare names it: keyword arguments are inputs
        // (`...forward.input.attn_mask`); the role stays `kwargs`.
        let io = if self.label == "kwargs" {
            "input"
        } else {
            self.label
        };
        // The name of a tensor without a `data_name`, and of any entry in an error: spelt
        // only when needed (a `format!` per tensor was a tenth of an op-level dump's walk).
        let place = self.place;
        let fallback = || {
            let mut s = String::new();
            spell_name(&mut s, place, self.label, io, &index);
            s
        };
        let bad =
            |m: String| DumpError::new(self.json_path, ErrorKind::Json(m)).with_entry(fallback());
        let dtype_s = o.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
        let dtype = DType::parse(dtype_s);
        let dims: Option<Vec<usize>> = match o.get("shape") {
            Some(Node::Array(a)) => a
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect(),
            _ => None,
        };
        let Some(dims) = dims else {
            return Err(bad("`shape` is not a list of sizes".into()));
        };
        let shape = Some(self.shared.shape(&dims));
        let stats = RecordedStats::new(
            o.get("Max").and_then(Node::as_f64),
            o.get("Min").and_then(Node::as_f64),
            o.get("Mean").and_then(Node::as_f64),
            o.get("Norm").and_then(Node::as_f64),
        );
        let checksum = o.get("md5").and_then(Node::as_str).map(Box::from);
        *self.any_md5 |= checksum.is_some();
        let (name, source) = match o.get("data_name").and_then(Node::as_str) {
            Some(dn) => {
                let file = self
                    .data_dir
                    .resolve(dn)
                    .map_err(|e| e.with_entry(fallback()))?;
                let (stem, src) = if let Some(s) = dn.strip_suffix(".pt") {
                    (s, Source::Pt(file))
                } else if let Some(s) = dn.strip_suffix(".npy") {
                    (s, Source::Npy(file))
                } else {
                    return Err(bad(format!("data_name `{dn}` is neither .pt nor .npy")));
                };
                (Arc::from(stem), src)
            }
            None => (
                {
                    // Spelt in a kept buffer: one allocation (the `Arc`) per name, not two.
                    self.scratch.clear();
                    spell_name(self.scratch, place, self.label, io, &index);
                    Arc::from(self.scratch.as_str())
                },
                Source::Absent("statistics-only dump".into()),
            ),
        };
        let index = self
            .shared
            .text(if index.is_empty() { "0" } else { &index });
        if dtype.is_none() && matches!(source, Source::Pt(_) | Source::Npy(_)) {
            return Err(
                DumpError::new(self.json_path, ErrorKind::Dtype(dtype_s.to_string()))
                    .with_entry(&*name),
            );
        }
        self.out.push(Entry {
            name,
            place: self.place.clone(),
            role: self.role,
            index,
            order: self.order,
            op_type: self.op.clone(),
            dtype,
            shape,
            stats: Some(stats),
            checksum,
            source,
        });
        Ok(())
    }
}

/// Appends the name msprobe's compare gives a tensor without a `data_name`:
/// `{place}.{io}.{index}` (index `0` for a lone tensor), or `{place}[.{index}]` in a debug record.
fn spell_name(out: &mut String, place: &str, label: &str, io: &str, index: &str) {
    out.push_str(place);
    if label != "debug" {
        out.push('.');
        out.push_str(io);
        out.push('.');
        out.push_str(if index.is_empty() { "0" } else { index });
    } else if !index.is_empty() {
        out.push('.');
        out.push_str(index);
    }
}

/// First stack line per place from `stack.json` (`{id: [[places], [lines]]}`); a missing or
/// malformed file just means no stack lines.
fn read_stacks(root: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(b) = std::fs::read(root.join("stack.json")) else {
        return out;
    };
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&b) else {
        return out;
    };
    for (_, v) in m {
        let Some(a) = v.as_array() else { continue };
        let (Some(names), Some(lines)) = (
            a.first().and_then(|x| x.as_array()),
            a.get(1).and_then(|x| x.as_array()),
        ) else {
            continue;
        };
        let Some(line) = lines.first().and_then(|l| l.as_str()) else {
            continue;
        };
        let line = line.split(", \n").next().unwrap_or(line).trim().to_string();
        for n in names.iter().filter_map(|n| n.as_str()) {
            out.insert(n.to_string(), line.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_types() {
        assert_eq!(
            op_type("Functional.silu.1.forward").as_deref(),
            Some("silu")
        );
        assert_eq!(
            op_type("Tensor.__add__.0.forward").as_deref(),
            Some("__add__")
        );
        assert_eq!(
            op_type("Module.features.0.0.Conv2d.forward.0").as_deref(),
            Some("Conv2d")
        );
        assert_eq!(
            op_type("Module.features.0.Conv2d.backward.1").as_deref(),
            Some("Conv2d")
        );
        assert_eq!(
            op_type("Module.features.0.Conv2d.parameters_grad").as_deref(),
            Some("Conv2d")
        );
        assert_eq!(
            op_type("Functional.silu.1.backward").as_deref(),
            Some("silu")
        );
    }

    /// A statistics dump.json of `records` calls (~420 bytes each), `tail` appended inside
    /// `data` after them.
    fn big_dump_json(records: usize, tail: &str) -> String {
        let mut s =
            String::from("{\n \"task\": \"statistics\",\n \"level\": \"L1\",\n \"data\": {\n");
        for i in 0..records {
            let max = i % 7;
            s.push_str(&format!(
                "  \"Functional.linear.{i}.forward\": {{\"input_args\": [{{\"type\": \"torch.Tensor\", \
                 \"dtype\": \"torch.float32\", \"shape\": [4, {w}], \"Max\": {max}.5, \"Min\": -1.25, \
                 \"Mean\": 0.{i}, \"Norm\": {i}.75, \"requires_grad\": false}}], \"output\": [{{\"type\": \
                 \"torch.Tensor\", \"dtype\": \"torch.bfloat16\", \"shape\": [4, {w}], \"Max\": 2.0, \
                 \"Min\": -2.0, \"Mean\": 0.5, \"Norm\": 8.0, \"requires_grad\": true}}]}},\n",
                w = i % 5 + 1
            ));
        }
        s.push_str(tail);
        s
    }

    /// Writes `text` as `dir/dump.json`, dated an hour ago so it is mapped, not read (a file
    /// that is still settling is read into memory).
    fn write_settled(dir: &Path, text: &str) {
        let p = dir.join("dump.json");
        std::fs::write(&p, text).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }

    /// A dump.json larger than the release step, mapped and given back behind the parser,
    /// reads the same entries as the same file read into memory; so does one with a Python
    /// `NaN` (parsed from a quoted copy), and a syntax error near the end is reported at the
    /// same line and column (counted over pages given back, which fault in again).
    #[test]
    fn mapped_dump_json_reads_as_a_read_one() {
        let t = tempfile::tempdir().unwrap();
        let (mapped, read) = (t.path().join("mapped"), t.path().join("read"));
        std::fs::create_dir_all(&mapped).unwrap();
        std::fs::create_dir_all(&read).unwrap();
        let plain = big_dump_json(150_000, "  \"end\": {}\n }\n}\n");
        assert!(plain.len() > 40 << 20);
        let nan = plain.replacen("\"Max\": 3.5", "\"Max\": NaN", 1);
        for text in [plain, nan] {
            write_settled(&mapped, &text);
            std::fs::write(read.join("dump.json"), &text).unwrap(); // fresh: read, not mapped
            let a = open(&mapped, &OpenOptions::default()).unwrap();
            let b = open(&read, &OpenOptions::default()).unwrap();
            assert_eq!(a.entries.len(), 300_000);
            assert_eq!(b.entries.len(), 300_000);
            for (x, y) in a.entries.iter().zip(&b.entries) {
                assert_eq!(format!("{x:?}"), format!("{y:?}"));
            }
        }
        let broken = big_dump_json(150_000, "  \"end\": {\"output\": [1, 2}\n }\n}\n");
        write_settled(&mapped, &broken);
        std::fs::write(read.join("dump.json"), &broken).unwrap();
        let ea = open(&mapped, &OpenOptions::default())
            .unwrap_err()
            .to_string();
        let eb = open(&read, &OpenOptions::default())
            .unwrap_err()
            .to_string();
        let line = format!("line {}", broken.lines().count() - 2);
        assert!(ea.contains(&line), "{ea}");
        assert_eq!(ea.replace("mapped", "read"), eb);
    }

    /// The first, byte-by-byte version of `quote_nonfinite`: the oracle for the memchr one.
    fn quote_nonfinite_bytewise(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut in_str = false;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if in_str {
                if c == b'\\' {
                    out.push(c);
                    i += 1;
                    if i < b.len() {
                        out.push(b[i]);
                    }
                    i += 1;
                    continue;
                } else if c == b'"' {
                    in_str = false;
                }
            } else if c == b'"' {
                in_str = true;
            } else {
                let word: Option<&[u8]> = [&b"-Infinity"[..], b"Infinity", b"NaN"]
                    .into_iter()
                    .find(|w| b[i..].starts_with(w));
                if let Some(w) = word {
                    out.push(b'"');
                    out.extend_from_slice(w);
                    out.push(b'"');
                    i += w.len();
                    continue;
                }
            }
            out.push(c);
            i += 1;
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn quote_nonfinite_matches_the_bytewise_pass(
            parts in proptest::collection::vec(0usize..12, 0..40)
        ) {
            const PIECES: [&str; 12] = [
                "\"", "\\", "I", "N", "-", "a", "Infinity", "NaN", "-Infinity", "1.5", ": ", "Na",
            ];
            let doc: String = parts.iter().map(|&k| PIECES[k]).collect();
            let got = quote_nonfinite(doc.as_bytes()).into_owned();
            let want = quote_nonfinite_bytewise(doc.as_bytes());
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
        }
    }

    /// A JSON value's text, from a small alphabet of msprobe's keys and values, objects
    /// possibly repeating a key, nested up to `depth`.
    fn json_text(depth: u32) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        const KEYS: [&str; 14] = [
            "input_args",
            "input_kwargs",
            "output",
            "dtype",
            "shape",
            "type",
            "Max",
            "Norm",
            "md5",
            "data_name",
            "a",
            "0",
            "b\\u00e9",
            "requires_grad",
        ];
        const LEAVES: [&str; 16] = [
            "null",
            "true",
            "0",
            "7",
            "-3",
            "1.5e3",
            "\"torch.float32\"",
            "\"torch.bfloat16\"",
            "\"bad\"",
            "\"x.pt\"",
            "\"sub/y.npy\"",
            "\"z.txt\"",
            "\"NaN\"",
            "[2, 3]",
            "[]",
            "[1, -1]",
        ];
        let leaf = (0..LEAVES.len()).prop_map(|i| LEAVES[i].to_string());
        leaf.prop_recursive(depth, 96, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                proptest::collection::vec((0..KEYS.len(), inner), 0..7).prop_map(|kv| {
                    let fields: Vec<String> = kv
                        .into_iter()
                        .map(|(k, v)| format!("\"{}\": {v}", KEYS[k]))
                        .collect();
                    format!("{{{}}}", fields.join(", "))
                }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// The stream reads every document it does not hand to the tree exactly as the tree
        /// path does: the same entries in the same order, or the same first error.
        #[test]
        fn stream_reads_as_the_tree(
            records in proptest::collection::vec(
                (0usize..5, json_text(4)), 0..5),
            tensorish in proptest::collection::vec(
                (0usize..5, 0usize..4, proptest::bool::ANY), 0..4),
        ) {
            const PLACES: [&str; 5] = [
                "Functional.linear.0.forward", "Tensor.add.1.forward", "x.0.debug",
                "Module.fc.Linear.parameters_grad", "Functional.linear.0.forward",
            ];
            const DTYPES: [&str; 4] = ["torch.float32", "torch.float16", "bad", "torch.int64"];
            let mut fields: Vec<String> = records
                .iter()
                .map(|(p, v)| format!("\"{}\": {v}", PLACES[*p]))
                .collect();
            // Records shaped as msprobe writes them, so that tensors are found too.
            for (k, (p, d, named)) in tensorish.iter().enumerate() {
                let name = if *named { format!(", \"data_name\": \"t{k}.pt\"") } else { String::new() };
                fields.push(format!(
                    "\"{}.{k}\": {{\"input_args\": [{{\"type\": \"torch.Tensor\", \"dtype\": \"{}\", \
                     \"shape\": [2, {k}], \"Max\": 1.5, \"Min\": NaN, \"md5\": \"ab\"{name}}}, 3], \
                     \"output\": {{\"x\": {{\"dtype\": \"{}\", \"shape\": []}}}}}}",
                    PLACES[*p], DTYPES[*d], DTYPES[(d + 1) % 4]
                ));
            }
            let doc = format!("{{\"task\": \"tensor\", \"data\": {{{}}}}}", fields.join(", "));
            let bytes = quote_nonfinite(doc.as_bytes());
            let t = tempfile::tempdir().unwrap();
            let json_path = t.path().join("dump.json");
            let dir = Resolver::new(t.path().join("dump_tensor_data"), false);
            let Some(streamed) = stream::read(&bytes, &json_path, &dir, None) else {
                return Ok(()); // handed to the tree
            };
            let tree = open_tree(&bytes, &json_path, &dir);
            match (streamed, tree) {
                (Ok(a), Ok(b)) => {
                    proptest::prop_assert_eq!(
                        format!("{:?} {} {:?}", a.entries, a.any_md5, a.task),
                        format!("{:?} {} {:?}", b.entries, b.any_md5, b.task)
                    );
                }
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => proptest::prop_assert!(
                    false,
                    "stream {:?} tree {:?} on {doc}",
                    a.map(|p| p.entries.len()).map_err(|e| e.to_string()),
                    b.map(|p| p.entries.len()).map_err(|e| e.to_string())
                ),
            }
        }
    }

    #[test]
    fn quotes_python_nonfinite_outside_strings() {
        let s = br#"{"a": NaN, "b": -Infinity, "c": "NaN here", "d": Infinity}"#;
        let v: Value = serde_json::from_slice(&quote_nonfinite(s)).unwrap();
        assert!(v.get("a").and_then(json_f64).unwrap().is_nan());
        assert_eq!(v.get("b").and_then(json_f64), Some(f64::NEG_INFINITY));
        assert_eq!(v["c"], "NaN here");
        assert_eq!(v.get("d").and_then(json_f64), Some(f64::INFINITY));
    }
}
