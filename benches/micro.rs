//! Criterion micro-benchmarks of the front's per-request work: routing lookup (1, 100,
//! 10,000 applications), pool admit/release with and without contention, header
//! rewriting, and the upstream HTTP/1.1 codec (request head out, response head in).
//! Run: `cargo bench --bench micro`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Request};
use roost::config::model::{Application, Site};
use roost::front::headers;
use roost::front::router::HostRouter;
use roost::h1;
use roost::pool::{Member, PickKey, Pool};
use std::net::{IpAddr, Ipv4Addr};

fn site(apps: usize) -> Site {
    Site {
        name: "s".into(),
        bindings: vec![],
        host_names: vec!["www.example.com".into(), "*.example.org".into()],
        applications: (0..apps)
            .map(|i| Application {
                path: format!("/app{i}/v{}", i % 7),
                pool: "p".into(),
            })
            .collect(),
    }
}

fn routing(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    for n in [1usize, 100, 10_000] {
        let s = site(n);
        let router: HostRouter<u32> = HostRouter::new([&s], |_| 1);
        let path = format!("/app{}/v{}/orders/42", n - 1, (n - 1) % 7);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                router
                    .route(black_box(Some("www.example.com")), black_box(&path))
                    .is_some()
            })
        });
    }
    g.finish();
}

fn pool_cfg() -> roost::config::model::Pool {
    let yaml = "sites: [{name: s, bindings: [{listen: \"127.0.0.1:0\"}], applications: [{path: /, pool: p}]}]\npools:\n  p: {farm: {servers: [{address: \"127.0.0.1:9\", maxConcurrentRequests: 1000000}]}}\n";
    roost::config::load_str(yaml, "bench.yaml").unwrap().pools["p"].clone()
}

fn queue(c: &mut Criterion) {
    let cfg = pool_cfg();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = Pool::new(&cfg);
    let timeouts = cfg.timeouts.clone();
    let client = roost::upstream::Client::new(
        roost::upstream::Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 9,
        },
        &timeouts,
    );
    pool.add_member(Member::new("m", None, client, 1_000_000, 1));
    let key = PickKey::default();
    c.bench_function("queue/admit_release", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(pool.acquire(&key).await.unwrap()) })
    });
    // Contention: 8 tasks admit/release concurrently; time per operation.
    c.bench_function("queue/admit_release_8_tasks", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pool = pool.clone();
            async move {
                let start = std::time::Instant::now();
                let per = iters / 8 + 1;
                let mut tasks = Vec::new();
                for _ in 0..8 {
                    let pool = pool.clone();
                    tasks.push(tokio::spawn(async move {
                        let key = PickKey::default();
                        for _ in 0..per {
                            drop(pool.acquire(&key).await.unwrap());
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                // Wall time for ~iters operations spread over 8 tasks: throughput cost.
                start.elapsed()
            }
        })
    });
    // Two OS threads, each on its own current-thread runtime (the thread-per-core
    // layout), admit/release on one pool: the cost of sharing the pool between cores.
    c.bench_function("queue/admit_release_2_threads", |b| {
        b.iter_custom(|iters| {
            let per = iters / 2 + 1;
            let start = std::time::Instant::now();
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let pool = pool.clone();
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        rt.block_on(async {
                            let key = PickKey::default();
                            for _ in 0..per {
                                drop(pool.acquire(&key).await.unwrap());
                            }
                        })
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            start.elapsed()
        })
    });
}

fn header_rewrite(c: &mut Criterion) {
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "www.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.9"),
        ("cookie", "session=abcdef0123456789; theme=dark"),
        ("connection", "keep-alive"),
        ("x-request-id", "4f1c2a"),
    ] {
        base.insert(k, HeaderValue::from_static(v));
    }
    let client = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    // The checks every request gets: a fresh copy of the client's headers, validated,
    // hop-by-hop and underscore names removed.
    let checked = || {
        let mut req = Request::new(());
        *req.headers_mut() = base.clone();
        headers::validate(&req).unwrap();
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h, false);
        headers::drop_underscore_headers(h);
        req.into_parts().0.headers
    };
    c.bench_function("headers/validate_and_rewrite", |b| {
        b.iter(|| {
            let mut h = checked();
            headers::add_forwarded(&mut h, Some("www.example.com"), client, false);
            black_box(h.len())
        })
    });
    // What the proxy does per request since the forwarding headers moved into the
    // upstream encoder: the same checks, then the request head written for the member.
    let head = Request::get("/index.html?q=1")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let mut out = Vec::with_capacity(1024);
    c.bench_function("headers/validate_and_encode_head", |b| {
        b.iter(|| {
            let h = &checked();
            let fwd = headers::forwarding(h, Some("www.example.com"), client, false);
            out.clear();
            h1::encode_request_head(
                &mut out,
                &head.method,
                "/index.html?q=1",
                h,
                Some(&fwd),
                true,
                Some(0),
            );
            black_box(out.len())
        })
    });
    let raw: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n\
        content-length: 5\r\ndate: Thu, 26 Nov 2026 12:13:06 GMT\r\n\r\nhello";
    let mut scratch = h1::ParseScratch::default();
    c.bench_function("upstream/parse_response_head", |b| {
        b.iter(|| {
            let mut buf = bytes::BytesMut::from(raw);
            let head = h1::parse_response(&mut buf, &http::Method::GET, &mut scratch)
                .unwrap()
                .unwrap();
            black_box(head.headers.len())
        })
    });
}

criterion_group!(benches, routing, queue, header_rewrite);
criterion_main!(benches);
