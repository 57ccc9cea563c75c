//! Raw → validated model: fills IIS defaults and collects every problem in one pass.
//!
//! Each check reports through [`Ctx`], which knows where a key path sits in the YAML text
//! (or which `ROOST_` variable set it), so a problem carries its line:column without the
//! checks having to care. A bad value is reported and replaced by its default, so the
//! checks that follow still run and the user sees everything wrong in one go.
//!
//! Lowest here are `ctx.rs` and `parse.rs`; one file per section reads its raw type
//! (`config/raw.rs`, `config/raw/`) into its model type (`config/model.rs` and the
//! section files beside it). Nothing in `raw` or `model` imports from here.

mod admin;
mod cache;
mod compression;
mod ctx;
mod fairness;
mod farm;
mod limits;
mod ordering;
mod overrides;
mod parse;
mod pools;
mod priority;
mod process;
mod queue;
mod sites;
mod top;
mod worker;

use crate::config::model::{Backend, Config};
use crate::config::raw::RawConfig;
use admin::{validate_admin, validate_log};
use limits::validate_limits;
use pools::validate_pools;
use sites::validate_sites;
use top::{validate_diagnose, validate_workers};

pub use ctx::{show, Ctx};
pub use parse::{
    parse_listen, parse_server_address, parse_status_range, parse_time_of_day, parse_timespan,
};

/// Validate a raw configuration. Problems accumulate in `ctx`.
pub fn validate(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Config {
    let pools = validate_pools(raw, ctx);
    let sites = validate_sites(raw, &pools, ctx);
    let limits = validate_limits(raw, ctx);
    let admin = validate_admin(raw, ctx);
    let log = validate_log(raw, ctx);
    let workers = validate_workers(&raw.workers, ctx);
    let diagnose = validate_diagnose(raw, ctx);
    let responses = overrides::validate(raw, ctx);
    Config {
        sites,
        pools,
        limits,
        admin,
        log,
        workers,
        diagnose,
        responses,
    }
}

/// Warnings a valid configuration still deserves (`roost check` prints them, `serve`
/// logs them); they never make a configuration invalid.
pub fn warnings(c: &Config) -> Vec<String> {
    c.pools
        .values()
        .filter_map(|p| match &p.backend {
            Backend::Farm(f) => f.tls.warning.clone(),
            Backend::Garden(_) => None,
        })
        .collect()
}
