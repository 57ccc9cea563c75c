//! The integration tests, one binary: a module per area, sharing `tests/support`.
//! One link instead of one per file; run one area with `cargo test --test it <area>::`
//! (e.g. `cargo test --test it front_h1::`).
//!
//! `tests/streaming.rs`, `tests/threadpool.rs` and `tests/diagnose.rs` stay binaries of
//! their own: they measure timing, and other areas' tests running beside them in one
//! process would disturb it. A new area is a file here and a `mod` line below.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod cache;
mod cli;
mod compression;
mod config;
mod config_files;
mod dashboard;
mod differential;
mod farm;
mod front;
mod front_h1;
mod fuzz_replay;
mod hostile_member;
mod ops;
mod ordering;
mod overload;
mod queueing;
mod supervisor;
mod tls;
mod upgrade;
mod upstream;
mod worker;
