//! A few human lines describing a validated configuration, for `roost check` on success
//! and for the startup log.

use super::model::{Backend, Config, LoadBalancing};
use std::fmt::Write;

/// e.g. `site main: 0.0.0.0:80, 0.0.0.0:443 (TLS); / -> default, /api -> api`.
pub fn summary(c: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} site(s), {} pool(s)", c.sites.len(), c.pools.len());
    for s in &c.sites {
        let binds: Vec<String> = s
            .bindings
            .iter()
            .map(|b| match &b.tls {
                Some(_) => format!("{} (TLS)", b.listen),
                None => b.listen.to_string(),
            })
            .collect();
        let apps: Vec<String> = s
            .applications
            .iter()
            .map(|a| format!("{} -> {}", a.path, a.pool))
            .collect();
        let hosts = if s.host_names.is_empty() {
            String::new()
        } else {
            format!(" [{}]", s.host_names.join(", "))
        };
        let _ = writeln!(
            out,
            "site {}{hosts}: {}; {}",
            s.name,
            binds.join(", "),
            apps.join(", ")
        );
    }
    for p in c.pools.values() {
        let backend = match &p.backend {
            Backend::Garden(pm) => {
                let what = match &pm.command {
                    Some(cmd) => cmd.clone(),
                    None => format!("roost worker --app {}", pm.worker.app),
                };
                format!(
                    "{} process(es) of `{what}`, {} requests each",
                    pm.max_processes, pm.max_concurrent_requests_per_process
                )
            }
            Backend::Farm(f) => {
                let lb = match &f.load_balancing {
                    LoadBalancing::Hash(k) => format!("hash by {k:?}"),
                    other => format!("{other:?}"),
                };
                let servers: Vec<String> = f
                    .servers
                    .iter()
                    .map(|s| format!("{}{}", s.address, if s.backup { " (backup)" } else { "" }))
                    .collect();
                format!("farm {} ({lb})", servers.join(", "))
            }
        };
        let _ = writeln!(
            out,
            "pool {}: queue {} for up to {}; {backend}",
            p.name,
            p.queue_length,
            humantime::format_duration(p.queue_timeout)
        );
    }
    let _ = write!(out, "admin: {}", c.admin.listen);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_the_embedded_default() {
        let c = crate::config::load_str_in(
            crate::config::EMBEDDED_DEFAULT,
            "default",
            std::path::Path::new("."),
            [("", ""); 0],
        )
        .unwrap();
        let s = summary(&c);
        assert!(
            s.contains("site default: 127.0.0.1:8080; / -> default"),
            "{s}"
        );
        assert!(
            s.contains("pool default: queue 1000 for up to 2m; 2 process(es) of `roost worker --app demo`, 100 requests each"),
            "{s}"
        );
        assert!(s.ends_with("admin: 127.0.0.1:9901"), "{s}");
    }
}
