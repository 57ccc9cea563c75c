//! Bursty and steady blocking load against several ways of running blocking work:
//!
//! - `roost hill climbing`: roost's worker pool as `roost worker` set it up before blocking
//!   detection (min = cores, max = 32 per core, `blocking_detection` off), jobs block without
//!   telling it: only starvation avoidance (~2 threads/s) and hill climbing can add threads;
//! - `roost blocking detection`: the same pool with detection on (today's default): the gate
//!   thread finds the busy threads blocked in the kernel and adds threads as for hints;
//! - `roost + blocking hints`: the same pool, each job blocks inside
//!   `roost::worker::blocking`, so the pool adds threads at once, then in bounded steps;
//! - `roost hill climbing, process CPU`: the same, but the CPU guards (hill climbing never
//!   adds threads at >= 95 % CPU, starvation slows at >= 80 %) read this process's CPU, as
//!   .NET does on Linux, instead of the whole machine's (roost's default); on a machine
//!   busy with other work this is the difference that matters;
//! - `roost fixed (min=max=cores)`: a pool that never grows (the seeds' fixed pool);
//! - `tokio spawn_blocking`: tokio's blocking pool (a thread per waiting job, up to 512).
//!
//! Workloads (a blocking job sleeps 100 ms, standing in for a synchronous database call):
//! - `burst`: 200 jobs submitted at once;
//! - `steady`: 40 jobs/s for 5 s (needs 4 threads busy on average);
//! - `mixed`: 200 jobs at once, every other one spinning 20 ms instead of sleeping (the
//!   demo app's `/cpu` beside `/block`);
//! - `cpu`: 1 ms spinning jobs at 1.25 × what the cores can do, for 4 s (the thread count
//!   must stay near cores + 2: detection must not mistake running threads for blocked).
//!
//! `monitor` (run alone, `-- monitor`): the gate thread's own CPU time over 10 s with 64
//! busy threads blocked and work queued, detection on vs off (the monitor's cost).
//!
//! Reported per pool and workload: completion time (first submission to last completion),
//! p50 / p99 / max latency (submission to completion of each job), peak threads, and for
//! roost's pools the goal increases by cause (hill climbing / starvation / blocking).
//!
//! Run: `cargo bench --bench worker_burst` (optionally followed by `-- burst`, `-- steady`,
//! `-- mixed`, `-- cpu` or `-- monitor` to run one). Without the `--bench` argument cargo passes to benchmarks (under
//! `cargo test --benches`) it returns at once.

use parking_lot::Mutex;
use roost::worker::blocking;
use roost::worker::settings::default_max_worker_threads;
use roost::worker::threadpool::{cores, CpuSource, ThreadPool, ThreadPoolConfig};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BLOCK: Duration = Duration::from_millis(100);
const BURST_JOBS: usize = 200;
const STEADY_RATE: u32 = 40;
const STEADY_FOR: Duration = Duration::from_secs(5);
const MIXED_SPIN: Duration = Duration::from_millis(20);
const CPU_SPIN: Duration = Duration::from_millis(1);
const CPU_FOR: Duration = Duration::from_secs(4);
/// A run that has not finished by then is reported as such (a fixed pool of 2 needs 10 s).
const GIVE_UP: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Burst,
    Steady,
    Mixed,
    Cpu,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Burst => "burst: 200 × 100 ms at once",
            Workload::Steady => "steady: 40/s × 100 ms for 5 s",
            Workload::Mixed => "mixed: 100 × 100 ms sleep + 100 × 20 ms spin at once",
            Workload::Cpu => "cpu: 1 ms spins at 1.25 × capacity for 4 s",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Workload::Burst => "burst",
            Workload::Steady => "steady",
            Workload::Mixed => "mixed",
            Workload::Cpu => "cpu",
        }
    }

    /// Spinning jobs per second in `cpu`: 1.25 × cores × 1000.
    fn cpu_rate(cores: usize) -> u32 {
        (cores as u32 * 1250).max(1)
    }

    fn jobs(self, cores: usize) -> usize {
        match self {
            Workload::Burst | Workload::Mixed => BURST_JOBS,
            Workload::Steady => (STEADY_RATE as u64 * STEADY_FOR.as_secs()) as usize,
            Workload::Cpu => (Self::cpu_rate(cores) as u64 * CPU_FOR.as_secs()) as usize,
        }
    }

    /// When job `i` is submitted, from the start.
    fn offset(self, i: usize, cores: usize) -> Duration {
        match self {
            Workload::Burst | Workload::Mixed => Duration::ZERO,
            Workload::Steady => Duration::from_secs(1) / STEADY_RATE * i as u32,
            Workload::Cpu => Duration::from_secs(1) / Self::cpu_rate(cores) * i as u32,
        }
    }

    /// How long job `i` spins instead of sleeping (`None`: it sleeps [`BLOCK`]).
    fn spin(self, i: usize) -> Option<Duration> {
        match self {
            Workload::Mixed if i % 2 == 1 => Some(MIXED_SPIN),
            Workload::Cpu => Some(CPU_SPIN),
            _ => None,
        }
    }

    /// The pools worth comparing on this workload.
    fn runners(self) -> &'static [Runner] {
        match self {
            Workload::Burst | Workload::Steady => &[
                Runner::HillClimbing,
                Runner::HillClimbingProcessCpu,
                Runner::Detection,
                Runner::Hints,
                Runner::Fixed,
                Runner::Tokio,
            ],
            Workload::Mixed => &[Runner::HillClimbing, Runner::Detection, Runner::Hints],
            Workload::Cpu => &[Runner::HillClimbing, Runner::Detection],
        }
    }
}

fn spin_for(d: Duration) {
    let end = Instant::now() + d;
    let mut x = 0u64;
    while Instant::now() < end {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Runner {
    HillClimbing,
    HillClimbingProcessCpu,
    Detection,
    Hints,
    Fixed,
    Tokio,
}

impl Runner {
    fn name(self) -> &'static str {
        match self {
            Runner::HillClimbing => "roost hill climbing (no hints, detection off)",
            Runner::HillClimbingProcessCpu => "roost hill climbing, process CPU, detection off",
            Runner::Detection => "roost blocking detection (no hints)",
            Runner::Hints => "roost + blocking hints",
            Runner::Fixed => "roost fixed (min=max=cores)",
            Runner::Tokio => "tokio spawn_blocking",
        }
    }
}

/// What one run measured.
struct Outcome {
    done: usize,
    completion: Duration,
    latencies: Vec<Duration>,
    peak_threads: usize,
    /// hill climbing / starvation / blocking / blocking detected, for roost's pools.
    injections: Option<[u64; 4]>,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Something that runs jobs and can say how many threads it has.
trait Executor: Send + Sync {
    fn submit(&self, job: Job);
    fn threads(&self) -> usize;
    fn peak(&self) -> Option<usize> {
        None
    }
    fn injections(&self) -> Option<[u64; 4]> {
        None
    }
    fn stop(self: Box<Self>);
}

struct Roost(Arc<ThreadPool>);

impl Executor for Roost {
    fn submit(&self, job: Job) {
        self.0.spawn(job);
    }
    fn threads(&self) -> usize {
        self.0.counters().threads
    }
    fn injections(&self) -> Option<[u64; 4]> {
        let i = self.0.counters().injections;
        Some([
            i.hill_climbing,
            i.starvation,
            i.blocking,
            i.blocking_detected,
        ])
    }
    fn stop(self: Box<Self>) {
        self.0.shutdown();
    }
}

struct Tokio {
    rt: tokio::runtime::Runtime,
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Executor for Tokio {
    fn submit(&self, job: Job) {
        drop(self.rt.spawn_blocking(job));
    }
    fn threads(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
    fn peak(&self) -> Option<usize> {
        Some(self.peak.load(Ordering::Relaxed))
    }
    fn stop(self: Box<Self>) {
        self.rt.shutdown_timeout(Duration::from_secs(5));
    }
}

fn executor(r: Runner, cores: usize) -> Box<dyn Executor> {
    match r {
        Runner::Detection | Runner::Hints => Box::new(Roost(ThreadPool::new(
            ThreadPoolConfig::new("burst", cores, default_max_worker_threads(cores, cores)),
        ))),
        Runner::HillClimbing | Runner::HillClimbingProcessCpu => {
            let mut cfg =
                ThreadPoolConfig::new("burst", cores, default_max_worker_threads(cores, cores));
            cfg.blocking_detection = false;
            if r == Runner::HillClimbingProcessCpu {
                cfg.cpu_source = CpuSource::Process;
            }
            Box::new(Roost(ThreadPool::new(cfg)))
        }
        Runner::Fixed => {
            let mut cfg = ThreadPoolConfig::new("fixed", cores, cores);
            cfg.blocking_detection = false;
            Box::new(Roost(ThreadPool::new(cfg)))
        }
        Runner::Tokio => {
            // A current-thread runtime starts no worker threads of its own, so every thread
            // it starts is a blocking-pool thread: on_thread_start counts them exactly.
            let live = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let (l1, l2, p) = (live.clone(), live.clone(), peak.clone());
            let rt = tokio::runtime::Builder::new_current_thread()
                .on_thread_start(move || {
                    let n = l1.fetch_add(1, Ordering::Relaxed) + 1;
                    p.fetch_max(n, Ordering::Relaxed);
                })
                .on_thread_stop(move || {
                    l2.fetch_sub(1, Ordering::Relaxed);
                })
                .build()
                .expect("tokio runtime");
            Box::new(Tokio { rt, live, peak })
        }
    }
}

fn run(w: Workload, r: Runner, cores: usize) -> Outcome {
    let exec = executor(r, cores);
    let n = w.jobs(cores);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let last_done = Arc::new(Mutex::new(None::<Instant>));
    let hinted = r == Runner::Hints;

    // Peak threads, sampled (roost threads only retire after 20 s idle, so a 2 ms sampler
    // misses nothing that matters; tokio's count is exact, from its thread callbacks).
    let sampling = AtomicBool::new(true);
    let peak = AtomicUsize::new(exec.threads());
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(exec.threads(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        for i in 0..n {
            let at = start + w.offset(i, cores);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (lat, last) = (latencies.clone(), last_done.clone());
            let submitted = Instant::now();
            let spin = w.spin(i);
            exec.submit(Box::new(move || {
                if let Some(d) = spin {
                    spin_for(d);
                } else if hinted {
                    blocking(|| std::thread::sleep(BLOCK));
                } else {
                    std::thread::sleep(BLOCK);
                }
                let now = Instant::now();
                lat.lock().push(now - submitted);
                let mut l = last.lock();
                *l = Some(l.map_or(now, |p: Instant| p.max(now)));
            }));
        }
        while latencies.lock().len() < n && start.elapsed() < GIVE_UP {
            std::thread::sleep(Duration::from_millis(5));
        }
        sampling.store(false, Ordering::Relaxed);
    });
    let peak_threads = peak.load(Ordering::Relaxed).max(exec.peak().unwrap_or(0));
    let mut latencies = std::mem::take(&mut *latencies.lock());
    latencies.sort();
    let completion = last_done.lock().map_or(GIVE_UP, |t| t - start);
    let injections = exec.injections();
    exec.stop();
    Outcome {
        done: latencies.len(),
        completion,
        latencies,
        peak_threads,
        injections,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn pct(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs this without `--bench`: nothing to check, return.
        return;
    }
    let only: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let cores = cores();
    if only.iter().any(|o| o.as_str() == "monitor") {
        monitor_cost::run();
        return;
    }
    println!(
        "worker_burst: {cores} cores, jobs block {} ms; roost max = {} threads",
        BLOCK.as_millis(),
        default_max_worker_threads(cores, cores)
    );
    let mut table = String::from(
        "| workload | pool | done | completion (ms) | p50 (ms) | p99 (ms) | max (ms) | peak threads | injections hc/starv/block/detected |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for w in [
        Workload::Burst,
        Workload::Steady,
        Workload::Mixed,
        Workload::Cpu,
    ] {
        if !only.is_empty() && !only.iter().any(|o| o.as_str() == w.key()) {
            continue;
        }
        for &r in w.runners() {
            let o = run(w, r, cores);
            let row = format!(
                "| {} | {} | {}/{} | {} | {} | {} | {} | {} | {} |\n",
                w.name(),
                r.name(),
                o.done,
                w.jobs(cores),
                ms(o.completion),
                ms(pct(&o.latencies, 0.50)),
                ms(pct(&o.latencies, 0.99)),
                ms(o.latencies.last().copied().unwrap_or_default()),
                o.peak_threads,
                o.injections.map_or_else(
                    || "-".to_string(),
                    |[h, s, b, d]| format!("{h}/{s}/{b}/{d}")
                )
            );
            eprint!("{row}");
            table.push_str(&row);
        }
    }
    println!("\n{table}");
}

/// The monitor's cost: the gate thread's own CPU time (from `/proc/self/task/<tid>/schedstat`)
/// over [`WINDOW`] with [`BUSY`] pool threads blocked and work queued, detection on vs off.
/// The pool is pre-sized (min = max = 64) so both runs have the same 64 busy threads.
mod monitor_cost {
    use super::*;

    const BUSY: usize = 64;
    const WINDOW: Duration = Duration::from_secs(10);

    pub fn run() {
        println!(
            "monitor: {BUSY} busy threads blocked on a condition variable, 16 items queued, \
             gate thread CPU over {} s\n",
            WINDOW.as_secs()
        );
        println!("| detection | gate thread CPU (ms) | % of one core |");
        println!("|---|---|---|");
        let mut used = [Duration::ZERO; 2];
        for (i, detect) in [false, true].into_iter().enumerate() {
            used[i] = measure(detect);
            println!(
                "| {} | {:.1} | {:.3} % |",
                if detect { "on" } else { "off" },
                used[i].as_secs_f64() * 1000.0,
                used[i].as_secs_f64() / WINDOW.as_secs_f64() * 100.0
            );
        }
        let extra = used[1].saturating_sub(used[0]);
        println!(
            "\ndetection adds {:.1} ms per {} s = {:.3} % of one core",
            extra.as_secs_f64() * 1000.0,
            WINDOW.as_secs(),
            extra.as_secs_f64() / WINDOW.as_secs_f64() * 100.0
        );
    }

    fn measure(detect: bool) -> Duration {
        let name = if detect { "mon-on" } else { "mon-off" };
        let mut cfg = ThreadPoolConfig::new(name, BUSY, BUSY);
        cfg.blocking_detection = detect;
        let pool = ThreadPool::new(cfg);
        let latch = Arc::new((Mutex::new(false), parking_lot::Condvar::new()));
        for _ in 0..BUSY + 16 {
            let latch = latch.clone();
            pool.spawn(move || {
                let mut open = latch.0.lock();
                while !*open {
                    latch.1.wait(&mut open);
                }
            });
        }
        while pool.counters().busy < BUSY {
            std::thread::sleep(Duration::from_millis(10));
        }
        let tid = gate_tid(&format!("{name}-gate")).expect("the gate thread in /proc");
        let before = cpu_time(tid).expect("gate schedstat");
        std::thread::sleep(WINDOW);
        let after = cpu_time(tid).expect("gate schedstat");
        *latch.0.lock() = true;
        latch.1.notify_all();
        pool.shutdown();
        after.saturating_sub(before)
    }

    /// The kernel id of the thread named `comm` in this process.
    fn gate_tid(comm: &str) -> Option<i32> {
        std::fs::read_dir("/proc/self/task").ok()?.find_map(|e| {
            let e = e.ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (name.trim_end() == comm).then(|| e.file_name().to_str()?.parse().ok())?
        })
    }

    /// Time the thread has spent on a CPU (first field of `schedstat`, nanoseconds).
    fn cpu_time(tid: i32) -> Option<Duration> {
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
        Some(Duration::from_nanos(
            s.split_whitespace().next()?.parse().ok()?,
        ))
    }
}
