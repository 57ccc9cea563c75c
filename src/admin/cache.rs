//! `GET /api/v1/cache` (every pool's cache) and `POST /api/v1/cache/purge` with a JSON
//! body `{"pool"?: name, "key": "host/path?query"}` or `{"pool"?, "prefix": "host/path"}`,
//! or the same three as query parameters (what `roost ctl cache purge` sends).

use super::{error, json_response, method_not_allowed, query_param};
use crate::body::Body;
use crate::cache::admin::{all_json, purge, Purge};
use crate::front::Front;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

/// A purge request's body is small; anything larger is refused.
const MAX_BODY: usize = 64 * 1024;

pub(super) async fn handle(front: &Front, rest: &[&str], req: Request<Incoming>) -> Response<Body> {
    match rest {
        [] => match *req.method() == Method::GET || *req.method() == Method::HEAD {
            true => json_response(StatusCode::OK, &all_json(&front.state().caches)),
            false => method_not_allowed("GET"),
        },
        ["purge"] => {
            if req.method() != Method::POST {
                return method_not_allowed("POST");
            }
            let from_query = Purge {
                pool: query_param(&req, "pool"),
                key: query_param(&req, "key"),
                prefix: query_param(&req, "prefix"),
            };
            let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
            };
            let parsed = match body.is_empty() {
                true => Ok(from_query),
                false => serde_json::from_slice(&body),
            };
            let p: Purge = match parsed {
                Ok(p) => p,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("purge body: {e}")),
            };
            match purge(&front.state().caches, &p) {
                Ok(n) => json_response(StatusCode::OK, &json!({"purged": n})),
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "unknown cache endpoint"),
    }
}
