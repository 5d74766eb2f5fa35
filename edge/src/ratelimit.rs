//! A client's inbound message rate, as a token bucket in pure code: `burst`
//! messages at once, refilled at `rate` per second. The clock is passed in.

use std::time::Instant;

/// Default sustained messages per second from one client.
pub const DEFAULT_RATE: f64 = 1000.0;
/// Default burst of messages from one client.
pub const DEFAULT_BURST: f64 = 1000.0;

#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket; `rate` ≤ 0 means no limit.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self { rate, burst: burst.max(1.0), tokens: burst.max(1.0), last: now }
    }

    /// Takes one message's token; false if the client is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10.0, 5.0, start);
        assert!((0..5).all(|_| limit.allow(start)));
        assert!(!limit.allow(start));
        // 100 ms at 10/s earns one more.
        assert!(limit.allow(start + Duration::from_millis(100)));
        assert!(!limit.allow(start + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = start + Duration::from_secs(60);
        assert!((0..5).all(|_| limit.allow(later)));
        assert!(!limit.allow(later));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let now = Instant::now();
        let mut limit = RateLimit::new(0.0, 1.0, now);
        assert!((0..10_000).all(|_| limit.allow(now)));
    }
}
