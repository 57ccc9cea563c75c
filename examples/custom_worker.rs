//! A Rust application on roost's worker machinery (the library side of `roost worker`).
//!
//! It gets the same socket handling, gate (`requestQueueLimit`, per-CPU caps), worker
//! pools with hill climbing and starvation avoidance, counters and `/.roost/` endpoints as
//! the built-in apps, and shows the three kinds of routes:
//!
//! - `/greet?name=N`: an async handler on the I/O pool (never blocks);
//! - `/report?ms=N`: a sync handler on the dedicated pool `reports` (1..4 threads) that
//!   makes a blocking call (here a sleep standing in for a synchronous database query)
//!   inside `roost::worker::blocking`, so the pool adds a thread at once when all block;
//!   a slow report can only starve the `reports` pool, never the rest of the app;
//! - `/svc/...`: any tower `Service` (here `tower::service_fn`; an axum `Router` plugs in the
//!   same way, it is a `Service<http::Request<B>>`).
//!
//! Run it the way the supervisor runs a worker (`ROOST_LISTEN`, or `PORT`), or pass the
//! address:
//!
//! ```text
//! cargo run --example custom_worker -- tcp:127.0.0.1:0
//! listening on tcp:127.0.0.1:40123
//! curl 'http://127.0.0.1:40123/greet?name=ada'
//! curl 'http://127.0.0.1:40123/report?ms=200'
//! curl -X POST 'http://127.0.0.1:40123/svc/anything'
//! curl 'http://127.0.0.1:40123/.roost/counters'
//! ```
//!
//! In `proxy.yaml` a pool runs it with `processModel: {command: /path/to/custom_worker}`.

use roost::worker::{blocking, query_param, text, Listen, Request, Settings, WorkerBuilder};
use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

/// The application's routes and pools. A function of its own so tests can serve it
/// in-process.
pub fn app(settings: Settings) -> WorkerBuilder {
    WorkerBuilder::new(settings)
        .name("custom")
        .route_async("/greet", |req: Request| async move {
            let name = query_param(&req, "name").unwrap_or("world");
            text(format!("hello, {name}\n"))
        })
        .thread_pool("reports", 1, 4)
        .route_sync_on("/report", "reports", |req: Request| {
            let ms = query_param(&req, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            blocking(|| std::thread::sleep(Duration::from_millis(ms)));
            let thread = std::thread::current();
            text(format!(
                "report built in {ms} ms on {}\n",
                thread.name().unwrap_or("?")
            ))
        })
        .route_service(
            "/svc",
            tower::service_fn(|req: Request| async move {
                let reply = format!("service saw {} {}\n", req.method(), req.uri().path());
                Ok::<_, Infallible>(text(reply))
            }),
        )
}

fn main() -> ExitCode {
    let listen = match std::env::args().nth(1) {
        Some(a) => a.parse::<Listen>(),
        None => match Listen::from_env() {
            Ok(Some(l)) => Ok(l),
            Ok(None) => "tcp:127.0.0.1:8000".parse(),
            Err(e) => Err(e),
        },
    };
    let listen = match listen {
        Ok(l) => l,
        Err(e) => {
            eprintln!("custom_worker: {e}");
            return ExitCode::from(2);
        }
    };
    // `run` prints `listening on ADDR`, serves until SIGTERM/SIGINT, then drains.
    match app(Settings::default()).run(listen) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_worker: {e}");
            ExitCode::from(1)
        }
    }
}
