//! The snapshot trigger (onset, interval), the files (keep-last-N, names, reading back)
//! and a folder that cannot be written.

use super::*;
use crate::admin::diagnose::{Finding, Report, Severity};

fn report(findings: &[(&'static str, Severity)]) -> Report {
    Report {
        window_seconds: 10.0,
        samples: 10,
        findings: findings
            .iter()
            .map(|&(rule, severity)| {
                let mut f = Finding::new(severity, rule, format!("{rule} title"), vec![]);
                f.pool = "web".into();
                f
            })
            .collect(),
    }
}

#[test]
fn one_snapshot_per_onset_and_at_most_one_per_interval() {
    use Severity::*;
    let mut t = Trigger::default();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(t.due(&report(&[("saturated", Warning)]), at(0)), None);
    // Onset of a critical finding: captured at once.
    let r = report(&[("cpu_bound", Warning), ("threadpool_at_max", Critical)]);
    assert_eq!(t.due(&r, at(1)), Some(1));
    // Still the same condition, every sampler tick: nothing more.
    for s in 2..100 {
        assert_eq!(t.due(&r, at(s)), None, "tick {s}");
    }
    // It ends and starts again 10 s after the first snapshot: held back by the interval...
    let t = &mut Trigger::default();
    assert_eq!(t.due(&r, at(0)), Some(1));
    assert_eq!(t.due(&report(&[]), at(5)), None);
    assert_eq!(t.due(&r, at(10)), None);
    // ...and written once the interval is over, since it still holds.
    assert_eq!(t.due(&r, at(59)), None);
    assert_eq!(t.due(&r, at(61)), Some(1));
    assert_eq!(t.due(&r, at(62)), None);
    // A held-back onset that ended meanwhile is dropped.
    assert_eq!(t.due(&report(&[]), at(70)), None);
    assert_eq!(t.due(&report(&[("queue_full", Critical)]), at(80)), None);
    assert_eq!(t.due(&report(&[]), at(90)), None);
    assert_eq!(t.due(&report(&[]), at(200)), None);
}

#[test]
fn the_newest_n_files_stay_and_other_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("snaps/deeper");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("notes.txt"), "mine").unwrap();
    for i in 0..5u64 {
        let p = write(
            &sub,
            3,
            1_700_000_000_000 + i,
            "queue_full",
            &json!({"i": i}),
        )
        .unwrap();
        assert!(p.exists());
    }
    let l = list(&sub);
    let ids: Vec<u64> = l.iter().map(|e| e.at_unix_ms).collect();
    assert_eq!(
        ids,
        vec![1_700_000_000_004, 1_700_000_000_003, 1_700_000_000_002]
    );
    assert_eq!(l[0].rule, "queue_full");
    assert!(sub.join("notes.txt").exists(), "not ours: kept");
    let text = read(&sub, &l[0].id).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["i"], 4);
    // Only names this module writes are ever opened.
    assert_eq!(read(&sub, "../../etc/passwd"), None);
    assert_eq!(read(&sub, "notes"), None);
    assert_eq!(
        std::fs::read_dir(&sub).unwrap().count(),
        4,
        "no temporary left"
    );
}

#[test]
fn a_folder_that_cannot_be_written_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let e = write(&file.join("snaps"), 3, 1_700_000_000_000, "x", &json!({})).unwrap_err();
    assert!(e.contains("diagnose.snapshotDir"), "{e}");
    assert!(list(&file.join("snaps")).is_empty());
}

/// A pool rapid-fail protection took offline: a critical finding.
fn offline_sample(at_unix_ms: u64) -> std::sync::Arc<Sample> {
    use crate::admin::diagnose::tests::{pool, sample};
    let mut p = pool(0, 0, 0);
    p.state = "AppOffline".into();
    p.worker_failures_total = 5;
    sample(at_unix_ms, p, vec![], 0.0)
}

#[tokio::test]
async fn the_recorder_writes_on_onset_and_reports_a_folder_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::config::model::Diagnose {
        snapshot_dir: Some(dir.path().join("snaps")),
        snapshot_keep: 2,
    };
    let rec = Recorder::default();
    let h = [offline_sample(1_700_000_000_000)];
    rec.observe(&cfg, &h, Vec::new).await;
    rec.observe(&cfg, &h, Vec::new).await;
    let l = rec.list_json(&cfg);
    assert_eq!(l["snapshots"].as_array().unwrap().len(), 1, "{l:#}");
    assert_eq!(l["snapshots"][0]["rule"], "rapid_fail_offline");
    assert_eq!(l["last_error"], Value::Null);

    // A file where the folder should be: a warning and `last_error`, no panic.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    cfg.snapshot_dir = Some(file.join("snaps"));
    let rec = Recorder::default();
    rec.observe(&cfg, &h, Vec::new).await;
    let l = rec.list_json(&cfg);
    assert!(
        l["last_error"].as_str().unwrap().contains("a-file"),
        "{l:#}"
    );
    assert_eq!(l["snapshots"], json!([]));
    // Off: says how to turn it on.
    cfg.snapshot_dir = None;
    assert!(rec.list_json(&cfg)["note"]
        .as_str()
        .unwrap()
        .contains("snapshotDir"));
}

#[test]
fn threads_of_a_process_with_their_states() {
    let t = thread_states(std::process::id());
    assert!(!t.is_empty());
    assert!(t.iter().any(|t| t.state == 'R'), "this thread runs: {t:?}");
    assert!(thread_states(u32::MAX).is_empty());
}
