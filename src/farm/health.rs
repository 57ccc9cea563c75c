//! Active health checks, as ARR does them: every `interval` each server gets
//! `GET path`; a status in `expectedStatus` (and, if set, a body containing
//! `responseMatch`) within `timeout` passes. `unhealthyThreshold` failures in a row take
//! a server out, `healthyThreshold` passes bring it back (with slow start).

use super::{apply_health, FarmState};
use crate::body;
use crate::config::model::HealthCheck;
use crate::pool::FarmPolicy;
use crate::pool::{Member, Pool};
use http::{header, Request};
use http_body_util::BodyExt;
use std::sync::{Arc, Weak};

/// A response body is read up to this much when looking for `responseMatch`.
const MAX_BODY: usize = 64 * 1024;

/// The health-check loop of one farm pool; ends when the pool is gone or has no check.
pub(crate) async fn run(weak: Weak<Pool>, fs: Arc<FarmState>) {
    loop {
        let Some(pool) = weak.upgrade() else {
            return;
        };
        let hc = fs.config().farm.health_check.clone();
        let Some(hc) = hc.filter(|_| fs.is_active()) else {
            return;
        };
        check_all(&pool, &fs, &hc).await;
        drop(pool);
        tokio::time::sleep(hc.interval).await;
    }
}

/// Check every server of `pool` once, concurrently, and apply the verdicts.
pub(crate) async fn check_all(pool: &Arc<Pool>, fs: &FarmState, hc: &HealthCheck) {
    let members = pool.members();
    let checks = members.iter().filter_map(|m| {
        let rt = fs.server(&m.label)?;
        let spec = rt.spec();
        let host = if spec.name.contains(':') {
            format!("[{}]:{}", spec.name, spec.port)
        } else {
            format!("{}:{}", spec.name, spec.port)
        };
        Some(async move {
            let (ok, detail) = check_one(m, hc, &host).await;
            (m.label.clone(), ok, detail)
        })
    });
    let results = futures_util::future::join_all(checks).await;
    for (label, ok, detail) in results {
        let Some(rt) = fs.server(&label) else {
            continue;
        };
        if !ok {
            tracing::debug!(pool = pool.name(), server = %label, %detail, "health check failed");
        }
        if let Some(healthy) = rt.record_check(
            ok,
            detail.clone(),
            hc.healthy_threshold,
            hc.unhealthy_threshold,
        ) {
            if healthy {
                tracing::info!(pool = pool.name(), server = %label, "health check passes again; server returns");
            } else {
                tracing::warn!(pool = pool.name(), server = %label, %detail, "health check failed; server taken out");
            }
            apply_health(pool, fs, &label, healthy);
        }
    }
}

/// One check: (passed, status or what went wrong).
async fn check_one(m: &Member, hc: &HealthCheck, host: &str) -> (bool, String) {
    let req = match Request::get(hc.path.as_str())
        .header(header::HOST, host)
        .header(header::USER_AGENT, "roost-health-check")
        .body(body::empty())
    {
        Ok(r) => r,
        Err(e) => return (false, format!("bad request: {e}")),
    };
    let exchange = async {
        let resp = m.client.send(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let (lo, hi) = hc.expected_status;
        // Read the body (bounded) either way, so the connection can be reused.
        let mut body = resp.into_body();
        let mut seen = Vec::new();
        while seen.len() < MAX_BODY {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        seen.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => return Err(format!("body: {e}")),
                None => break,
            }
        }
        if !(lo..=hi).contains(&status) {
            return Ok((false, format!("status {status}")));
        }
        if let Some(want) = &hc.response_match {
            let text = String::from_utf8_lossy(&seen);
            if !text.contains(want.as_str()) {
                return Ok((false, format!("status {status}, body lacks {want:?}")));
            }
        }
        Ok((true, format!("status {status}")))
    };
    match tokio::time::timeout(hc.timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (false, e),
        Err(_) => (false, format!("timed out after {:?}", hc.timeout)),
    }
}
