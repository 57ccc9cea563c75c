//! The built-in apps (`roost worker --app NAME`), written with the public
//! [`WorkerBuilder`] API like any Rust app would be.
//!
//! `demo` has an endpoint per behaviour the tests and benchmarks need (fast, async wait,
//! CPU-bound, blocking with and without the hint, streaming both ways, crash, hang);
//! `hello` answers "hello" to everything.

use super::app::{self, query_param, text, Request, Response, WorkerBuilder};
use super::settings::Settings;
use super::threadpool::blocking;
use bytes::Bytes;
use http::StatusCode;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Names accepted by `--app`.
pub const APPS: [&str; 2] = ["demo", "hello"];

/// The built-in app called `name`.
pub fn builtin(name: &str, settings: Settings) -> Option<WorkerBuilder> {
    match name {
        "demo" => Some(demo(settings)),
        "hello" => Some(hello(settings)),
        _ => None,
    }
}

/// `hello`: "hello" for every path.
pub fn hello(settings: Settings) -> WorkerBuilder {
    WorkerBuilder::new(settings)
        .name("hello")
        .route_async("/", |_req| async { text("hello") })
}

/// `demo`: see the module docs; anything not listed is 404.
pub fn demo(settings: Settings) -> WorkerBuilder {
    WorkerBuilder::new(settings)
        .name("demo")
        .route_async("/", |req: Request| async move {
            // `/` is also the fallback route, so only the root itself says hello.
            if req.uri().path() == "/" {
                text("hello")
            } else {
                app::status(StatusCode::NOT_FOUND, "not found")
            }
        })
        .route_async("/pid", |_req| async {
            text(format!("{}\n", std::process::id()))
        })
        .route_async("/sleep", |req: Request| async move {
            let ms = millis(&req);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(format!("slept {ms} ms\n"))
        })
        .route_sync("/cpu", |req| {
            let ms = millis(&req);
            let end = Instant::now() + Duration::from_millis(ms);
            let mut spins: u64 = 0;
            while Instant::now() < end {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
            text(format!("spun {ms} ms\n"))
        })
        .route_sync("/block-hinted", |req| {
            let ms = millis(&req);
            blocking(|| std::thread::sleep(Duration::from_millis(ms)));
            text(format!("blocked {ms} ms (hinted)\n"))
        })
        .route_sync("/block", |req| {
            let ms = millis(&req);
            std::thread::sleep(Duration::from_millis(ms));
            text(format!("blocked {ms} ms\n"))
        })
        .route_async("/echo", |req: Request| async move {
            // The request body becomes the response body: chunks flow through, never
            // collected.
            let ctype = req.headers().get(http::header::CONTENT_TYPE).cloned();
            let mut resp = Response::new(req.into_body());
            if let Some(c) = ctype {
                resp.headers_mut().insert(http::header::CONTENT_TYPE, c);
            }
            resp
        })
        .route_async("/bytes", |req: Request| async move {
            let n = query_param(&req, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0u64);
            let mut resp = Response::new(crate::body::boxed(Filler::new(n)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
            resp
        })
        .route_async("/status", |req: Request| async move {
            let code = req
                .uri()
                .path()
                .strip_prefix("/status/")
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok());
            match code {
                Some(c) => app::status(c, c.canonical_reason().unwrap_or("status")),
                None => app::status(StatusCode::BAD_REQUEST, "use /status/CODE"),
            }
        })
        .route_async("/headers", |req: Request| async move {
            let mut m = serde_json::Map::new();
            for (k, v) in req.headers() {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                match m.get_mut(k.as_str()) {
                    Some(serde_json::Value::String(prev)) => {
                        prev.push_str(", ");
                        prev.push_str(&v);
                    }
                    _ => {
                        m.insert(k.as_str().to_string(), serde_json::Value::String(v));
                    }
                }
            }
            app::json(&serde_json::Value::Object(m))
        })
        .route_async("/crash", |_req| async {
            // Reply first, then die: the supervisor's tests see a response and a crash.
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tracing::warn!("/crash: exiting with code 1");
                std::process::exit(1);
            });
            text("crashing\n")
        })
        .route_async("/hang", |_req| async {
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        })
}

fn millis(req: &Request) -> u64 {
    query_param(req, "ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A body of `n` filler bytes, produced 64 KiB at a time as the client reads.
struct Filler {
    left: u64,
    chunk: Bytes,
}

impl Filler {
    fn new(n: u64) -> Self {
        Filler {
            left: n,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl http_body::Body for Filler {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(http_body::Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}
