//! Deserializing the raw configuration straight from the marked YAML tree: the one parse
//! of the text feeds positions, the unknown-key walk and serde alike. Scalars in the tree
//! are already typed, so a leaf deserializes as its `serde_json::Value` (borrowed text
//! where serde can borrow); maps and lists are walked in place. A [`Lenient`] value gets
//! the protocol described at [`LENIENT`]: the value as its type, then, only if that
//! failed, the same value as plain data for the message.
//!
//! [`Lenient`]: super::raw::Lenient

use super::leaf::LENIENT;
use super::tree::{Entry, Marked, Node};
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Why the tree did not fit a type (reached only by a shape no `Lenient` covers).
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// A deserializer over one node of the tree.
#[derive(Clone, Copy)]
pub struct NodeDe<'de>(pub &'de Marked);

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.0.node {
            Node::Map(entries) => v.visit_map(Entries {
                rest: entries.iter(),
                value: None,
            }),
            Node::Seq(items) => v.visit_seq(Items(items.iter())),
            Node::Scalar(x) => x.deserialize_any(v).map_err(de::Error::custom),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.0.node {
            Node::Scalar(serde_json::Value::Null) => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        if name == LENIENT {
            v.visit_seq(Tries(self, 0))
        } else {
            v.visit_newtype_struct(self)
        }
    }

    /// A struct is a map, never a list of its fields in order.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match &self.0.node {
            Node::Map(_) => self.deserialize_any(v),
            Node::Seq(_) => Err(de::Error::invalid_type(de::Unexpected::Seq, &v)),
            Node::Scalar(x) => Err(de::Error::invalid_type(unexpected(x), &v)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn unexpected(x: &serde_json::Value) -> de::Unexpected<'_> {
    use serde_json::Value as J;
    match x {
        J::Null => de::Unexpected::Unit,
        J::Bool(b) => de::Unexpected::Bool(*b),
        J::Number(_) => de::Unexpected::Other("a number"),
        J::String(s) => de::Unexpected::Str(s),
        J::Array(_) => de::Unexpected::Seq,
        J::Object(_) => de::Unexpected::Map,
    }
}

struct Entries<'de> {
    rest: std::slice::Iter<'de, Entry>,
    value: Option<&'de Marked>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(e) = self.rest.next() else {
            return Ok(None);
        };
        self.value = Some(&e.value);
        seed.deserialize(BorrowedStrDeserializer::new(&e.key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without a key"))?;
        seed.deserialize(NodeDe(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.rest.len())
    }
}

struct Items<'de>(std::slice::Iter<'de, Marked>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|m| seed.deserialize(NodeDe(m)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// The two looks a `Lenient` value may take at one node.
struct Tries<'de>(NodeDe<'de>, u8);

impl<'de> SeqAccess<'de> for Tries<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.1 >= 2 {
            return Ok(None);
        }
        self.1 += 1;
        seed.deserialize(self.0).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{Lenient, RawConfig};
    use crate::config::tree::parse;
    use serde::Deserialize;

    #[test]
    fn wrong_shapes_become_data_and_the_rest_is_read() {
        let root = parse("sites: [5, {name: a, bindings: oops}]\npools: {p: [1]}\n")
            .unwrap()
            .unwrap();
        let raw = RawConfig::deserialize(NodeDe(&root)).unwrap();
        let Some(Lenient::Ok(sites)) = &raw.sites else {
            panic!("{raw:?}")
        };
        assert!(matches!(&sites[0], Lenient::Bad(v) if *v == serde_json::json!(5)));
        let Lenient::Ok(site) = &sites[1] else {
            panic!()
        };
        assert!(matches!(&site.bindings, Some(Lenient::Bad(v)) if v == "oops"));
        let Some(Lenient::Ok(pools)) = &raw.pools else {
            panic!()
        };
        assert!(matches!(&pools["p"], Lenient::Bad(v) if *v == serde_json::json!([1])));
    }
}
