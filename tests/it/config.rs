//! Configuration loading and `roost check` validation: the embedded default, defaults,
//! every invalid case with its key path and line:column, several problems in one run,
//! and `ROOST_` environment overrides (passed as explicit lists, so tests stay parallel).

use roost::config::model::*;
use roost::config::{self, ConfigErrors, Problem, Source};
use std::path::{Path, PathBuf};
use std::time::Duration;

const NO_ENV: [(&str, &str); 0] = [];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(yaml: &str) -> Result<Config, ConfigErrors> {
    config::load_str_in(yaml, "test.yaml", &repo(), NO_ENV)
}

fn errors(yaml: &str) -> ConfigErrors {
    match load(yaml) {
        Ok(c) => panic!("expected problems, got a valid config: {c:#?}"),
        Err(e) => e,
    }
}

/// 1-based line of the first line containing `needle`.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the YAML"))
        + 1
}

/// The message of the problem at `path`, which must be there.
fn message<'a>(errs: &'a ConfigErrors, path: &str) -> &'a str {
    &errs
        .find(path)
        .unwrap_or_else(|| panic!("no problem at {path}; got:\n{errs}"))
        .message
}

/// The problem at `path`, checked to mention `text` and sit on the line holding `needle`.
fn expect<'a>(
    errs: &'a ConfigErrors,
    yaml: &str,
    path: &str,
    text: &str,
    needle: &str,
) -> &'a Problem {
    let p = errs
        .find(path)
        .unwrap_or_else(|| panic!("no problem at {path}; got:\n{errs}"));
    assert!(
        p.message.contains(text),
        "{path}: {:?} does not mention {text:?}",
        p.message
    );
    let (line, col) = p.line_col.unwrap_or_else(|| panic!("{path}: no line:col"));
    assert_eq!(line, line_of(yaml, needle), "{path}: wrong line in\n{errs}");
    assert!(col >= 1);
    assert_eq!(p.file, "test.yaml");
    p
}

/// One site `s` on `:80` sending everything to the pool `name`, whose keys are
/// `pool_keys` (indented four spaces).
fn one_pool(name: &str, pool_keys: &str) -> String {
    format!(
        "sites:\n  - name: s\n    bindings: [{{listen: ':80'}}]\n    applications: [{{path: /, pool: {name}}}]\npools:\n  {name}:\n{pool_keys}"
    )
}

/// A valid document to break one piece at a time.
const BASE: &str = "\
sites:
  - name: main
    bindings:
      - listen: 127.0.0.1:8080
    applications:
      - path: /
        pool: web
pools:
  web:
    farm:
      servers:
        - address: 127.0.0.1:8081
";

fn with(extra_pool_keys: &str) -> String {
    format!("{BASE}{extra_pool_keys}")
}

#[test]
fn embedded_default_loads() {
    let c = config::load_str_in(
        config::EMBEDDED_DEFAULT,
        config::EMBEDDED_ORIGIN,
        &repo(),
        NO_ENV,
    )
    .unwrap_or_else(|e| panic!("the embedded default is invalid:\n{e}"));
    assert_eq!(c.sites.len(), 1);
    let site = &c.sites[0];
    assert_eq!(site.name, "default");
    assert_eq!(site.bindings[0].listen, "127.0.0.1:8080".parse().unwrap());
    assert!(site.bindings[0].tls.is_none());
    assert_eq!(
        site.applications,
        vec![Application {
            path: "/".into(),
            pool: "default".into()
        }]
    );
    let pool = &c.pools["default"];
    // A web garden of built-in workers: `roost serve` needs nothing else.
    let Backend::Garden(pm) = &pool.backend else {
        panic!("default pool should be a web garden: {:?}", pool.backend)
    };
    assert_eq!(pm.command, None);
    assert_eq!(pm.max_processes, 2);
    assert_eq!(pm.max_concurrent_requests_per_process, 100);
    assert_eq!(pm.worker.app, "demo");
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.admin.token, None);
}

#[test]
fn repo_proxy_yaml_file_loads_and_default_or_file_says_which() {
    let path = repo().join("proxy.yaml");
    let (_, src) = config::load_default_or_file(&path).unwrap();
    assert_eq!(src, Source::File(path.clone()));
    let (c, src) = config::load_default_or_file(&repo().join("does-not-exist.yaml")).unwrap();
    assert_eq!(src, Source::Embedded);
    assert_eq!(c.sites[0].name, "default");
    assert!(config::check_file(&path).is_ok());
}

#[test]
fn defaults_are_filled() {
    let yaml = "\
sites:
  - name: s
    bindings: [{listen: ':8080'}]
    applications: [{path: /, pool: p}]
pools:
  p: {}
";
    let c = load(yaml).unwrap();
    assert_eq!(
        c.sites[0].bindings[0].listen,
        "0.0.0.0:8080".parse().unwrap()
    );
    let p = &c.pools["p"];
    assert_eq!(p.name, "p");
    assert_eq!(p.queue_length, 1000);
    assert_eq!(p.queue_timeout, Duration::from_secs(120));
    assert_eq!(p.start_mode, StartMode::OnDemand);
    assert_eq!(p.retry_after, Duration::from_secs(5));
    assert_eq!(
        p.timeouts,
        UpstreamTimeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(90)
        }
    );
    assert!(p.initialization_pages.is_empty());
    // Neither farm nor processModel: a garden of `roost worker`.
    let Backend::Garden(pm) = &p.backend else {
        panic!("expected a garden")
    };
    assert_eq!(pm.command, None);
    assert_eq!(pm.max_processes, 1);
    assert_eq!(pm.max_concurrent_requests_per_process, 100);
    assert_eq!(pm.listen, WorkerListen::Unix);
    assert_eq!(pm.idle_timeout, Duration::from_secs(20 * 60));
    assert!(pm.pinging_enabled);
    assert_eq!(pm.ping_interval, Duration::from_secs(30));
    assert_eq!(pm.ping_response_time, Duration::from_secs(90));
    assert_eq!(pm.ping_path.as_deref(), Some("/.roost/ping"));
    assert_eq!(pm.startup_time_limit, Duration::from_secs(90));
    assert_eq!(pm.shutdown_time_limit, Duration::from_secs(90));
    assert_eq!(pm.worker.app, "demo");
    assert_eq!(pm.worker.min_worker_threads, None);
    assert_eq!(pm.worker.request_queue_limit, 5000);
    assert_eq!(pm.worker.max_concurrent_requests_per_cpu, 5000);
    assert_eq!(pm.worker.max_concurrent_threads_per_cpu, 0);
    assert_eq!(
        p.recycling,
        Recycling {
            disallow_overlapping_rotation: false,
            time: Duration::from_secs(29 * 3600),
            requests: 0,
            private_memory_kib: 0,
            schedule: vec![]
        }
    );
    assert_eq!(
        p.failure,
        Failure {
            rapid_fail_protection: true,
            rapid_fail_protection_interval: Duration::from_secs(300),
            rapid_fail_protection_max_crashes: 5,
            load_balancer_capabilities: LoadBalancerCapabilities::HttpLevel
        }
    );
    assert_eq!(
        c.limits,
        Limits {
            max_request_header_bytes: 16384,
            header_wait_timeout: Duration::from_secs(120),
            connection_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 10000,
            shutdown_grace: Duration::from_secs(30),
            max_connections_per_client: None,
            overload: Default::default(),
        }
    );
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(c.log.access, None);
}

#[test]
fn farm_defaults_and_custom_command_has_no_ping_path() {
    let c = load(&format!(
        "{BASE}      healthCheck: {{path: /health}}\n      affinity: {{}}\n  app:\n    processModel: {{command: /bin/true}}\n"
    ))
    .unwrap();
    let Backend::Farm(f) = &c.pools["web"].backend else {
        panic!()
    };
    let s = &f.servers[0];
    assert_eq!(
        (s.weight, s.max_concurrent_requests, s.backup, s.tls),
        (1, 100, false, false)
    );
    assert_eq!(f.load_balancing, LoadBalancing::RoundRobin);
    let h = f.health_check.as_ref().unwrap();
    assert_eq!(h.path, "/health");
    assert_eq!(
        (h.interval, h.timeout),
        (Duration::from_secs(30), Duration::from_secs(5))
    );
    assert_eq!(h.expected_status, (200, 399));
    assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (2, 3));
    assert!(f.affinity.is_some());
    let Backend::Garden(pm) = &c.pools["app"].backend else {
        panic!()
    };
    assert_eq!(pm.command.as_deref(), Some("/bin/true"));
    assert_eq!(pm.ping_path, None);
}

/// Every key in the schema, each set to a non-default value: nothing is unknown, and each
/// value reaches the model.
#[test]
fn every_key_is_known_and_read() {
    let yaml = "\
sites:
  - name: main
    bindings:
      - listen: 127.0.0.1:8443
        tls: {cert: certs/dev.crt, key: certs/dev.key, serverNames: [localhost]}
      - listen: '[::1]:8444'
        tls:
          certificates:
            - {cert: certs/dev.crt, key: certs/dev.key, serverNames: ['*.example.com']}
            - {cert: certs/dev.crt, key: certs/dev.key}
    hostNames: [Example.COM, '*.example.com']
    applications:
      - {path: /, pool: farm}
      - {path: /api/, pool: garden}
pools:
  garden:
    queueLength: 7
    queueTimeout: 3s
    startMode: alwaysRunning
    retryAfter: 9s
    timeouts: {connect: 1s, firstByte: 2s, idle: 3s}
    initializationPages: [/warm]
    processModel:
      command: /bin/sh
      args: [-c, 'exec sleep 1']
      env: {A: '1', B: 2}
      workingDirectory: certs
      maxProcesses: 4
      maxConcurrentRequestsPerProcess: 8
      listen: tcp
      idleTimeout: 0
      pingingEnabled: false
      pingInterval: 5s
      pingResponseTime: 6s
      pingPath: /ping
      startupTimeLimit: 7s
      shutdownTimeLimit: 8s
      user: root
      group: root
    worker:
      app: echo
      minWorkerThreads: 2
      maxWorkerThreads: 64
      ioThreads: 3
      requestQueueLimit: 10
      maxConcurrentRequestsPerCPU: 11
      maxConcurrentThreadsPerCPU: 12
      pools: {slow: {min: 1, max: 4}}
      routes: {/report: slow}
    recycling:
      disallowOverlappingRotation: true
      periodicRestart: {time: 1h, requests: 100, privateMemory: 2048, schedule: ['03:00', '15:30']}
    failure:
      rapidFailProtection: false
      rapidFailProtectionInterval: 1m
      rapidFailProtectionMaxCrashes: 2
      loadBalancerCapabilities: TcpLevel
  farm:
    farm:
      servers:
        - {address: 'https://a.example:9443', weight: 3, maxConcurrentRequests: 4, backup: true}
        - {address: 'b.example:80'}
      loadBalancing: hash
      hashKey: {cookie: user}
      healthCheck:
        path: /h
        interval: 2s
        timeout: 1s
        expectedStatus: '200-299'
        responseMatch: ok
        healthyThreshold: 4
        unhealthyThreshold: 5
      affinity: {cookie: sticky}
    cache:
      maxBytes: 32MiB
      maxObjectBytes: 64KiB
      maxVariants: 4
      staleIfError: 1m
      staleWhileRevalidate: 5s
      lockTimeout: 2s
      heuristic: 0.1
      allowSetCookie: true
      clientNoCache: revalidate
      xCache: true
      frequentHits: {count: 2, window: 10s}
limits:
  maxRequestHeaderBytes: 8192
  headerWaitTimeout: 1s
  connectionTimeout: 2s
  bodyTimeout: 3s
  tlsHandshakeTimeout: 4s
  maxConnections: 5
  shutdownGrace: 6s
admin: {listen: '0.0.0.0:9000', token: secret}
log:
  access: {path: logs/access.log, format: json}
";
    let c = load(yaml).unwrap_or_else(|e| panic!("{e}"));
    let site = &c.sites[0];
    assert_eq!(site.host_names, vec!["example.com", "*.example.com"]);
    // Longest path first, trailing slash dropped.
    assert_eq!(site.applications[0].path, "/api");
    let tls = site.bindings[0].tls.as_ref().unwrap();
    assert_eq!(tls.certificates[0].cert, repo().join("certs/dev.crt"));
    assert_eq!(tls.certificates[0].server_names, vec!["localhost"]);
    assert_eq!(site.bindings[1].tls.as_ref().unwrap().certificates.len(), 2);

    let cache = c.pools["farm"].cache.as_ref().unwrap();
    assert_eq!(
        (cache.max_bytes, cache.max_object_bytes),
        (32 << 20, 64 << 10)
    );
    assert_eq!((cache.frequent_count, cache.max_variants), (2, 4));
    assert!(cache.x_cache && cache.allow_set_cookie);
    let g = &c.pools["garden"];
    assert!(g.cache.is_none());
    assert_eq!(
        (g.queue_length, g.queue_timeout),
        (7, Duration::from_secs(3))
    );
    assert_eq!(g.start_mode, StartMode::AlwaysRunning);
    assert_eq!(g.retry_after, Duration::from_secs(9));
    assert_eq!(g.timeouts.idle, Duration::from_secs(3));
    assert_eq!(g.initialization_pages, vec!["/warm"]);
    let Backend::Garden(pm) = &g.backend else {
        panic!()
    };
    assert_eq!(pm.args, vec!["-c", "exec sleep 1"]);
    assert_eq!(pm.env.get("B").map(String::as_str), Some("2"));
    assert_eq!(
        pm.working_directory.as_deref(),
        Some(repo().join("certs").as_path())
    );
    assert_eq!(
        (pm.max_processes, pm.max_concurrent_requests_per_process),
        (4, 8)
    );
    assert_eq!(pm.listen, WorkerListen::Tcp);
    assert_eq!(pm.idle_timeout, Duration::ZERO);
    assert!(!pm.pinging_enabled);
    assert_eq!(pm.ping_path.as_deref(), Some("/ping"));
    assert_eq!(pm.shutdown_time_limit, Duration::from_secs(8));
    assert_eq!(
        (pm.user.as_deref(), pm.group.as_deref()),
        (Some("root"), Some("root"))
    );
    let w = &pm.worker;
    assert_eq!(w.app, "echo");
    assert_eq!(
        (w.min_worker_threads, w.max_worker_threads, w.io_threads),
        (Some(2), Some(64), Some(3))
    );
    assert_eq!(
        (
            w.request_queue_limit,
            w.max_concurrent_requests_per_cpu,
            w.max_concurrent_threads_per_cpu
        ),
        (10, 11, 12)
    );
    assert_eq!(w.pools["slow"], NamedThreadPool { min: 1, max: 4 });
    assert_eq!(w.routes["/report"], "slow");
    assert!(g.recycling.disallow_overlapping_rotation);
    assert_eq!(g.recycling.time, Duration::from_secs(3600));
    assert_eq!(g.recycling.schedule, vec![3 * 3600, 15 * 3600 + 30 * 60]);
    assert_eq!(
        (g.recycling.requests, g.recycling.private_memory_kib),
        (100, 2048)
    );
    assert_eq!(
        g.failure.load_balancer_capabilities,
        LoadBalancerCapabilities::TcpLevel
    );
    assert_eq!(g.failure.rapid_fail_protection_max_crashes, 2);

    let Backend::Farm(f) = &c.pools["farm"].backend else {
        panic!()
    };
    assert_eq!(
        f.servers[0],
        Server {
            address: "https://a.example:9443".into(),
            host: "a.example".into(),
            port: 9443,
            tls: true,
            weight: 3,
            max_concurrent_requests: 4,
            backup: true
        }
    );
    assert_eq!(
        f.load_balancing,
        LoadBalancing::Hash(HashKey::Cookie("user".into()))
    );
    let h = f.health_check.as_ref().unwrap();
    assert_eq!(
        (h.expected_status, h.response_match.as_deref()),
        ((200, 299), Some("ok"))
    );
    assert_eq!(f.affinity.as_ref().unwrap().cookie, "sticky");

    assert_eq!(c.limits.max_request_header_bytes, 8192);
    assert_eq!(c.limits.shutdown_grace, Duration::from_secs(6));
    assert_eq!(c.admin.token.as_deref(), Some("secret"));
    let access = c.log.access.as_ref().unwrap();
    assert_eq!(access.format, AccessLogFormat::Json);
    assert_eq!(
        access.path.as_deref(),
        Some(repo().join("logs/access.log").as_path())
    );
}

#[test]
fn unknown_key_with_suggestion_and_position() {
    let yaml = with("    queueLenght: 5\n    farmm: {}\n    zzzzzz: 1\n");
    let e = errors(&yaml);
    let p = expect(
        &e,
        &yaml,
        "pools.web.queueLenght",
        "did you mean `queueLength`?",
        "queueLenght",
    );
    assert_eq!(p.line_col.unwrap().1, 5, "points at the key");
    assert_eq!(
        p.to_string(),
        format!(
            "test.yaml:{}:5: pools.web.queueLenght: unknown key (did you mean `queueLength`?)",
            line_of(&yaml, "queueLenght")
        )
    );
    expect(
        &e,
        &yaml,
        "pools.web.farmm",
        "did you mean `farm`?",
        "farmm",
    );
    let far = expect(&e, &yaml, "pools.web.zzzzzz", "unknown key", "zzzzzz");
    assert!(!far.message.contains("did you mean"), "{}", far.message);
    assert_eq!(e.problems.len(), 3, "{e}");
}

#[test]
fn unknown_keys_at_every_depth() {
    let yaml = "\
sites:
  - name: main
    binding: []
    bindings:
      - listen: 127.0.0.1:80
        tsl: {}
    applications: [{path: /, pool: web, pol: x}]
pools:
  web:
    farm:
      servers: [{address: 'a:1', wieght: 2}]
limit: {}
";
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "sites[0].binding",
        "did you mean `bindings`?",
        "binding:",
    );
    expect(
        &e,
        yaml,
        "sites[0].bindings[0].tsl",
        "did you mean `tls`?",
        "tsl",
    );
    expect(
        &e,
        yaml,
        "sites[0].applications[0].pol",
        "did you mean `pool`?",
        "pol: x",
    );
    expect(
        &e,
        yaml,
        "pools.web.farm.servers[0].wieght",
        "did you mean `weight`?",
        "wieght",
    );
    expect(&e, yaml, "limit", "did you mean `limits`?", "limit:");
}

#[test]
fn missing_pool_suggests_the_closest() {
    let yaml = BASE.replace("pool: web", "pool: wbe");
    let e = errors(&yaml);
    let p = expect(
        &e,
        &yaml,
        "sites[0].applications[0].pool",
        "no such pool (did you mean `web`?)",
        "pool: wbe",
    );
    assert_eq!(p.value.as_deref(), Some("\"wbe\""));
}

#[test]
fn duplicate_sites_paths_and_bindings() {
    let yaml = "\
sites:
  - name: a
    bindings: [{listen: '127.0.0.1:80'}]
    hostNames: [x.example]
    applications:
      - {path: /app, pool: web}
      - {path: /app/, pool: web}
  - name: a
    bindings: [{listen: '127.0.0.1:81'}]
    applications: [{path: /, pool: web}]
  - name: c
    bindings: [{listen: '127.0.0.1:80'}]
    hostNames: [X.example]
    applications: [{path: /, pool: web}]
  - name: d
    bindings: [{listen: '127.0.0.1:80'}]
    hostNames: [other.example]
    applications: [{path: /, pool: web}]
pools:
  web: {farm: {servers: [{address: 'h:1'}]}}
";
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "sites[0].applications[1].path",
        "duplicate application path",
        "path: /app/",
    );
    let dup = e.find("sites[1].name").expect("duplicate site name");
    assert!(
        dup.message.contains("duplicate site name"),
        "{}",
        dup.message
    );
    assert_eq!(dup.line_col.unwrap().0, 8);
    let clash = e
        .find("sites[2].bindings[0].listen")
        .expect("binding clash");
    assert!(
        clash
            .message
            .contains("site `a` already binds 127.0.0.1:80 for host `x.example`"),
        "{}",
        clash.message
    );
    assert_eq!(clash.line_col.unwrap().0, 12);
    // A different host name on the same address is fine.
    assert!(e.find("sites[3].bindings[0].listen").is_none(), "{e}");
    assert_eq!(e.problems.len(), 3, "{e}");
}

#[test]
fn tls_and_plain_on_one_address_conflict() {
    let yaml = "\
sites:
  - name: a
    bindings: [{listen: '127.0.0.1:443', tls: {cert: certs/dev.crt, key: certs/dev.key}}]
    hostNames: [a.example]
    applications: [{path: /, pool: web}]
  - name: b
    bindings: [{listen: '127.0.0.1:443'}]
    hostNames: [b.example]
    applications: [{path: /, pool: web}]
pools:
  web: {farm: {servers: [{address: 'h:1'}]}}
";
    let e = errors(yaml);
    let p = e.find("sites[1].bindings[0].listen").expect("conflict");
    assert!(
        p.message.contains("with TLS") && p.message.contains("without TLS"),
        "{}",
        p.message
    );
}

#[test]
fn bad_listen_addresses() {
    for bad in [
        "localhost",
        "8080",
        "1.2.3.4:70000",
        "example.com:80",
        "[::]",
    ] {
        let yaml = BASE.replace("listen: 127.0.0.1:8080", &format!("listen: '{bad}'"));
        let e = errors(&yaml);
        expect(
            &e,
            &yaml,
            "sites[0].bindings[0].listen",
            "not a listen address",
            "listen:",
        );
    }
    let yaml = BASE.replace("listen: 127.0.0.1:8080", "listen: '[::]:443'");
    assert_eq!(
        load(&yaml).unwrap().sites[0].bindings[0].listen,
        "[::]:443".parse().unwrap()
    );
}

#[test]
fn bad_durations_say_how_to_write_them() {
    let yaml = with("    queueTimeout: 10x\n    timeouts: {connect: 0}\n    retryAfter: 30\n");
    let e = errors(&yaml);
    let p = expect(
        &e,
        &yaml,
        "pools.web.queueTimeout",
        "not a duration (write 90s, 5m, 29h)",
        "queueTimeout",
    );
    let line = line_of(&yaml, "queueTimeout");
    assert_eq!(
        p.to_string(),
        format!(
            "test.yaml:{line}:19: pools.web.queueTimeout = \"10x\": not a duration (write 90s, 5m, 29h)"
        )
    );
    expect(
        &e,
        &yaml,
        "pools.web.timeouts.connect",
        "longer than 0",
        "connect: 0",
    );
    expect(
        &e,
        &yaml,
        "pools.web.retryAfter",
        "not a duration",
        "retryAfter",
    );
    // 0 is a duration where 0 means "off".
    let ok = with("  g:\n    processModel: {idleTimeout: 0}\n");
    assert!(load(&ok).is_ok());
}

#[test]
fn numbers_out_of_range() {
    let yaml = "\
sites:
  - name: s
    bindings: [{listen: ':80'}]
    applications: [{path: /, pool: g}]
pools:
  g:
    queueLength: 0
    processModel:
      maxProcesses: 0
    worker:
      minWorkerThreads: 8
      maxWorkerThreads: 4
  f:
    queueLength: -3
    farm:
      servers:
        - {address: 'h:1', weight: 0, maxConcurrentRequests: 0}
";
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "pools.g.queueLength",
        "at least 1",
        "queueLength: 0",
    );
    expect(
        &e,
        yaml,
        "pools.g.processModel.maxProcesses",
        "at least 1",
        "maxProcesses",
    );
    expect(
        &e,
        yaml,
        "pools.g.worker.minWorkerThreads",
        "must not exceed maxWorkerThreads (4)",
        "minWorkerThreads",
    );
    expect(
        &e,
        yaml,
        "pools.f.queueLength",
        "at least 1",
        "queueLength: -3",
    );
    expect(
        &e,
        yaml,
        "pools.f.farm.servers[0].weight",
        "at least 1",
        "weight: 0",
    );
    expect(
        &e,
        yaml,
        "pools.f.farm.servers[0].maxConcurrentRequests",
        "at least 1",
        "weight: 0",
    );
    assert_eq!(e.problems.len(), 6, "{e}");
}

#[test]
fn certificate_problems() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.crt"), "not a certificate\n").unwrap();
    std::fs::copy(repo().join("certs/dev.crt"), dir.path().join("dev.crt")).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("other.key"), other.serialize_pem()).unwrap();
    std::fs::copy(repo().join("certs/dev.key"), dir.path().join("dev.key")).unwrap();
    let yaml = "\
sites:
  - name: s
    bindings:
      - listen: ':1'
        tls: {cert: missing.crt, key: dev.key}
      - listen: ':2'
        tls: {cert: junk.crt, key: dev.key}
      - listen: ':3'
        tls: {cert: dev.crt, key: other.key}
      - listen: ':4'
        tls: {cert: dev.crt}
      - listen: ':5'
        tls: {cert: dev.crt, key: dev.key}
    applications: [{path: /, pool: p}]
pools:
  p: {farm: {servers: [{address: 'h:1'}]}}
";
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let e = config::load_file_with_env(&path, NO_ENV).unwrap_err();
    let find = |p: &str| {
        e.find(p)
            .unwrap_or_else(|| panic!("no problem at {p}:\n{e}"))
    };
    let missing = find("sites[0].bindings[0].tls.cert");
    assert!(
        missing.message.contains("cannot read"),
        "{}",
        missing.message
    );
    assert_eq!(missing.line_col.unwrap().0, 5);
    assert!(missing.file.ends_with("proxy.yaml"));
    assert!(find("sites[0].bindings[1].tls.cert")
        .message
        .contains("no PEM CERTIFICATE"));
    assert!(find("sites[0].bindings[2].tls.key")
        .message
        .contains("unusable with its certificate"));
    assert!(find("sites[0].bindings[3].tls.key")
        .message
        .contains("needs `key`"));
    // The good binding (relative to the file's directory, not the test's cwd) is fine.
    assert!(
        e.find("sites[0].bindings[4].tls.cert").is_none()
            && e.find("sites[0].bindings[4].tls.key").is_none()
    );
    assert_eq!(e.problems.len(), 4, "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    std::fs::copy(repo().join("certs/dev.crt"), dir.path().join("tls/dev.crt")).unwrap();
    std::fs::copy(repo().join("certs/dev.key"), dir.path().join("tls/dev.key")).unwrap();
    let yaml = BASE.replace(
        "      - listen: 127.0.0.1:8080\n",
        "      - listen: 127.0.0.1:8080\n        tls: {cert: tls/dev.crt, key: tls/dev.key}\n",
    );
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let c = config::load_file_with_env(&path, NO_ENV).unwrap_or_else(|e| panic!("{e}"));
    let cert = &c.sites[0].bindings[0].tls.as_ref().unwrap().certificates[0];
    assert_eq!(
        cert.cert,
        std::path::absolute(dir.path().join("tls/dev.crt")).unwrap()
    );
}

#[test]
fn farm_server_addresses() {
    let yaml = "\
sites:
  - name: s
    bindings: [{listen: ':80'}]
    applications: [{path: /, pool: f}]
pools:
  f:
    farm:
      servers:
        - address: 'nohost'
        - address: 'ftp://x:21'
        - address: 'http://x:80/path'
        - address: 'http://x:8080'
        - address: 'https://y'
        - address: 'z:1'
        - address: 'z:1'
";
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "pools.f.farm.servers[0].address",
        "missing port",
        "nohost",
    );
    expect(
        &e,
        yaml,
        "pools.f.farm.servers[1].address",
        "only http:// and https://",
        "ftp://",
    );
    expect(
        &e,
        yaml,
        "pools.f.farm.servers[2].address",
        "no path",
        "/path",
    );
    let dup = e
        .find("pools.f.farm.servers[6].address")
        .expect("duplicate");
    assert!(dup.message.contains("duplicate server"));
    assert_eq!(e.problems.len(), 4, "{e}");
}

#[test]
fn farm_and_process_model_together_and_worker_on_a_farm() {
    let yaml = with("    processModel: {maxProcesses: 2}\n    worker: {app: demo}\n");
    let e = errors(&yaml);
    expect(&e, &yaml, "pools.web", "either `farm`", "  web:");
    expect(
        &e,
        &yaml,
        "pools.web.worker",
        "only to pools of local workers",
        "worker:",
    );
}

#[test]
fn unknown_enum_values() {
    let yaml = "\
sites:
  - name: s
    bindings: [{listen: ':80'}]
    applications: [{path: /, pool: g}]
pools:
  g:
    startMode: always
    processModel: {listen: pipe}
    failure: {loadBalancerCapabilities: HtpLevel}
  f:
    farm:
      servers: [{address: 'h:1'}]
      loadBalancing: leastConnections
log:
  access: {format: xml}
";
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "pools.g.startMode",
        "expected one of onDemand, alwaysRunning",
        "startMode",
    );
    expect(
        &e,
        yaml,
        "pools.g.processModel.listen",
        "expected one of unix, tcp",
        "pipe",
    );
    expect(
        &e,
        yaml,
        "pools.g.failure.loadBalancerCapabilities",
        "did you mean `HttpLevel`?",
        "HtpLevel",
    );
    expect(
        &e,
        yaml,
        "pools.f.farm.loadBalancing",
        "roundRobin, leastRequests",
        "leastConnections",
    );
    expect(&e, yaml, "log.access.format", "w3c, json", "xml");
    assert_eq!(e.problems.len(), 5, "{e}");
    // Case does not matter, as in IIS.
    assert!(load(&with("    startMode: AlwaysRunning\n")).is_ok());
}

#[test]
fn hash_balancing_needs_a_key() {
    let yaml = format!("{BASE}      loadBalancing: hash\n");
    let e = errors(&yaml);
    expect(
        &e,
        &yaml,
        "pools.web.farm.loadBalancing",
        "hash needs `hashKey`",
        "loadBalancing",
    );
    let yaml = format!("{BASE}      loadBalancing: hash\n      hashKey: {{body: x}}\n");
    let e = errors(&yaml);
    expect(
        &e,
        &yaml,
        "pools.web.farm.hashKey",
        "{header: NAME}",
        "hashKey",
    );
    let ok = load(&format!(
        "{BASE}      loadBalancing: hash\n      hashKey: clientAddress\n"
    ))
    .unwrap();
    let Backend::Farm(f) = &ok.pools["web"].backend else {
        panic!()
    };
    assert_eq!(
        f.load_balancing,
        LoadBalancing::Hash(HashKey::ClientAddress)
    );
}

#[test]
fn admin_beyond_loopback_needs_a_token() {
    let yaml = format!("{BASE}admin:\n  listen: 0.0.0.0:9901\n");
    let e = errors(&yaml);
    expect(
        &e,
        &yaml,
        "admin.listen",
        "needs `admin.token`",
        "0.0.0.0:9901",
    );
    assert!(load(&format!(
        "{BASE}admin:\n  listen: 0.0.0.0:9901\n  token: s3cret\n"
    ))
    .is_ok());
    assert!(load(&format!("{BASE}admin:\n  listen: '[::1]:9901'\n")).is_ok());
}

#[test]
fn schedule_times_and_paths() {
    let yaml = "\
sites:
  - name: s
    bindings: [{listen: ':80'}]
    applications:
      - {path: api, pool: g}
pools:
  g:
    recycling:
      periodicRestart:
        schedule: ['03:00', '25:00', 'noon']
    processModel: {pingPath: ping}
    initializationPages: [warm]
    worker:
      pools: {slow: {min: 4, max: 2}}
      routes: {/r: slwo, nope: slow}
";
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "sites[0].applications[0].path",
        "must start with `/`",
        "path: api",
    );
    expect(
        &e,
        yaml,
        "pools.g.recycling.periodicRestart.schedule[1]",
        "HH:MM",
        "schedule:",
    );
    expect(
        &e,
        yaml,
        "pools.g.recycling.periodicRestart.schedule[2]",
        "HH:MM",
        "schedule:",
    );
    expect(
        &e,
        yaml,
        "pools.g.processModel.pingPath",
        "must start with `/`",
        "pingPath",
    );
    expect(
        &e,
        yaml,
        "pools.g.initializationPages[0]",
        "must start with `/`",
        "warm",
    );
    expect(
        &e,
        yaml,
        "pools.g.worker.pools.slow.min",
        "must not exceed max (2)",
        "min: 4",
    );
    expect(
        &e,
        yaml,
        "pools.g.worker.routes./r",
        "did you mean `slow`?",
        "slwo",
    );
    expect(
        &e,
        yaml,
        "pools.g.worker.routes.nope",
        "must start with `/`",
        "nope",
    );
    assert_eq!(e.problems.len(), 8, "{e}");
}

#[test]
fn wrong_shapes_are_reported_and_the_rest_still_checked() {
    let yaml = "\
sites: hello
pools:
  p:
    queueLength: 0
    farm: [1, 2]
limits: 5
";
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "sites",
        "expected a list, found a string",
        "sites:",
    );
    expect(
        &e,
        yaml,
        "pools.p.farm",
        "expected a map, found a list",
        "farm:",
    );
    expect(
        &e,
        yaml,
        "limits",
        "expected a map, found a number",
        "limits:",
    );
    expect(&e, yaml, "pools.p.queueLength", "at least 1", "queueLength");
}

#[test]
fn missing_required_pieces() {
    let yaml = "\
sites:
  - bindings: []
    applications:
      - {pool: p}
pools:
  p:
    farm: {servers: []}
";
    let e = errors(yaml);
    assert!(message(&e, "sites[0].name").contains("needs a name"));
    assert!(message(&e, "sites[0].bindings").contains("at least one binding"));
    assert!(message(&e, "sites[0].applications[0].path").contains("needs a `path`"));
    assert!(message(&e, "pools.p.farm.servers").contains("at least one server"));
    let empty = errors("");
    assert!(message(&empty, "sites").contains("at least one site"));
    let comments = errors("# nothing here\n");
    assert_eq!(comments.problems.len(), 1);
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let e = errors("sites:\n  - name: [a, b\n  - x: y\n");
    assert_eq!(e.problems.len(), 1);
    let p = &e.problems[0];
    assert!(p.message.starts_with("YAML syntax"), "{}", p.message);
    assert!(p.line_col.is_some());
    assert!(p.to_string().starts_with("test.yaml:"));
}

#[test]
fn several_problems_in_one_run_in_document_order() {
    let yaml = "\
sites:
  - name: main
    bindings:
      - listen: nowhere
    applications:
      - {path: /, pool: missing}
pools:
  web:
    queueLength: 0
    queueTimeout: soon
    startMode: sometimes
    farm:
      servers: [{address: 'h'}]
admin: {listen: '0.0.0.0:1'}
";
    let e = errors(yaml);
    let paths: Vec<&str> = e.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "sites[0].bindings[0].listen",
            "sites[0].applications[0].pool",
            "pools.web.queueLength",
            "pools.web.queueTimeout",
            "pools.web.startMode",
            "pools.web.farm.servers[0].address",
            "admin.listen",
        ],
        "{e}"
    );
    // One line each, `file:line:col: path = value: reason`.
    let text = e.to_string();
    assert_eq!(text.lines().count(), 7);
    assert!(text.lines().all(|l| l.starts_with("test.yaml:")), "{text}");
    assert!(
        text.contains("pools.web.queueTimeout = \"soon\": not a duration"),
        "{text}"
    );
}

#[test]
fn environment_overrides() {
    let env = [
        ("ROOST_POOLS__WEB__QUEUELENGTH", "5"),
        ("ROOST_ADMIN__LISTEN", "127.0.0.1:9999"),
        ("roost_pools__web__queueTimeout", "7s"),
        ("ROOST_LIMITS__MAXCONNECTIONS", "42"),
        // Not config: worker handshake variables and strangers are left alone.
        ("ROOST_LISTEN", "unix:/tmp/x.sock"),
        ("ROOST_WORKER_ID", "3"),
        ("HOME", "/root"),
    ];
    let c = config::load_str_in(BASE, "test.yaml", &repo(), env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pools["web"].queue_length, 5);
    assert_eq!(c.pools["web"].queue_timeout, Duration::from_secs(7));
    assert_eq!(c.admin.listen, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(c.limits.max_connections, 42);
    // The rest of the file still applies.
    let Backend::Farm(f) = &c.pools["web"].backend else {
        panic!()
    };
    assert_eq!(f.servers[0].port, 8081);
}

#[test]
fn environment_override_can_fill_a_new_pool_setting() {
    let env = [("ROOST_POOLS__WEB__FARM__LOADBALANCING", "leastRequests")];
    let c = config::load_str_in(BASE, "test.yaml", &repo(), env).unwrap();
    let Backend::Farm(f) = &c.pools["web"].backend else {
        panic!()
    };
    assert_eq!(f.load_balancing, LoadBalancing::LeastRequests);
}

#[test]
fn environment_problems_name_the_variable() {
    let env = [
        ("ROOST_POOLS__WEB__QUEUELENGHT", "5"),
        ("ROOST_POOLS__WEB__QUEUETIMEOUT", "10x"),
        ("ROOST_SITES__0__NAME", "x"),
    ];
    let e = config::load_str_in(BASE, "test.yaml", &repo(), env).unwrap_err();
    let typo = e
        .find("pools.web.queuelenght")
        .unwrap_or_else(|| panic!("{e}"));
    assert_eq!(typo.file, "environment ROOST_POOLS__WEB__QUEUELENGHT");
    assert!(typo.message.contains("did you mean `queueLength`?"));
    assert_eq!(typo.line_col, None);
    let bad = e
        .find("pools.web.queueTimeout")
        .unwrap_or_else(|| panic!("{e}"));
    assert_eq!(bad.file, "environment ROOST_POOLS__WEB__QUEUETIMEOUT");
    assert_eq!(bad.line_col, None);
    assert_eq!(
        bad.to_string(),
        "environment ROOST_POOLS__WEB__QUEUETIMEOUT: pools.web.queueTimeout = \"10x\": not a duration (write 90s, 5m, 29h)"
    );
    assert!(e.find("sites").unwrap().message.contains("list"));
    assert_eq!(e.problems.len(), 3, "{e}");
}

#[test]
fn check_file_reports_unreadable_files() {
    let e = config::check_file(Path::new("/nonexistent/roost/proxy.yaml")).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/roost/proxy.yaml: cannot read"),
        "{e}"
    );
}

#[test]
fn duplicate_yaml_keys_are_reported_with_both_lines() {
    let yaml = with("    queueLength: 5\n    queueLength: 6\n    queueLenght: 1\n");
    let e = errors(&yaml);
    let dup = e
        .find("pools.web.queueLength")
        .unwrap_or_else(|| panic!("{e}"));
    assert!(
        dup.message.contains("duplicate key (first set on line 13)"),
        "{}",
        dup.message
    );
    assert_eq!(dup.line_col, Some((14, 5)));
    // The unknown-key walk still ran.
    assert!(e.find("pools.web.queueLenght").is_some(), "{e}");
}

#[test]
fn unquoted_colon_forms_parse() {
    let yaml = "\
sites:
  - name: s
    bindings:
      - listen: :8080
    applications: [{path: /, pool: p}]
pools:
  p:
    recycling:
      periodicRestart:
        schedule: [03:00, 23:30]
";
    let c = load(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.sites[0].bindings[0].listen,
        "0.0.0.0:8080".parse().unwrap()
    );
    assert_eq!(
        c.pools["p"].recycling.schedule,
        vec![3 * 3600, 23 * 3600 + 30 * 60]
    );
}

#[test]
fn a_document_that_is_not_a_map() {
    let e = errors("- a\n- b\n");
    assert!(
        e.problems[0].message.contains("must be a map of sections"),
        "{e}"
    );
}

/// One parser reads the document, so a flow-style `:8080` means what it means in block
/// style (it used to pass the position parser and fail the second, stricter one).
#[test]
fn flow_style_unquoted_colon_reads_as_block_style_does() {
    let yaml = "sites:\n  - name: s\n    bindings: [{listen: :8080}]\n    applications: [{path: /, pool: p}]\npools: {p: {farm: {servers: [{address: 'h:1'}]}}}\n";
    let c = load(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.sites[0].bindings[0].listen,
        "0.0.0.0:8080".parse().unwrap()
    );
}

/// What the one parser refuses is reported with its position, never a panic: a second
/// document, a local tag, an alias to nothing, a bad core-tagged value, alias bombs.
#[test]
fn yaml_the_parser_refuses_is_reported_with_a_position() {
    let bomb = {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let j = i - 1;
            s.push_str(&format!("a{i}: &a{i} [*a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}, *a{j}]\n"));
        }
        s
    };
    for (yaml, says) in [
        ("sites: []\n---\npools: {}\n", "more than one document"),
        ("sites: !custom [a]\n", "unsupported tag"),
        (
            "pools:\n  p: {queueLength: !!int ten}\n",
            "is not an integer",
        ),
        (bomb.as_str(), "aliases expand"),
    ] {
        let e = errors(yaml);
        assert_eq!(e.problems.len(), 1, "{e}");
        let p = &e.problems[0];
        assert!(p.message.contains(says), "{yaml}: {e}");
        assert!(p.line_col.is_some(), "{e}");
    }
}

/// Anchors and aliases are expanded where they are used, as before.
#[test]
fn anchors_and_aliases_are_expanded() {
    let yaml = "sites:\n  - name: s\n    bindings: [{listen: ':80'}]\n    applications: [{path: /, pool: a}, {path: /b, pool: b}]\npools:\n  a: &farm {queueLength: 7, farm: {servers: [{address: 'h:1'}]}}\n  b: *farm\n";
    let c = load(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pools["b"].queue_length, 7);
}

#[test]
fn port_zero_bindings_never_collide() {
    let yaml = "\
sites:
  - name: a
    bindings: [{listen: '127.0.0.1:0'}, {listen: '127.0.0.1:0'}]
    applications: [{path: /, pool: p}]
  - name: b
    bindings: [{listen: '127.0.0.1:0'}]
    applications: [{path: /, pool: p}]
pools:
  p: {}
";
    let c = load(yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sites[0].bindings.len(), 2);
}

#[test]
fn keys_one_level_too_high_say_where_they_belong() {
    let yaml = &one_pool("p", "    maxProcesses: 2\n    rapidFailProtection: false\n");
    let e = errors(yaml);
    expect(
        &e,
        yaml,
        "pools.p.maxProcesses",
        "belongs under `processModel`",
        "maxProcesses",
    );
    expect(
        &e,
        yaml,
        "pools.p.rapidFailProtection",
        "belongs under `failure`",
        "rapidFail",
    );
}

#[test]
fn iis_timespan_durations_are_accepted() {
    let c = load(&with(
        "    queueTimeout: '00:02:30'\n    recycling: {periodicRestart: {time: '1.05:00:00'}}\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pools["web"].queue_timeout, Duration::from_secs(150));
    assert_eq!(
        c.pools["web"].recycling.time,
        Duration::from_secs(29 * 3600)
    );
}

#[test]
fn environment_can_set_a_worker_environment_variable() {
    let yaml = &one_pool(
        "app",
        "    processModel: {command: /bin/true, env: {MODE: prod}}\n",
    );
    let env = [
        ("ROOST_POOLS__APP__PROCESSMODEL__ENV__RUST_LOG", "debug"),
        ("ROOST_POOLS__APP__PROCESSMODEL__ENV__MODE", "test"),
        ("ROOST_POOLS__APP__PROCESSMODEL__MAXPROCESSES", "3"),
    ];
    let c = config::load_str_in(yaml, "test.yaml", &repo(), env).unwrap_or_else(|e| panic!("{e}"));
    let Backend::Garden(pm) = &c.pools["app"].backend else {
        panic!()
    };
    assert_eq!(pm.env.get("RUST_LOG").map(String::as_str), Some("debug"));
    assert_eq!(pm.env.get("MODE").map(String::as_str), Some("test"));
    assert_eq!(pm.max_processes, 3);
}

/// The commented TLS binding in proxy.yaml, uncommented, is valid (and uses certs/).
#[test]
fn proxy_yaml_tls_example_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(repo().join("proxy.yaml")).unwrap();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.contains("# - listen: 127.0.0.1:8443") {
            inside = true;
        }
        if inside {
            out.push_str(&line.replacen("# ", "", 1));
        } else {
            out.push_str(line);
        }
        out.push('\n');
        if inside && line.contains("key: certs/dev.key") {
            inside = false;
        }
    }
    assert!(out.contains("\n      - listen: 127.0.0.1:8443\n"), "{out}");
    let path = repo().join("proxy.yaml");
    let c = config::load_str_in(&out, &path.display().to_string(), &repo(), NO_ENV)
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
    let tls = c.sites[0].bindings[1].tls.as_ref().expect("TLS binding");
    assert_eq!(tls.certificates[0].cert, repo().join("certs/dev.crt"));
    // What validation accepted, the front can serve.
    roost::front::tls::server_config(tls).expect("the dev certificate builds a TLS config");
}

#[test]
fn worker_blocking_detection_defaults_switch_and_bad_interval() {
    let garden = |worker_keys: &str| {
        one_pool(
            "g",
            &format!("    processModel: {{maxProcesses: 1}}\n    worker:\n{worker_keys}"),
        )
    };
    let c = load(&garden("      app: demo\n")).unwrap_or_else(|e| panic!("{e}"));
    let Backend::Garden(pm) = &c.pools["g"].backend else {
        panic!()
    };
    assert!(pm.worker.blocking_detection, "on by default");
    assert_eq!(
        pm.worker.blocking_detection_interval,
        Duration::from_millis(50)
    );

    let yaml = garden("      blockingDetection: false\n      blockingDetectionInterval: 120ms\n");
    let c = load(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let Backend::Garden(pm) = &c.pools["g"].backend else {
        panic!()
    };
    assert!(!pm.worker.blocking_detection);
    assert_eq!(
        pm.worker.blocking_detection_interval,
        Duration::from_millis(120)
    );

    let yaml = garden("      blockingDetection: sometimes\n      blockingDetectionInterval: 30s\n");
    let e = errors(&yaml);
    expect(
        &e,
        &yaml,
        "pools.g.worker.blockingDetection",
        "expected true or false",
        "sometimes",
    );
    expect(
        &e,
        &yaml,
        "pools.g.worker.blockingDetectionInterval",
        "between 1ms and 10s",
        "30s",
    );
    let yaml = garden("      blockingDetectionInterval: 0\n");
    expect(
        &errors(&yaml),
        &yaml,
        "pools.g.worker.blockingDetectionInterval",
        "longer than 0",
        "blockingDetectionInterval",
    );
}

/// What a YAML scalar becomes as the site name (a text field: numbers and booleans are
/// taken as their canonical text) and as `queueLength` (a whole number): the value, or
/// the problem as shown. Pins the YAML 1.2 core typing (serde_yaml's rules: `yes` is a
/// string, `0x10` is 16, `010` is the string "010", `.inf` is no value) so a change of
/// parser cannot retype a value silently.
fn scalar_outcomes(scalar: &str) -> (String, String) {
    let doc = |name: &str, ql: &str| {
        format!(
            "sites:\n  - name: {name}\n    bindings: [{{listen: ':80'}}]\n    applications: [{{path: /, pool: p}}]\npools:\n  p:\n    queueLength: {ql}\n    farm: {{servers: [{{address: 'h:1'}}]}}\n"
        )
    };
    let outcome = |yaml: String, path: &str, read: &dyn Fn(&Config) -> String| match load(&yaml) {
        Ok(c) => read(&c),
        Err(e) => match (e.problems.len(), e.find(path)) {
            (1, Some(p)) => format!("error: {}", p.to_string().split_once(": ").unwrap().1),
            _ => format!("doc: {e}"),
        },
    };
    (
        outcome(doc(scalar, "1"), "sites[0].name", &|c| {
            c.sites[0].name.clone()
        }),
        outcome(doc("s", scalar), "pools.p.queueLength", &|c| {
            c.pools["p"].queue_length.to_string()
        }),
    )
}

#[test]
fn yaml_scalar_typing_is_pinned() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "s1",
            "s1",
            "error: pools.p.queueLength = \"s1\": not a whole number",
        ),
        ("10", "10", "10"),
        ("\"10\"", "10", "10"),
        ("'10'", "10", "10"),
        ("+10", "10", "10"),
        ("010", "010", "10"),
        ("0x10", "16", "16"),
        (
            "\"0x10\"",
            "0x10",
            "error: pools.p.queueLength = \"0x10\": not a whole number",
        ),
        ("0o10", "8", "8"),
        ("0b11", "3", "3"),
        (
            "1_000",
            "1_000",
            "error: pools.p.queueLength = \"1_000\": not a whole number",
        ),
        (
            "1.5",
            "1.5",
            "error: pools.p.queueLength = 1.5: not a whole number",
        ),
        (
            "1e3",
            "1000.0",
            "error: pools.p.queueLength = 1000.0: not a whole number",
        ),
        (
            "-1",
            "-1",
            "error: pools.p.queueLength = -1: must be at least 1",
        ),
        (
            "-0x10",
            "-16",
            "error: pools.p.queueLength = -16: must be at least 1",
        ),
        (
            "yes",
            "yes",
            "error: pools.p.queueLength = \"yes\": not a whole number",
        ),
        (
            "no",
            "no",
            "error: pools.p.queueLength = \"no\": not a whole number",
        ),
        (
            "on",
            "on",
            "error: pools.p.queueLength = \"on\": not a whole number",
        ),
        (
            "true",
            "true",
            "error: pools.p.queueLength = true: expected a whole number, found true/false",
        ),
        (
            "True",
            "true",
            "error: pools.p.queueLength = true: expected a whole number, found true/false",
        ),
        (
            "TRUE",
            "true",
            "error: pools.p.queueLength = true: expected a whole number, found true/false",
        ),
        (
            "tRUE",
            "tRUE",
            "error: pools.p.queueLength = \"tRUE\": not a whole number",
        ),
        (
            "\"true\"",
            "true",
            "error: pools.p.queueLength = \"true\": not a whole number",
        ),
        ("~", "error: sites[0].name: every site needs a name", "1000"),
        (
            "null",
            "error: sites[0].name: every site needs a name",
            "1000",
        ),
        (
            "Null",
            "error: sites[0].name: every site needs a name",
            "1000",
        ),
        (
            "nULL",
            "nULL",
            "error: pools.p.queueLength = \"nULL\": not a whole number",
        ),
        (
            "''",
            "error: sites[0].name = \"\": must not be empty",
            "error: pools.p.queueLength = \"\": not a whole number",
        ),
        (
            ".inf",
            "error: sites[0].name: every site needs a name",
            "1000",
        ),
        (
            "-.inf",
            "error: sites[0].name: every site needs a name",
            "1000",
        ),
        (
            ".nan",
            "error: sites[0].name: every site needs a name",
            "1000",
        ),
        ("!!str 10", "10", "10"),
        ("!!int 10", "10", "10"),
        (
            "!!str true",
            "true",
            "error: pools.p.queueLength = \"true\": not a whole number",
        ),
        (
            "\"a\\tb\"",
            "a\tb",
            "error: pools.p.queueLength = \"a\\tb\": not a whole number",
        ),
        (
            "'it''s'",
            "it's",
            "error: pools.p.queueLength = \"it's\": not a whole number",
        ),
    ];
    let mut wrong = Vec::new();
    for (scalar, name, ql) in cases {
        let got = scalar_outcomes(scalar);
        if (got.0.as_str(), got.1.as_str()) != (*name, *ql) {
            wrong.push(format!("        ({scalar:?}, {:?}, {:?}),", got.0, got.1));
        }
    }
    assert!(wrong.is_empty(), "retyped scalars:\n{}", wrong.join("\n"));
}

/// The same for `ROOST_` overrides: figment's value syntax (unchanged by the one-parse
/// loader, which merges figment-parsed values into the YAML tree).
#[test]
fn environment_scalar_typing_is_pinned() {
    let cases: &[(&str, &str)] = &[
        ("10", "10"),
        ("\"10\"", "10"),
        ("0x10", "environment ROOST_POOLS__WEB__QUEUELENGTH: pools.web.queueLength = \"0x10\": not a whole number"),
        ("1.5", "environment ROOST_POOLS__WEB__QUEUELENGTH: pools.web.queueLength = 1.5: not a whole number"),
        ("true", "environment ROOST_POOLS__WEB__QUEUELENGTH: pools.web.queueLength = true: expected a whole number, found true/false"),
        ("yes", "environment ROOST_POOLS__WEB__QUEUELENGTH: pools.web.queueLength = \"yes\": not a whole number"),
        ("", "environment ROOST_POOLS__WEB__QUEUELENGTH: pools.web.queueLength = \"\": not a whole number"),
        ("[1]", "environment ROOST_POOLS__WEB__QUEUELENGTH: pools.web.queueLength = [...]: expected a whole number, found a list"),
        ("{a=1}", "environment ROOST_POOLS__WEB__QUEUELENGTH: pools.web.queueLength = {...}: expected a whole number, found a map"),
    ];
    let mut wrong = Vec::new();
    for (value, want) in cases {
        let env = [("ROOST_POOLS__WEB__QUEUELENGTH", *value)];
        let got = match config::load_str_in(BASE, "test.yaml", &repo(), env) {
            Ok(c) => c.pools["web"].queue_length.to_string(),
            Err(e) => e.to_string(),
        };
        if got != *want {
            wrong.push(format!("        ({value:?}, {got:?}),"));
        }
    }
    assert!(wrong.is_empty(), "retyped values:\n{}", wrong.join("\n"));
}

/// `workers: auto | N`: the front threads. Absent is `auto`; a count is taken as given;
/// anything else names the key, the value and why.
#[test]
fn workers_is_auto_or_a_thread_count() {
    use roost::config::model::Workers;
    assert_eq!(load(BASE).unwrap().workers, Workers::Auto);
    let auto = format!("workers: auto\n{BASE}");
    assert_eq!(load(&auto).unwrap().workers, Workers::Auto);
    let two = format!("workers: 2\n{BASE}");
    assert_eq!(load(&two).unwrap().workers, Workers::Count(2));
    assert!(Workers::Auto.resolve() >= 1);
    for (bad, why) in [
        ("0", "at least 1"),
        ("many", "`auto` or a number"),
        ("5000", "at most 1024"),
        ("1.5", "whole number"),
    ] {
        let yaml = format!("workers: {bad}\n{BASE}");
        let errs = errors(&yaml);
        let p = expect(&errs, &yaml, "workers", why, "workers:");
        assert!(p.to_string().contains(bad), "{p}");
    }
}

/// A file large enough (over 1 MiB, thousands of pools) to be parsed in pieces and
/// checked on every core: every problem is still found, in document order, at its own
/// line and column, in both halves of the text and of the pool list.
#[test]
fn a_large_file_checked_on_every_core_reports_every_problem_where_it_is() {
    let n = 6000;
    let mut yaml = String::from("sites:\n");
    let mut line = 1;
    let mut want: Vec<(String, usize, usize)> = Vec::new();
    for i in 0..n {
        let pool = if i == 4500 {
            "nope".to_string()
        } else {
            format!("p{i}")
        };
        if i == 4500 {
            want.push((format!("sites[{i}].applications[0].pool"), line + 4, 36));
        }
        yaml += &format!(
            "  - name: s{i}\n    bindings: [{{listen: \"127.0.0.1:{}\"}}]\n    hostNames: [h{i}.example.com]\n    applications: [{{path: /, pool: {pool}}}]\n",
            10_000 + i
        );
        line += 4;
    }
    yaml += "pools:\n";
    line += 1;
    for i in 0..n {
        let queue = match i {
            10 => "-1",
            5900 => "lots",
            _ => "10",
        };
        if i == 10 || i == 5900 {
            want.push((format!("pools.p{i}.queueLength"), line + 2, 18));
        }
        yaml += &format!(
            "  p{i}:\n    queueLength: {queue}\n    farm: {{servers: [{{address: \"127.0.0.1:8081\"}}]}}\n"
        );
        line += 3;
    }
    assert!(yaml.len() > 1 << 20, "{} bytes is not large", yaml.len());
    let errs = errors(&yaml);
    let got: Vec<(String, usize, usize)> = errs
        .problems
        .iter()
        .map(|p| {
            let (l, c) = p.line_col.expect("a position");
            (p.path.clone(), l, c)
        })
        .collect();
    assert_eq!(got, want);
    // Thousands of pools are not listed in the message.
    assert!(
        errs.problems[0].message.len() < 200,
        "{}",
        errs.problems[0].message
    );
}
