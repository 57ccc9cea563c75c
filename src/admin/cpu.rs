//! Honest CPU numbers for the diagnosis: the machine's CPU from `/proc/stat`, and how many
//! cores a set of processes may use (the union of their affinity masks, capped by their
//! cgroup's `cpu.max` quota). Two workers on the same two cores are measured against two
//! cores, not four: a garden must be able to look CPU-bound.

use serde::Serialize;
use std::collections::BTreeSet;

/// The machine's CPU counters at one moment (`cpu` line of `/proc/stat`, in ticks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTicks {
    pub busy: u64,
    pub total: u64,
}

/// The machine between two samples.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct MachineCpu {
    /// Share of all the machine's cores that was busy (0..1); `None` on the first sample.
    pub busy: Option<f64>,
    /// Online cores.
    pub cores: usize,
}

/// Read the aggregate `cpu` line of `/proc/stat`.
pub fn machine_ticks() -> Option<MachineTicks> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    parse_stat_cpu_line(s.lines().next()?)
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`: idle and iowait
/// are not busy; guest time is already inside user, so it is not added again.
fn parse_stat_cpu_line(line: &str) -> Option<MachineTicks> {
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = f.take(8).map(|x| x.parse().unwrap_or(0)).collect();
    if v.len() < 4 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(MachineTicks {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Busy share between two readings.
pub fn busy_between(before: MachineTicks, now: MachineTicks) -> Option<f64> {
    let total = now.total.checked_sub(before.total)?;
    (total > 0).then(|| (now.busy.saturating_sub(before.busy) as f64 / total as f64).min(1.0))
}

/// Online cores of the machine.
pub fn online_cores() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// The CPUs `pid` may run on (its affinity mask); `None` if it cannot be read.
pub fn affinity(pid: u32) -> Option<BTreeSet<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::sched_getaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        )
    };
    if rc != 0 {
        return None;
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the set filled above, for indexes within its size.
    Some(
        (0..max)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect(),
    )
}

/// The CPU quota of `pid`'s cgroup (v2 `cpu.max`), in cores; `None` when unlimited or
/// unknown.
pub fn cgroup_quota_cores(pid: u32) -> Option<f64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    // cgroup v2: the single line "0::/path".
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    dir.push(path.trim_start_matches('/'));
    // The tightest quota on the way up to the root applies.
    let mut best: Option<f64> = None;
    loop {
        if let Ok(s) = std::fs::read_to_string(dir.join("cpu.max")) {
            if let Some(q) = parse_cpu_max(&s) {
                best = Some(best.map_or(q, |b: f64| b.min(q)));
            }
        }
        if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
            break;
        }
    }
    best
}

/// `"max 100000"` → None; `"150000 100000"` → 1.5 cores.
fn parse_cpu_max(s: &str) -> Option<f64> {
    let mut f = s.split_whitespace();
    let quota: f64 = f.next()?.parse().ok()?;
    let period: f64 = f.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// The cores a set of processes can use together: each CPU counted once however many of
/// them may run on it, capped by the tightest cgroup quota among them.
pub fn cores_for(pids: &[u32]) -> f64 {
    let mut cpus = BTreeSet::new();
    let mut quota: Option<f64> = None;
    for &pid in pids {
        if let Some(set) = affinity(pid) {
            cpus.extend(set);
        }
        if let Some(q) = cgroup_quota_cores(pid) {
            quota = Some(quota.map_or(q, |b: f64| b.min(q)));
        }
    }
    let n = if cpus.is_empty() {
        online_cores()
    } else {
        cpus.len()
    } as f64;
    quota.map_or(n, |q| n.min(q)).max(0.01)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_busy_excludes_idle_and_iowait() {
        let t = parse_stat_cpu_line("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        assert_eq!(
            t,
            MachineTicks {
                busy: 150,
                total: 1000
            }
        );
        let later = parse_stat_cpu_line("cpu  250 0 100 850 50 0 0 0 0 0").unwrap();
        assert_eq!(busy_between(t, later), Some(0.8));
        assert_eq!(parse_stat_cpu_line("cpu0 1 2 3 4"), None);
        assert!(machine_ticks().is_some());
    }

    #[test]
    fn cpu_max_quota() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
    }

    #[test]
    fn two_processes_on_the_same_cores_count_them_once() {
        let me = std::process::id();
        let mine = affinity(me).unwrap();
        assert!(!mine.is_empty());
        let once = cores_for(&[me]);
        assert!(once <= mine.len() as f64);
        // A second process that inherited our mask (as garden workers do): same cores, not
        // twice as many.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert_eq!(affinity(child.id()), Some(mine));
        assert_eq!(cores_for(&[me, child.id()]), once);
        let _ = child.kill();
        let _ = child.wait();
    }
}
