//! Timestamps in payloads and latency percentiles.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

pub fn since(sent_nanos: u128) -> Duration {
    Duration::from_nanos(now_nanos().saturating_sub(sent_nanos) as u64)
}

pub fn summary(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(0.999)),
        ms(samples[samples.len() - 1])
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "p50 / p99" in milliseconds, of samples already sorted by [`summary`].
pub fn p50_p99(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    format!("{:.1} / {:.1} ms", ms(at(0.5)), ms(at(0.99)))
}
