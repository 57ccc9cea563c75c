//! Top-level keys beside the sections: `workers` (front threads) and `diagnose`
//! (evidence snapshots).

use super::ctx::Ctx;
use super::parse::leaf_value;
use crate::config::leaf::{Leaf, Scalar};
use crate::config::model::{Diagnose, Workers};
use crate::config::raw::RawConfig;
use serde_json::Value;

/// `workers: auto | N` (1 to 1024 front threads).
pub(super) fn validate_workers(l: &Leaf, ctx: &mut Ctx<'_>) -> Workers {
    const MAX: u64 = 1024;
    match l {
        Some(Scalar(Value::String(s))) if s.eq_ignore_ascii_case("auto") => Workers::Auto,
        Some(Scalar(Value::Number(_))) => {
            let n = ctx.uint(l, "workers", 1, 1);
            if n > MAX {
                let v = l.as_ref().map(|s| &s.0);
                ctx.report("workers", v, format!("at most {MAX} front threads"));
                return Workers::Auto;
            }
            Workers::Count(n as usize)
        }
        Some(Scalar(v)) if !v.is_null() => {
            let why = "expected `auto` or a number of front threads";
            ctx.report("workers", Some(v), why);
            Workers::Auto
        }
        _ => Workers::Auto,
    }
}

/// `diagnose {snapshotDir, snapshotKeep}`. A folder that cannot be one (a file is in the
/// way) is refused now; one that cannot be written later is a logged warning.
pub(super) fn validate_diagnose(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Diagnose {
    let Some(d) = ctx.nested(&raw.diagnose, "diagnose", "a map") else {
        return Diagnose::default();
    };
    let path = "diagnose.snapshotDir";
    let snapshot_dir = ctx.path_buf(&d.snapshot_dir, path);
    if let Some(dir) = &snapshot_dir {
        let blocked = dir.ancestors().find(|a| a.exists() && !a.is_dir());
        if let Some(b) = blocked {
            let why = format!("{} exists and is not a folder", b.display());
            ctx.report(path, leaf_value(&d.snapshot_dir), why);
        }
    }
    let snapshot_keep = ctx.usize(&d.snapshot_keep, "diagnose.snapshotKeep", 10, 1);
    Diagnose {
        snapshot_dir,
        snapshot_keep,
    }
}
