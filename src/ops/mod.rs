//! Running roost under a service manager: readiness (what `/readyz` and systemd's
//! `READY=1` both follow) and the sd_notify protocol.

pub mod check;
pub mod notify;
pub mod readiness;
pub mod upgrade;

pub use readiness::{Phase, Readiness};
