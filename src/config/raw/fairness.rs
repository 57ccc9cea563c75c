//! The raw keys of `pools.<name>.fairness`; checked into `Fairness` by
//! `validate/fairness.rs`.

use crate::config::leaf::{Leaf, Opt, Scalar};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFairness {
    pub by: Leaf,
    pub weights: Opt<BTreeMap<String, Scalar>>,
    pub default_weight: Leaf,
    pub max_keys: Leaf,
}
