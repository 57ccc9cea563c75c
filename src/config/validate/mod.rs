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

use crate::config::leaf::Lenient;
use crate::config::model::{Backend, Config};
use crate::config::raw::RawConfig;
use crate::config::threads::joined;
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
    // Sites need only the pools' names, so the two sections that grow with the site are
    // checked at once, each on its own thread (100,000 pools: issue 12).
    let names = pool_names(raw);
    let mut sites_ctx = ctx.fork();
    let (pools, sites) = std::thread::scope(|s| {
        let sites = s.spawn(|| validate_sites(raw, &names, &mut sites_ctx));
        let pools = validate_pools(raw, ctx);
        (pools, joined(sites))
    });
    ctx.problems.append(&mut sites_ctx.problems);
    let mut pools = pools;
    fairness::check_weight_keys(&sites, &mut pools, ctx);
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

/// The names `validate_pools` makes a pool of, sorted: every entry of `pools` that is a
/// map (the others are reported there).
fn pool_names(raw: &RawConfig) -> Vec<&str> {
    match &raw.pools {
        Some(Lenient::Ok(map)) => map
            .iter()
            .filter(|(_, p)| matches!(p, Lenient::Ok(_)))
            .map(|(name, _)| name.as_str())
            .collect(),
        _ => Vec::new(),
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
