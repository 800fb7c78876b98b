//! Per-host rate limiting: a token bucket per host that also honours `Retry-After`.
//!
//! Every HTTP request made through [`crate::Context`] takes a token from its host's bucket first.
//! A bucket refills at `rate_limit` tokens per second up to `burst` tokens. Hosts without a
//! configured rate are not limited, but any host can be paused: a `429 Too Many Requests` (or a
//! `503`) with `Retry-After` stops every request to that host until the delay has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate: `per_second` requests per second on average, `burst` at once after a quiet period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second (must be > 0).
    pub per_second: f64,
    /// Bucket size: requests that may go out back to back. At least 1.
    pub burst: f64,
}

impl Rate {
    /// `per_second` requests per second with a burst of `max(1, per_second)`.
    pub fn per_second(per_second: f64) -> Self {
        Rate {
            per_second,
            burst: per_second.max(1.0),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    rate: Option<Rate>,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

/// Token buckets for all hosts seen so far.
#[derive(Debug, Default)]
pub struct HostLimiter {
    default: Option<Rate>,
    hosts: HashMap<String, Rate>,
    buckets: Mutex<HashMap<String, Bucket>>,
    max_pause: Option<Duration>,
}

impl HostLimiter {
    /// A limiter applying `default` to every host without its own rate (`None`: unlimited).
    pub fn new(default: Option<Rate>) -> Self {
        HostLimiter {
            default,
            ..Self::default()
        }
    }

    /// Sets the rate of one host (`host` or `host:port`, as in [`crate::http`]'s host keys).
    pub fn set_host(&mut self, host: impl Into<String>, rate: Rate) {
        self.hosts.insert(host.into(), rate);
    }

    /// Caps how long a single `Retry-After` may pause a host (default: no cap).
    pub fn set_max_pause(&mut self, max: Duration) {
        self.max_pause = Some(max);
    }

    fn rate_for(&self, host: &str) -> Option<Rate> {
        if let Some(r) = self.hosts.get(host) {
            return Some(*r);
        }
        // "host:port" falls back to "host".
        if let Some((h, _)) = host.rsplit_once(':') {
            if let Some(r) = self.hosts.get(h) {
                return Some(*r);
            }
        }
        self.default
    }

    /// Waits until a request to `host` may go out, and takes a token.
    pub async fn acquire(&self, host: &str) {
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let bucket = buckets.entry(host.to_string()).or_insert_with(|| {
                    let rate = self.rate_for(host);
                    Bucket {
                        rate,
                        tokens: rate.map(|r| r.burst.max(1.0)).unwrap_or(0.0),
                        last: now,
                        paused_until: None,
                    }
                });
                match bucket.paused_until {
                    Some(until) if until > now => until - now,
                    _ => {
                        bucket.paused_until = None;
                        match bucket.rate {
                            None => return,
                            Some(rate) => {
                                let elapsed = now.saturating_duration_since(bucket.last);
                                bucket.last = now;
                                bucket.tokens = (bucket.tokens
                                    + elapsed.as_secs_f64() * rate.per_second)
                                    .min(rate.burst.max(1.0));
                                if bucket.tokens >= 1.0 {
                                    bucket.tokens -= 1.0;
                                    return;
                                }
                                Duration::from_secs_f64(
                                    (1.0 - bucket.tokens) / rate.per_second.max(1e-9),
                                )
                            }
                        }
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Pauses every request to `host` for `delay` (from a `Retry-After`). A longer pause already
    /// in force is kept.
    pub fn pause(&self, host: &str, delay: Duration) {
        let delay = match self.max_pause {
            Some(max) => delay.min(max),
            None => delay,
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let rate = self.rate_for(host);
        let bucket = buckets.entry(host.to_string()).or_insert_with(|| Bucket {
            rate,
            tokens: rate.map(|r| r.burst.max(1.0)).unwrap_or(0.0),
            last: now,
            paused_until: None,
        });
        let until = now + delay;
        if bucket.paused_until.is_none_or(|p| p < until) {
            bucket.paused_until = Some(until);
        }
        tracing::info!(
            host,
            delay_ms = delay.as_millis() as u64,
            "pausing host (Retry-After)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_spaces_requests_after_the_burst() {
        let mut l = HostLimiter::new(None);
        l.set_host(
            "a",
            Rate {
                per_second: 10.0,
                burst: 2.0,
            },
        );
        let start = Instant::now();
        for _ in 0..6 {
            l.acquire("a:80").await;
        }
        // 2 from the burst, then 4 more at 10/s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_millis(450),
            "{took:?}"
        );
        // Unlimited host: no wait.
        let start = Instant::now();
        for _ in 0..100 {
            l.acquire("b").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_blocks_the_host_only() {
        let l = HostLimiter::new(None);
        l.pause("slow", Duration::from_secs(3));
        let start = Instant::now();
        l.acquire("other").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        l.acquire("slow").await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
