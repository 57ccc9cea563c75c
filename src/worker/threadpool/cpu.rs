//! CPU utilisation for the pool's gate thread: machine-wide from `/proc/stat` (default) or
//! this process's own from `getrusage`.
//!
//! .NET's gate thread samples CPU every 500 ms; hill climbing refuses to add threads above
//! 95 % and starvation injection slows down at 80 %. .NET on Windows reads system-wide times
//! and on Linux the process's own. We default to machine-wide (the aggregate `cpu` line)
//! because the question both rules ask is "is the machine saturated?": in a web garden,
//! several worker processes share the cores and each one's own usage cannot answer it.

use std::fs;
use std::time::Instant;

/// Where the gate thread reads CPU utilisation from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuSource {
    /// All cores of the machine (`/proc/stat`).
    #[default]
    Machine,
    /// This process only (`getrusage(RUSAGE_SELF)` over wall time × cores), as .NET on Linux.
    Process,
}

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

/// CPU time of this process (user + system) in microseconds.
fn process_cpu_micros() -> Option<u64> {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is always valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    Some(us(ru.ru_utime) + us(ru.ru_stime))
}

/// Remembers the previous reading so each call returns the utilisation since the last one.
#[derive(Debug)]
pub(crate) struct CpuSampler {
    source: CpuSource,
    start: Instant,
    prev: Option<(u64, u64)>,
}

impl CpuSampler {
    pub(crate) fn new(source: CpuSource) -> Self {
        CpuSampler {
            source,
            start: Instant::now(),
            prev: None,
        }
    }

    /// Percent busy (0..=100) since the previous call; `None` on the first call or when the
    /// source is unreadable (then the pool behaves as if CPU were low).
    pub(crate) fn sample(&mut self) -> Option<u32> {
        let now = match self.source {
            CpuSource::Machine => parse_proc_stat(&fs::read_to_string("/proc/stat").ok()?)?,
            CpuSource::Process => {
                // Busy = CPU µs used; total = wall µs × cores, so 100 % = every core busy.
                let wall = self.start.elapsed().as_micros() as u64;
                (process_cpu_micros()?, wall * super::cores() as u64)
            }
        };
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
        let mut s = CpuSampler::new(CpuSource::Machine);
        assert_eq!(s.delta((150, 1000)), None);
        assert_eq!(s.delta((150 + 90, 1000 + 100)), Some(90));
        assert_eq!(s.delta((240, 1100)), None, "no time passed");
    }

    #[test]
    fn reads_the_real_file() {
        let mut s = CpuSampler::new(CpuSource::Machine);
        assert_eq!(s.sample(), None);
        std::thread::sleep(std::time::Duration::from_millis(30));
        // Jiffies are 10 ms, so 30 ms is enough for the total to move on any box.
        if let Some(p) = s.sample() {
            assert!(p <= 100);
        }
    }

    #[test]
    fn process_source_sees_our_own_spinning() {
        let mut s = CpuSampler::new(CpuSource::Process);
        assert_eq!(s.sample(), None);
        let end = Instant::now() + std::time::Duration::from_millis(200);
        let mut x = 0u64;
        while Instant::now() < end {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let p = s.sample().expect("a reading");
        // One spinning thread of `cores`: about 100/cores %, less when the box is loaded
        // (other tests run in parallel and add to it), never above 100.
        assert!(p <= 100);
        assert!(p >= 5, "{p}% after spinning 200 ms");
    }
}
