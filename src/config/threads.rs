//! The few places the loader uses more than one thread (a configuration of 100,000 pools
//! is checked in about 2 s only on every core; issue 12), and the two rules they share:
//! a panic on a helper thread is the caller's panic, and a large tree is freed aside.

use std::thread::ScopedJoinHandle;

/// The value a scoped thread returned; its panic, if it panicked, goes on here.
pub fn joined<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Values bigger than this many bytes of YAML are freed on a thread of their own.
pub const DROP_ASIDE_ABOVE: usize = 1 << 20;

/// Free `value` on a thread of its own: the tree and the raw types of a 22 MB file take
/// about 0.2 s to free, which the caller need not wait for.
pub fn drop_aside<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new()
        .name("config-free".into())
        .spawn(move || drop(value));
    // No thread to be had: the closure, and the value in it, was freed here.
    if let Err(e) = spawned {
        tracing::debug!("freeing the parsed configuration here: {e}");
    }
}
