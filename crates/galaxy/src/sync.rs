//! The synchronisation primitives of the singleflight and the fence, swapped for
//! model-checked ones in a `--cfg shuttle` build.
//!
//! A normal build uses `std` and `tokio` as they are. Under `--cfg shuttle` the mutex is
//! shuttle's, and the one-shot result and the wake-up of a flight keep their real
//! implementations but gain scheduling points around each operation, so the scheduler can
//! run another task between reading a result and waiting for it, or between publishing a
//! result and waking the waiters: the gaps a lost wake-up hides in. See docs/ARCHITECTURE.md
//! (Testing) for how the model-checked tests run.

#[cfg(not(shuttle))]
pub(crate) use std::sync::{Mutex, MutexGuard, OnceLock};
#[cfg(not(shuttle))]
pub(crate) use tokio::sync::Notify;

#[cfg(shuttle)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};
#[cfg(shuttle)]
pub(crate) use shuttled::{Notify, OnceLock};

/// Runs `task` to its end on a task of its own, when there is a runtime to run it; without
/// one, drops it.
#[cfg(not(shuttle))]
pub(crate) fn spawn_detached(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// Runs `task` to its end on a task of its own, under the model checker's executor.
#[cfg(shuttle)]
pub(crate) fn spawn_detached(task: impl Future<Output = ()> + Send + 'static) {
    drop(shuttle::future::spawn(task));
}

#[cfg(shuttle)]
mod shuttled {
    use shuttle::sync::atomic::{AtomicBool, Ordering};

    /// A place where the model checker may switch tasks: touching a shuttle atomic is one.
    #[derive(Debug, Default)]
    struct Point(AtomicBool);

    impl Point {
        fn reach(&self) {
            self.0.load(Ordering::SeqCst);
        }
    }

    /// `std::sync::OnceLock`, with a scheduling point before a store and after a read.
    #[derive(Debug)]
    pub(crate) struct OnceLock<T> {
        value: std::sync::OnceLock<T>,
        point: Point,
    }

    impl<T> OnceLock<T> {
        pub(crate) fn new() -> Self {
            OnceLock {
                value: std::sync::OnceLock::new(),
                point: Point::default(),
            }
        }

        pub(crate) fn get(&self) -> Option<&T> {
            let value = self.value.get();
            self.point.reach();
            value
        }

        pub(crate) fn set(&self, value: T) -> Result<(), T> {
            self.point.reach();
            self.value.set(value)
        }
    }

    /// `tokio::sync::Notify`, with a scheduling point before each operation.
    #[derive(Debug)]
    pub(crate) struct Notify {
        inner: tokio::sync::Notify,
        point: Point,
    }

    impl Notify {
        pub(crate) fn new() -> Self {
            Notify {
                inner: tokio::sync::Notify::new(),
                point: Point::default(),
            }
        }

        pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
            self.point.reach();
            self.inner.notified()
        }

        pub(crate) fn notify_waiters(&self) {
            self.point.reach();
            self.inner.notify_waiters();
        }

        /// For the unit tests' gates, which share this module's `Notify`.
        #[cfg(test)]
        pub(crate) fn notify_one(&self) {
            self.point.reach();
            self.inner.notify_one();
        }
    }
}

#[cfg(all(test, shuttle))]
pub(crate) use galaxycache_universe::explore;
