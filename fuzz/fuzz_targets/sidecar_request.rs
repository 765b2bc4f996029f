//! Fuzz target: the sidecar's HTTP API on arbitrary requests, through its
//! real router. The harness (input layout, setup and the check on every
//! answer) is `sidecar_harness.rs`, which the sidecar's tests also run on
//! the committed seeds.
#![no_main]

#[path = "sidecar_harness.rs"]
mod sidecar_harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sidecar_harness::check(data));
