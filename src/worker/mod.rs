//! The worker process: the w3wp + Kestrel role (`roost worker`, or a Rust app built on
//! this library).
//!
//! One process has an I/O pool (a tokio runtime, `ioThreads`) that runs connections and
//! async handlers, worker pools (`threadpool`, the default one plus dedicated named ones)
//! that run sync handlers, and a [`gate`] that applies ASP.NET's integrated-mode limits
//! (`requestQueueLimit`, `maxConcurrentRequestsPerCPU`, `maxConcurrentThreadsPerCPU`) in
//! front of both. [`app`] is the API apps are written against; [`apps`] holds the built-in
//! ones; [`server`] wires it all to HTTP/1.1 and h2c; [`cli`] is `roost worker`.

pub mod app;
pub mod apps;
pub mod body;
pub mod busy;
pub mod cli;
pub mod counters;
mod drain;
pub mod gate;
mod inline_future;
pub mod listen;
pub mod metrics;
mod served;
pub mod server;
pub mod settings;
mod striped;
pub mod threadpool;
mod timer;

pub use app::{
    json, query_param, read_body_blocking, status, text, Request, Response, WorkerBuilder,
};
pub use body::Body;
pub use listen::{Listen, Listener};
pub use server::{Worker, WorkerError};
pub use settings::Settings;
pub use threadpool::blocking;
