//! Files a configuration names are read only if they are regular files of bounded size:
//! the configuration itself, TLS certificates and keys, and farm CA bundles — in
//! `roost check`, `roost serve` and on SIGHUP reload. A FIFO, `/dev/zero`, a directory or
//! a huge file gets a clear error (key, path, why) instead of a hang or unbounded memory.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const DEV_CRT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev.crt");
const DEV_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev.key");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn fifo_in(dir: &Path) -> PathBuf {
    let p = dir.join("pipe.pem");
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
    p
}

/// `roost check -c FILE`, killed (and reported as a hang) after a generous limit.
fn check(file: &Path) -> (Option<i32>, String) {
    roost("check", file)
}

/// `roost CMD -c FILE` that is expected to exit; killed and reported if it hangs.
fn roost(cmd: &str, file: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roost"))
        .args([cmd, "-c"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("roost {cmd} -c {} hung", file.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tls_site_yaml(cert: &str, key: &str) -> String {
    format!(
        "sites:\n  - name: s\n    bindings:\n      - listen: 127.0.0.1:0\n        tls:\n          cert: {cert}\n          key: {key}\n    applications: [{{path: /, pool: p}}]\n\
         pools:\n  p: {{farm: {{servers: [{{address: \"127.0.0.1:8081\"}}]}}}}\n"
    )
}

fn assert_contains_all(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "missing {n:?} in:\n{text}");
    }
}

#[test]
fn check_refuses_dev_zero_as_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("proxy.yaml");
    std::fs::write(&f, tls_site_yaml(DEV_CRT, "/dev/zero")).unwrap();
    let (code, err) = check(&f);
    assert_eq!(code, Some(2), "{err}");
    assert_contains_all(
        &err,
        &[
            "proxy.yaml:7:16: sites[0].bindings[0].tls.key = \"/dev/zero\"",
            "a character device, not a regular file",
        ],
    );
}

#[test]
fn check_refuses_a_fifo_as_a_certificate_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(&f, tls_site_yaml(&fifo.display().to_string(), DEV_KEY)).unwrap();
    let (code, err) = check(&f);
    assert_eq!(code, Some(2), "{err}");
    assert_contains_all(
        &err,
        &[
            "sites[0].bindings[0].tls.cert = ",
            &format!("cannot read {}", fifo.display()),
            "a FIFO (named pipe), not a regular file",
        ],
    );
}

#[test]
fn check_refuses_a_fifo_as_a_farm_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(
        &f,
        format!(
            "sites: [{{name: s, bindings: [{{listen: 127.0.0.1:0}}], applications: [{{path: /, pool: p}}]}}]\n\
             pools:\n  p:\n    farm:\n      servers: [{{address: \"https://127.0.0.1:8443\"}}]\n      tls: {{caFile: {}}}\n",
            fifo.display()
        ),
    )
    .unwrap();
    let (code, err) = check(&f);
    assert_eq!(code, Some(2), "{err}");
    assert_contains_all(&err, &["pools.p.farm.tls.caFile = ", "a FIFO (named pipe)"]);
}

#[test]
fn check_refuses_a_config_that_is_a_directory_or_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = check(dir.path());
    assert_eq!(code, Some(2), "{err}");
    assert_contains_all(&err, &["it is a directory, not a regular file"]);

    let fifo = fifo_in(dir.path());
    let (code, err) = check(&fifo);
    assert_eq!(code, Some(2), "{err}");
    assert_contains_all(&err, &["it is a FIFO (named pipe), not a regular file"]);
}

#[test]
fn check_refuses_an_oversized_config() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("huge.yaml");
    // Sparse: 65 MiB of holes costs no disk and is over the 64 MiB cap.
    std::fs::File::create(&f)
        .unwrap()
        .set_len(65 * 1024 * 1024)
        .unwrap();
    let (code, err) = check(&f);
    assert_eq!(code, Some(2), "{err}");
    assert_contains_all(
        &err,
        &[
            "huge.yaml",
            "larger than the 67108864-byte limit (68157440 bytes)",
        ],
    );
}

#[test]
fn serve_refuses_a_fifo_key_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(&f, tls_site_yaml(DEV_CRT, &fifo.display().to_string())).unwrap();
    let (code, err) = roost("serve", &f);
    assert_eq!(code, Some(2), "{err}");
    assert_contains_all(&err, &["tls.key = ", "a FIFO (named pipe)"]);
}

fn farm_yaml(port: u16, admin: u16, backend: &str, ca_file: Option<&str>) -> String {
    let tls = ca_file.map_or(String::new(), |ca| format!(", tls: {{caFile: {ca}}}"));
    format!(
        "sites:\n  - name: s\n    bindings: [{{listen: \"127.0.0.1:{port}\"}}]\n    applications: [{{path: /, pool: p}}]\n\
         pools:\n  p: {{farm: {{servers: [{{address: \"{backend}\"}}]{tls}}}}}\nadmin: {{listen: \"127.0.0.1:{admin}\"}}\n"
    )
}

/// Lines `roost serve` logs (stdout), forwarded so a test can wait for one.
fn log_lines(child: &mut tokio::process::Child) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait (generously) for a log line holding every needle; the lines up to it for context.
async fn wait_for_log(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needles: &[&str]) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = rx.recv().await {
            if needles.iter().all(|n| l.contains(n)) {
                return true;
            }
            seen.push(l);
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "no log line with {needles:?}; saw:\n{}",
        seen.join("\n")
    );
}

#[tokio::test]
async fn sighup_reload_refuses_a_fifo_or_dev_zero_and_keeps_serving() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path());
    let (port, admin) = (free_port(), free_port());
    let f = dir.path().join("proxy.yaml");
    std::fs::write(&f, farm_yaml(port, admin, &a.addr.to_string(), None)).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .args(["serve", "-c"])
        .arg(&f)
        .env("RUST_LOG", "info")
        .env_remove("ROOST_LOG_FORMAT")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut logs = log_lines(&mut child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "roost serve did not start listening");
    assert_eq!(get(addr, "x", "/one").await.2, "a /one");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    let b_addr = b.addr.to_string();

    for (ca, why) in [
        (fifo.display().to_string(), "a FIFO (named pipe)"),
        ("/dev/zero".to_string(), "a character device"),
    ] {
        std::fs::write(&f, farm_yaml(port, admin, &b_addr, Some(&ca))).unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        wait_for_log(&mut logs, &["reload refused"]).await;
        wait_for_log(&mut logs, &["pools.p.farm.tls.caFile", why]).await;
        assert_eq!(get(addr, "x", "/still").await.2, "a /still");
    }

    // The reload path is not stuck: a good file is applied.
    std::fs::write(&f, farm_yaml(port, admin, &b_addr, None)).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut switched = false;
    for _ in 0..500 {
        if get(addr, "x", "/three").await.2 == "b /three" {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(switched, "the good reload was not applied");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}
