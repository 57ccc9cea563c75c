//! Probes for service managers and orchestrators: `GET /readyz` and `GET /livez`, served
//! without a token on the admin listener and on the public one (`admin.public.listen`),
//! which serves nothing else but `/metrics`.
//!
//! - `/readyz`: 200 only in the `ready` phase ([`crate::ops::Readiness`]): 503 while
//!   the first workers of `alwaysRunning` pools start, and from the first moment of a
//!   drain. It does not follow worker or farm health once ready.
//! - `/livez`: 200 for as long as the runtime answers, drain included.

use super::{error, json_response};
use crate::body::Body;
use crate::front::Front;
use crate::ops::{Phase, Readiness};
use http::{Method, Response, StatusCode};
use serde_json::json;

/// The answer to a probe path, or `None` for any other path.
pub(super) fn answer(
    method: &Method,
    path: &str,
    readiness: &Readiness,
    front: &Front,
) -> Option<Response<Body>> {
    let probe = matches!(path, "/readyz" | "/livez");
    if !probe {
        return None;
    }
    if method != Method::GET && method != Method::HEAD {
        return Some(super::method_not_allowed("GET"));
    }
    Some(match path {
        "/readyz" => readyz(readiness, front),
        _ => json_response(StatusCode::OK, &json!({"live": true})),
    })
}

fn readyz(readiness: &Readiness, front: &Front) -> Response<Body> {
    // The front's own flag also counts: an embedding that drains the front directly
    // (without `roost serve`'s signal handling) is not ready either.
    let phase = match readiness.phase() {
        Phase::Ready if front.is_shutting_down() => Phase::Draining,
        p => p,
    };
    let status = match phase {
        Phase::Ready => StatusCode::OK,
        Phase::Starting | Phase::Draining => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_response(
        status,
        &json!({"ready": phase == Phase::Ready, "phase": phase.as_str()}),
    )
}

/// What the public listener answers for everything but the probes and `/metrics`.
pub(super) fn not_public(path: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "{path} is not served on admin.public; it serves only /readyz, /livez and /metrics"
        ),
    )
}
