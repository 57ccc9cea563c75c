//! The baseline the worker's own overhead is measured against (BENCHMARKS.md, "the
//! garden path"): a plain hyper server answering "hello" on every path, built the way a
//! hand-written tokio service is (multi-thread runtime, hyper-util's auto connection
//! builder, as `roost worker` uses), with nothing else on the request path. The response is
//! byte for byte the worker's (`content-type: text/plain; charset=utf-8` included), so the
//! comparison measures the worker's machinery, not a different response.
//!
//!   cargo run --release --example plain_hyper -- 127.0.0.1:8080 [io-threads]

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let threads = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(serve(&addr))
}

async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                let mut resp = Response::new(Full::new(Bytes::from_static(b"hello")));
                // The same response as `roost worker --app hello`, header included.
                let ctype = const { HeaderValue::from_static("text/plain; charset=utf-8") };
                resp.headers_mut().insert(CONTENT_TYPE, ctype);
                Ok::<_, Infallible>(resp)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
