//! The bridge from a planned node's parameter map to an operator's typed parameters: a
//! [`serde::Deserializer`] over a [`Value`], so that each operator declares a plain
//! `#[derive(Deserialize)]` struct.
//!
//! The planner has already evaluated every argument, checked its type, range and choices
//! against the operator's spec and filled the defaults, so a parameter struct declares no
//! defaults of its own: a parameter with a default is a plain field, an optional one an
//! `Option` (`Null` deserialises as `None`). Durations arrive as milliseconds ([`Ms`]),
//! secrets as [`SecretRef`], conditions as their source text, maps as [`Labels`].

use std::collections::BTreeMap;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};

use crate::value::{SecretRef, Value};

/// Why a parameter map does not fit an operator's parameter struct (a planner bug: the
/// checker and the spec should have refused it).
pub type Error = de::value::Error;

/// Deserialises an operator's typed parameters from a planned node's parameter map.
///
/// # Errors
/// When a value does not have the type the struct declares.
pub fn from_map<T: de::DeserializeOwned>(params: &BTreeMap<String, Value>) -> Result<T, Error> {
    T::deserialize(MapDe(params))
}

/// A parameter map seen through serde, as a map.
struct MapDe<'a>(&'a BTreeMap<String, Value>);

impl<'de> Deserializer<'de> for MapDe<'de> {
    type Error = Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut map = MapDeserializer::new(self.0.iter().map(|(k, v)| (k.as_str(), ValueDe(v))));
        let out = visitor.visit_map(&mut map)?;
        map.end()?;
        Ok(out)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A [`Value`] seen through serde.
#[derive(Clone, Copy)]
pub struct ValueDe<'a>(pub &'a Value);

impl<'de> IntoDeserializer<'de, Error> for ValueDe<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for ValueDe<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Condition(c) => visitor.visit_borrowed_str(c.text()),
            Value::Duration(ms) => visitor.visit_u64(*ms),
            Value::List(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(ValueDe));
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Value::Map(m) => {
                let mut map = MapDeserializer::new(m.iter().map(|(k, v)| (k.as_str(), ValueDe(v))));
                let out = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
            // As `SecretRef` serialises: `{"from": "env", "name": "NAME"}`.
            Value::Secret(s) => {
                let (from, name) = match s {
                    SecretRef::Env(n) => ("env", n.as_str()),
                    SecretRef::File(p) => ("file", p.as_str()),
                };
                let mut map = MapDeserializer::new([("from", from), ("name", name)].into_iter());
                let out = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A duration parameter, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Ms(pub u64);

impl Ms {
    /// The milliseconds as the engine's signed timestamps count them (saturating far
    /// beyond any real duration).
    pub fn i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX / 4)
    }
}

/// A map parameter (`labels: { team: "sre" }`) as `(key, text)` pairs in key order: strings
/// as they are, other values as the language writes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labels(pub Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        let m = BTreeMap::<String, SourceText>::deserialize(d)?;
        Ok(Labels(m.into_iter().map(|(k, v)| (k, v.0)).collect()))
    }
}

/// Any value as source text (strings bare), as [`Value::to_source`] writes the rest.
struct SourceText(String);

impl<'de> serde::Deserialize<'de> for SourceText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SourceText, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SourceText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SourceText, E> {
                Ok(SourceText(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<SourceText, E> {
                Ok(SourceText(Value::Int(i).to_source()))
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<SourceText, E> {
                Ok(SourceText(Value::Duration(ms).to_source()))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<SourceText, E> {
                Ok(SourceText(Value::Float(f).to_source()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<SourceText, E> {
                Ok(SourceText(Value::Bool(b).to_source()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<SourceText, E> {
                Ok(SourceText(Value::Null.to_source()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<SourceText, A::Error> {
                let mut items = Vec::new();
                while let Some(SourceText(s)) = seq.next_element::<SourceText>()? {
                    items.push(s);
                }
                Ok(SourceText(format!("[{}]", items.join(", "))))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SourceText, A::Error> {
                let mut items = Vec::new();
                while let Some((k, SourceText(v))) = map.next_entry::<String, SourceText>()? {
                    items.push(format!("{}: {v}", crate::syntax::print::quote(&k)));
                }
                Ok(SourceText(format!("{{ {} }}", items.join(", "))))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct P {
        n: i64,
        x: f64,
        d: Ms,
        s: String,
        o: Option<String>,
        l: Vec<i64>,
        m: Option<Labels>,
        k: SecretRef,
        b: bool,
    }

    #[test]
    fn a_parameter_map_deserialises_into_a_struct() {
        let mut m = BTreeMap::new();
        m.insert("n".to_owned(), Value::Int(-3));
        m.insert("x".to_owned(), Value::Float(0.5));
        m.insert("d".to_owned(), Value::Duration(60_000));
        m.insert("s".to_owned(), Value::Str("a".into()));
        m.insert("o".to_owned(), Value::Null);
        m.insert("l".to_owned(), Value::List(vec![Value::Int(1), Value::Int(2)]));
        let labels: BTreeMap<String, Value> =
            [("a".to_owned(), Value::Str("x".into())), ("b".to_owned(), Value::Duration(300_000)), ("c".to_owned(), Value::Float(2.0))]
                .into_iter()
                .collect();
        m.insert("m".to_owned(), Value::Map(labels));
        m.insert("k".to_owned(), Value::Secret(SecretRef::Env("KEY".into())));
        m.insert("b".to_owned(), Value::Bool(true));
        m.insert("unused".to_owned(), Value::Int(1));
        let p: P = from_map(&m).unwrap();
        assert_eq!(
            p,
            P {
                n: -3,
                x: 0.5,
                d: Ms(60_000),
                s: "a".into(),
                o: None,
                l: vec![1, 2],
                m: Some(Labels(vec![("a".into(), "x".into()), ("b".into(), "5m".into()), ("c".into(), "2.0".into())])),
                k: SecretRef::Env("KEY".into()),
                b: true,
            }
        );
        m.insert("n".to_owned(), Value::Str("no".into()));
        assert!(from_map::<P>(&m).is_err());
    }
}
