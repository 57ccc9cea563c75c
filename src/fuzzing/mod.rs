//! The invariants roost's fuzz targets check, one function per target, in the library so
//! the fuzzers (`fuzz/`) and the corpus replay (`tests/fuzz_replay.rs`) run the same code.
//! Each function panics when an invariant breaks; returning is a pass. Not an API: the
//! module is hidden from the docs and may change with the fuzzers.
//!
//! See TESTING.md for what each target covers and how to run it.

mod config;
mod e2e;
mod h1;
mod router;
pub mod strict;

pub use config::config;
pub use e2e::front_e2e;
pub use h1::{chunked, request_head, response_head};
pub use router::router;
