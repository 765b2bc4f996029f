//! The guests' decode path on arbitrary bytes: what `grayscale` and
//! `classify` do with an upload before anything else. Any outcome is fine
//! but a panic (in the guest, a trap), a hang or unbounded memory.
#![no_main]

use image_input::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Smaller than the services' limits, so a bomb that slips past them
    // shows up as libFuzzer's out-of-memory or timeout, not a slow run.
    let limits = Limits {
        max_pixels: 4_000_000,
        max_alloc: 64 << 20,
        ..Limits::default()
    };
    if let Ok((output, _format)) = grayscale::grayscale(data, &limits) {
        assert!(!output.is_empty());
    }
    // The largest model's side: the most work per photo.
    let side = classify::MODELS.iter().map(|m| m.side).max().unwrap_or(224);
    if let Ok(tensor) = classify::preprocess(data, &limits, side) {
        assert_eq!(tensor.len(), 3 * side * side);
    }
});
