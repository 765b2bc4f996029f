//! Test-only guest: prints the wall clock, the monotonic clock and a
//! number drawn from WASI's random source, so tests can see whether two
//! calls can be told apart (they cannot in a strict sandbox).
use std::hash::BuildHasher;
fn main() {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let started = std::time::Instant::now();
    let elapsed = started.elapsed().as_nanos();
    // `RandomState` keys its hasher from the random source.
    let random = std::collections::hash_map::RandomState::new().hash_one(0u64);
    println!("wall={wall} elapsed={elapsed} random={random}");
}
