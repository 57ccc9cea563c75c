//! The worker process (w3wp/Kestrel role). See `threadpool` for the worker thread pool.

pub mod threadpool;
pub use threadpool::blocking;
