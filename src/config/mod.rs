//! Configuration: `proxy.yaml` (figment: YAML plus `ROOST_` environment overrides) →
//! raw serde types → a validated [`model::Config`].

pub mod model;
