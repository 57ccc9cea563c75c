//! `roost check`: the configuration `serve` would use, checked as `serve` would use it.
//!
//! Without `-c`, that is `./proxy.yaml`, or the embedded default when it does not exist
//! (and the output says so). Beyond validation, it checks what only the running
//! machine can tell: that the access log can be opened for writing (`serve` would
//! otherwise fall back to stdout). It never creates or changes a file.

use crate::config::{self, model::Config, ConfigErrors, Problem, Source};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run `roost check`: exit 0 valid, 2 invalid. `explicit`: the `-c FILE` given, if any
/// (a named file must exist; only the default `proxy.yaml` falls back to the embedded one).
pub fn run(explicit: Option<PathBuf>) -> ExitCode {
    let (loaded, name) = match &explicit {
        Some(p) => (
            config::check_file(p).map(|c| (c, Source::File(p.clone()))),
            p.display().to_string(),
        ),
        None => {
            let p = Path::new("proxy.yaml");
            let loaded = config::load_default_or_file(p);
            let name = match &loaded {
                Ok((_, Source::Embedded)) => {
                    "the embedded default configuration (no ./proxy.yaml)".to_string()
                }
                _ => p.display().to_string(),
            };
            (loaded, name)
        }
    };
    let result = loaded.and_then(|(cfg, _)| machine_checks(&cfg, &name).map(|()| cfg));
    match result {
        Ok(cfg) => {
            config::validate::warnings(&cfg)
                .iter()
                .for_each(|w| eprintln!("{w}"));
            println!(
                "{name}: ok ({} sites, {} pools)",
                cfg.sites.len(),
                cfg.pools.len()
            );
            // The process ends here: freeing 100,000 pools one by one would only delay
            // the exit (about 0.1 s), so the memory goes back with the process.
            std::mem::forget(cfg);
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} problem(s) in {name}", errors.problems.len());
            ExitCode::from(2)
        }
    }
}

/// What validation cannot see: the access log's file or folder must be writable.
fn machine_checks(cfg: &Config, origin: &str) -> Result<(), ConfigErrors> {
    let Some(path) = cfg.log.access.as_ref().and_then(|a| a.path.as_ref()) else {
        return Ok(());
    };
    match access_log_writable(path) {
        Ok(()) => Ok(()),
        Err(why) => Err(ConfigErrors {
            problems: vec![Problem {
                path: "log.access.path".into(),
                value: Some(format!("{:?}", path.display().to_string())),
                message: format!("{why} (serve would log requests to stdout instead)"),
                line_col: None,
                file: origin.to_string(),
            }],
        }),
    }
}

/// Whether the access log can be opened for appending: the file itself when it exists,
/// else its folder (which must exist: roost does not create folders).
pub fn access_log_writable(path: &Path) -> Result<(), String> {
    use nix::unistd::{access, AccessFlags};
    if path.is_dir() {
        return Err("is a folder, not a file".into());
    }
    if path.exists() {
        return access(path, AccessFlags::W_OK)
            .map_err(|e| format!("the file cannot be written: {}", e.desc()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("the folder {} does not exist", dir.display()));
    }
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
        .map_err(|e| format!("cannot create the file in {}: {}", dir.display(), e.desc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_or_a_folder_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(access_log_writable(&dir.path().join("access.log")).is_ok());
        let e = access_log_writable(&dir.path().join("nope/access.log")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = access_log_writable(dir.path()).unwrap_err();
        assert!(e.contains("folder"), "{e}");
    }
}
