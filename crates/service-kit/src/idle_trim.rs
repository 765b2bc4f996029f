//! Giving freed memory back to the kernel once a service goes idle.
//!
//! glibc's allocator keeps what large requests freed (a 16 MiB upload, a
//! decoded image, a big JSON answer) in its arenas for reuse, so a process
//! that served a burst stays that much bigger long after it. [`serve`]
//! counts the requests in flight with [`IdleTrim`]; once none has run for
//! [`IDLE_BEFORE_TRIM`], a task calls `malloc_trim(0)` on a blocking thread,
//! which hands every arena's free pages back. A service under steady load
//! never pays for it; an idle one pays once per burst (milliseconds).
//!
//! Trimming can only return whole free pages. [`tune_allocator`], called
//! once at start, keeps what a burst frees in such pages: glibc's
//! allocator then uses two arenas rather than one per thread that ever
//! allocated (each keeping its own scattered free space), and allocations
//! of 256 KiB and more always get their own mapping, returned when freed,
//! instead of glibc raising that threshold after the first large free and
//! keeping later large buffers in its arenas.
//!
//! Elsewhere than Linux with glibc, both do nothing.
//!
//! [`serve`]: crate::serve::serve

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use tokio::sync::Notify;

/// How long a service must have been idle before it trims.
pub const IDLE_BEFORE_TRIM: Duration = Duration::from_secs(1);

/// The requests in flight on one server, and the task that trims when they
/// stop.
#[derive(Clone)]
pub struct IdleTrim(Arc<Activity>);

impl Default for IdleTrim {
    fn default() -> Self {
        IdleTrim::after(IDLE_BEFORE_TRIM)
    }
}

struct Activity {
    /// How long to wait for quiet.
    idle_for: Duration,
    in_flight: AtomicUsize,
    /// Requests finished so far: a change means activity during the wait.
    finished: AtomicU64,
    /// Signalled when the last request in flight finishes.
    idle: Notify,
    /// Trims so far.
    trims: AtomicU64,
}

/// Decrements the count when a request's handler is done.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_one();
        }
    }
}

impl IdleTrim {
    /// Trims once no request has run for `idle_for`.
    pub fn after(idle_for: Duration) -> IdleTrim {
        IdleTrim(Arc::new(Activity {
            idle_for,
            in_flight: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            idle: Notify::new(),
            trims: AtomicU64::new(0),
        }))
    }

    /// How many times it has trimmed.
    pub fn trims(&self) -> u64 {
        self.0.trims.load(Ordering::Relaxed)
    }

    /// `app`, counting its requests here.
    pub fn layer(&self, app: Router) -> Router {
        let activity = self.0.clone();
        app.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                activity.in_flight.fetch_add(1, Ordering::AcqRel);
                let in_flight = InFlight(activity.clone());
                async move {
                    let response = next.run(request).await;
                    drop(in_flight);
                    response
                }
            },
        ))
    }

    /// Trims after each idle period, for as long as the task runs (the
    /// server aborts it when it stops).
    pub async fn run(self) {
        let activity = self.0;
        'bursts: loop {
            activity.idle.notified().await;
            loop {
                let seen = activity.finished.load(Ordering::Relaxed);
                tokio::time::sleep(activity.idle_for).await;
                if activity.in_flight.load(Ordering::Acquire) > 0 {
                    // Busy again: its last request will signal.
                    continue 'bursts;
                }
                if activity.finished.load(Ordering::Relaxed) == seen {
                    break;
                }
            }
            match tokio::task::spawn_blocking(trim).await {
                Ok(released) => tracing::debug!(released, "idle: gave freed memory back"),
                Err(err) => tracing::warn!(error = %err, "malloc_trim failed"),
            }
            activity.trims.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sets glibc's allocator up to give back what a burst freed (see the
/// module's doc): two arenas, and a fixed mmap threshold of 256 KiB. Call
/// it first thing in `main`, before any thread starts. What an operator
/// set in the environment (`GLIBC_TUNABLES`, `MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`) is left as it is.
pub fn tune_allocator() {
    let operator_set = [
        "GLIBC_TUNABLES",
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some());
    if !operator_set {
        set_allocator_options();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_allocator_options() {
    // SAFETY: mallopt only changes the allocator's parameters, under its
    // own lock; both values are in range.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_allocator_options() {}

/// Returns the allocator's free pages to the kernel; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim has no preconditions; it takes the allocator's
    // own locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `trims` until it reaches `count` (or fails after 10 s).
    async fn wait_for_trims(trim: &IdleTrim, count: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while trim.trims() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} trims",
                trim.trims()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn trims_once_per_burst_and_never_while_a_request_runs() {
        let idle_for = Duration::from_millis(50);
        let trim = IdleTrim::after(idle_for);
        let task = tokio::spawn(trim.clone().run());
        let begin = || {
            trim.0.in_flight.fetch_add(1, Ordering::AcqRel);
            InFlight(trim.0.clone())
        };
        // A request that runs for many idle periods: no trim meanwhile.
        let long = begin();
        tokio::time::sleep(idle_for * 4).await;
        assert_eq!(trim.trims(), 0);
        // Another starts, the first ends: still busy, still no trim.
        let short = begin();
        drop(long);
        tokio::time::sleep(idle_for * 4).await;
        assert_eq!(trim.trims(), 0);
        // The last one ends: one trim, then none without a new burst.
        drop(short);
        wait_for_trims(&trim, 1).await;
        tokio::time::sleep(idle_for * 4).await;
        assert_eq!(trim.trims(), 1);
        // The next burst gets its own.
        drop(begin());
        wait_for_trims(&trim, 2).await;
        task.abort();
    }
}
