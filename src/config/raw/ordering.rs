//! The raw key of `pools.<name>.ordering`; checked into `Ordering` by
//! `validate/ordering.rs`.

use crate::config::leaf::Leaf;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawOrdering {
    pub key: Leaf,
}
