//! The front (HTTP.sys role): listeners, TLS, connections, routing, and the proxy step
//! that hands a request to its pool.
//!
//! A request's path through this module: [`server`] (accept, connection cap, TLS) →
//! [`connection`] (protocol sniff; HTTP/2 on hyper) or [`h1`] (roost's HTTP/1.1 server) →
//! [`proxy`] (validate, [`router`], pool queue, forward with [`headers`] rules) →
//! [`access_log`]. A finished request is a [`record::RequestRecord`].
//!
//! The layers inside, each importing only those below it: [`server`] (the `Front`:
//! listeners, accept, reload, shutdown) → [`proxy`] (the proxy step) → [`serving`]
//! (what a request reads and records: the [`state`] a reload swaps, the access log,
//! roost's own answers) → [`state`], [`record`], [`router`] and the rest.

pub mod access_log;
pub mod connection;
pub mod h1;
pub mod headers;
pub mod inflight;
pub mod overload;
pub mod proxy;
pub mod record;
pub mod router;
pub mod server;
pub mod serving;
pub mod state;
pub mod tls;

/// The hooks live with the pools; re-exported where the front takes them.
pub use crate::pool::PoolHooks;
pub use server::Front;
pub use state::{StartError, State};
