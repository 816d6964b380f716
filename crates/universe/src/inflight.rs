//! A node's bound on bytes in flight: value bytes being received from peers and origins
//! that no cache counts yet. The caches' budgets bound what is kept; this bounds what is
//! on its way in, so that many concurrent large fetches wait (or fail as overloaded)
//! instead of allocating past the node's memory.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::{Error, ErrorKind};

/// Bytes per permit: the semaphore counts KiB, so that a `u32` permit count spans 4 TiB.
const GRANULE: u64 = 1024;

/// Smallest bound a universe derives from its galaxies' budgets: 8 MiB.
pub const MIN_IN_FLIGHT_BYTES: u64 = 8 << 20;

/// Bytes in flight a node allows, shared by its fetchers and its backends; cheap to clone
/// (every clone is the same bound).
///
/// A reader [reserves](Self::reserve) bytes before it allocates them and holds the
/// [`Reservation`] until the value is handed over (to a cache, which counts it from then
/// on, or to the caller). A reservation waits, first come first served, until the bytes
/// are free or the deadline passes, which fails it as [`ErrorKind::Overloaded`] (a 503 on
/// the wire). A single reservation larger than the whole bound waits until nothing else
/// is in flight and then takes all of it, so one oversized value still arrives, alone.
#[derive(Clone)]
pub struct InFlight {
    shared: Arc<Shared>,
}

struct Shared {
    permits: Arc<Semaphore>,
    /// The bound, in granules.
    limit: AtomicU64,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("limit_bytes", &self.limit_bytes())
            .field("reserved_bytes", &self.reserved_bytes())
            .finish()
    }
}

impl InFlight {
    /// A bound of `bytes` (rounded up to whole KiB, at least one).
    pub fn new(bytes: u64) -> Self {
        let granules = granules(bytes).clamp(1, max_granules());
        InFlight {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(to_usize(granules))),
                limit: AtomicU64::new(granules),
            }),
        }
    }

    /// No bound worth the name (the semaphore's largest count): for tests and for
    /// embedders who bound memory some other way.
    pub fn unbounded() -> Self {
        Self::new(max_granules().saturating_mul(GRANULE))
    }

    /// The bound, in bytes.
    pub fn limit_bytes(&self) -> u64 {
        self.shared
            .limit
            .load(Ordering::Relaxed)
            .saturating_mul(GRANULE)
    }

    /// Bytes reserved now (a snapshot, in whole KiB).
    pub fn reserved_bytes(&self) -> u64 {
        let free = self.shared.permits.available_permits() as u64;
        self.shared
            .limit
            .load(Ordering::Relaxed)
            .saturating_sub(free)
            .saturating_mul(GRANULE)
    }

    /// Raise the bound to `bytes`; a lower figure leaves it as it is (bytes reserved
    /// cannot be taken back).
    pub fn raise_to(&self, bytes: u64) {
        let wanted = granules(bytes).min(max_granules());
        let old = self.shared.limit.fetch_max(wanted, Ordering::Relaxed);
        if wanted > old {
            self.shared.permits.add_permits(to_usize(wanted - old));
        }
    }

    /// An empty reservation, to [grow](Reservation::grow) as bytes arrive.
    pub fn empty(&self) -> Reservation {
        Reservation {
            in_flight: self.clone(),
            permit: None,
        }
    }

    /// Reserve `bytes` if they are free now (capped at the bound, as [`Reservation::grow`]).
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let limit = self.shared.limit.load(Ordering::Relaxed);
        let wanted = granules(bytes).min(limit);
        let permit = match u32::try_from(wanted) {
            Ok(0) => None,
            Ok(n) => Some(
                Arc::clone(&self.shared.permits)
                    .try_acquire_many_owned(n)
                    .ok()?,
            ),
            Err(_) => return None,
        };
        Some(Reservation {
            in_flight: self.clone(),
            permit,
        })
    }

    /// Reserve `bytes`, waiting until they are free or `deadline` passes.
    pub async fn reserve(&self, bytes: u64, deadline: Instant) -> Result<Reservation, Error> {
        let mut reservation = self.empty();
        reservation.grow(bytes, deadline).await?;
        Ok(reservation)
    }
}

/// Bytes held against an [`InFlight`] bound, released when dropped.
#[must_use = "the bytes are released when the reservation is dropped"]
pub struct Reservation {
    in_flight: InFlight,
    permit: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Reservation {
    /// The bytes held (in whole KiB).
    pub fn bytes(&self) -> u64 {
        self.permit
            .as_ref()
            .map_or(0, |p| (p.num_permits() as u64).saturating_mul(GRANULE))
    }

    /// Hold `more` bytes too, waiting until they are free or `deadline` passes. On
    /// failure the bytes held so far stay held, until the reservation is dropped.
    ///
    /// The total is capped at the bound: a reservation never holds more than all of it.
    pub async fn grow(&mut self, more: u64, deadline: Instant) -> Result<(), Error> {
        let shared = &self.in_flight.shared;
        let held = self.permit.as_ref().map_or(0, |p| p.num_permits() as u64);
        let limit = shared.limit.load(Ordering::Relaxed);
        let wanted = granules(more).min(limit.saturating_sub(held));
        if wanted == 0 {
            return Ok(());
        }
        let n = u32::try_from(wanted).unwrap_or(u32::MAX);
        let acquire = Arc::clone(&shared.permits).acquire_many_owned(n);
        let permit = match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => {
                return Err(Error::new(
                    ErrorKind::Overloaded,
                    format!(
                        "{} bytes in flight, the node's bound ({} bytes), stayed in use \
                         until the deadline",
                        self.in_flight.reserved_bytes(),
                        self.in_flight.limit_bytes(),
                    ),
                ));
            }
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            slot @ None => *slot = Some(permit),
        }
        Ok(())
    }
}

fn granules(bytes: u64) -> u64 {
    bytes.div_ceil(GRANULE)
}

/// The most granules one semaphore can count, and one `acquire_many` can take.
fn max_granules() -> u64 {
    (Semaphore::MAX_PERMITS as u64).min(u64::from(u32::MAX))
}

/// `granules` as a permit count: it never exceeds [`max_granules`], which fits.
fn to_usize(granules: u64) -> usize {
    usize::try_from(granules).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_wait_for_the_bytes_and_release_them_when_dropped() {
        let bound = InFlight::new(10 * 1024);
        let first = bound.reserve(6 * 1024, soon()).await.unwrap();
        assert_eq!(bound.reserved_bytes(), 6 * 1024);

        // 6 KiB more do not fit beside the first 6: the second waits, in the background.
        let waiter = tokio::spawn({
            let bound = bound.clone();
            async move { bound.reserve(6 * 1024, soon()).await.map(|r| r.bytes()) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the second reservation must wait");
        drop(first);
        assert_eq!(waiter.await.unwrap().unwrap(), 6 * 1024);
        assert_eq!(bound.reserved_bytes(), 0, "both released");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_that_cannot_fit_by_its_deadline_is_overloaded() {
        let bound = InFlight::new(4096);
        let _all = bound.reserve(4096, soon()).await.unwrap();
        let e = bound
            .reserve(1, Instant::now() + Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert!(e.to_string().contains("4096 bytes"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn trying_takes_only_free_bytes() {
        let bound = InFlight::new(4096);
        let held = bound.try_reserve(3000).unwrap();
        assert_eq!(held.bytes(), 3072);
        assert!(bound.try_reserve(2048).is_none(), "1 KiB is free, not 2");
        assert_eq!(bound.try_reserve(0).unwrap().bytes(), 0);
        drop(held);
        assert_eq!(bound.try_reserve(1 << 40).unwrap().bytes(), 4096, "capped");
    }

    #[tokio::test(start_paused = true)]
    async fn growing_holds_more_and_caps_at_the_bound() {
        let bound = InFlight::new(8 * 1024);
        let mut r = bound.empty();
        r.grow(1, soon()).await.unwrap();
        assert_eq!(r.bytes(), 1024, "rounded up to a whole KiB");
        r.grow(3000, soon()).await.unwrap();
        assert_eq!(r.bytes(), 4 * 1024);
        // Larger than the whole bound: takes all of it rather than waiting forever.
        r.grow(1 << 30, soon()).await.unwrap();
        assert_eq!(r.bytes(), 8 * 1024);
        assert_eq!(bound.reserved_bytes(), 8 * 1024);
        drop(r);
        assert_eq!(bound.reserved_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn raising_the_bound_wakes_waiters_and_never_lowers_it() {
        let bound = InFlight::new(1024);
        let _held = bound.reserve(1024, soon()).await.unwrap();
        let waiter = tokio::spawn({
            let bound = bound.clone();
            async move { bound.reserve(1024, soon()).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        bound.raise_to(2048);
        assert!(waiter.await.unwrap());
        bound.raise_to(512);
        assert_eq!(bound.limit_bytes(), 2048);
    }
}
