//! Exponential backoff with jitter.

use std::time::Duration;

/// Delays between attempts: `base * 2^(n-1)` capped at `max`, with "equal jitter" (a random
/// point in the upper half of the delay, so concurrent keys spread out). A `Retry-After` from the
/// server is honoured when longer, up to `max_retry_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the second attempt (before jitter).
    pub base: Duration,
    /// Longest computed delay.
    pub max: Duration,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Backoff {
    /// A backoff from `base` doubling up to `max`; `Retry-After` honoured up to 5 minutes.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            max_retry_after: super::DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.max.max(self.base));
        let half = full / 2;
        let jitter_ns = fastrand::u64(0..=half.as_nanos().min(u128::from(u64::MAX)) as u64);
        let computed = half + Duration::from_nanos(jitter_ns);
        match retry_after {
            Some(ra) => computed.max(ra.min(self.max_retry_after)),
            None => computed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..200 {
            let d1 = b.delay(1, None);
            assert!(
                d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100),
                "{d1:?}"
            );
            let d3 = b.delay(3, None);
            assert!(
                d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400),
                "{d3:?}"
            );
            let d10 = b.delay(10, None);
            assert!(
                d10 >= Duration::from_millis(500) && d10 <= Duration::from_secs(1),
                "{d10:?}"
            );
        }
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| b.delay(4, None)).collect();
        assert!(distinct.len() > 10, "jitter should spread delays");
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(300)
        );
        assert!(b.delay(u32::MAX, None) <= Duration::from_secs(1));
    }
}
