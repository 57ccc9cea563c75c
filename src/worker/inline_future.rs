//! A handler's future without a box when it is small.
//!
//! The router holds handlers of many types behind one pointer type, so what a handler
//! returns has to be type-erased. A `Box<dyn Future>` does that at the price of an
//! allocation and a free per request (often a free on another I/O thread, as connection
//! tasks move). [`HandlerFuture`] erases the type the same way (a table of two functions)
//! but keeps a future of up to [`INLINE_BYTES`] bytes in place, inside the request's own
//! future, which hyper has already allocated once per connection. A handler like
//! `|_req| async { text("hello") }` (nothing captured: a one-byte future) or one that
//! captures a few handles allocates nothing; a bigger future (one holding the whole
//! request, such as an `async fn(Request)`) is boxed, as before.

use super::body::Response;
use std::future::Future;
use std::marker::{PhantomData, PhantomPinned};
use std::mem::{align_of, size_of, MaybeUninit};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The largest future kept in place. Every request future carries this much room, and
/// hyper moves that future a few times before polling it, so the room is kept to what
/// small handlers need (eight words: a handful of captured handles).
pub const INLINE_BYTES: usize = 64;

type Slot = MaybeUninit<[usize; INLINE_BYTES / size_of::<usize>()]>;

/// How to poll and drop the future in the slot, for its concrete type.
struct VTable {
    poll: unsafe fn(*mut (), &mut Context<'_>) -> Poll<Response>,
    drop: unsafe fn(*mut ()),
}

/// A type-erased `Future<Output = Response> + Send`, stored in place when small.
pub struct HandlerFuture {
    vtable: &'static VTable,
    /// The future (of the type `vtable` was made for), or a `Pin<Box<_>>` of it.
    slot: Slot,
    /// The slot holds a future not yet finished or dropped.
    live: bool,
    /// The future in the slot may be self-referential: it must not move once polled.
    _pinned: PhantomPinned,
    /// Neither `Send` nor `Sync` by default: the slot's type is erased (`Send` is
    /// restored below, from what the constructor requires).
    _erased: PhantomData<*mut ()>,
}

// SAFETY: sending a `HandlerFuture` sends what it owns: the `&'static VTable` (plain
// function pointers, `Send`), a `bool`, and the slot, which holds either an `F` or a
// `Pin<Box<F>>`. The only constructor (`new`, through `in_place`) requires `F: Send`, and
// `Pin<Box<F>>` is `Send` for such an `F`, so the slot's value may move to another thread;
// the vtable's functions take it by pointer and touch nothing thread-local of their own.
// It is deliberately not `Sync`: `&HandlerFuture` gives no access to the future anyway, and
// `F` need not be `Sync`.
unsafe impl Send for HandlerFuture {}

impl HandlerFuture {
    /// Erase `f`: in place if it fits, boxed otherwise.
    pub fn new<F>(f: F) -> HandlerFuture
    where
        F: Future<Output = Response> + Send + 'static,
    {
        if fits::<F>() {
            HandlerFuture::in_place(f)
        } else {
            HandlerFuture::in_place(Box::pin(f))
        }
    }

    fn in_place<F>(f: F) -> HandlerFuture
    where
        F: Future<Output = Response> + Send + 'static,
    {
        assert!(fits::<F>(), "a future that does not fit is boxed first");
        let mut slot = Slot::uninit();
        // SAFETY: `slot` is a local `MaybeUninit`, so the pointer is valid for writes of
        // `size_of::<Slot>()` bytes and aligned to `align_of::<Slot>()`; the assert above
        // made sure `F` is no bigger and needs no stricter alignment, so the cast pointer is
        // valid and aligned for an `F`. The slot holds no value yet, so nothing is
        // overwritten without being dropped. From here `live` is true and `vtable` is `F`'s:
        // the invariant every other unsafe block relies on ("`live` ⇒ the slot holds an
        // initialized `F` of the vtable's type").
        unsafe { slot.as_mut_ptr().cast::<F>().write(f) };
        HandlerFuture {
            vtable: &Erased::<F>::VTABLE,
            slot,
            live: true,
            _pinned: PhantomPinned,
            _erased: PhantomData,
        }
    }
}

const fn fits<F>() -> bool {
    size_of::<F>() <= size_of::<Slot>() && align_of::<F>() <= align_of::<Slot>()
}

struct Erased<F>(PhantomData<F>);

impl<F: Future<Output = Response>> Erased<F> {
    const VTABLE: VTable = VTable {
        poll: Erased::<F>::poll_at,
        drop: Erased::<F>::drop_at,
    };

    /// # Safety
    /// `p` points to a live `F` that stays where it is until it is dropped.
    unsafe fn poll_at(p: *mut (), cx: &mut Context<'_>) -> Poll<Response> {
        // SAFETY: the caller guarantees `p` points to a live `F` (so the `&mut` is valid and
        // unique for this call: the caller derived `p` from its own `&mut`) and that it does
        // not move until dropped, which is what `Pin::new_unchecked` requires.
        let f = unsafe { Pin::new_unchecked(&mut *p.cast::<F>()) };
        f.poll(cx)
    }

    /// # Safety
    /// `p` points to a live `F`, never used again afterwards.
    unsafe fn drop_at(p: *mut ()) {
        // SAFETY: the caller guarantees `p` points to a live, aligned `F` that is not used
        // afterwards, so dropping it here runs its destructor exactly once; it is dropped
        // where it was pinned, as `Pin`'s drop guarantee asks.
        unsafe { p.cast::<F>().drop_in_place() }
    }
}

impl Future for HandlerFuture {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        // SAFETY: `this` is only used to read `live`/`vtable`, to write `live`, and to take
        // a pointer to the slot; nothing is moved out of or into the slot. So the slot's
        // future stays where `self` is pinned, which it will stay until it is dropped
        // (`HandlerFuture` is `!Unpin`, so safe code cannot move it out of its `Pin`).
        let this = unsafe { self.get_unchecked_mut() };
        assert!(this.live, "a handler future polled after it finished");
        let p = this.slot.as_mut_ptr().cast::<()>();
        // SAFETY: `live` (asserted), so by the invariant set in `in_place` the slot holds an
        // initialized future of the type `vtable.poll` was made for; it is pinned with
        // `self` (above); `p` comes from `this`, our unique borrow.
        let out = unsafe { (this.vtable.poll)(p, cx) };
        if out.is_ready() {
            // Cleared first: if dropping panics, `Drop` must not drop it again.
            this.live = false;
            // SAFETY: the future was live (it was just polled) and, `live` being false now,
            // neither `poll` nor `Drop` will touch it again; it is dropped where it is.
            unsafe { (this.vtable.drop)(p) };
        }
        out
    }
}

impl Drop for HandlerFuture {
    fn drop(&mut self) {
        if self.live {
            self.live = false;
            // SAFETY: `live`, so the slot holds an initialized future of `vtable`'s type
            // (`in_place`'s invariant); `live` is false now and `self` is going away, so it
            // is never used again. It is dropped in place: if it was pinned, `self` was, and
            // `Drop` runs before `self`'s memory is reused, as `Pin` guarantees. A future
            // whose `poll` panicked is still a valid value, so dropping it is sound too.
            unsafe { (self.vtable.drop)(self.slot.as_mut_ptr().cast()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::app::text;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its drops, so a test sees each future dropped exactly once.
    struct Dropped(Arc<AtomicUsize>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A future of `N` bytes of ballast that notes its address when polled.
    struct Where<const N: usize> {
        at: Arc<AtomicUsize>,
        _ballast: [u8; N],
    }

    impl<const N: usize> Future for Where<N> {
        type Output = Response;

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Response> {
            self.at
                .store(&*self as *const Self as usize, Ordering::SeqCst);
            Poll::Ready(text("here"))
        }
    }

    /// Where a `Where<N>` is polled, relative to its `HandlerFuture`: inside it or not.
    fn polled_inside<const N: usize>() -> bool {
        let at = Arc::new(AtomicUsize::new(0));
        let mut fut = Box::pin(HandlerFuture::new(Where::<N> {
            at: at.clone(),
            _ballast: [0; N],
        }));
        let start = &*fut as *const HandlerFuture as usize;
        let poll = fut
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()));
        assert!(poll.is_ready());
        let at = at.load(Ordering::SeqCst);
        assert_ne!(at, 0, "polled");
        (start..start + size_of::<HandlerFuture>()).contains(&at)
    }

    #[test]
    fn a_small_future_is_polled_in_place_and_a_big_one_in_a_box() {
        assert!(polled_inside::<8>());
        assert!(polled_inside::<{ INLINE_BYTES - size_of::<usize>() }>());
        assert!(!polled_inside::<INLINE_BYTES>());
        assert!(!polled_inside::<{ 4 * INLINE_BYTES }>());
    }

    #[tokio::test]
    async fn small_futures_stay_in_place_big_ones_are_boxed_and_both_run_and_drop_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let small = {
            let d = Dropped(drops.clone());
            async move {
                tokio::task::yield_now().await;
                drop(d);
                text("small")
            }
        };
        let big = {
            let d = Dropped(drops.clone());
            let ballast = [7u8; 4 * INLINE_BYTES];
            async move {
                tokio::task::yield_now().await;
                let _d = d;
                text(format!(
                    "big {}",
                    ballast.iter().map(|&b| b as usize).sum::<usize>()
                ))
            }
        };
        fn inline_of<F: Future>(_: &F) -> bool {
            fits::<F>()
        }
        assert!(inline_of(&small));
        assert!(!inline_of(&big));
        for (fut, want) in [
            (HandlerFuture::new(small), "small".to_string()),
            (
                HandlerFuture::new(big),
                format!("big {}", 7 * 4 * INLINE_BYTES),
            ),
        ] {
            use http_body_util::BodyExt;
            let body = fut.await.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, want.as_bytes());
        }
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_future_dropped_before_it_finishes_is_dropped_once_and_a_finished_one_is_not() {
        let drops = Arc::new(AtomicUsize::new(0));
        let pending = {
            let d = Dropped(drops.clone());
            async move {
                let _d = d;
                std::future::pending::<()>().await;
                text("never")
            }
        };
        let mut fut = Box::pin(HandlerFuture::new(pending));
        let waker = std::task::Waker::noop();
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(fut);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped with its holder");

        let d = Dropped(drops.clone());
        let mut done = Box::pin(HandlerFuture::new(async move {
            let _d = d;
            text("done")
        }));
        assert!(done
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "dropped as soon as it finished"
        );
        drop(done);
        assert_eq!(drops.load(Ordering::SeqCst), 2, "not dropped twice");
    }

    #[test]
    fn a_panicking_future_is_still_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = Dropped(drops.clone());
        let mut fut = Box::pin(HandlerFuture::new(async move {
            let _d = d;
            let bug: Option<Response> = std::hint::black_box(None);
            bug.expect("handler bug")
        }));
        let waker = std::task::Waker::noop();
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = fut.as_mut().poll(&mut Context::from_waker(waker));
        }));
        assert!(polled.is_err());
        // The async block dropped its locals while unwinding; dropping it again is a no-op.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(fut);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
