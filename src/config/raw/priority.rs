//! The raw keys of one entry of `pools.<name>.priorities`; checked into
//! `PriorityClass` by `validate/priority.rs`.

use crate::config::leaf::Leaf;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPriority {
    pub name: Leaf,
    pub path: Leaf,
    pub header: Leaf,
}
