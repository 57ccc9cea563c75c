//! The worker's open connections, for a graceful stop: serve each until the stop signal,
//! then let it finish what is in flight (HTTP/1.1: the current response, HTTP/2: GOAWAY).
//!
//! hyper-util's `GracefulShutdown` does the same, but its per-connection watch takes one
//! mutex shared by every connection each time a connection is polled (several times per
//! request, from every I/O thread). Here the stop signal sits behind [`WokenOnly`], so a
//! connection looks at it only when it fired, and the count of open connections is the
//! reference count of one channel sender.

use crate::woken::WokenOnly;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The stop signal and the open-connection count of one `serve` loop.
pub struct Drain {
    stop: watch::Sender<()>,
    open: mpsc::Sender<()>,
    all_closed: mpsc::Receiver<()>,
}

impl Drain {
    pub fn new() -> Drain {
        let (open, all_closed) = mpsc::channel(1);
        Drain {
            stop: watch::channel(()).0,
            open,
            all_closed,
        }
    }

    /// Serve `conn` until it ends; once [`Drain::close`] is called, `graceful` asks it
    /// to finish what is in flight.
    pub fn watch<C, E>(
        &self,
        conn: C,
        graceful: impl FnOnce(Pin<&mut C>) + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        C: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let open = self.open.clone();
        let mut stop_rx = self.stop.subscribe();
        async move {
            let stop = WokenOnly::new(async move {
                let _ = stop_rx.changed().await;
            });
            tokio::pin!(conn);
            tokio::select! {
                biased;
                r = conn.as_mut() => return ended(r),
                _ = stop => graceful(conn.as_mut()),
            }
            ended(conn.await);
            drop(open);
        }
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.open.strong_count() - 1
    }

    /// Signal every connection to finish, and wait up to `limit` for them to close.
    pub async fn close(self, limit: Duration) -> bool {
        let Drain {
            stop,
            open,
            mut all_closed,
        } = self;
        let _ = stop.send(());
        drop(open);
        tokio::time::timeout(limit, all_closed.recv()).await.is_ok()
    }
}

fn ended<E: std::fmt::Display>(r: Result<(), E>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
