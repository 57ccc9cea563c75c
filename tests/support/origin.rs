//! An origin that counts what it is asked, for the tests of what the front does with
//! responses (cache, compression): each test file gives the handler that answers by the
//! request's query, the origin counts requests per path-and-query and keeps the last
//! request's headers, and [`send`] reads a whole answer back through the front.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What an origin handler answers with.
pub type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A real HTTP/1.1 origin on 127.0.0.1:0 serving a handler of the test's.
pub struct CountingOrigin {
    pub addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    last: Arc<Mutex<Option<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingOrigin {
    pub async fn start<F, Fut>(answer: F) -> CountingOrigin
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let last: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
        let (c, l) = (counts.clone(), last.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (c, l, answer) = (c.clone(), l.clone(), answer.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let pq = req.uri().path_and_query().unwrap().to_string();
                        *c.lock().entry(pq).or_default() += 1;
                        *l.lock() = Some(req.headers().clone());
                        let resp = answer(req);
                        async move { Ok::<_, Infallible>(resp.await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        CountingOrigin {
            addr,
            counts,
            last,
            task,
        }
    }

    /// How many requests for this path-and-query reached the origin.
    pub fn count(&self, pq: &str) -> usize {
        self.counts.lock().get(pq).copied().unwrap_or(0)
    }

    /// The headers of the last request that reached the origin.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.last.lock().clone()
    }
}

/// A query parameter's value, with the escapes the tests use (`%20`, `%2B`, `%2C`, `%3D`)
/// decoded.
pub fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%20", " ")
                .replace("%2B", "+")
                .replace("%3D", "=")
                .replace("%2C", ",")
        })
    })
}

/// A whole answer as the client got it.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A header's value, if it is there and text.
    pub fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request over a new HTTP/1.1 connection to `addr` with `Host: host`.
pub async fn send(
    addr: SocketAddr,
    host: &str,
    method: &str,
    pq: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut s = super::h1(addr).await;
    let mut b = Request::builder()
        .method(method)
        .uri(pq)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = s
        .send_request(b.body(super::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}
