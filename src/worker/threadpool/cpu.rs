//! Machine-wide CPU utilisation from `/proc/stat`, sampled by the pool's gate thread.
//!
//! .NET's gate thread samples CPU every 500 ms; hill climbing refuses to add threads above
//! 95 % and starvation injection slows down at 80 %. We read the aggregate `cpu` line (all
//! cores) because the question both rules ask is "is the machine saturated?", which the
//! process's own usage cannot answer on a shared host.

use std::fs;

/// Busy and total jiffies from the aggregate `cpu` line of `/proc/stat`.
pub(crate) fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest and guest_nice are already
    // included in user and nice, so they are not added again).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Remembers the previous reading so each call returns the utilisation since the last one.
#[derive(Debug, Default)]
pub(crate) struct CpuSampler {
    prev: Option<(u64, u64)>,
}

impl CpuSampler {
    /// Percent busy (0..=100) since the previous call; `None` on the first call or when
    /// `/proc/stat` is unreadable (then the pool behaves as if CPU were low).
    pub(crate) fn sample(&mut self) -> Option<u32> {
        let now = parse_proc_stat(&fs::read_to_string("/proc/stat").ok()?)?;
        self.delta(now)
    }

    fn delta(&mut self, now: (u64, u64)) -> Option<u32> {
        let prev = self.prev.replace(now)?;
        let busy = now.0.saturating_sub(prev.0);
        let total = now.1.saturating_sub(prev.1);
        if total == 0 {
            return None;
        }
        Some(((busy * 100) / total).min(100) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_line() {
        let text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(parse_proc_stat(text), Some((150, 1000)));
        assert_eq!(parse_proc_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn utilisation_is_the_delta_between_readings() {
        let mut s = CpuSampler::default();
        assert_eq!(s.delta((150, 1000)), None);
        assert_eq!(s.delta((150 + 90, 1000 + 100)), Some(90));
        assert_eq!(s.delta((240, 1100)), None, "no time passed");
    }

    #[test]
    fn reads_the_real_file() {
        let mut s = CpuSampler::default();
        assert_eq!(s.sample(), None);
        std::thread::sleep(std::time::Duration::from_millis(30));
        // Jiffies are 10 ms, so 30 ms is enough for the total to move on any box.
        if let Some(p) = s.sample() {
            assert!(p <= 100);
        }
    }
}
