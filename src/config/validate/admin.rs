//! `admin` (listen, token, public endpoint) and `log`.

use super::ctx::{Ctx, LISTEN_HINT};
use super::parse::{leaf_value, parse_listen};
use crate::config::model::{AccessLog, AccessLogFormat, Admin, Log};
use crate::config::raw::RawConfig;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub(super) fn validate_admin(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Admin {
    let default_listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
    let Some(r) = ctx.nested(&raw.admin, "admin", "a map") else {
        return Admin {
            listen: default_listen,
            token: None,
            public: None,
        };
    };
    let listen = match ctx.text(&r.listen, "admin.listen") {
        None => default_listen,
        Some(s) => parse_listen(&s).unwrap_or_else(|| {
            ctx.report("admin.listen", leaf_value(&r.listen), LISTEN_HINT);
            default_listen
        }),
    };
    let token = ctx.name(&r.token, "admin.token");
    if token.is_none() && !listen.ip().is_loopback() {
        ctx.report(
            "admin.listen",
            leaf_value(&r.listen),
            "a non-loopback admin address needs `admin.token` (anyone who can reach it could stop pools)",
        );
    }
    let public = ctx
        .nested(&r.public, "admin.public", "a map")
        .and_then(|p| {
            let text = ctx.text(&p.listen, "admin.public.listen");
            let addr = text.as_deref().and_then(parse_listen);
            if addr.is_none() {
                ctx.report("admin.public.listen", leaf_value(&p.listen), LISTEN_HINT);
            }
            addr
        });
    Admin {
        listen,
        token,
        public,
    }
}

pub(super) fn validate_log(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Log {
    let access = ctx
        .nested(&raw.log, "log", "a map")
        .and_then(|l| ctx.nested(&l.access, "log.access", "a map"))
        .map(|a| AccessLog {
            path: ctx.path_buf(&a.path, "log.access.path"),
            format: ctx.choice(
                &a.format,
                "log.access.format",
                &[
                    ("w3c", AccessLogFormat::W3c),
                    ("json", AccessLogFormat::Json),
                ],
                AccessLogFormat::W3c,
            ),
        });
    Log { access }
}
