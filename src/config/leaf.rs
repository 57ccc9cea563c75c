//! The leaf and wrapper types every raw section is built from: [`Scalar`] (any YAML
//! value in a leaf position, typed later by `validate/`), and [`Lenient`], which records
//! a nested value of the wrong shape instead of failing the whole deserialization, with
//! its aliases [`Leaf`], [`Opt`], [`List`] and [`Dict`]. The lowest layer of `config/`:
//! the raw section types (`raw.rs`, `raw/`) and the checks (`validate/`) build on it.

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// Any YAML value in a leaf position; `validate/` decides whether it is a number,
/// duration, string, ...
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Scalar(pub serde_json::Value);

/// A nested value that either had the expected shape or did not (kept for the message).
#[derive(Debug, Clone, PartialEq)]
pub enum Lenient<T> {
    Ok(T),
    Bad(serde_json::Value),
}

/// The newtype name by which `Lenient` asks a deserializer that knows it (the YAML tree
/// in `de.rs`, the schema tracer) for a second look at the same value: it is handed a
/// sequence whose first element is the value read as `T` and whose second is the same
/// value read as plain data, taken only when the first failed. Nothing is buffered on
/// the way (a `serde_json::Value` copy per level made a 100,000-pool file cost GBs).
pub const LENIENT: &str = "$roost::Lenient";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(LENIENT, LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut tries: A) -> Result<Lenient<T>, A::Error> {
        // A shape error becomes data for the validator rather than aborting the whole
        // document at the first mistake.
        match tries.next_element::<T>() {
            Ok(Some(t)) => Ok(Lenient::Ok(t)),
            _ => Ok(Lenient::Bad(tries.next_element()?.unwrap_or_default())),
        }
    }

    /// A deserializer that does not know the protocol: strict.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Lenient<T>, D::Error> {
        T::deserialize(d).map(Lenient::Ok)
    }
}

/// An optional nested value. Boxed, so a section that is absent costs a pointer: a raw
/// pool held every section inline and took 3 KB, most of it for sections nobody wrote
/// (100,000 pools: issue 12).
pub type Opt<T> = Option<Lenient<Box<T>>>;
/// An optional leaf.
pub type Leaf = Option<Scalar>;
/// An optional list whose items are checked one by one.
pub type List<T> = Opt<Vec<Lenient<T>>>;
/// An optional user-keyed map (pool names, env vars, ...).
pub type Dict<T> = Opt<BTreeMap<String, Lenient<T>>>;
