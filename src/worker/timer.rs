//! hyper's HTTP/1 header-read timer, made cheap enough to arm on every request.
//!
//! hyper arms its header-read timeout (30 s) each time it starts reading a request head and
//! drops it once the head is in, so on a keep-alive connection every request creates and
//! cancels one timer. With `TokioTimer` that is a boxed tokio `Sleep` (a large
//! allocation), an insert into tokio's timer wheel under its lock, and a removal under it
//! again: about 7 % of the worker's instructions per "hello" (BENCHMARKS.md, "The worker's
//! per-request cost").
//!
//! Here a sleep is a deadline and, once polled, a slot holding its waker in a per-thread
//! shard (the stripe of [`super::striped`]), so arming and cancelling take a lock nobody
//! else wants. One `roost-timer` thread looks at every armed slot each [`TICK`] and wakes
//! the expired ones: a timeout fires up to one tick late, which a 30 s slowloris guard
//! does not mind. The HTTP/2 side keeps `TokioTimer` (its timers are per connection).

use super::striped::stripe;
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the timer thread looks for expired sleeps (the timers' resolution).
const TICK: Duration = Duration::from_millis(250);

/// The [`hyper::rt::Timer`] for the worker's HTTP/1 connections.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderTimer;

impl hyper::rt::Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoarseSleep {
            deadline,
            slot: None,
        })
    }
}

/// One armed timeout: registered in a shard on its first poll, removed on drop.
struct CoarseSleep {
    deadline: Instant,
    /// (shard, index) once polled.
    slot: Option<(usize, usize)>,
}

impl hyper::rt::Sleep for CoarseSleep {}

impl Future for CoarseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some((shard, index)) = self.slot else {
            let shard = stripe();
            let index = SHARDS[shard].lock().insert(self.deadline, cx.waker());
            self.slot = Some((shard, index));
            start_ticking();
            return Poll::Pending;
        };
        let mut slab = SHARDS[shard].lock();
        let entry = slab.entries[index].as_mut().expect("an armed slot is ours");
        match &mut entry.waker {
            None => Poll::Ready(()),
            Some(w) => {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for CoarseSleep {
    fn drop(&mut self) {
        if let Some((shard, index)) = self.slot {
            SHARDS[shard].lock().remove(index);
        }
    }
}

struct Entry {
    deadline: Instant,
    /// `None` once fired.
    waker: Option<Waker>,
}

/// The armed sleeps of the threads on one stripe.
struct Slab {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

impl Slab {
    const fn new() -> Slab {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, deadline: Instant, waker: &Waker) -> usize {
        let entry = Some(Entry {
            deadline,
            waker: Some(waker.clone()),
        });
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                self.entries.len() - 1
            }
        }
    }

    fn remove(&mut self, index: usize) {
        self.entries[index] = None;
        self.free.push(index);
    }

    /// Mark the entries due by `now` fired and hand over their wakers.
    fn expire(&mut self, now: Instant, wake: &mut Vec<Waker>) {
        for e in self.entries.iter_mut().flatten() {
            if e.deadline <= now {
                wake.extend(e.waker.take());
            }
        }
    }
}

/// One shard's lock and slab on a cache line of its own, so two I/O threads arming
/// timers in their own shards do not write the same line.
#[repr(align(128))]
struct Shard(Mutex<Slab>);

impl std::ops::Deref for Shard {
    type Target = Mutex<Slab>;

    fn deref(&self) -> &Mutex<Slab> {
        &self.0
    }
}

const SHARDS_N: usize = super::striped::STRIPES;
static SHARDS: [Shard; SHARDS_N] =
    [const { Shard(parking_lot::const_mutex(Slab::new())) }; SHARDS_N];

/// Start the timer thread, once per process.
fn start_ticking() {
    static START: Once = Once::new();
    START.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("roost-timer".into())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                tick(Instant::now());
            });
        if let Err(e) = spawned {
            // Without the thread no header timeout fires; requests are still served.
            tracing::error!(error = %e, "cannot start the header timer thread");
        }
    });
}

/// Wake every sleep due by `now`. Wakers are called outside the shard locks.
fn tick(now: Instant) {
    let mut wake = Vec::new();
    for shard in &SHARDS {
        shard.lock().expire(now, &mut wake);
        wake.drain(..).for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[tokio::test]
    async fn a_sleep_fires_after_its_deadline_and_a_dropped_one_disarms() {
        // A deadline no other test uses, to find our slot among theirs.
        let far = Instant::now() + Duration::from_secs(3600) + Duration::from_nanos(7_777);
        let has_far = || {
            SHARDS.iter().any(|s| {
                let slab = s.lock();
                slab.entries.iter().flatten().any(|e| e.deadline == far)
            })
        };
        let mut s = CoarseSleep {
            deadline: far,
            slot: None,
        };
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
        assert!(has_far(), "polled once: armed");
        drop(s);
        assert!(!has_far(), "dropped: disarmed");

        let start = Instant::now();
        HeaderTimer.sleep(Duration::from_millis(50)).await;
        assert!(start.elapsed() >= Duration::from_millis(50));
        // A deadline already past fires on the next tick.
        let past = HeaderTimer.sleep_until(Instant::now());
        assert!(tokio::time::timeout(Duration::from_secs(30), past)
            .await
            .is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_sleeps_on_many_threads_all_fire() {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                tokio::spawn(async move {
                    HeaderTimer.sleep(Duration::from_millis(i % 7 * 20)).await;
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a sleep never fired")
                .unwrap();
        }
    }
}
