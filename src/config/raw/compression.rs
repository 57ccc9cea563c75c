//! The raw keys of a `compression:` section (under a pool or an application); checked
//! into `CompressionSettings` by `validate/compression.rs`.

use crate::config::leaf::{Leaf, Opt, Scalar};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawCompression {
    pub enabled: Leaf,
    pub algorithms: Opt<Vec<Scalar>>,
    pub types: Opt<Vec<Scalar>>,
    pub min_bytes: Leaf,
    pub level: Leaf,
}
