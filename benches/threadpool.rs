//! Dispatch overhead of the worker thread pool against tokio's blocking pool.
//!
//! `single`: one `run` awaited at a time (round trip: enqueue, wake a thread, run, oneshot
//! back). `batch_64`: 64 calls in flight at once, which is what a busy worker sees.
//! Both pools are given the same thread budget.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::future::join_all;
use roost::worker::threadpool::{ThreadPool, ThreadPoolConfig};

const THREADS: usize = 4;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(THREADS)
        .enable_all()
        .build()
        .unwrap()
}

fn bench_dispatch(c: &mut Criterion) {
    let rt = runtime();
    let pool = ThreadPool::new(ThreadPoolConfig::new("bench", THREADS, THREADS));

    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("roost_pool_run", "single"), |b| {
        b.to_async(&rt)
            .iter(|| async { pool.run(|| black_box(1u64)).await.unwrap() })
    });
    g.bench_function(BenchmarkId::new("tokio_spawn_blocking", "single"), |b| {
        b.to_async(&rt).iter(|| async {
            tokio::task::spawn_blocking(|| black_box(1u64))
                .await
                .unwrap()
        })
    });

    const BATCH: usize = 64;
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(BenchmarkId::new("roost_pool_run", "batch_64"), |b| {
        b.to_async(&rt).iter(|| async {
            let futs = (0..BATCH).map(|i| pool.run(move || black_box(i)));
            join_all(futs).await
        })
    });
    g.bench_function(BenchmarkId::new("tokio_spawn_blocking", "batch_64"), |b| {
        b.to_async(&rt).iter(|| async {
            let futs = (0..BATCH).map(|i| tokio::task::spawn_blocking(move || black_box(i)));
            join_all(futs).await
        })
    });
    g.finish();
    pool.shutdown();
}

criterion_group!(benches, bench_dispatch);
criterion_main!(benches);
