//! How `roost check` scales with the size of the configuration: N pools, each with one
//! farm server, and N sites, each with one binding, one host name and one application
//! routed to its own pool. Times the whole of what `roost check -c FILE` runs (bounded
//! file read, one YAML parse into the marked tree, unknown/duplicate keys, serde from the
//! tree, validation), best of
//! three runs per size, and prints the time per pool so super-linear growth stands out.
//!
//! Run: `cargo bench --bench config_scale` (sizes: `-- 10000 40000 100000`).

use std::time::{Duration, Instant};

fn yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 240);
    s.push_str("sites:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - name: s{i}\n    bindings: [{{listen: \"127.0.0.1:{}\"}}]\n    hostNames: [h{i}.example.com]\n    applications: [{{path: /, pool: p{i}}}]\n",
            10_000 + i % 50_000
        ));
    }
    s.push_str("pools:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  p{i}:\n    queueLength: 10\n    farm: {{servers: [{{address: \"127.0.0.1:8081\"}}]}}\n"
        ));
    }
    s
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 40_000, 100_000]
    } else {
        sizes
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!("config_scale: roost check on N pools + N sites (best of 3)");
    for n in sizes {
        let file = dir.path().join(format!("p{n}.yaml"));
        std::fs::write(&file, yaml(n)).expect("write the generated configuration");
        let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let cfg = roost::config::load_file_with_env(&file, std::iter::empty::<(&str, &str)>())
                .unwrap_or_else(|e| panic!("the generated configuration is valid:\n{e}"));
            best = best.min(t.elapsed());
            assert_eq!(cfg.pools.len(), n);
        }
        println!(
            "{n:>8} pools  {:>6.1} MB  {:>8.3} s  {:>6.2} µs/pool",
            bytes as f64 / 1e6,
            best.as_secs_f64(),
            best.as_secs_f64() * 1e6 / n as f64
        );
    }
}
