//! Benchmark guest: does nothing, so a call measures only the host's
//! per-call work (instance, store, WASI context) plus Rust's start-up.
fn main() {}
