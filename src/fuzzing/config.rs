//! The config loader.

use crate::config::load_str_in;
use std::path::Path;
use std::time::{Duration, Instant};

/// Loading a whole file must take less than this, even on a loaded machine (a real
/// file loads in about a millisecond; the fuzzer's inputs are at most a few KiB).
const LOAD_LIMIT: Duration = Duration::from_secs(5);

/// Any text: the loader returns a config or errors (never panics), within
/// [`LOAD_LIMIT`]; every error names a message; the same text loads the same way twice;
/// a loaded config has a pool for every application; and the text cut into pieces at
/// section entries (as large files are parsed, on several threads) parses to the same tree
/// as the whole, or is refused as pieces.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for pieces in [2, 3, 5] {
        assert!(
            crate::config::split::agrees(&text, pieces),
            "{pieces} pieces parsed to another tree than the whole"
        );
    }
    let env: [(&str, &str); 1] = [("ROOST_FUZZ", "1")];
    let started = Instant::now();
    let first = load_str_in(&text, "fuzz.yaml", Path::new("/nonexistent-fuzz-base"), env);
    assert!(
        started.elapsed() < LOAD_LIMIT,
        "loading took {:?}",
        started.elapsed()
    );
    let again = load_str_in(&text, "fuzz.yaml", Path::new("/nonexistent-fuzz-base"), env);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the same text loaded differently"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("the same text loaded once and failed once"),
    }
    match first {
        Ok(cfg) => {
            for site in &cfg.sites {
                for app in &site.applications {
                    assert!(app.path.starts_with('/'), "application path {:?}", app.path);
                    assert!(cfg.pools.contains_key(&app.pool), "no pool {:?}", app.pool);
                }
            }
        }
        Err(errs) => {
            assert!(!errs.problems.is_empty(), "an error without a problem");
            for p in &errs.problems {
                assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
            }
        }
    }
}
