//! Waiting for a condition to hold, instead of sleeping and hoping.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] checks its condition.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Checks `condition` every few milliseconds until it holds; panics, naming
/// `what`, if it still does not after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// [`wait_until`] for a condition a blocking test can check.
pub fn wait_until_blocking(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(POLL_EVERY);
    }
}
