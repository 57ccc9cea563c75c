//! The built-in apps (`roost worker --app NAME`), written with the public
//! [`WorkerBuilder`] API like any Rust app would be.
//!
//! - `demo` has an endpoint per behaviour the tests and benchmarks need: `/hello` (and `/`),
//!   `/async?ms=N` (and `/sleep?ms=N`: wait on the I/O pool), `/cpu?ms=N` (burn CPU on the
//!   worker pool), `/block?ms=N` (block a worker thread, like a synchronous database call),
//!   `/block-hinted?ms=N` (the same inside [`blocking`]), `/bytes?n=N`, `/echo` (streams the
//!   request body back), `/headers`, `/status/CODE`, `/pid`, `/crash`, `/hang`.
//! - `hello` answers "hello" to everything.
//! - `static:DIR` serves a directory with tower-http's `ServeDir` (Content-Type from the
//!   extension, Last-Modified / If-Modified-Since, Range, `index.html` for directories)
//!   behind gzip/brotli compression, plus a weak ETag and If-None-Match (ServeDir has none).

use super::app::{self, query_param, text, Request, Response, WorkerBuilder};
use super::body::Body;
use super::settings::Settings;
use super::threadpool::blocking;
use bytes::Bytes;
use http::StatusCode;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Names accepted by `--app`.
pub const APPS: [&str; 3] = ["demo", "hello", "static:DIR"];

/// The built-in app called `name`, or why there is none.
pub fn builtin(name: &str, settings: Settings) -> Result<WorkerBuilder, String> {
    match name {
        "demo" => Ok(demo(settings)),
        "hello" => Ok(hello(settings)),
        _ => match name.strip_prefix("static:") {
            Some(dir) => static_files(settings, std::path::Path::new(dir)),
            None => Err(format!(
                "unknown app {name:?} (built-in apps: {})",
                APPS.join(", ")
            )),
        },
    }
}

/// `static:DIR`: the files under `dir` (see the module docs).
pub fn static_files(settings: Settings, dir: &std::path::Path) -> Result<WorkerBuilder, String> {
    if dir.as_os_str().is_empty() {
        return Err("static: needs a directory (--app static:DIR)".into());
    }
    if !dir.is_dir() {
        return Err(format!("static:{}: not a directory", dir.display()));
    }
    let files = tower_http::services::ServeDir::new(dir);
    let svc = tower::ServiceBuilder::new()
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(tower::layer::layer_fn(etag::ETag::new))
        .service(files);
    Ok(WorkerBuilder::new(settings)
        .name("static")
        .route_service("/", svc))
}

/// Spin until this thread has used `cpu` of CPU time (not wall time: on a busy machine the
/// thread is descheduled part of the time, and a wall-clock spin would then use less CPU
/// than asked, so `/cpu` could not reliably load the machine).
pub fn burn_cpu(cpu: Duration) {
    let Some(start) = thread_cpu_time() else {
        return;
    };
    let mut spins: u64 = 0;
    loop {
        // Check the clock every few thousand spins: the call itself costs ~50 ns.
        for _ in 0..4096 {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        match thread_cpu_time() {
            Some(now) if now.saturating_sub(start) < cpu => {}
            _ => return,
        }
    }
}

/// CPU time used by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
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
        .route_async("/", root)
        .route_async("/hello", |_req| async { text("hello") })
        .route_async("/pid", |_req| async {
            text(format!("{}\n", std::process::id()))
        })
        .route_async("/async", wait_async)
        .route_async("/sleep", wait_async)
        .route_sync("/cpu", cpu)
        .route_sync("/block-hinted", block_hinted)
        .route_sync("/block", block)
        .route_async("/echo", echo)
        .route_async("/bytes", bytes)
        .route_async("/status", status)
        .route_async("/headers", headers)
        .route_async("/crash", crash)
        .route_async("/hang", |_req| async {
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        })
}

/// `/` is also the fallback route, so only the root itself says hello.
async fn root(req: Request) -> Response {
    if req.uri().path() == "/" {
        text("hello")
    } else {
        app::status(StatusCode::NOT_FOUND, "not found")
    }
}

/// `/cpu?ms=N`: spin a worker-pool thread.
fn cpu(req: Request) -> Response {
    let ms = match millis(&req) {
        Ok(ms) => ms,
        Err(msg) => return app::status(StatusCode::BAD_REQUEST, &msg),
    };
    burn_cpu(Duration::from_millis(ms));
    text(format!("spun {ms} ms of CPU\n"))
}

/// `/block-hinted?ms=N`: sleep inside `blocking()`, which lets the pool add a thread.
fn block_hinted(req: Request) -> Response {
    let ms = match millis(&req) {
        Ok(ms) => ms,
        Err(msg) => return app::status(StatusCode::BAD_REQUEST, &msg),
    };
    blocking(|| std::thread::sleep(Duration::from_millis(ms)));
    text(format!("blocked {ms} ms (hinted)\n"))
}

/// `/block?ms=N`: sleep on a worker-pool thread without a hint.
fn block(req: Request) -> Response {
    let ms = match millis(&req) {
        Ok(ms) => ms,
        Err(msg) => return app::status(StatusCode::BAD_REQUEST, &msg),
    };
    std::thread::sleep(Duration::from_millis(ms));
    text(format!("blocked {ms} ms\n"))
}

/// `/echo`: the request body becomes the response body: chunks flow through, never
/// collected.
async fn echo(req: Request) -> Response {
    let ctype = req.headers().get(http::header::CONTENT_TYPE).cloned();
    let mut resp = Response::new(req.into_body());
    if let Some(c) = ctype {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, c);
    }
    resp
}

/// `/bytes?n=N`: N bytes, streamed.
async fn bytes(req: Request) -> Response {
    let n = match number(&req, "n", MAX_BYTES) {
        Ok(n) => n,
        Err(msg) => return app::status(StatusCode::BAD_REQUEST, &msg),
    };
    let mut resp = Response::new(Body::wrap(Filler::new(n)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// `/status/CODE`: that status.
async fn status(req: Request) -> Response {
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
}

/// `/headers`: the request's headers as a JSON object (repeated ones joined by `, `).
async fn headers(req: Request) -> Response {
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
}

/// `/crash`: reply first, then die: the supervisor's tests see a response and a crash.
async fn crash(_req: Request) -> Response {
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tracing::warn!("/crash: exiting with code 1");
        std::process::exit(1);
    });
    text("crashing\n")
}

/// `/async?ms=N` (alias `/sleep`): wait on the I/O pool, holding no thread.
async fn wait_async(req: Request) -> Response {
    let ms = match millis(&req) {
        Ok(ms) => ms,
        Err(msg) => return app::status(StatusCode::BAD_REQUEST, &msg),
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(format!("slept {ms} ms\n"))
}

/// Longest `ms=` the demo accepts (an hour): a typo must not hold a thread for ever.
const MAX_MS: u64 = 3_600_000;
/// Largest `/bytes?n=` (1 TiB: streams, never buffered, but bounded).
const MAX_BYTES: u64 = 1 << 40;

/// `?ms=N` (absent = 0), or what is wrong with it (for a 400).
fn millis(req: &Request) -> Result<u64, String> {
    number(req, "ms", MAX_MS)
}

/// Query parameter `name` as a number in `0..=max` (absent = 0); else the message of a 400,
/// so a typo (`?ms=1s`) is not silently taken as 0.
fn number(req: &Request, name: &str, max: u64) -> Result<u64, String> {
    match query_param(req, name) {
        None => Ok(0),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!(
                "{name}={v:?}: expected a whole number from 0 to {max}"
            )),
        },
    }
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

/// A weak ETag for ServeDir's responses, and If-None-Match answered with 304.
///
/// The tag is nginx's recipe (`"mtime-size"` in hex) made weak (`W/`), because the
/// compression layer outside may re-encode the bytes. It is derived from the file's
/// `Last-Modified` and its full length (`Content-Length` of a 200, the total of a 206's
/// `Content-Range`), so no second `stat` is needed: a request with If-None-Match runs
/// ServeDir, and a matching 200 is turned into a 304 before its body is read.
mod etag {
    use crate::worker::app::Request;
    use futures_util::future::BoxFuture;
    use futures_util::FutureExt;
    use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
    use std::task::{Context, Poll};

    #[derive(Clone)]
    pub struct ETag<S> {
        inner: S,
    }

    impl<S> ETag<S> {
        pub fn new(inner: S) -> Self {
            ETag { inner }
        }
    }

    impl<S, B> tower::Service<Request> for ETag<S>
    where
        S: tower::Service<Request, Response = http::Response<B>>,
        S::Future: Send + 'static,
        B: Default + Send + 'static,
    {
        type Response = http::Response<B>;
        type Error = S::Error;
        type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: Request) -> Self::Future {
            let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
            let cacheable = matches!(*req.method(), Method::GET | Method::HEAD);
            if if_none_match.is_some() {
                // RFC 9110 13.1.3: with If-None-Match, If-Modified-Since is ignored.
                req.headers_mut().remove(header::IF_MODIFIED_SINCE);
            }
            let fut = self.inner.call(req);
            // A combinator, not an async block (see `WorkerBuilder::route_service`).
            Box::pin(fut.map(move |r| r.map(|resp| tagged(resp, cacheable, if_none_match))))
        }
    }

    /// Tag a ServeDir response; a matching If-None-Match turns a 200 into a 304.
    fn tagged<B: Default>(
        mut resp: http::Response<B>,
        cacheable: bool,
        if_none_match: Option<HeaderValue>,
    ) -> http::Response<B> {
        let Some(tag) = tag_for(resp.status(), resp.headers()) else {
            return resp;
        };
        if cacheable
            && resp.status() == StatusCode::OK
            && if_none_match.is_some_and(|v| matches(&v, &tag))
        {
            let mut not_modified = http::Response::new(B::default());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            let h = not_modified.headers_mut();
            h.insert(header::ETAG, tag);
            if let Some(lm) = resp.headers_mut().remove(header::LAST_MODIFIED) {
                h.insert(header::LAST_MODIFIED, lm);
            }
            return not_modified;
        }
        resp.headers_mut().insert(header::ETAG, tag);
        resp
    }

    /// `W/"<mtime secs hex>-<size hex>"` from a ServeDir 200 or 206.
    fn tag_for(status: StatusCode, h: &HeaderMap) -> Option<HeaderValue> {
        let modified = h.get(header::LAST_MODIFIED)?.to_str().ok()?;
        let mtime = httpdate_secs(modified)?;
        let size: u64 = match status {
            StatusCode::OK => h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()?,
            StatusCode::PARTIAL_CONTENT => h
                .get(header::CONTENT_RANGE)?
                .to_str()
                .ok()?
                .rsplit_once('/')?
                .1
                .parse()
                .ok()?,
            _ => return None,
        };
        HeaderValue::from_str(&format!("W/\"{mtime:x}-{size:x}\"")).ok()
    }

    /// If-None-Match matches `tag` by weak comparison (`*`, or any listed tag with the same
    /// opaque part, `W/` or not).
    fn matches(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
        let Ok(list) = if_none_match.to_str() else {
            return false;
        };
        let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
        let ours = opaque(tag.to_str().unwrap_or_default());
        list.split(',')
            .any(|t| t.trim() == "*" || opaque(t) == ours)
    }

    /// Seconds since the epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only
    /// form ServeDir writes.
    fn httpdate_secs(s: &str) -> Option<u64> {
        let mut it = s.split_whitespace().skip(1);
        let day: u64 = it.next()?.parse().ok()?;
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .position(|m| Some(*m) == it.clone().next())? as u64
            + 1;
        it.next();
        let year: i64 = it.next()?.parse().ok()?;
        let mut hms = it.next()?.split(':').map(|p| p.parse::<u64>().ok());
        let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = (y - era * 400) as u64;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = (era * 146097 + doe as i64 - 719468) as u64;
        Some(days * 86400 + h * 3600 + m * 60 + sec)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn http_dates_and_tags() {
            assert_eq!(
                httpdate_secs("Sun, 06 Nov 1994 08:49:37 GMT"),
                Some(784111777)
            );
            assert_eq!(httpdate_secs("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
            assert_eq!(httpdate_secs("garbage"), None);
            let mut h = HeaderMap::new();
            h.insert(
                header::LAST_MODIFIED,
                HeaderValue::from_static("Thu, 01 Jan 1970 00:00:16 GMT"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("255"));
            let tag = tag_for(StatusCode::OK, &h).unwrap();
            assert_eq!(tag, "W/\"10-ff\"");
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_static("bytes 0-9/255"),
            );
            assert_eq!(tag_for(StatusCode::PARTIAL_CONTENT, &h).unwrap(), tag);
            assert!(tag_for(StatusCode::NOT_FOUND, &h).is_none());
            assert!(matches(&HeaderValue::from_static("\"x\", \"10-ff\""), &tag));
            assert!(matches(&HeaderValue::from_static("*"), &tag));
            assert!(!matches(&HeaderValue::from_static("W/\"10-fe\""), &tag));
        }
    }
}

#[cfg(test)]
mod cpu_tests {
    use super::*;

    #[test]
    fn burn_cpu_uses_cpu_time_not_wall_time() {
        // Two spinners per core: each is descheduled part of the time, so a wall-clock
        // spin would fall short of its CPU budget; the CPU-time spin may not.
        let n = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads: Vec<_> = (0..n)
            .map(|_| {
                std::thread::spawn(|| {
                    let before = thread_cpu_time().unwrap();
                    burn_cpu(Duration::from_millis(60));
                    thread_cpu_time().unwrap() - before
                })
            })
            .collect();
        for t in threads {
            let used = t.join().unwrap();
            assert!(used >= Duration::from_millis(60), "{used:?}");
        }
    }
}
