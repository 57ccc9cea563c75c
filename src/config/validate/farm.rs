//! `pools.<name>.farm`: servers, balancing, health checks, affinity, outlier detection,
//! retries, TLS to members, discovery.

use super::ctx::{dur, At, Ctx, KeyPath, Sub};
use super::parse::{
    check_cert_files, leaf_value, parse_hash_key, parse_server_address, parse_status_range,
};
use crate::config::leaf::Lenient;
use crate::config::model::{
    Affinity, Discovery, Farm, FarmTls, HealthCheck, LoadBalancing, OutlierDetection, Retries,
    Server,
};
use crate::config::raw::{
    RawAffinity, RawDiscovery, RawFarm, RawFarmTls, RawHealthCheck, RawOutlierDetection,
};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Copy)]
pub(super) enum Balancing {
    RoundRobin,
    LeastRequests,
    PowerOfTwoChoices,
    LeastResponseTime,
    Random,
    Hash,
}

pub(super) fn validate_farm(f: &RawFarm, p: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Farm {
    let servers = validate_servers(f, p, ctx);
    let load_balancing = validate_load_balancing(f, p, ctx);
    let hp = Sub(&p, "healthCheck");
    let health_check = ctx
        .nested(&f.health_check, &hp, "a map")
        .map(|h| validate_health_check(h, &hp, ctx));
    let affp = Sub(&p, "affinity");
    let affinity = ctx
        .nested(&f.affinity, &affp, "a map")
        .map(|a| validate_affinity(a, &affp, ctx));
    let od_path = Sub(&p, "outlierDetection");
    let outlier_detection = ctx
        .nested(&f.outlier_detection, &od_path, "a map")
        .map(|o| validate_outlier_detection(o, &od_path, ctx));
    let slow_start = ctx.duration(&f.slow_start, &Sub(p, "slowStart"), Duration::ZERO, false);
    let retries = validate_retries(f, p, ctx);
    let tp = Sub(&p, "tls");
    let tls = match ctx.nested(&f.tls, &tp, "a map") {
        None => FarmTls::default(),
        Some(t) => validate_farm_tls(t, &tp, ctx),
    };
    let dp = Sub(&p, "discovery");
    let discovery = ctx
        .nested(&f.discovery, &dp, "a map")
        .and_then(|d| validate_discovery(d, &dp, ctx));

    Farm {
        servers,
        load_balancing,
        health_check,
        affinity,
        outlier_detection,
        slow_start,
        retries,
        tls,
        discovery,
    }
}

/// `farm.servers`: each an address (`host:port` or an `https://` URL), weight, slots,
/// backup; a server listed twice is reported at its second place.
fn validate_servers(f: &RawFarm, p: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Vec<Server> {
    let sp = Sub(&p, "servers");
    let items = ctx.items(&f.servers, &sp, "a server (a map with address)");
    // With discovery the servers come from DNS, so a static list is optional.
    if items.is_empty() && !matches!(f.servers, Some(Lenient::Bad(_))) && f.discovery.is_none() {
        ctx.report(
            &sp,
            None,
            "a farm needs at least one server (or `discovery`)",
        );
    }
    let mut servers = Vec::with_capacity(items.len());
    // (host, port) → the index of the server that first named it.
    let mut seen: HashMap<(String, u16), usize> = HashMap::new();
    for (i, rs) in items {
        let ip = At(&sp, i);
        let ap = Sub(&ip, "address");
        let weight = ctx.u32(&rs.weight, &Sub(&ip, "weight"), 1, 1);
        let max_concurrent_requests = ctx.usize(
            &rs.max_concurrent_requests,
            &Sub(&ip, "maxConcurrentRequests"),
            100,
            1,
        );
        let backup = ctx.boolean(&rs.backup, &Sub(&ip, "backup"), false);
        let Some(address) = ctx.name(&rs.address, &ap) else {
            if rs.address.is_none() {
                ctx.report(&ap, None, "a server needs an `address` (host:port)");
            }
            continue;
        };
        match parse_server_address(&address) {
            Ok((host, port, tls)) => {
                if let Some(&first) = seen.get(&(host.clone(), port)) {
                    let first = Sub(&At(&sp, first), "address");
                    ctx.report(
                        &ap,
                        leaf_value(&rs.address),
                        format!("duplicate server (first at {first})"),
                    );
                } else {
                    seen.insert((host.clone(), port), i);
                }
                servers.push(Server {
                    address,
                    host,
                    port,
                    tls,
                    weight,
                    max_concurrent_requests,
                    backup,
                });
            }
            Err(msg) => ctx.report(&ap, leaf_value(&rs.address), msg),
        }
    }
    servers
}

/// `farm.loadBalancing` with its `hashKey` (only, and always, for `hash`).
fn validate_load_balancing(f: &RawFarm, p: &dyn KeyPath, ctx: &mut Ctx<'_>) -> LoadBalancing {
    let lbp = Sub(&p, "loadBalancing");
    let kind = ctx.choice(
        &f.load_balancing,
        &lbp,
        &[
            ("roundRobin", Balancing::RoundRobin),
            ("leastRequests", Balancing::LeastRequests),
            ("powerOfTwoChoices", Balancing::PowerOfTwoChoices),
            ("leastResponseTime", Balancing::LeastResponseTime),
            ("random", Balancing::Random),
            ("hash", Balancing::Hash),
        ],
        Balancing::RoundRobin,
    );
    let hkp = Sub(&p, "hashKey");
    let hash_key = match f.hash_key.as_ref().map(|s| &s.0).filter(|v| !v.is_null()) {
        None => None,
        Some(v) => match parse_hash_key(v) {
            Ok(k) => Some(k),
            Err(msg) => {
                ctx.report(&hkp, Some(v), msg);
                None
            }
        },
    };
    let load_balancing = match kind {
        Balancing::RoundRobin => LoadBalancing::RoundRobin,
        Balancing::LeastRequests => LoadBalancing::LeastRequests,
        Balancing::PowerOfTwoChoices => LoadBalancing::PowerOfTwoChoices,
        Balancing::LeastResponseTime => LoadBalancing::LeastResponseTime,
        Balancing::Random => LoadBalancing::Random,
        Balancing::Hash => match hash_key.clone() {
            Some(k) => LoadBalancing::Hash(k),
            None => {
                if f.hash_key.is_none() {
                    ctx.report(&lbp, leaf_value(&f.load_balancing), "hash needs `hashKey` ({header: NAME}, {cookie: NAME}, {query: NAME} or clientAddress)");
                }
                LoadBalancing::RoundRobin
            }
        },
    };
    if hash_key.is_some() && !matches!(kind, Balancing::Hash) {
        ctx.report(
            &hkp,
            None,
            "hashKey is used only with `loadBalancing: hash`",
        );
    }
    load_balancing
}

/// `farm.healthCheck` (`hp` is its key path): ARR's active check.
fn validate_health_check(h: &RawHealthCheck, hp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> HealthCheck {
    let path = match ctx.url_path(&h.path, &Sub(hp, "path")) {
        Some(path) => path,
        None => {
            if h.path.is_none() {
                ctx.report(
                    &Sub(hp, "path"),
                    None,
                    "a health check needs a `path` (e.g. /health)",
                );
            }
            "/".to_string()
        }
    };
    let esp = Sub(&hp, "expectedStatus");
    let expected_status = match h
        .expected_status
        .as_ref()
        .map(|s| &s.0)
        .filter(|v| !v.is_null())
    {
        None => (200, 399),
        Some(v) => parse_status_range(v).unwrap_or_else(|| {
            ctx.report(
                &esp,
                Some(v),
                "not a status range (write \"200-399\" or \"200\")",
            );
            (200, 399)
        }),
    };
    HealthCheck {
        path,
        interval: ctx.duration(&h.interval, &Sub(hp, "interval"), dur(30), true),
        timeout: ctx.duration(&h.timeout, &Sub(hp, "timeout"), dur(5), true),
        expected_status,
        response_match: ctx.name(&h.response_match, &Sub(hp, "responseMatch")),
        healthy_threshold: ctx.u32(&h.healthy_threshold, &Sub(hp, "healthyThreshold"), 2, 1),
        unhealthy_threshold: ctx.u32(&h.unhealthy_threshold, &Sub(hp, "unhealthyThreshold"), 3, 1),
    }
}

/// `farm.affinity` (`affp` is its key path): the cookie's name must be a token.
fn validate_affinity(a: &RawAffinity, affp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Affinity {
    let cp = Sub(&affp, "cookie");
    let cookie = match ctx.name(&a.cookie, &cp) {
        Some(c)
            if c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch)) =>
        {
            c
        }
        Some(_) => {
            ctx.report(&cp, leaf_value(&a.cookie), "not a valid cookie name");
            "RoostAffinity".to_string()
        }
        None => "RoostAffinity".to_string(),
    };
    Affinity { cookie }
}

/// `farm.outlierDetection` (`od_path` is its key path): passive health.
fn validate_outlier_detection(
    o: &RawOutlierDetection,
    od_path: &dyn KeyPath,
    ctx: &mut Ctx<'_>,
) -> OutlierDetection {
    let base_ejection_time = ctx.duration(
        &o.base_ejection_time,
        &Sub(od_path, "baseEjectionTime"),
        dur(30),
        true,
    );
    let mp = Sub(&od_path, "maxEjectionTime");
    let mut max_ejection_time = ctx.duration(&o.max_ejection_time, &mp, dur(300), true);
    if max_ejection_time < base_ejection_time {
        if o.max_ejection_time.is_some() {
            ctx.report(
                &mp,
                leaf_value(&o.max_ejection_time),
                "must not be shorter than baseEjectionTime",
            );
        }
        max_ejection_time = base_ejection_time;
    }
    let pp = Sub(&od_path, "maxEjectionPercent");
    let mut max_ejection_percent = ctx.u32(&o.max_ejection_percent, &pp, 50, 0);
    if max_ejection_percent > 100 {
        ctx.report(&pp, leaf_value(&o.max_ejection_percent), "at most 100");
        max_ejection_percent = 50;
    }
    OutlierDetection {
        consecutive_failures: ctx.u32(
            &o.consecutive_failures,
            &Sub(od_path, "consecutiveFailures"),
            5,
            1,
        ),
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
    }
}

/// `farm.retries`: replaying idempotent requests, within a budget.
fn validate_retries(f: &RawFarm, p: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Retries {
    let rp = Sub(&p, "retries");
    let r = ctx.nested(&f.retries, &rp, "a map");
    let retries = Retries {
        idempotent: ctx.boolean(
            &r.and_then(|r| r.idempotent.clone()),
            &Sub(&rp, "idempotent"),
            true,
        ),
        budget_percent: {
            let bp = Sub(&rp, "budgetPercent");
            let l = r.and_then(|r| r.budget_percent.clone());
            let v = ctx.u32(&l, &bp, 20, 0);
            if v > 100 {
                ctx.report(&bp, leaf_value(&l), "at most 100");
                20
            } else {
                v
            }
        },
        min_retries: ctx.u32(
            &r.and_then(|r| r.min_retries.clone()),
            &Sub(&rp, "minRetries"),
            3,
            0,
        ),
    };
    retries
}

/// `farm.discovery` (`dp` is its key path): servers from DNS; `None` without a usable name.
fn validate_discovery(d: &RawDiscovery, dp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> Option<Discovery> {
    let np = Sub(&dp, "dns");
    let interval = ctx.duration(&d.interval, &Sub(dp, "interval"), dur(30), true);
    let weight = ctx.u32(&d.weight, &Sub(dp, "weight"), 1, 1);
    let max_concurrent_requests = ctx.usize(
        &d.max_concurrent_requests,
        &Sub(dp, "maxConcurrentRequests"),
        100,
        1,
    );
    let Some(dns) = ctx.name(&d.dns, &np) else {
        if d.dns.is_none() {
            ctx.report(&np, None, "discovery needs `dns` (name:port)");
        }
        return None;
    };
    match parse_server_address(&dns) {
        Ok((host, port, tls)) => Some(Discovery {
            dns,
            host,
            port,
            tls,
            interval,
            weight,
            max_concurrent_requests,
        }),
        Err(msg) => {
            ctx.report(&np, leaf_value(&d.dns), msg);
            None
        }
    }
}

pub(super) fn validate_farm_tls(t: &RawFarmTls, tp: &dyn KeyPath, ctx: &mut Ctx<'_>) -> FarmTls {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let cap = Sub(&tp, "caFile");
    let ca_file = ctx.path_buf(&t.ca_file, &cap);
    if let Some(ca) = &ca_file {
        match crate::config::files::read_bounded(ca, crate::config::files::PEM_CAP) {
            Err(e) => ctx.report(&cap, leaf_value(&t.ca_file), e.to_string()),
            Ok(bytes) => {
                match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
                    Ok(c) if !c.is_empty() => {}
                    _ => ctx.report(
                        &cap,
                        leaf_value(&t.ca_file),
                        format!("{} holds no PEM CERTIFICATE block", ca.display()),
                    ),
                }
            }
        }
    }
    let ccp = Sub(&tp, "clientCert");
    let ckp = Sub(&tp, "clientKey");
    let client_cert = ctx.path_buf(&t.client_cert, &ccp);
    let client_key = ctx.path_buf(&t.client_key, &ckp);
    match (&client_cert, &client_key) {
        (Some(c), Some(k)) => {
            for (which, msg) in check_cert_files(c, k) {
                let (path, v) = if which == "cert" {
                    (&ccp, leaf_value(&t.client_cert))
                } else {
                    (&ckp, leaf_value(&t.client_key))
                };
                ctx.report(path, v, msg);
            }
        }
        (Some(_), None) => ctx.report(&ccp, None, "a client certificate needs `clientKey` too"),
        (None, Some(_)) => ctx.report(&ckp, None, "a client key needs `clientCert` too"),
        (None, None) => {}
    }
    let snp = Sub(&tp, "serverName");
    let server_name = ctx.name(&t.server_name, &snp).and_then(|n| {
        match rustls_pki_types::ServerName::try_from(n.as_str()) {
            Ok(_) => Some(n),
            Err(_) => {
                ctx.report(
                    &snp,
                    leaf_value(&t.server_name),
                    "not a DNS name or IP address",
                );
                None
            }
        }
    });
    let ip = Sub(&tp, "insecureSkipVerify");
    let insecure_skip_verify = ctx.boolean(&t.insecure_skip_verify, &ip, false);
    let warning = insecure_skip_verify.then(|| {
        ctx.warning(
            &ip,
            leaf_value(&t.insecure_skip_verify),
            "farm servers' TLS certificates are NOT verified: anyone on the path can impersonate them",
        )
    });
    FarmTls {
        ca_file,
        client_cert,
        client_key,
        server_name,
        insecure_skip_verify,
        warning,
    }
}
