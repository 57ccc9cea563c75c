//! [`WokenOnly`]: poll a side future (a shutdown signal, an idle watchdog) only when its
//! own waker fired, not every time the connection beside it is polled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// A future that is polled only when its own waker fired (and on the first poll).
    ///
    /// The idle watchdog and the shutdown signal sit beside hyper's connection in one
    /// `select!`, which polls every branch each time the task wakes: several times per
    /// request. A waiting `watch::changed()` takes its `Notify`'s mutex on every poll (a
    /// lock shared by all connections) and a `Sleep` re-registers its waker, though
    /// neither has news unless its own waker fired.
    pub struct WokenOnly<F> {
        #[pin]
        fut: F,
        signal: Arc<Signal>,
    }
}

struct Signal {
    woken: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.task.wake();
    }
}

impl<F> WokenOnly<F> {
    pub fn new(fut: F) -> Self {
        WokenOnly {
            fut,
            signal: Arc::new(Signal {
                woken: std::sync::atomic::AtomicBool::new(true),
                task: futures_util::task::AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Register first, then look at the flag: a wake-up in between is not lost.
        this.signal.task.register(cx.waker());
        if !this
            .signal
            .woken
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return Poll::Pending;
        }
        let waker = std::task::Waker::from(this.signal.clone());
        this.fut.poll(&mut Context::from_waker(&waker))
    }
}
