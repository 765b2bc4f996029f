//! Timing samples for the benchmarks, shared by `function_host.rs` and
//! image-api's `classify.rs` (which includes this file by path).

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Timings of one measured operation.
pub struct Sample {
    /// The sorted timings.
    pub times: Vec<Duration>,
}

impl Sample {
    /// Runs `op` a few times to warm up, then `iterations` timed times.
    pub fn measure(iterations: usize, mut op: impl FnMut()) -> Sample {
        for _ in 0..3.min(iterations) {
            op(); // warm caches, the allocator and the instance pool
        }
        let mut times: Vec<Duration> = (0..iterations)
            .map(|_| {
                let start = Instant::now();
                op();
                start.elapsed()
            })
            .collect();
        times.sort();
        Sample { times }
    }

    /// The `q` quantile (0.5 is the median).
    pub fn quantile(&self, q: f64) -> Duration {
        let index = ((self.times.len() - 1) as f64 * q).round() as usize;
        self.times[index]
    }

    /// The median.
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// A Markdown row: label, median, p10, p90.
    pub fn row(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {} | {} |",
            fmt(self.median()),
            fmt(self.quantile(0.1)),
            fmt(self.quantile(0.9))
        )
    }
}

/// A duration in µs or ms.
pub fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else {
        format!("{:.2} ms", us / 1e3)
    }
}

/// `a / b`.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
