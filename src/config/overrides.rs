//! Response settings by pool and by application: each pool's `compression:`, and an
//! application's own `cache:` / `compression:` that replace its pool's (or turn the
//! feature on for that application alone, or off with `enabled: false`).
//!
//! Kept beside the model's `Pool` and `Application` rather than in them, so the many
//! places that build those types (tests, benches, fuzzing) need not change. Validated
//! in a pass of its own over the raw sites and pools (`validate/overrides.rs`); shape
//! errors of the sites and pools themselves were reported by their own pass.

use super::cache::CacheSettings;
use super::compression::CompressionSettings;
use std::collections::BTreeMap;

/// An application's setting relative to its pool's.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Override<T> {
    /// No section: the pool's applies.
    #[default]
    Inherit,
    /// `enabled: false`: off for this application whatever the pool says.
    Off,
    /// This application's own settings.
    On(T),
}

impl<T> Override<T> {
    /// From a section's check: absent, `enabled: false`, or its settings.
    pub(in crate::config) fn of(section: Option<Option<T>>) -> Override<T> {
        match section {
            None => Override::Inherit,
            Some(None) => Override::Off,
            Some(Some(t)) => Override::On(t),
        }
    }
}

/// One application's overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppResponses {
    pub cache: Override<CacheSettings>,
    pub compression: Override<CompressionSettings>,
}

/// Compression by pool, and the applications that override their pool.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Responses {
    /// `pools.<name>.compression` (absent or `enabled: false`: not here).
    pub pool_compression: BTreeMap<String, CompressionSettings>,
    /// By (site name, application path as routed): only applications with a section.
    pub applications: BTreeMap<(String, String), AppResponses>,
}
