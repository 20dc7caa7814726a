//! Optional libtorch replay (`--features torch`): any ATen operator, found by the name msprobe
//! recorded and called through the c10 dispatcher (src/replay/aten.cpp) with the call's
//! recorded arguments, in float64 on the CPU. The shim binds the arguments against each
//! overload's schema as Python's argument parser does; this side turns msprobe's names and
//! Python-level signatures into ATen's. Build instructions: docs/replay.md.

use super::{Arg, Call, R};
use ndarray::{ArrayD, IxDyn};
use std::ffi::{c_char, c_void, CStr, CString};
use tch::{Kind, Tensor};
use torch_sys::C_tensor;

/// One argument for the shim; mirrors `ds_arg` in aten.cpp.
#[repr(C)]
struct AtenArg {
    name: *const c_char,
    kind: i32,
    i: i64,
    f: f64,
    s: *const c_char,
    items: *const c_void,
    len: usize,
    tensor: *mut C_tensor,
}

const NONE: i32 = 0;
const TENSOR: i32 = 1;
const INT: i32 = 2;
const FLOAT: i32 = 3;
const BOOL: i32 = 4;
const STR: i32 = 5;
const INTS: i32 = 6;
const FLOATS: i32 = 7;
const BOOLS: i32 = 8;
const TENSORS: i32 = 9;

extern "C" {
    fn ds_aten_call(
        name: *const c_char,
        overload: *const c_char,
        args: *const AtenArg,
        nargs: usize,
        out: *mut *mut C_tensor,
        schema: *mut *mut c_char,
    ) -> *mut c_char;
    fn ds_aten_free(p: *mut c_char);
}

/// Takes a string the shim allocated.
fn take(p: *mut c_char) -> String {
    // SAFETY: the shim returns a NUL-terminated malloc'd string, freed here exactly once.
    unsafe {
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        ds_aten_free(p);
        s
    }
}

/// What the arguments point into; it outlives the call.
#[derive(Default)]
struct Arena {
    tensors: Vec<Tensor>,
    strings: Vec<CString>,
    ints: Vec<Vec<i64>>,
    floats: Vec<Vec<f64>>,
    bools: Vec<Vec<u8>>,
    tensor_lists: Vec<Vec<*mut C_tensor>>,
}

impl Arena {
    fn cstr(&mut self, s: &str) -> R<*const c_char> {
        let c = CString::new(s).map_err(|_| format!("string argument {s:?} holds a NUL"))?;
        let p = c.as_ptr();
        self.strings.push(c);
        Ok(p)
    }

    fn tensor(&mut self, a: &super::Arr) -> R<*mut C_tensor> {
        let t = to_tch(a).map_err(|e| format!("libtorch: {e}"))?;
        let p = t.as_ptr() as *mut C_tensor;
        self.tensors.push(t);
        Ok(p)
    }

    fn arg(&mut self, name: Option<&str>, a: &Arg) -> R<AtenArg> {
        let mut out = AtenArg {
            name: match name {
                Some(n) => self.cstr(n)?,
                None => std::ptr::null(),
            },
            kind: NONE,
            i: 0,
            f: 0.0,
            s: std::ptr::null(),
            items: std::ptr::null(),
            len: 0,
            tensor: std::ptr::null_mut(),
        };
        match a {
            Arg::None => {}
            Arg::Tensor(t) => {
                out.kind = TENSOR;
                out.tensor = self.tensor(t)?;
            }
            Arg::Int(v) => (out.kind, out.i) = (INT, *v),
            Arg::Float(v) => (out.kind, out.f) = (FLOAT, *v),
            Arg::Bool(v) => (out.kind, out.i) = (BOOL, *v as i64),
            Arg::Str(s) => (out.kind, out.s) = (STR, self.cstr(s)?),
            Arg::List(items) => self.list(items, &mut out)?,
            Arg::Other(ty) => return Err(format!("an argument of type `{ty}` cannot be passed")),
        }
        Ok(out)
    }

    fn list(&mut self, items: &[Arg], out: &mut AtenArg) -> R<()> {
        out.len = items.len();
        if items.iter().all(|x| matches!(x, Arg::Int(_))) {
            let v: Vec<i64> = items
                .iter()
                .map(|x| if let Arg::Int(i) = x { *i } else { 0 })
                .collect();
            (out.kind, out.items) = (INTS, v.as_ptr() as *const c_void);
            self.ints.push(v);
        } else if items
            .iter()
            .all(|x| matches!(x, Arg::Int(_) | Arg::Float(_)))
        {
            let v: Vec<f64> = items
                .iter()
                .map(|x| match x {
                    Arg::Int(i) => *i as f64,
                    Arg::Float(f) => *f,
                    _ => 0.0,
                })
                .collect();
            (out.kind, out.items) = (FLOATS, v.as_ptr() as *const c_void);
            self.floats.push(v);
        } else if items.iter().all(|x| matches!(x, Arg::Bool(_))) {
            let v: Vec<u8> = items
                .iter()
                .map(|x| matches!(x, Arg::Bool(true)) as u8)
                .collect();
            (out.kind, out.items) = (BOOLS, v.as_ptr() as *const c_void);
            self.bools.push(v);
        } else if items.iter().all(|x| matches!(x, Arg::Tensor(_))) {
            let mut v = Vec::with_capacity(items.len());
            for x in items {
                if let Arg::Tensor(t) = x {
                    v.push(self.tensor(t)?);
                }
            }
            (out.kind, out.items) = (TENSORS, v.as_ptr() as *const c_void);
            self.tensor_lists.push(v);
        } else {
            return Err(format!(
                "a list argument mixes kinds the replay cannot pass: {items:?}"
            ));
        }
        Ok(())
    }
}

/// Floating tensors go to float64; integer and bool tensors keep their kind (indices, masks).
fn to_tch(a: &super::Arr) -> Result<Tensor, tch::TchError> {
    let shape: Vec<i64> = a.data.shape().iter().map(|&d| d as i64).collect();
    let data: Vec<f64> = a.data.iter().copied().collect();
    let t = Tensor::f_from_slice(&data)?.f_reshape(shape.as_slice())?;
    if a.dtype.is_float() {
        Ok(t)
    } else if a.dtype.name() == "bool" {
        t.f_to_kind(Kind::Bool)
    } else {
        t.f_to_kind(Kind::Int64)
    }
}

fn from_tch(t: &Tensor) -> Result<ArrayD<f64>, tch::TchError> {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let flat = t.f_to_kind(Kind::Double)?.f_flatten(0, -1)?;
    let v = Vec::<f64>::try_from(&flat)?;
    ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| tch::TchError::Convert(e.to_string()))
}

/// A call as ATen takes it.
struct AtenCall {
    op: String,
    /// Tried first; `Aten.*` records name it.
    overload: Option<String>,
    args: Vec<Arg>,
    kwargs: Vec<(String, Arg)>,
}

/// The ATen name (and overload, for `Aten.*` records) of a call and its arguments in ATen's
/// order: msprobe records Python calls, whose names and signatures mostly but not always
/// match ATen's.
fn to_aten(call: &Call) -> R<AtenCall> {
    let prefix = call.name.split('.').next().unwrap_or("");
    let mut args = call.args.clone();
    let mut kwargs = call.kwargs.clone();
    let (op, overload) = match call.op.split_once('.') {
        Some((op, ov)) if prefix == "Aten" => (op.to_string(), Some(ov.to_string())),
        _ => (call.op.clone(), None),
    };
    let op = match prefix {
        "Aten" => op,
        "Tensor" | "Torch" | "VF" => python_operator(&op, &mut args)?,
        "Functional" => functional(&op, &mut args, &mut kwargs)?,
        _ => {
            return Err(format!(
                "`{prefix}` calls have no CPU implementation in libtorch to replay with"
            ))
        }
    };
    if op == "rms_norm" {
        default_rms_eps(&mut args, &mut kwargs)?;
    }
    Ok(AtenCall {
        op,
        overload,
        args,
        kwargs,
    })
}

/// rms_norm's eps defaults to the finfo eps of its computation dtype (float32 for float32,
/// float16 and bfloat16 inputs): in a float64 replay that would be float64's, so the one the
/// recorded input implies is passed explicitly.
fn default_rms_eps(args: &mut [Arg], kwargs: &mut Vec<(String, Arg)>) -> R<()> {
    let given = args
        .get(3)
        .or_else(|| kwargs.iter().find(|(k, _)| k == "eps").map(|x| &x.1));
    if !matches!(given, None | Some(Arg::None)) {
        return Ok(());
    }
    let input = args
        .first()
        .or_else(|| kwargs.iter().find(|(k, _)| k == "input").map(|x| &x.1));
    let Some(Arg::Tensor(x)) = input else {
        return Err("rms_norm without an input tensor".into());
    };
    let eps = Arg::Float(super::norm::default_rms_eps(x.dtype)?);
    match args.get_mut(3) {
        Some(a) => *a = eps,
        None => {
            kwargs.retain(|(k, _)| k != "eps");
            kwargs.push(("eps".into(), eps));
        }
    }
    Ok(())
}

/// Python's operator methods and in-place forms, named as ATen names them.
fn python_operator(op: &str, args: &mut Vec<Arg>) -> R<String> {
    let plain = |s: &str| Ok(s.to_string());
    // `x.float()` is `x.to(torch.float32)` (the float64 replay makes floating casts exact).
    let cast = match op {
        "float" | "double" | "half" | "bfloat16" => Some("torch.float64"),
        "long" => Some("torch.int64"),
        "int" => Some("torch.int32"),
        "bool" => Some("torch.bool"),
        _ => None,
    };
    if let Some(dtype) = cast {
        if args.len() != 1 {
            return Err(format!("`{op}` with arguments besides the tensor"));
        }
        args.push(Arg::Str(dtype.into()));
        return plain("to");
    }
    match op {
        "__add__" | "__iadd__" | "__radd__" => plain("add"),
        "__sub__" | "__isub__" => plain("sub"),
        // t.__rsub__(x) = x - t = aten::rsub(t, x).
        "__rsub__" => plain("rsub"),
        "__mul__" | "__imul__" | "__rmul__" => plain("mul"),
        "__truediv__" | "__itruediv__" | "__div__" => plain("div"),
        "__floordiv__" | "__ifloordiv__" => plain("floor_divide"),
        "__mod__" | "__imod__" => plain("remainder"),
        "__matmul__" => plain("matmul"),
        "__pow__" | "__ipow__" => plain("pow"),
        "__neg__" => plain("neg"),
        "__abs__" => plain("abs"),
        "__invert__" => plain("bitwise_not"),
        "__eq__" | "__ne__" | "__lt__" | "__le__" | "__gt__" | "__ge__" => {
            plain(op.trim_matches('_'))
        }
        // ATen has these under their Python names.
        "__and__" | "__or__" | "__xor__" | "__lshift__" | "__rshift__" => plain(op),
        // t.__rmatmul__(x) = x @ t, t.__rpow__(x) = x ** t.
        "__rmatmul__" | "__rpow__" if args.len() == 2 => {
            args.swap(0, 1);
            plain(op.trim_matches('_').trim_start_matches('r'))
        }
        _ if op.starts_with("__") => Err(format!(
            "Python operator `{op}` has no ATen counterpart the replay knows"
        )),
        // In-place forms (`add_`) compute the same values as their out-of-place op.
        _ => plain(op.strip_suffix('_').unwrap_or(op)),
    }
}

/// `torch.nn.functional` wrappers whose Python signature is not ATen's.
fn functional(op: &str, args: &mut Vec<Arg>, kwargs: &mut Vec<(String, Arg)>) -> R<String> {
    // `inplace` does not change values; it is the last parameter of these wrappers, so a
    // positional one is cut off at its index.
    const INPLACE_AT: &[(&str, usize)] = &[
        ("relu", 1),
        ("relu6", 1),
        ("selu", 1),
        ("silu", 1),
        ("mish", 1),
        ("hardswish", 1),
        ("hardsigmoid", 1),
        ("elu", 2),
        ("celu", 2),
        ("leaky_relu", 2),
        ("threshold", 3),
        ("hardtanh", 3),
        ("rrelu", 4),
    ];
    if let Some(&(_, at)) = INPLACE_AT.iter().find(|(n, _)| *n == op) {
        args.truncate(at);
        kwargs.retain(|(k, _)| k != "inplace");
    }
    let kw = |kwargs: &mut Vec<(String, Arg)>, name: &str| -> Option<Arg> {
        let i = kwargs.iter().position(|(k, _)| k == name)?;
        Some(kwargs.remove(i).1)
    };
    // Moves every argument to keyword form, so the ATen order no longer matters.
    let named = |args: &mut Vec<Arg>, kwargs: &mut Vec<(String, Arg)>, names: &[&str]| -> R<()> {
        if args.len() > names.len() {
            return Err(format!(
                "{} positional arguments, at most {}",
                args.len(),
                names.len()
            ));
        }
        for (a, n) in args.drain(..).zip(names) {
            kwargs.push((n.to_string(), a));
        }
        Ok(())
    };
    Ok(match op {
        "softmax" | "log_softmax" => {
            // softmax(input, dim, _stacklevel, dtype): the stack level only steers a warning.
            if args.len() >= 3 {
                let rest = args.split_off(2);
                args.extend(rest.into_iter().skip(1));
            }
            kw(kwargs, "_stacklevel");
            op.into()
        }
        "logsigmoid" => "log_sigmoid".into(),
        "dropout" | "alpha_dropout" | "feature_alpha_dropout" => {
            // dropout(input, p=0.5, training=True, inplace=False) vs aten's (input, p, train).
            args.truncate(3);
            kwargs.retain(|(k, _)| k != "inplace");
            for (k, _) in kwargs.iter_mut() {
                if k == "training" {
                    *k = "train".into();
                }
            }
            if args.len() < 3 && !kwargs.iter().any(|(k, _)| k == "train") {
                kwargs.push(("train".into(), Arg::Bool(true)));
            }
            if args.len() < 2 && !kwargs.iter().any(|(k, _)| k == "p") {
                kwargs.push(("p".into(), Arg::Float(0.5)));
            }
            op.into()
        }
        "embedding" => {
            // embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq,
            // sparse) vs aten::embedding(weight, indices, padding_idx, scale_grad_by_freq,
            // sparse); max_norm renormalises the weight in place first.
            let names = [
                "indices",
                "weight",
                "padding_idx",
                "max_norm",
                "norm_type",
                "scale_grad_by_freq",
                "sparse",
            ];
            let mut all = std::mem::take(kwargs);
            named(args, kwargs, &names)?;
            kwargs.append(&mut all);
            if let Some(i) = kwargs.iter().position(|(k, _)| k == "input") {
                kwargs[i].0 = "indices".into();
            }
            if !matches!(kw(kwargs, "max_norm"), None | Some(Arg::None)) {
                return Err("embedding with max_norm renormalises its weight first".into());
            }
            kw(kwargs, "norm_type");
            // Python's padding_idx=None is ATen's default -1 (it only affects gradients).
            if let Some(Arg::None) = kwargs
                .iter()
                .find(|(k, _)| k == "padding_idx")
                .map(|x| &x.1)
            {
                kw(kwargs, "padding_idx");
            }
            op.into()
        }
        "batch_norm" | "instance_norm" => {
            // batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
            // eps): ATen puts weight and bias before the running statistics.
            let flag = if op == "batch_norm" {
                "training"
            } else {
                "use_input_stats"
            };
            let names = [
                "input",
                "running_mean",
                "running_var",
                "weight",
                "bias",
                flag,
                "momentum",
                "eps",
            ];
            let mut all = std::mem::take(kwargs);
            named(args, kwargs, &names)?;
            kwargs.append(&mut all);
            // ATen requires every one of these; the Python wrapper defaults them.
            for (name, default) in [
                ("weight", Arg::None),
                ("bias", Arg::None),
                ("running_mean", Arg::None),
                ("running_var", Arg::None),
                (flag, Arg::Bool(op == "instance_norm")),
                ("momentum", Arg::Float(0.1)),
                ("eps", Arg::Float(1e-5)),
                ("cudnn_enabled", Arg::Bool(false)),
            ] {
                if !kwargs.iter().any(|(k, _)| k == name) {
                    kwargs.push((name.into(), default));
                }
            }
            op.into()
        }
        "embedding_bag" | "softmin" | "normalize" | "interpolate" | "upsample" => {
            return Err(format!(
                "torch.nn.functional.{op} is a Python composition with no single ATen op"
            ))
        }
        _ => op.into(),
    })
}

/// Recomputes `call` with libtorch in float64; also returns the ATen schema that ran.
pub fn recompute(call: &Call) -> R<(ArrayD<f64>, String)> {
    let c = to_aten(call)?;
    let mut arena = Arena::default();
    let mut passed = Vec::with_capacity(c.args.len() + c.kwargs.len());
    for a in &c.args {
        passed.push(arena.arg(None, a)?);
    }
    for (k, a) in &c.kwargs {
        passed.push(arena.arg(Some(k), a)?);
    }
    let name = arena.cstr(&c.op)?;
    let overload = match &c.overload {
        Some(o) => arena.cstr(o)?,
        None => std::ptr::null(),
    };
    let mut out: *mut C_tensor = std::ptr::null_mut();
    let mut schema: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer in `passed` points into `arena`, alive until the call returns; the
    // shim copies what it keeps and hands back ownership of `out` and of the strings.
    let failed = unsafe {
        ds_aten_call(
            name,
            overload,
            passed.as_ptr(),
            passed.len(),
            &mut out,
            &mut schema,
        )
    };
    if !failed.is_null() {
        return Err(take(failed));
    }
    let schema = take(schema);
    // SAFETY: `out` is a new tensor the shim allocated for us.
    let out = unsafe { Tensor::from_ptr(out) };
    let data = from_tch(&out).map_err(|e| format!("libtorch: {e}"))?;
    Ok((data, schema))
}
