//! The deadline clock: a thread that advances the engine's epoch every tick.
//!
//! Each call's store gets an epoch deadline of `ceil(deadline / tick)` ticks;
//! when the epoch passes it, the guest traps with `Trap::Interrupt` at its next
//! loop header or function entry, which the host reports as a timeout. The
//! thread stops when the [`EpochTicker`] is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

/// Owns the ticking thread; dropping it stops the thread.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    tick: Duration,
}

impl EpochTicker {
    /// Starts a thread that increments `engine`'s epoch every `tick`.
    pub fn start(engine: &Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn({
                let engine = engine.clone();
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
            tick,
        })
    }

    /// The number of ticks that covers `deadline` (at least one, plus one for
    /// the partly elapsed current tick).
    pub fn ticks_for(&self, deadline: Duration) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        let ticks = deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX - 1).max(1) + 1
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
