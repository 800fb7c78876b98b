//! Request rate limits: a token bucket per token name (`[serve] rate_limit` requests per
//! minute, bursts up to that many), and one per client address for refused sign-ins
//! (`[serve] failed_auth_limit`). Over a limit: 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Says in `response`'s `Retry-After` to wait `wait` (whole seconds, rounded up, at least 1).
pub(crate) fn retry_after(response: &mut axum::response::Response, wait: Duration) {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every token seen.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `token`'s bucket: `Ok`, or how long until one is allowed.
    pub(crate) fn take(&self, token: &str) -> Result<(), Duration> {
        self.bucket(token, true)
    }

    /// Whether `key`'s bucket has a request left, without taking it: `Ok`, or how long until
    /// it has.
    pub(crate) fn check(&self, key: &str) -> Result<(), Duration> {
        self.bucket(key, false)
    }

    fn bucket(&self, key: &str, take: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let cap = f64::from(self.per_minute);
        let per_sec = cap / 60.0;
        let refill =
            |b: &Bucket| (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(cap);
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !take {
            // An unknown key has a full bucket; looking does not add one.
            return match map.get(key) {
                Some(b) if refill(b) < 1.0 => {
                    Err(Duration::from_secs_f64((1.0 - refill(b)) / per_sec))
                }
                _ => Ok(()),
            };
        }
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            // Keys come from clients (addresses): buckets full again are forgotten, and if
            // that is not enough the oldest go, so many addresses cannot grow the map.
            map.retain(|_, b| refill(b) < cap);
            if map.len() >= MAX_BUCKETS {
                let mut ages: Vec<Instant> = map.values().map(|b| b.at).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                map.retain(|_, b| b.at > cutoff);
            }
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        b.tokens = refill(b);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }
}

/// Buckets kept at most (one per token, or per client address).
const MAX_BUCKETS: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_over_its_rate_waits_and_others_do_not() {
        let l = RateLimiter::new(3);
        for _ in 0..3 {
            assert!(l.take("a").is_ok());
        }
        let wait = l.take("a").unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(l.take("b").is_ok());
    }

    #[test]
    fn checking_takes_nothing_and_many_keys_do_not_grow_the_map_without_bound() {
        let l = RateLimiter::new(2);
        assert!(l.check("a").is_ok());
        assert!(l.take("a").is_ok());
        assert!(l.check("a").is_ok());
        assert!(l.take("a").is_ok());
        assert!(l.check("a").is_err(), "both taken");
        assert!(l.take("a").is_err());
        for i in 0..(MAX_BUCKETS * 2) {
            let _ = l.take(&format!("10.0.{}.{}", i / 256, i % 256));
        }
        let n = l.buckets.lock().unwrap().len();
        assert!(n <= MAX_BUCKETS, "{n} buckets");
    }
}
