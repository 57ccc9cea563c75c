//! The front (HTTP.sys role): listeners, TLS, connections, routing, and the proxy step
//! that hands a request to its pool.

pub mod connection;
pub mod headers;
pub mod router;
pub mod tls;
