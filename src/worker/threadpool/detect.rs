//! Blocking detection without hints, like Go's `sysmon`: the gate thread reads the kernel's
//! view of the pool's busy threads and counts those that are blocked rather than running.
//!
//! Per busy thread it reads `/proc/self/task/<tid>/stat` (one open/read/close, ~3 µs of CPU):
//! the scheduler state (`R` running or runnable, `S` sleeping, `D` uninterruptible I/O) and
//! the thread's CPU time. A thread counts as **blocked** when, at two consecutive samples,
//! it was busy and in `S` or `D`, and it used the CPU for less than half of the time between
//! them. Two observations, as `sysmon` retakes a processor only from a goroutine seen in the
//! same system call on two ticks: one look at a thread that waits a microsecond for a lock
//! proves nothing. The CPU-time rule keeps threads that mostly compute (with short waits)
//! out. `R` never counts, so CPU-bound work never adds threads here: a runnable thread is
//! waiting for a core, and another thread would only wait with it.
//!
//! What the pool does with the count ([`Inner::detection_step`]): while work is queued, the
//! blocked busy threads join the hinted ones in the blocking target (`min + blocked +
//! detected`), so the goal rises within the same delay steps, the increase counts as a
//! `blocking_detected` injection, and only what blocking added is taken back once the
//! threads run again (or finish). With the queue empty the count may only fall: more threads
//! would have nothing to run.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use super::{Inner, State};

/// At most one `/proc` read per this much time on average: the period stretches with the
/// number of busy threads (64 busy threads ⇒ one sample per 128 ms at least), so the
/// monitor's cost stays at or below ~0.5 % of a core however many threads block (a read
/// costs 3–10 µs of CPU, the high end on a loaded machine).
pub(crate) const MIN_TIME_PER_READ: Duration = Duration::from_millis(2);

/// The kernel thread id of the calling thread.
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// What one read of a thread's `stat` file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskStat {
    /// The state letter (`R`, `S`, `D`, ...).
    pub state: u8,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

impl TaskStat {
    /// Sleeping (`S`: a sleep, a futex, a socket) or in uninterruptible I/O (`D`: disk).
    pub fn is_blocked(self) -> bool {
        matches!(self.state, b'S' | b'D')
    }
}

/// Parse `tid (comm) S ppid ... utime stime ...`. `comm` may hold spaces and parentheses,
/// so the fields start after the last `)`.
pub(crate) fn parse_task_stat(text: &[u8]) -> Option<TaskStat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // After the state (field 3): ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt (fields 4..=13), then utime (14) and stime (15).
    let mut fields = fields.skip(10);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(TaskStat {
        state,
        cpu_ticks: utime + stime,
    })
}

/// One thread as seen at one sample.
#[derive(Debug, Clone, Copy)]
struct Seen {
    sample: u64,
    stat: TaskStat,
}

/// The monitor's memory between samples (owned by the gate thread, no locking).
#[derive(Debug)]
pub(crate) struct Detector {
    /// Number of the current sample; "consecutive" means the previous number.
    sample: u64,
    last_at: Option<Instant>,
    seen: HashMap<i32, Seen>,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
    ticks_per_sec: u64,
    path: String,
    buf: Vec<u8>,
    /// The busy threads to read at this sample (kept to reuse the allocation).
    tids: Vec<i32>,
}

impl Detector {
    pub(crate) fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Detector {
            sample: 0,
            last_at: None,
            seen: HashMap::new(),
            ticks_per_sec: if t > 0 { t as u64 } else { 100 },
            path: String::with_capacity(40),
            buf: vec![0; 1024],
            tids: Vec::new(),
        }
    }

    /// Forget everything (sampling paused: the next sample has nothing to compare with).
    pub(crate) fn reset(&mut self) {
        self.seen.clear();
        self.last_at = None;
    }

    /// Read the given busy threads and return how many are blocked (see the module docs).
    /// Threads that have exited or cannot be read count as not blocked.
    pub(crate) fn sample(&mut self, tids: &[i32], now: Instant) -> usize {
        let elapsed = self.last_at.map(|t| now.saturating_duration_since(t));
        self.last_at = Some(now);
        self.sample += 1;
        let mut blocked = 0;
        for &tid in tids {
            let Some(stat) = self.read(tid) else { continue };
            let prev = self.seen.insert(
                tid,
                Seen {
                    sample: self.sample,
                    stat,
                },
            );
            let (Some(prev), Some(elapsed)) = (prev, elapsed) else {
                continue;
            };
            if prev.sample + 1 == self.sample
                && prev.stat.is_blocked()
                && stat.is_blocked()
                && self.mostly_off_cpu(prev.stat, stat, elapsed)
            {
                blocked += 1;
            }
        }
        let current = self.sample;
        self.seen.retain(|_, s| s.sample == current);
        blocked
    }

    /// Used the CPU for less than half of `elapsed` between the two readings.
    fn mostly_off_cpu(&self, prev: TaskStat, now: TaskStat, elapsed: Duration) -> bool {
        let ticks = now.cpu_ticks.saturating_sub(prev.cpu_ticks);
        let cpu = Duration::from_millis(ticks * 1000 / self.ticks_per_sec);
        cpu * 2 < elapsed
    }

    fn read(&mut self, tid: i32) -> Option<TaskStat> {
        use std::fmt::Write;
        self.path.clear();
        let _ = write!(self.path, "/proc/self/task/{tid}/stat");
        let mut f = File::open(&self.path).ok()?;
        // One read: the line is generated whole (a few hundred bytes), so the second read
        // `read_to_end` would make is a wasted system call.
        let n = f.read(&mut self.buf).ok()?;
        parse_task_stat(&self.buf[..n])
    }
}

impl Inner {
    /// The gate thread's detection duty, called on each of its wake-ups: sample when due and
    /// return when the next sample is due (`None` = nothing to watch: no work waits and no
    /// detected thread is left to see run again).
    pub(super) fn detection_step(
        self: &Arc<Self>,
        st: &mut MutexGuard<'_, State>,
        d: &mut Detector,
        next: Option<Instant>,
    ) -> Option<Instant> {
        if !self.cfg.blocking_detection || st.shutdown {
            return None;
        }
        if st.queue.is_empty() && st.detected == 0 {
            st.detect_armed = false;
            d.reset();
            return None;
        }
        st.detect_armed = true;
        if next.is_some_and(|t| Instant::now() < t) {
            return next;
        }
        // First sample of a busy spell (`next` None) at once: it is the baseline the next
        // one confirms against.
        let reads = self.detection_sample(st, d);
        let period = self
            .cfg
            .blocking_detection_interval
            .max(MIN_TIME_PER_READ * reads.min(u32::MAX as usize) as u32);
        Some(Instant::now() + period)
    }

    /// Read the busy, unhinted threads (with the pool unlocked), update the detected count
    /// and adjust the goal. Returns how many threads were read.
    fn detection_sample(
        self: &Arc<Self>,
        st: &mut MutexGuard<'_, State>,
        d: &mut Detector,
    ) -> usize {
        let mut tids = std::mem::take(&mut d.tids);
        tids.clear();
        tids.extend(
            st.slots
                .values()
                .filter(|s| s.busy.load(Ordering::Relaxed) && !s.hinted.load(Ordering::Relaxed))
                .map(|s| s.tid),
        );
        let blocked = MutexGuard::unlocked(st, || d.sample(&tids, Instant::now()));
        let reads = tids.len();
        d.tids = tids;
        if st.shutdown {
            return reads;
        }
        st.detected = if st.queue.is_empty() {
            blocked.min(st.detected)
        } else {
            blocked
        };
        self.blocking_adjust(st, Instant::now(), true);
        reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn parses_state_and_cpu_time_even_with_odd_names() {
        let line = b"4242 (we (ird) name) S 1 2 3 0 -1 4194560 10 0 0 0 17 5 0 0 20 0 1 0 100\n";
        let s = parse_task_stat(line).unwrap();
        assert_eq!((s.state, s.cpu_ticks), (b'S', 22));
        assert!(s.is_blocked());
        let r = parse_task_stat(b"1 (x) R 1 2 3 0 -1 0 0 0 0 0 3 4 0").unwrap();
        assert!(!r.is_blocked());
        assert_eq!(parse_task_stat(b"1 (x) R 1 2"), None);
        assert_eq!(parse_task_stat(b"garbage"), None);
    }

    /// A thread that sleeps is blocked on the second sample, not the first; a spinning one
    /// never is. The sleeper waits on a channel for the whole test rather than in short
    /// sleeps: on a loaded machine a thread woken every few milliseconds is often seen
    /// runnable (`R`, waiting for a core), which is correctly not "blocked" and made the
    /// count flaky.
    #[test]
    fn a_sleeping_thread_counts_and_a_spinning_one_does_not() {
        let (tx, rx) = mpsc::channel();
        let (wake, asleep) = mpsc::channel::<()>();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sleeper = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                tx.send(gettid()).unwrap();
                let _ = asleep.recv();
            })
        };
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                tx.send(gettid()).unwrap();
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        };
        let (a, b) = (rx.recv().unwrap(), rx.recv().unwrap());
        let mut d = Detector::new();
        let mut counts = Vec::new();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(50));
            // Only the sleeper is counted whichever tid is which; the first sample has no
            // previous one and counts nothing.
            counts.push(d.sample(&[a, b], Instant::now()));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(wake);
        sleeper.join().unwrap();
        spinner.join().unwrap();
        assert_eq!(counts, [0, 1, 1, 1]);
        // Gone threads are forgotten and count as not blocked. `join` returns when the
        // thread has cleared its tid, a moment before the kernel removes its
        // `/proc/self/task/<tid>` (seen on a loaded CI machine), so wait for that first.
        let deadline = Instant::now() + Duration::from_secs(10);
        while [a, b]
            .iter()
            .any(|t| std::path::Path::new(&format!("/proc/self/task/{t}")).exists())
        {
            assert!(Instant::now() < deadline, "exited threads still listed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(d.sample(&[a, b], Instant::now()), 0);
        assert!(d.seen.is_empty());
    }
}
