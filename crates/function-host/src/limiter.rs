//! The memory limit of one call's store, shared by every host that runs
//! guests (functions here, components in `component-host`).

use wasmtime::ResourceLimiter;

/// Refuses memory growth past the limit and remembers that it did, so a
/// resulting crash is reported as a memory-limit failure rather than a
/// plain trap; keeps the most memory the guest had (wasmtime asks it for
/// the initial memory too).
#[derive(Debug)]
pub struct MemoryLimiter {
    max_bytes: usize,
    hit: bool,
    peak: usize,
}

impl MemoryLimiter {
    /// A limiter allowing each linear memory up to `max_bytes`.
    pub fn new(max_bytes: usize) -> MemoryLimiter {
        MemoryLimiter {
            max_bytes,
            hit: false,
            peak: 0,
        }
    }

    /// Whether growth past the limit was refused.
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// The largest memory size allowed so far, in bytes.
    pub fn peak(&self) -> usize {
        self.peak
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
