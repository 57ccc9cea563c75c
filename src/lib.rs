//! roost: the IIS request-processing model on Linux.
//!
//! The request's path, in module order: [`front`] (listeners, TLS, connections, router)
//! → [`pool`] (admission, FIFO queue, balancer, members) → [`upstream`] (pooled
//! connections to a member) → a [`worker`] process (gate, I/O pool, worker thread pool)
//! or a [`farm`] server. [`supervisor`] runs the pools' worker processes; [`metrics`],
//! [`admin`] and [`diagnose`] let operators see inside. See ARCHITECTURE.md.

pub mod admin;
pub mod body;
pub mod cache;
pub mod compress;
pub mod config;
pub mod error;
pub mod farm;
pub mod front;
/// The fuzz targets' invariant checks (see TESTING.md); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod h1;
mod metrics_text;
pub mod ops;
pub mod pool;
pub mod rewind;
pub mod runtime;
pub mod serve;
pub mod supervisor;
pub mod upstream;
pub mod woken;
pub mod worker;
