//! `limits` (connection limits and timeouts, overload).

use super::ctx::{dur, Ctx};
use super::parse::parse_fraction;
use crate::config::leaf::Opt;
use crate::config::model::{Limits, Overload};
use crate::config::raw::{RawConfig, RawLimits, RawOverload};
use serde_json::Value;

pub(super) fn validate_limits(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Limits {
    let r = ctx.nested(&raw.limits, "limits", "a map");
    let none = RawLimits {
        max_request_header_bytes: None,
        header_wait_timeout: None,
        connection_timeout: None,
        body_timeout: None,
        tls_handshake_timeout: None,
        max_connections: None,
        shutdown_grace: None,
        max_connections_per_client: None,
        overload: None,
    };
    let r = r.unwrap_or(&none);
    Limits {
        max_request_header_bytes: ctx.usize(
            &r.max_request_header_bytes,
            "limits.maxRequestHeaderBytes",
            16384,
            1,
        ),
        header_wait_timeout: ctx.duration(
            &r.header_wait_timeout,
            "limits.headerWaitTimeout",
            dur(120),
            true,
        ),
        connection_timeout: ctx.duration(
            &r.connection_timeout,
            "limits.connectionTimeout",
            dur(120),
            true,
        ),
        body_timeout: ctx.duration(&r.body_timeout, "limits.bodyTimeout", dur(120), true),
        tls_handshake_timeout: ctx.duration(
            &r.tls_handshake_timeout,
            "limits.tlsHandshakeTimeout",
            dur(10),
            true,
        ),
        max_connections: ctx.usize(&r.max_connections, "limits.maxConnections", 10000, 1),
        shutdown_grace: ctx.duration(&r.shutdown_grace, "limits.shutdownGrace", dur(30), false),
        // 0 (like an absent key) means no cap, as IIS writes "unlimited".
        max_connections_per_client: ctx
            .opt_usize(
                &r.max_connections_per_client,
                "limits.maxConnectionsPerClient",
                0,
            )
            .filter(|n| *n > 0),
        overload: validate_overload(&r.overload, ctx),
    }
}

pub(super) fn validate_overload(o: &Opt<RawOverload>, ctx: &mut Ctx<'_>) -> Overload {
    let d = Overload::default();
    let Some(r) = ctx.nested(o, "limits.overload", "a map") else {
        return d;
    };
    let p = "limits.overload.highWater";
    let high_water = match r.high_water.as_ref().map(|s| &s.0) {
        None | Some(Value::Null) => d.high_water,
        Some(v) => match parse_fraction(v) {
            Some(f) if f > 0.0 && f <= 1.0 => f,
            _ => {
                ctx.report(
                    p,
                    Some(v),
                    "must be a share of limits.maxConnections above 0 and at most 1: \
                     a fraction (0.8) or a percentage (\"80%\")",
                );
                d.high_water
            }
        },
    };
    Overload {
        high_water,
        header_wait_timeout: ctx.duration(
            &r.header_wait_timeout,
            "limits.overload.headerWaitTimeout",
            d.header_wait_timeout,
            true,
        ),
        idle_timeout: ctx.duration(
            &r.idle_timeout,
            "limits.overload.idleTimeout",
            d.idle_timeout,
            true,
        ),
    }
}
