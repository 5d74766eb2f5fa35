//! Timestamps in payloads and latency percentiles.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Wall-clock time, so stamps compare across the load generator's processes.
pub fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

pub fn since(sent_nanos: u128) -> Duration {
    Duration::from_nanos(now_nanos().saturating_sub(sent_nanos) as u64)
}

/// A published payload: `INDEX SENT_NANOS FILLER`.
pub fn stamped(index: usize, filler: &str) -> String {
    format!("{index} {} {filler}", now_nanos())
}

/// The index and send time of a [`stamped`] payload.
pub fn parse_stamped(text: &str) -> Option<(usize, u128)> {
    let mut parts = text.splitn(3, ' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q) as usize]);
        Self {
            samples: samples.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(samples[samples.len() - 1]),
        }
    }

    /// "p50 / p99" for a table cell.
    pub fn short(&self) -> String {
        if self.samples == 0 { "-".into() } else { format!("{:.1} / {:.1} ms", self.p50_ms, self.p99_ms) }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.samples == 0 {
            return f.write_str("no samples");
        }
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_payloads_parse_back() {
        let text = stamped(42, "xxxx");
        let (index, sent) = parse_stamped(&text).unwrap();
        assert_eq!(index, 42);
        assert!(sent <= now_nanos());
        assert_eq!(parse_stamped("garbage"), None);
    }

    #[test]
    fn percentiles_of_a_known_set() {
        let mut samples: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.samples, l.p50_ms, l.p99_ms, l.max_ms), (1000, 500.0, 990.0, 1000.0));
        assert_eq!(Latency::of(&mut []).short(), "-");
    }
}
