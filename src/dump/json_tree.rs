//! A light JSON tree for reading `dump.json` records: keys and strings borrowed from the
//! input where they hold no escapes, objects as ordered lists instead of hash maps.
//!
//! A 1M-entry statistics dump.json holds ~10M values; `serde_json::Value` spends a `String`
//! per key and a hashed `IndexMap` per object on them, ~40% of a statistics compare's CPU
//! (docs/performance.md). Every value is still parsed through `deserialize_any`, so a document
//! is refused exactly where `Value` refuses it, and a key repeated in an object keeps its
//! first place and its last value, as in `Value` (with serde_json's `preserve_order`).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// One JSON value.
#[derive(Debug)]
pub enum Node<'a> {
    /// `null` or a boolean (never looked at).
    Other,
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// A number with a fraction or exponent.
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Keys in first-seen order, unique.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// The same tree borrowing from a parsed `Value`.
    pub fn of_value(v: &'a Value) -> Node<'a> {
        match v {
            Value::Null | Value::Bool(_) => Node::Other,
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Node::U64(u),
                (None, Some(i)) => Node::I64(i),
                _ => Node::F64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Node::Str(Cow::Borrowed(s)),
            Value::Array(a) => Node::Array(a.iter().map(Node::of_value).collect()),
            Value::Object(o) => Node::Object(
                o.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::of_value(v)))
                    .collect(),
            ),
        }
    }

    /// The value of `key` when this is an object holding it.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(o) => o.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Node::U64(u) => Some(*u),
            _ => None,
        }
    }

    /// A number as msprobe records it: a JSON number, or a string (`"NaN"`, `"inf"`, `"1e-3"`);
    /// the same reading as `msprobe::json_f64` of a `Value`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Node::U64(u) => Some(*u as f64),
            Node::I64(i) => Some(*i as f64),
            Node::F64(f) => Some(*f),
            Node::Str(s) => match &**s {
                "NaN" | "nan" => Some(f64::NAN),
                "Infinity" | "inf" => Some(f64::INFINITY),
                "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
                s => s.parse().ok(),
            },
            _ => None,
        }
    }
}

/// A string that borrows from the input when it can (serde's own `Cow` always copies).
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Objects with more keys than this find repeated keys through a hash index.
const LINEAR_KEYS: usize = 16;

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node<'de>, E> {
        Ok(Node::Other)
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Other)
    }
    fn visit_u64<E>(self, u: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(u))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Node<'de>, E> {
        // serde_json hands non-negative integers to visit_u64; be exact for any other caller.
        Ok(u64::try_from(i).map_or(Node::I64(i), Node::U64))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Node<'de>, E> {
        // As `Value`: a number that is not finite is null.
        Ok(if f.is_finite() {
            Node::F64(f)
        } else {
            Node::Other
        })
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(s.size_hint().unwrap_or(0).min(64));
        while let Some(x) = s.next_element::<Node<'de>>()? {
            items.push(x);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node<'de>, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        // Built only for large objects: key -> position.
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some(Text(k)) = m.next_key::<Text<'de>>()? {
            let v: Node<'de> = m.next_value()?;
            let at = match &index {
                Some(ix) => ix.get(&*k).copied(),
                None => fields.iter().position(|(f, _)| *f == k),
            };
            match at {
                Some(i) => fields[i].1 = v, // repeated key: first place, last value
                None => {
                    if let Some(ix) = &mut index {
                        ix.insert(k.to_string(), fields.len());
                    }
                    fields.push((k, v));
                    if index.is_none() && fields.len() > LINEAR_KEYS {
                        index = Some(
                            fields
                                .iter()
                                .enumerate()
                                .map(|(i, (f, _))| (f.to_string(), i))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(Node::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The light tree and `Value` agree on a document with every kind of value, escapes,
    /// repeated keys (first place, last value) and a large object.
    #[test]
    fn same_tree_as_value() {
        let mut big = String::from("{");
        for i in 0..40 {
            big.push_str(&format!("\"k{}\": {i},", i % 25));
        }
        big.push_str("\"z\": 1}");
        let doc = format!(
            r#"{{"a": [1, -2, 3.5, "s\"q", null, true, {{"x": 1, "y": 2, "x": 3}}],
                "b\u00e9": {{"dtype": "torch.float32", "shape": [2, 3]}}, "big": {big}}}"#
        );
        let v: Value = serde_json::from_str(&doc).unwrap();
        let n: Node = serde_json::from_str(&doc).unwrap();
        assert_eq!(format!("{:?}", Node::of_value(&v)), format!("{n:?}"));
        let Node::Object(o) = n.get("big").unwrap() else {
            panic!("not an object")
        };
        assert_eq!(o.len(), 26);
        assert_eq!(o[0].0, "k0");
        assert_eq!(o[0].1.as_u64(), Some(25)); // last value of k0 (i = 25)
        assert_eq!(
            n.get("a")
                .map(|a| matches!(a, Node::Array(x) if x.len() == 7)),
            Some(true)
        );
    }

    /// A document `Value` refuses is refused too.
    #[test]
    fn same_refusals_as_value() {
        for bad in [
            "{\"a\": [1, 2}",
            "{\"a\": 01}",
            "{\"a\": \"\\x\"}",
            "[1, 2,]",
            "{\"a\" 1}",
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err());
            assert!(serde_json::from_str::<Node>(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert!(serde_json::from_str::<Node>(&deep).is_err());
    }
}
