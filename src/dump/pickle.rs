//! A pickle machine that knows only what `torch.save` writes for tensors.
//!
//! It builds plain values (numbers, strings, tuples, lists, dicts) and recognises a fixed
//! whitelist of globals: the tensor-rebuild functions, the typed storage classes and
//! `collections.OrderedDict`. Any other global is refused when it is named, so nothing a pickle
//! asks for is ever looked up, let alone called. Memory is bounded by a node budget so a pickle
//! that duplicates a large value over and over (a "billion laughs") fails instead of exhausting
//! RAM.

use super::dtype::DType;

/// Most nodes (values, including copies made by memo gets) one pickle may create.
const NODE_BUDGET: usize = 1_000_000;
/// Deepest nesting of containers accepted.
const MAX_DEPTH: usize = 256;

/// A whitelisted global.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`.
    RebuildParameter,
    /// `torch_npu.utils.storage._rebuild_npu_tensor(storage, offset, size, stride, requires_grad, hooks, npu_info)`.
    RebuildNpuTensor,
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch.<X>Storage` (and `torch.cuda.<X>Storage` of legacy files).
    Storage(DType),
}

/// A storage named by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// Element type of the storage.
    pub dtype: DType,
    /// Key of the storage: the zip entry `data/<key>`, or the legacy storage key.
    pub key: String,
    /// Device the storage lived on when saved (`cpu`, `cuda:0`, `npu:0`).
    pub location: String,
    /// Elements in the storage, as recorded (legacy files record it again before the data).
    pub numel: u64,
}

/// A tensor as rebuilt by one of the whitelisted functions.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// Storage the tensor views.
    pub storage: StorageRef,
    /// Element offset into the storage.
    pub offset: u64,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<i64>,
    /// NPU storage-format code (`_rebuild_npu_tensor`'s last argument when it is an int).
    pub npu_format: Option<i64>,
}

/// A value on the pickle machine's stack.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Python `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// `int` that fits in 64 bits.
    Int(i64),
    /// Wider `int`, as its little-endian two's-complement bytes (legacy files' magic number).
    BigInt(Vec<u8>),
    /// `float`.
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `list`.
    List(Vec<Value>),
    /// `dict` or `OrderedDict`, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A whitelisted global.
    Global(Global),
    /// A storage from a persistent id (boxed, as the tensor: every value on the stack is as
    /// large as the largest variant, and a tensor pickle moves values some forty times).
    Storage(Box<StorageRef>),
    /// A rebuilt tensor.
    Tensor(Box<TensorRef>),
}

impl Value {
    /// Node count, or `None` when nested deeper than `MAX_DEPTH` (which also keeps the
    /// recursion here and in `Drop` shallow).
    fn measure(&self, depth: usize) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match self {
            Value::Tuple(v) | Value::List(v) => {
                let mut n = 1usize;
                for x in v {
                    n = n.saturating_add(x.measure(depth + 1)?);
                }
                n
            }
            Value::Dict(v) => {
                let mut n = 1usize;
                for (k, x) in v {
                    n = n.saturating_add(k.measure(depth + 1)?);
                    n = n.saturating_add(x.measure(depth + 1)?);
                }
                n
            }
            Value::Str(s) => 1 + s.len() / 64,
            Value::Bytes(b) | Value::BigInt(b) => 1 + b.len() / 64,
            _ => 1,
        })
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
}

/// How persistent ids are turned into storages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PersistentIds {
    /// Zip format: `('storage', type, key, location, numel)`.
    Zip,
    /// Legacy format: `('storage', type, key, location, numel, view_metadata)`.
    Legacy,
}

/// Runs the pickle program at the start of `data`; returns the value and the bytes consumed.
pub fn load(data: &[u8], ids: PersistentIds) -> Result<(Value, usize), super::ErrorKind> {
    load_with(data, ids, !reads_memo(data))
}

/// [`load`] that always keeps memo values (for the fuzz target `pickle`, which checks that
/// skipping them changes nothing).
#[doc(hidden)]
pub fn load_eager(data: &[u8], ids: PersistentIds) -> Result<(Value, usize), super::ErrorKind> {
    load_with(data, ids, false)
}

fn load_with(
    data: &[u8],
    ids: PersistentIds,
    keys_only: bool,
) -> Result<(Value, usize), super::ErrorKind> {
    Machine {
        data,
        pos: 0,
        // A tensor pickle holds up to a dozen values and two marks at once.
        stack: Vec::with_capacity(16),
        marks: Vec::with_capacity(4),
        memo: std::collections::HashMap::new(),
        keys_only,
        memo_keys: MemoKeys::default(),
        nodes: 0,
        ids,
    }
    .run()
}

/// Whether the pickle program at the start of `data` may read its memo (BINGET, LONG_BINGET)
/// before its STOP. `false` only when every opcode up to STOP is one the machine knows and no
/// memo read is among them: then memo puts need not copy values (a tensor pickle memoises a
/// dozen values and reads none). Any doubt answers `true`.
fn reads_memo(data: &[u8]) -> bool {
    let mut i = 0usize;
    let arg = |i: usize, n: usize| -> Option<&[u8]> { data.get(i..i.checked_add(n)?) };
    let le = |b: &[u8]| b.iter().rev().fold(0usize, |a, &x| (a << 8) | x as usize);
    let line_end = |i: usize| -> Option<usize> {
        Some(i + data.get(i..)?.iter().position(|&b| b == b'\n')? + 1)
    };
    loop {
        let Some(&op) = data.get(i) else {
            return true;
        };
        i += 1;
        let next = match op {
            b'.' => return false,
            b'h' | b'j' => return true,
            b'('
            | b'}'
            | b']'
            | b')'
            | b't'
            | 0x85..=0x87
            | b'l'
            | b'd'
            | b'a'
            | b'e'
            | b's'
            | b'u'
            | 0x88
            | 0x89
            | b'N'
            | 0x94
            | b'0'
            | b'1'
            | b'2'
            | b'Q'
            | b'R'
            | b'b'
            | 0x93 => Some(i),
            0x80 | b'K' | b'q' => Some(i + 1),
            b'M' => Some(i + 2),
            b'J' | b'r' => Some(i + 4),
            0x95 | b'G' => Some(i + 8),
            0x8a | 0x8c | b'U' | b'C' => arg(i, 1).map(|b| i + 1 + le(b)),
            0x8b | b'X' | b'T' | b'B' => arg(i, 4).map(|b| i + 4 + le(b)),
            0x8d => arg(i, 8).and_then(|b| (i + 8).checked_add(le(b))),
            b'I' | b'L' | b'F' => line_end(i),
            b'c' => line_end(i).and_then(line_end),
            _ => None,
        };
        match next {
            Some(n) if n <= data.len() => i = n,
            _ => return true,
        }
    }
}

/// The memo's key set, for machines that keep no memo values (`keys_only`).
#[derive(Default)]
struct MemoKeys {
    small: Vec<bool>,
    large: std::collections::HashSet<u32>,
    len: usize,
}

impl MemoKeys {
    fn insert(&mut self, k: u32) {
        let new = if k < 1 << 16 {
            let k = k as usize;
            if self.small.len() <= k {
                self.small.resize(k + 1, false);
            }
            !std::mem::replace(&mut self.small[k], true)
        } else {
            self.large.insert(k)
        };
        self.len += new as usize;
    }
}

/// Nodes of `v`, for the budget.
fn nodes(v: &Value) -> R<usize> {
    v.measure(0).ok_or_else(|| bad("values nested too deeply"))
}

fn bad(msg: impl Into<String>) -> super::ErrorKind {
    super::ErrorKind::Pickle(msg.into())
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u32, Value>,
    /// No memo reads ahead (`reads_memo`): keep only the memo's keys, not copies of values.
    keys_only: bool,
    memo_keys: MemoKeys,
    nodes: usize,
    ids: PersistentIds,
}

type R<T> = Result<T, super::ErrorKind>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| super::ErrorKind::Truncated("pickle ends inside an opcode".into()))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> R<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| super::ErrorKind::Truncated("unterminated text line".into()))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| bad("non-UTF-8 text line"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> R<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8 string"))
    }

    /// Counts `v`'s nodes against the budget.
    fn charge(&mut self, v: &Value) -> R<()> {
        self.add_nodes(nodes(v)?)
    }
    fn add_nodes(&mut self, n: usize) -> R<()> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > NODE_BUDGET {
            return Err(bad("pickle creates too many values (memo or stack bomb)"));
        }
        Ok(())
    }
    fn push(&mut self, v: Value) -> R<()> {
        self.charge(&v)?;
        if self.stack.len() > NODE_BUDGET {
            return Err(bad("pickle stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> R<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(bad("pop across a mark"));
        }
        self.stack.pop().ok_or_else(|| bad("stack underflow"))
    }
    fn top(&mut self) -> R<&mut Value> {
        self.stack.last_mut().ok_or_else(|| bad("stack underflow"))
    }
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| bad("no mark"))?;
        if m > self.stack.len() {
            return Err(bad("mark past the stack"));
        }
        Ok(self.stack.split_off(m))
    }
    fn memo_len(&self) -> usize {
        if self.keys_only {
            self.memo_keys.len
        } else {
            self.memo.len()
        }
    }
    fn memo_put(&mut self, k: u32) -> R<()> {
        let top = self
            .stack
            .last()
            .ok_or_else(|| bad("memo put on empty stack"))?;
        // Without memo reads ahead only the key is kept; the node charge is the same.
        let n = nodes(top)?;
        let v = (!self.keys_only).then(|| top.clone());
        self.add_nodes(n)?;
        if self.memo_len() > NODE_BUDGET {
            return Err(bad("memo too large"));
        }
        match v {
            Some(v) => {
                self.memo.insert(k, v);
            }
            None => self.memo_keys.insert(k),
        }
        Ok(())
    }
    fn memo_get(&mut self, k: u32) -> R<()> {
        let v = self
            .memo
            .get(&k)
            .cloned()
            .ok_or_else(|| bad(format!("memo key {k} not set")))?;
        self.push(v)
    }

    fn run(mut self) -> R<(Value, usize)> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(bad(format!("pickle protocol {p}")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a size hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok((v, self.pos));
                }
                b'(' => {
                    if self.marks.len() >= MAX_DEPTH {
                        return Err(bad("too deeply nested"));
                    }
                    self.marks.push(self.stack.len())
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let v = self.pop_mark()?;
                    self.push(Value::Tuple(v))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(bad("stack underflow"));
                    }
                    let mut v = Vec::with_capacity(n);
                    for _ in 0..n {
                        v.push(self.pop()?);
                    }
                    v.reverse();
                    self.push(Value::Tuple(v))?;
                }
                b'l' => {
                    let v = self.pop_mark()?;
                    self.push(Value::List(v))?
                }
                b'd' => {
                    let v = self.pop_mark()?;
                    let d = pairs(v)?;
                    self.push(Value::Dict(d))?
                }
                b'a' => {
                    let x = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(x),
                        _ => return Err(bad("APPEND to a non-list")),
                    }
                }
                b'e' => {
                    let xs = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(xs),
                        _ => return Err(bad("APPENDS to a non-list")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err(bad("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let kv = pairs(self.pop_mark()?)?;
                    match self.top()? {
                        Value::Dict(d) => d.extend(kv),
                        _ => return Err(bad("SETITEMS on a non-dict")),
                    }
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(long_le(b))?
                }
                0x8b => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.push(long_le(b))?
                }
                b'I' => {
                    let s = self.line()?;
                    let v = match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(s.parse().map_err(|_| bad("bad INT"))?),
                    };
                    self.push(v)?
                }
                b'L' => {
                    let s = self.line()?.trim_end_matches('L');
                    self.push(Value::Int(s.parse().map_err(|_| bad("bad LONG"))?))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))?
                }
                b'F' => {
                    let s = self.line()?;
                    self.push(Value::Float(s.parse().map_err(|_| bad("bad FLOAT"))?))?
                }
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'N' => self.push(Value::None)?,
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?).map_err(|_| bad("string too long"))?;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo_len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = global(module, name)?;
                    self.push(Value::Global(g))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let g = global(&m, &n)?;
                            self.push(Value::Global(g))?
                        }
                        _ => return Err(bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent(pid)?;
                    self.push(Value::Storage(Box::new(s)))?
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = reduce(f, args)?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop()?;
                    match (self.top()?, state) {
                        // OrderedDict/tensor state (e.g. an empty `__dict__`): nothing to run.
                        (Value::Tensor(_), _) | (Value::Dict(_), Value::None) => {}
                        (Value::Dict(d), Value::Dict(more)) => d.extend(more),
                        (Value::Dict(_), Value::Tuple(_)) => {}
                        _ => return Err(bad("BUILD on a value that is not a tensor or dict")),
                    }
                }
                b'i' | b'o' | 0x81 | 0x92 => {
                    return Err(bad(format!(
                        "opcode 0x{op:02x} (object construction) is not allowed in tensor files"
                    )))
                }
                _ => return Err(bad(format!("unknown or unsupported opcode 0x{op:02x}"))),
            }
        }
    }

    fn persistent(&self, pid: Value) -> R<StorageRef> {
        let mut t = match pid {
            Value::Tuple(t) => t,
            _ => return Err(bad("persistent id is not a tuple")),
        };
        let want = match self.ids {
            PersistentIds::Zip => 5,
            PersistentIds::Legacy => 6,
        };
        if t.len() != want || !matches!(&t[0], Value::Str(s) if s == "storage") {
            return Err(bad(format!("unexpected persistent id {t:?}")));
        }
        let dtype = match &t[1] {
            Value::Global(Global::Storage(d)) => *d,
            other => return Err(bad(format!("persistent id storage type {other:?}"))),
        };
        let key = match &mut t[2] {
            Value::Str(s) => std::mem::take(s),
            Value::Int(i) => i.to_string(),
            _ => return Err(bad("persistent id key is not a string")),
        };
        let location = match &mut t[3] {
            Value::Str(s) => std::mem::take(s),
            _ => return Err(bad("persistent id location is not a string")),
        };
        let numel = t[4]
            .as_int()
            .filter(|&n| n >= 0)
            .ok_or_else(|| bad("persistent id numel is not a non-negative int"))?
            as u64;
        if self.ids == PersistentIds::Legacy && t[5] != Value::None {
            return Err(super::ErrorKind::Unsupported(
                "legacy storage views (view_metadata)".into(),
            ));
        }
        Ok(StorageRef {
            dtype,
            key,
            location,
            numel,
        })
    }
}

fn pairs(v: Vec<Value>) -> R<Vec<(Value, Value)>> {
    if !v.len().is_multiple_of(2) {
        return Err(bad("odd number of dict items"));
    }
    let mut out = Vec::with_capacity(v.len() / 2);
    let mut it = v.into_iter();
    while let (Some(k), Some(x)) = (it.next(), it.next()) {
        out.push((k, x));
    }
    Ok(out)
}

fn long_le(b: &[u8]) -> Value {
    if b.len() > 8 {
        return Value::BigInt(b.to_vec());
    }
    if b.is_empty() {
        return Value::Int(0);
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut buf = [if neg { 0xff } else { 0 }; 8];
    buf[..b.len()].copy_from_slice(b);
    Value::Int(i64::from_le_bytes(buf))
}

fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "DoubleStorage" => DType::Float64,
        "FloatStorage" => DType::Float32,
        "HalfStorage" => DType::Float16,
        "BFloat16Storage" => DType::Bfloat16,
        "Float8_e4m3fnStorage" => DType::Float8E4m3fn,
        "Float8_e5m2Storage" => DType::Float8E5m2,
        "LongStorage" => DType::Int64,
        "IntStorage" => DType::Int32,
        "ShortStorage" => DType::Int16,
        "CharStorage" => DType::Int8,
        "ByteStorage" => DType::Uint8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

/// Maps a `module.name` global to the whitelist, refusing everything else.
fn global(module: &str, name: &str) -> R<Global> {
    let g = match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch_npu.utils.storage", "_rebuild_npu_tensor") => Some(Global::RebuildNpuTensor),
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch", n) | ("torch.cuda", n) => storage_dtype(n).map(Global::Storage),
        _ => None,
    };
    g.ok_or_else(|| super::ErrorKind::ForbiddenGlobal(format!("{module}.{name}")))
}

fn dims(v: &Value, what: &str) -> R<Vec<i64>> {
    match v {
        Value::Tuple(t) | Value::List(t) => t
            .iter()
            .map(|x| {
                x.as_int()
                    .ok_or_else(|| bad(format!("{what} holds a non-integer")))
            })
            .collect(),
        _ => Err(bad(format!("{what} is not a tuple"))),
    }
}

fn reduce(f: Value, args: Value) -> R<Value> {
    let g = match f {
        Value::Global(g) => g,
        other => return Err(bad(format!("REDUCE on a non-callable {other:?}"))),
    };
    let mut args = match args {
        Value::Tuple(t) => t,
        _ => return Err(bad("REDUCE arguments are not a tuple")),
    };
    match g {
        Global::OrderedDict => {
            if !args.is_empty() {
                return Err(bad("OrderedDict called with arguments"));
            }
            Ok(Value::Dict(Vec::new()))
        }
        Global::RebuildParameter => match args.into_iter().next() {
            Some(t @ Value::Tensor(_)) => Ok(t),
            _ => Err(bad("_rebuild_parameter without a tensor")),
        },
        Global::RebuildTensorV2 | Global::RebuildTensor | Global::RebuildNpuTensor => {
            let min = if g == Global::RebuildTensor { 4 } else { 6 };
            if args.len() < min || args.len() > 7 {
                return Err(bad(format!("tensor rebuild with {} arguments", args.len())));
            }
            let storage = match std::mem::replace(&mut args[0], Value::None) {
                Value::Storage(s) => *s,
                _ => return Err(bad("tensor rebuild without a storage")),
            };
            let offset = args[1]
                .as_int()
                .filter(|&o| o >= 0)
                .ok_or_else(|| bad("storage offset is not a non-negative int"))?
                as u64;
            let shape = dims(&args[2], "size")?
                .into_iter()
                .map(|d| usize::try_from(d).map_err(|_| bad("negative dimension")))
                .collect::<R<Vec<_>>>()?;
            let stride = dims(&args[3], "stride")?;
            let npu_format = if g == Global::RebuildNpuTensor {
                args.get(6).and_then(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
            } else {
                None
            };
            Ok(Value::Tensor(Box::new(TensorRef {
                storage,
                offset,
                shape,
                stride,
                npu_format,
            })))
        }
        Global::Storage(_) => Err(bad("storage classes are not callable here")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_os_system_by_name() {
        // cos\nsystem\n(S'touch x'\ntR.
        let p = b"cos\nsystem\n(X\x07\x00\x00\x00touch xtR.";
        match load(p, PersistentIds::Zip) {
            Err(crate::dump::ErrorKind::ForbiddenGlobal(g)) => assert_eq!(g, "os.system"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn memo_bomb_is_bounded() {
        // A list duplicated through the memo 40 times doubles each time.
        let mut p = vec![0x80, 2, b']', b'K', 1, b'a', b'q', 0];
        for _ in 0..40 {
            p.extend_from_slice(&[b'(', b'h', 0, b'h', 0, b'l', b'q', 0]);
        }
        p.push(b'.');
        assert!(load(&p, PersistentIds::Zip).is_err());
    }

    #[test]
    fn memo_without_reads_keeps_keys_only_and_answers_the_same() {
        // (7, 'ab') with every value memoised, then a MEMOIZE: no memo reads.
        let p = b"\x80\x02K\x07q\x00X\x02\x00\x00\x00abq\x01\x86\x94.";
        assert!(!reads_memo(p));
        assert_eq!(
            load(p, PersistentIds::Zip).unwrap(),
            load_eager(p, PersistentIds::Zip).unwrap()
        );
        // The same with a BINGET: the eager machine runs.
        let g = b"\x80\x02K\x07q\x00h\x00\x86.";
        assert!(reads_memo(g));
        let (v, _) = load(g, PersistentIds::Zip).unwrap();
        assert_eq!(v, Value::Tuple(vec![Value::Int(7), Value::Int(7)]));
        // Truncated or unknown opcodes count as reads (the machine decides).
        assert!(reads_memo(b"\x80\x02X\x09\x00\x00\x00ab"));
        assert!(reads_memo(b"\x80\x02\xff."));
    }

    #[test]
    fn reads_ints_and_tuples() {
        let p = [0x80, 2, b'K', 7, b'M', 0x10, 0x27, 0x86, b'.'];
        let (v, n) = load(&p, PersistentIds::Zip).unwrap();
        assert_eq!(v, Value::Tuple(vec![Value::Int(7), Value::Int(10000)]));
        assert_eq!(n, p.len());
    }
}
