//! Raw → validated model: fills IIS defaults and collects every problem in one pass.
//!
//! Each check reports through [`Ctx`], which knows where a key path sits in the YAML text
//! (or which `ROOST_` variable set it), so a problem carries its line:column without the
//! checks having to care. A bad value is reported and replaced by its default, so the
//! checks that follow still run and the user sees everything wrong in one go.

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

use crate::config::error::Problem;
use crate::config::model::*;
use crate::config::raw::*;
use crate::config::tree::{suggest, Marked, Positions};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use admin::*;
use ctx::*;
pub use ctx::{show, Ctx};
use farm::*;
use limits::*;
use parse::*;
pub use parse::{
    parse_listen, parse_server_address, parse_status_range, parse_time_of_day, parse_timespan,
};
use pools::*;
use process::*;
use sites::*;
use top::*;
use worker::*;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:8080"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen("0.0.0.0:80"),
            Some("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(parse_listen("[::]:443"), Some("[::]:443".parse().unwrap()));
        assert_eq!(parse_listen(":8080"), Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(
            parse_listen("localhost:1"),
            Some("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(parse_listen("127.0.0.1"), None);
        assert_eq!(parse_listen("8080"), None);
        assert_eq!(parse_listen("1.2.3.4:99999"), None);
    }

    #[test]
    fn server_address_forms() {
        assert_eq!(
            parse_server_address("10.0.0.1:81"),
            Ok(("10.0.0.1".into(), 81, false))
        );
        assert_eq!(
            parse_server_address("http://app:8080"),
            Ok(("app".into(), 8080, false))
        );
        assert_eq!(
            parse_server_address("https://app.example.com"),
            Ok(("app.example.com".into(), 443, true))
        );
        assert_eq!(
            parse_server_address("[::1]:9000"),
            Ok(("::1".into(), 9000, false))
        );
        assert!(parse_server_address("app").is_err());
        assert!(parse_server_address("ftp://app:21").is_err());
        assert!(parse_server_address("http://app:80/path").is_err());
        assert!(parse_server_address("app:0").is_err());
    }

    #[test]
    fn times_and_status_ranges() {
        assert_eq!(parse_time_of_day("03:00"), Some(3 * 3600));
        assert_eq!(parse_time_of_day("23:59"), Some(23 * 3600 + 59 * 60));
        assert_eq!(parse_time_of_day("24:00"), None);
        assert_eq!(parse_time_of_day("3pm"), None);
        assert_eq!(
            parse_status_range(&Value::from("200-399")),
            Some((200, 399))
        );
        assert_eq!(parse_status_range(&Value::from(204)), Some((204, 204)));
        assert_eq!(parse_status_range(&Value::from("399-200")), None);
        assert_eq!(parse_status_range(&Value::from("abc")), None);
    }

    #[test]
    fn iis_timespans() {
        assert_eq!(parse_timespan("00:02:00"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_timespan("1.05:00:00"),
            Some(Duration::from_secs(29 * 3600))
        );
        assert_eq!(parse_timespan("00:20"), None);
        assert_eq!(parse_timespan("10x"), None);
        assert_eq!(parse_timespan("00:61:00"), None);
    }

    #[test]
    fn host_names() {
        assert_eq!(
            check_host_name("WWW.Example.com"),
            Ok("www.example.com".into())
        );
        assert_eq!(check_host_name("*.example.com"), Ok("*.example.com".into()));
        assert!(check_host_name("a.*.com").is_err());
        assert!(check_host_name("example.com:80").is_err());
    }

    #[test]
    fn hash_keys() {
        assert_eq!(
            parse_hash_key(&Value::from("clientAddress")),
            Ok(HashKey::ClientAddress)
        );
        assert_eq!(
            parse_hash_key(&serde_json::json!({"header": "X-User"})),
            Ok(HashKey::Header("X-User".into()))
        );
        assert!(parse_hash_key(&serde_json::json!({"body": "x"})).is_err());
        assert!(parse_hash_key(&Value::from("ip")).is_err());
    }
}
