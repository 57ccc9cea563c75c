//! `fairness`: a pool's slots shared fairly between the applications, tenants or clients
//! that use it (issue 17 item 2). The queue keeps one sub-queue per key and serves them
//! by deficit round robin with weights (`pool/fair.rs`).
//!
//! ```yaml
//! fairness:
//!   by: application            # or clientAddress, or {header: X-Tenant} / "header:X-Tenant"
//!   weights: {shop/api: 3}     # a key's share relative to the others
//!   defaultWeight: 1
//!   maxKeys: 1024              # sub-queues kept apart; more keys share one
//! ```
//!
//! With `by: application` the key is the site name followed by the application's path
//! (`shop/api`, `shop/` for the root application): the application the router resolved.
//!
//! The model types; the raw keys are in `raw/fairness.rs`, their checks in
//! `validate/fairness.rs`.

use std::collections::BTreeMap;

/// What a request's sub-queue is keyed by.
#[derive(Debug, Clone, PartialEq)]
pub enum FairBy {
    /// The site and application the router resolved (`site/path`).
    Application,
    /// The client's IP address.
    ClientAddress,
    /// A request header's value (absent: the empty key, one sub-queue for all of them).
    Header(http::HeaderName),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fairness {
    pub by: FairBy,
    /// A key's weight: its share of the slots relative to the other waiting keys.
    pub weights: BTreeMap<String, u32>,
    pub default_weight: u32,
    /// Sub-queues kept apart; keys beyond them share one overflow sub-queue, so a client
    /// inventing keys cannot grow the pool's state.
    pub max_keys: usize,
}

/// The key `by: application` gives a request: its site's name followed by its
/// application's path (`shop/api`, `shop/` for the root application). The queue tags
/// requests with it and the config check holds `weights` keys to it.
pub fn application_key(site: &str, app_path: &str) -> String {
    format!("{site}{app_path}")
}

impl Fairness {
    pub fn weight_of(&self, key: &str) -> u32 {
        self.weights
            .get(key)
            .copied()
            .unwrap_or(self.default_weight)
    }
}
