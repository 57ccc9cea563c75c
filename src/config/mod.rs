//! Configuration: `proxy.yaml` (parsed once into a position-marked tree, `ROOST_`
//! environment overrides merged in) → raw serde types → a validated [`model::Config`].
//!
//! Entry points: [`load_default_or_file`] for `roost serve`, [`check_file`] for
//! `roost check`, and the `*_with_env` / [`load_str_in`] variants for tests. A failed load
//! returns [`ConfigErrors`] holding every problem found, each with key path, value,
//! reason and line:column.

pub mod cache;
pub mod compression;
mod de;
mod env;
pub mod error;
mod fairness;
pub mod files;
mod leaf;
mod load;
pub mod model;
pub mod ordering;
pub mod overrides;
mod priority;
mod queue;
pub mod raw;
mod scalar;
pub mod schema;
pub mod split;
mod summary;
mod threads;
pub mod tree;
pub mod validate;

pub use error::{ConfigErrors, Problem};
pub use load::{
    check_file, load_default_or_file, load_file, load_file_with_env, load_str, load_str_in,
    load_str_with_env, Source, EMBEDDED_DEFAULT, EMBEDDED_ORIGIN,
};
pub use model::Config;
pub use summary::summary;
