//! The key tree of `proxy.yaml`, derived from the serde types in [`raw`](super::raw)
//! rather than kept by hand beside them: [`schema`] runs `RawConfig`'s own `Deserialize`
//! impl once against a tracing deserializer, which answers every struct with all of its
//! fields (serde's derive names them) and every list or user-keyed map with one sample
//! item. From that [`Shape`] come the unknown-key report (with "did you mean" and "it
//! belongs under") and the mapping of `ROOST_` variable names to camelCase keys.

use super::leaf::LENIENT;
use super::raw::RawConfig;
use super::tree::{spell, suggest, Marked, Node, Pos, Step};
use serde::de::value::{BorrowedStrDeserializer, Error};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::sync::LazyLock;

/// The shape of the key tree.
#[derive(Debug, PartialEq)]
pub enum Shape {
    /// A value (string, number, ...); anything below it is the validator's business.
    Leaf,
    /// Fixed camelCase keys (a struct's fields).
    Map(Vec<(&'static str, Shape)>),
    /// User-chosen keys (pool names, env variables), each value of one shape.
    Dict(Box<Shape>),
    List(Box<Shape>),
}

/// The whole `proxy.yaml` key tree, traced from `RawConfig` on first use.
pub fn schema() -> &'static Shape {
    static SCHEMA: LazyLock<Shape> = LazyLock::new(trace::<RawConfig>);
    &SCHEMA
}

/// The shape a type's `Deserialize` impl asks for.
pub fn trace<T: for<'de> Deserialize<'de>>() -> Shape {
    let mut shape = Shape::Leaf;
    T::deserialize(Tracer(&mut shape)).expect("tracing a raw config type cannot fail");
    shape
}

/// A deserializer that records what it is asked for in `.0`.
struct Tracer<'s>(&'s mut Shape);

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.0 = Shape::Leaf;
        v.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        if name == LENIENT {
            // A lenient value tries its type first, which is all a trace needs.
            v.visit_seq(Samples(Some(self)))
        } else {
            v.visit_newtype_struct(self)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.0 = Shape::List(Box::new(Shape::Leaf));
        let Shape::List(item) = self.0 else {
            unreachable!()
        };
        v.visit_seq(Samples(Some(Tracer(item))))
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        *self.0 = Shape::Dict(Box::new(Shape::Leaf));
        let Shape::Dict(item) = self.0 else {
            unreachable!()
        };
        v.visit_map(Fields {
            fields: vec![("name", Tracer(item))],
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        names: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        *self.0 = Shape::Map(names.iter().map(|n| (*n, Shape::Leaf)).collect());
        let Shape::Map(slots) = self.0 else {
            unreachable!()
        };
        let fields = slots.iter_mut().map(|(n, s)| (*n, Tracer(s))).collect();
        v.visit_map(Fields { fields })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

/// One sample item of a list (or the one try of a lenient value).
struct Samples<'s>(Option<Tracer<'s>>);

impl<'de> SeqAccess<'de> for Samples<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0.take().map(|t| seed.deserialize(t)).transpose()
    }
}

/// Every field of a struct (or one sample entry of a map), each traced in turn.
struct Fields<'s> {
    fields: Vec<(&'static str, Tracer<'s>)>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.fields.first() {
            Some((name, _)) => seed
                .deserialize(BorrowedStrDeserializer::new(name))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        if self.fields.is_empty() {
            return Err(de::Error::custom("a value without a key"));
        }
        let (_, tracer) = self.fields.remove(0);
        seed.deserialize(tracer)
    }
}

/// An unknown key found by [`unknown_keys`]: its path and the suggested spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Unknown {
    pub path: String,
    pub pos: Pos,
    pub suggestion: Option<&'static str>,
    /// When the key is valid one level down: the section it belongs in.
    pub belongs_under: Option<&'static str>,
}

impl Unknown {
    /// `unknown key (did you mean `x`?)` and friends.
    pub fn message(&self) -> String {
        match (self.suggestion, self.belongs_under) {
            (Some(s), _) => format!("unknown key (did you mean `{s}`?)"),
            (None, Some(section)) => format!("unknown key here (it belongs under `{section}`)"),
            (None, None) => "unknown key".to_string(),
        }
    }
}

/// A section among `fields` whose own keys include `key` (e.g. `maxProcesses` is a key of
/// `processModel`), for keys written one level too high.
fn section_holding(key: &str, fields: &'static [(&'static str, Shape)]) -> Option<&'static str> {
    fields.iter().find_map(|(name, sub)| match sub {
        Shape::Map(inner) => inner.iter().any(|(k, _)| *k == key).then_some(*name),
        _ => None,
    })
}

/// Every key in the document that the schema does not know, in document order.
pub fn unknown_keys(root: Option<&Marked>, schema: &'static Shape) -> Vec<Unknown> {
    let mut out = Vec::new();
    if let Some(r) = root {
        walk(r, schema, &mut Vec::new(), &mut out);
    }
    out
}

fn walk<'a>(
    m: &'a Marked,
    shape: &'static Shape,
    path: &mut Vec<Step<'a>>,
    out: &mut Vec<Unknown>,
) {
    match (&m.node, shape) {
        (Node::Map(entries), Shape::Map(fields)) => {
            for e in entries {
                path.push(Step::Key(&e.key));
                match fields.iter().find(|(name, _)| *name == e.key) {
                    Some((_, sub)) => walk(&e.value, sub, path, out),
                    None => out.push(Unknown {
                        path: spell(path),
                        pos: e.key_pos,
                        suggestion: suggest(&e.key, fields.iter().map(|(n, _)| *n)),
                        belongs_under: section_holding(&e.key, fields),
                    }),
                }
                path.pop();
            }
        }
        (Node::Map(entries), Shape::Dict(sub)) => {
            for e in entries {
                path.push(Step::Key(&e.key));
                walk(&e.value, sub, path, out);
                path.pop();
            }
        }
        (Node::Seq(items), Shape::List(sub)) => {
            for (i, it) in items.iter().enumerate() {
                path.push(Step::Index(i));
                walk(it, sub, path, out);
                path.pop();
            }
        }
        // Wrong shapes (a list where a map belongs, ...) are reported by the validator.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::parse;
    use crate::config::tree::tests::DOC;

    #[test]
    fn unknown_keys_found_with_suggestions() {
        let root = parse(DOC).unwrap();
        let u = unknown_keys(root.as_ref(), schema());
        assert_eq!(
            u,
            vec![Unknown {
                path: "pools.default.queueLenght".into(),
                pos: (7, 5),
                suggestion: Some("queueLength"),
                belongs_under: None,
            }]
        );
    }

    /// The traced tree has the serde names, including renames and nested user maps.
    #[test]
    fn schema_follows_the_serde_types() {
        let Shape::Map(top) = schema() else { panic!() };
        let names: Vec<&str> = top.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["sites", "pools", "limits", "admin", "log", "workers", "diagnose"]
        );
        let Some((_, Shape::Dict(pool))) = top.iter().find(|(n, _)| *n == "pools") else {
            panic!()
        };
        let Shape::Map(pool) = &**pool else { panic!() };
        let worker = &pool.iter().find(|(n, _)| *n == "worker").unwrap().1;
        let Shape::Map(worker) = worker else { panic!() };
        assert!(worker
            .iter()
            .any(|(n, _)| *n == "maxConcurrentRequestsPerCPU"));
        assert!(matches!(
            worker.iter().find(|(n, _)| *n == "pools").unwrap().1,
            Shape::Dict(_)
        ));
        let Some((_, Shape::List(site))) = top.iter().find(|(n, _)| *n == "sites") else {
            panic!()
        };
        let Shape::Map(site) = &**site else { panic!() };
        assert_eq!(
            site.iter().find(|(n, _)| *n == "hostNames").unwrap().1,
            Shape::List(Box::new(Shape::Leaf))
        );
    }
}
