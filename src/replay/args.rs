//! A call's recorded arguments (tensors and the non-tensor values msprobe writes as
//! `{"type": "int", "value": 2}`), and typed accessors the ops use.

use super::R;
use crate::dump::DType;
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

/// A tensor in float64 and the dtype it was recorded in.
#[derive(Clone, Debug)]
pub struct Arr {
    /// Elements (exactly the recorded values, widened).
    pub data: ArrayD<f64>,
    /// Recorded dtype.
    pub dtype: DType,
}

/// A recorded argument.
#[derive(Clone, Debug)]
pub enum Arg {
    /// A tensor.
    Tensor(Arr),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A string (`"tanh"`, `"same"`, a dtype name).
    Str(String),
    /// `None`.
    None,
    /// A list or tuple.
    List(Vec<Arg>),
    /// Anything else, by its recorded type.
    Other(String),
}

/// A recorded call.
#[derive(Clone, Debug)]
pub struct Call {
    /// Place (`Functional.silu.1.forward`).
    pub name: String,
    /// Operator (`silu`, `__mul__`).
    pub op: String,
    /// Positional arguments (`self` first for `Tensor.*` methods).
    pub args: Vec<Arg>,
    /// Keyword arguments.
    pub kwargs: Vec<(String, Arg)>,
    /// Outputs.
    pub outputs: Vec<Arg>,
}

fn parse(v: &Value, load: &dyn Fn(&str) -> R<Arr>, depth: usize) -> R<Arg> {
    if depth > 16 {
        return Err("arguments nested too deeply".into());
    }
    Ok(match v {
        Value::Null => Arg::None,
        Value::Array(a) => Arg::List(
            a.iter()
                .map(|x| parse(x, load, depth + 1))
                .collect::<R<_>>()?,
        ),
        Value::Object(o) if o.contains_key("dtype") && o.contains_key("shape") => {
            match o.get("data_name").and_then(|d| d.as_str()) {
                Some(dn) => Arg::Tensor(load(dn)?),
                None => return Err("a tensor argument was not saved (statistics-only dump)".into()),
            }
        }
        Value::Object(o) => {
            let ty = o.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let val = o.get("value");
            match (ty, val) {
                ("int", Some(x)) => match x.as_i64() {
                    Some(i) => Arg::Int(i),
                    None => Arg::Other(format!("int {x}")),
                },
                ("float", Some(x)) => match crate::dump::msprobe::json_f64(x) {
                    Some(f) => Arg::Float(f),
                    None => Arg::Other(format!("float {x}")),
                },
                ("bool", Some(Value::Bool(b))) => Arg::Bool(*b),
                (_, Some(Value::String(s))) => Arg::Str(s.clone()),
                (_, Some(Value::Array(a))) => Arg::List(
                    a.iter()
                        .map(|x| match x {
                            Value::Number(n) if n.is_i64() => Ok(Arg::Int(n.as_i64().unwrap())),
                            Value::Number(n) => Ok(Arg::Float(n.as_f64().unwrap_or(f64::NAN))),
                            x => parse(x, load, depth + 1),
                        })
                        .collect::<R<_>>()?,
                ),
                (_, Some(Value::Null)) => Arg::None,
                _ => Arg::Other(if ty.is_empty() {
                    "dict".into()
                } else {
                    ty.into()
                }),
            }
        }
        Value::Bool(b) => Arg::Bool(*b),
        Value::Number(n) if n.is_i64() => Arg::Int(n.as_i64().unwrap()),
        Value::Number(n) => Arg::Float(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Arg::Str(s.clone()),
    })
}

/// Builds a call from its raw `dump.json` record, loading tensors with `load(data_name)`.
pub fn load_call(place: &str, rec: &Value, load: &dyn Fn(&str) -> R<Arr>) -> R<Call> {
    // No op is recomputed from nothing: without a recorded input tensor the call is not
    // replayable, and its outputs (a whole tensor widened to f64 each) are not loaded.
    fn has_tensor(v: &Value) -> bool {
        match v {
            Value::Object(o) => {
                (o.contains_key("dtype") && o.contains_key("shape")) || o.values().any(has_tensor)
            }
            Value::Array(a) => a.iter().any(has_tensor),
            _ => false,
        }
    }
    if !["input_args", "input_kwargs"]
        .iter()
        .any(|k| rec.get(*k).is_some_and(has_tensor))
    {
        return Err(format!("`{place}` recorded no input tensor"));
    }
    let op = crate::dump::msprobe::op_type(place).unwrap_or_default();
    let list = |k: &str| -> R<Vec<Arg>> {
        match rec.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(|x| parse(x, load, 0)).collect(),
            Some(x) => Ok(vec![parse(x, load, 0)?]),
        }
    };
    let args = list("input_args")?;
    let outputs = list("output")?;
    let kwargs = match rec.get("input_kwargs") {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| Ok((k.clone(), parse(v, load, 0)?)))
            .collect::<R<_>>()?,
        _ => Vec::new(),
    };
    Ok(Call {
        name: place.to_string(),
        op,
        args,
        kwargs,
        outputs,
    })
}

impl Call {
    /// The first recorded output tensor: what a replay is compared with.
    pub fn output(&self) -> Option<&Arr> {
        self.outputs.iter().find_map(|o| match o {
            Arg::Tensor(t) => Some(t),
            _ => None,
        })
    }

    /// Argument at position `i`, else the keyword `name`; `None` when neither was passed.
    pub fn get(&self, i: usize, name: &str) -> Option<&Arg> {
        if let Some(a) = self.args.get(i) {
            return Some(a);
        }
        self.kwargs.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// A required tensor argument.
    pub fn tensor(&self, i: usize, name: &str) -> R<&Arr> {
        match self.get(i, name) {
            Some(Arg::Tensor(t)) => Ok(t),
            other => Err(format!("argument `{name}` is not a tensor: {other:?}")),
        }
    }

    /// An optional tensor argument (absent or `None` gives `None`).
    pub fn opt_tensor(&self, i: usize, name: &str) -> R<Option<&Arr>> {
        match self.get(i, name) {
            None | Some(Arg::None) => Ok(None),
            Some(Arg::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(format!("argument `{name}` is not a tensor: {other:?}")),
        }
    }

    /// A tensor or a scalar as a float64 array (a scalar becomes 0-d).
    pub fn operand(&self, i: usize, name: &str) -> R<ArrayD<f64>> {
        match self.get(i, name) {
            Some(Arg::Tensor(t)) => Ok(t.data.clone()),
            Some(Arg::Int(v)) => Ok(ArrayD::from_elem(IxDyn(&[]), *v as f64)),
            Some(Arg::Float(v)) => Ok(ArrayD::from_elem(IxDyn(&[]), *v)),
            Some(Arg::Bool(v)) => Ok(ArrayD::from_elem(IxDyn(&[]), *v as u8 as f64)),
            other => Err(format!(
                "argument `{name}` is not a tensor or a number: {other:?}"
            )),
        }
    }

    /// An optional number (`None` when absent or `None`).
    pub fn opt_f64(&self, i: usize, name: &str) -> R<Option<f64>> {
        match self.get(i, name) {
            None | Some(Arg::None) => Ok(None),
            Some(Arg::Int(v)) => Ok(Some(*v as f64)),
            Some(Arg::Float(v)) => Ok(Some(*v)),
            Some(other) => Err(format!("argument `{name}` is not a number: {other:?}")),
        }
    }

    /// An optional integer.
    pub fn opt_i64(&self, i: usize, name: &str) -> R<Option<i64>> {
        match self.get(i, name) {
            None | Some(Arg::None) => Ok(None),
            Some(Arg::Int(v)) => Ok(Some(*v)),
            Some(other) => Err(format!("argument `{name}` is not an integer: {other:?}")),
        }
    }

    /// An optional bool.
    pub fn opt_bool(&self, i: usize, name: &str) -> R<Option<bool>> {
        match self.get(i, name) {
            None | Some(Arg::None) => Ok(None),
            Some(Arg::Bool(v)) => Ok(Some(*v)),
            Some(other) => Err(format!("argument `{name}` is not a bool: {other:?}")),
        }
    }

    /// An optional list of integers (a single integer gives a list of one).
    pub fn opt_ints(&self, i: usize, name: &str) -> R<Option<Vec<i64>>> {
        match self.get(i, name) {
            None | Some(Arg::None) => Ok(None),
            Some(Arg::Int(v)) => Ok(Some(vec![*v])),
            Some(Arg::List(l)) => l
                .iter()
                .map(|x| match x {
                    Arg::Int(v) => Ok(*v),
                    other => Err(format!("argument `{name}` holds a non-integer: {other:?}")),
                })
                .collect::<R<Vec<_>>>()
                .map(Some),
            Some(other) => Err(format!(
                "argument `{name}` is not a list of ints: {other:?}"
            )),
        }
    }

    /// Fails unless every keyword argument is in `known`: an argument the replay would ignore
    /// could change the result, so it is reported instead of guessed around.
    pub fn only_kwargs(&self, known: &[&str]) -> R<()> {
        match self
            .kwargs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, v)) => Err(format!("keyword argument `{k}` ({v:?}) is not supported")),
            None => Ok(()),
        }
    }

    /// Fails when more than `n` positional arguments were passed.
    pub fn at_most_args(&self, n: usize) -> R<()> {
        if self.args.len() > n {
            Err(format!(
                "{} positional arguments, at most {n} supported",
                self.args.len()
            ))
        } else {
            Ok(())
        }
    }
}

/// Normalises a possibly negative dimension.
pub fn norm_dim(d: i64, ndim: usize) -> R<usize> {
    let n = ndim.max(1) as i64;
    let d2 = if d < 0 { d + n } else { d };
    if d2 < 0 || d2 >= n {
        Err(format!("dimension {d} out of range for {ndim} dimensions"))
    } else {
        Ok(d2 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call that recorded no input tensor is refused before any tensor is loaded (its output
    /// would be widened to f64 whole for nothing); one with an input tensor loads them.
    #[test]
    fn a_call_without_input_tensors_loads_nothing() {
        let rec: Value = serde_json::from_str(
            r#"{"input_args": [{"type": "int", "value": 3}], "input_kwargs": {},
                "output": [{"type": "torch.Tensor", "dtype": "torch.float32", "shape": [2],
                            "data_name": "Functional.linear.0.forward.output.0.pt"}]}"#,
        )
        .unwrap();
        let refuse = |name: &str| -> R<Arr> { panic!("loaded {name}") };
        let err = load_call("Functional.linear.0.forward", &rec, &refuse).unwrap_err();
        assert!(err.contains("recorded no input tensor"), "{err}");

        let rec: Value = serde_json::from_str(
            r#"{"input_args": [{"type": "torch.Tensor", "dtype": "torch.float32", "shape": [2],
                                "data_name": "x.pt"}],
                "output": [{"type": "torch.Tensor", "dtype": "torch.float32", "shape": [2],
                            "data_name": "y.pt"}]}"#,
        )
        .unwrap();
        let loaded = std::cell::RefCell::new(Vec::new());
        let load = |name: &str| -> R<Arr> {
            loaded.borrow_mut().push(name.to_string());
            Ok(Arr {
                data: ArrayD::zeros(IxDyn(&[2])),
                dtype: DType::Float32,
            })
        };
        load_call("Functional.relu.0.forward", &rec, &load).unwrap();
        assert_eq!(*loaded.borrow(), ["x.pt", "y.pt"]);
    }
}
