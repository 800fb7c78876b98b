//! Per-host rate limiting, the wait before each HTTP request: a token bucket per host that also
//! honours `Retry-After`.
//!
//! Every HTTP request made through [`crate::Context`] takes a token from its host's bucket first.
//! A bucket refills at `rate_limit` tokens per second up to `burst` tokens. Hosts without a
//! configured rate are not limited, but any host can be paused: a `429 Too Many Requests` (or a
//! `503`) with `Retry-After` stops every request to that host until the delay has passed.
//!
//! It also tracks whether a host can be reached at all. After `run.unreachable_after`
//! (default 20) consecutive connection failures to one host, with no response in between, the
//! host is paused for `run.unreachable_pause` (default 10 s); when a request sent after that
//! pause fails to connect too, the host is marked unreachable: requests to it fail at once and
//! the executor starts no new keys, ending the run early (see [`HostLimiter::unreachable`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
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
    /// With a fleet budget: not before this is the fleet asked again about this host.
    next_ask: Option<Instant>,
}

/// A budget several processes share (the workers of a queue, on any number of machines): a
/// host's configured rate holds for all of them together, and a pause one of them is told
/// (`429` with `Retry-After`) holds for all. Set with [`HostLimiter::set_fleet`].
///
/// Calls block (they may ask a database); the limiter makes them on a blocking thread.
pub trait FleetBudget: std::fmt::Debug + Send + Sync {
    /// Takes up to `want` tokens of `host`'s shared bucket (refilling at `rate`); with `rate`
    /// `None` (a host without a limit) takes nothing and only reports a pause. Returns the
    /// tokens granted and how long to wait before asking again when none were.
    fn grant(&self, host: &str, rate: Option<Rate>, want: f64) -> FleetGrant;

    /// Pauses `host` for every process sharing the budget, for `delay`.
    fn pause(&self, host: &str, delay: Duration);
}

/// What [`FleetBudget::grant`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FleetGrant {
    /// Tokens granted (whole requests).
    pub tokens: f64,
    /// How long to wait before asking again (a pause, or the time the bucket needs to refill).
    pub wait: Duration,
}

/// How much of a host's rate one grant takes: a fifth of a second's worth (at least one
/// request), so grants stay small next to what all workers share.
const GRANT_SECONDS: f64 = 0.2;

/// How often a host without a rate is checked for a fleet-wide pause.
const FLEET_PAUSE_CHECK: Duration = Duration::from_secs(1);

/// Token buckets for all hosts seen so far.
#[derive(Debug, Default)]
pub struct HostLimiter {
    default: Option<Rate>,
    hosts: HashMap<String, Rate>,
    buckets: Mutex<HashMap<String, Bucket>>,
    max_pause: Option<Duration>,
    reach: Mutex<Reach>,
    /// Whether `reach.down` is set (read on every executor step without the lock).
    any_down: std::sync::atomic::AtomicBool,
    unreachable_after: u32,
    unreachable_pause: Duration,
    /// A budget shared with other processes, if any.
    fleet: OnceLock<Arc<dyn FleetBudget>>,
    /// One grant request in flight at a time.
    asking: tokio::sync::Mutex<()>,
}

/// Default consecutive connection failures to one host before it is paused.
pub const DEFAULT_UNREACHABLE_AFTER: u32 = 20;
/// Default pause of a host after [`DEFAULT_UNREACHABLE_AFTER`] connection failures.
pub const DEFAULT_UNREACHABLE_PAUSE: Duration = Duration::from_secs(10);

/// Connection health of every host.
#[derive(Debug, Default)]
struct Reach {
    hosts: HashMap<String, HostReach>,
    /// The first host found unreachable, with its consecutive failures.
    down: Option<(String, u32)>,
}

#[derive(Debug, Default)]
struct HostReach {
    /// Connection failures since the last response.
    failures: u32,
    /// End of the pause imposed after `unreachable_after` failures.
    paused_until: Option<Instant>,
}

impl HostLimiter {
    /// A limiter applying `default` to every host without its own rate (`None`: unlimited).
    pub fn new(default: Option<Rate>) -> Self {
        HostLimiter {
            default,
            unreachable_after: DEFAULT_UNREACHABLE_AFTER,
            unreachable_pause: DEFAULT_UNREACHABLE_PAUSE,
            ..Self::default()
        }
    }

    /// Sets after how many consecutive connection failures a host is paused (`pause`) and,
    /// failing again after that, marked unreachable. `failures` 0 turns the check off.
    pub fn set_unreachable(&mut self, failures: u32, pause: Duration) {
        self.unreachable_after = failures;
        self.unreachable_pause = pause;
    }

    fn reach(&self) -> std::sync::MutexGuard<'_, Reach> {
        self.reach.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a response from `host` (any status): it can be reached.
    pub fn reached(&self, host: &str) {
        let mut reach = self.reach();
        if let Some(h) = reach.hosts.get_mut(host) {
            h.failures = 0;
            h.paused_until = None;
        }
    }

    /// Records a connection failure to `host` of a request sent at `sent`. After
    /// `unreachable_after` of them in a row the host is paused; a failure of a request sent
    /// after that pause marks it unreachable ([`HostLimiter::unreachable`]).
    pub fn connect_failed(&self, host: &str, sent: Instant) {
        if self.unreachable_after == 0 {
            return;
        }
        let pause = {
            let mut reach = self.reach();
            if reach.down.is_some() {
                return;
            }
            let h = reach.hosts.entry(host.to_string()).or_default();
            h.failures = h.failures.saturating_add(1);
            match h.paused_until {
                Some(until) if sent >= until => {
                    let failures = h.failures;
                    reach.down = Some((host.to_string(), failures));
                    self.any_down
                        .store(true, std::sync::atomic::Ordering::Release);
                    drop(reach);
                    tracing::warn!(host, failures, "host unreachable: starting no new keys");
                    return;
                }
                Some(_) => false,
                None if h.failures >= self.unreachable_after => {
                    h.paused_until = Some(Instant::now() + self.unreachable_pause);
                    true
                }
                None => false,
            }
        };
        if pause {
            tracing::warn!(
                host,
                failures = self.unreachable_after,
                pause_ms = self.unreachable_pause.as_millis() as u64,
                "consecutive connection failures: pausing host"
            );
            self.pause_for(host, self.unreachable_pause, false);
        }
    }

    /// The host found unreachable (and its consecutive connection failures), if any.
    pub fn unreachable(&self) -> Option<(String, u32)> {
        if !self.any_down.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.reach().down.clone()
    }

    /// Forgets every connection failure (a new run starts with every host reachable).
    pub fn reset_reach(&self) {
        let mut reach = self.reach();
        *reach = Reach::default();
        self.any_down
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Sets the rate of one host (`host` or `host:port`, as in [`super::host_key`]).
    pub fn set_host(&mut self, host: impl Into<String>, rate: Rate) {
        self.hosts.insert(host.into(), rate);
    }

    /// Shares this limiter's rates and pauses with other processes through `budget` (set once;
    /// a later call is ignored and returns false). A host's tokens then come from the shared
    /// budget in small grants.
    pub fn set_fleet(&self, budget: Arc<dyn FleetBudget>) -> bool {
        self.fleet.set(budget).is_ok()
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
        let Some(fleet) = self.fleet.get() else {
            return self.acquire_local(host).await;
        };
        loop {
            // Local first: tokens granted earlier, a pause known, a check not yet due.
            let ask = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let bucket = self.bucket(&mut buckets, host, now, 0.0);
                let next = bucket.next_ask.filter(|t| *t > now);
                match bucket.paused_until {
                    Some(until) if until > now => Err(until - now),
                    _ => match bucket.rate {
                        None if next.is_some() => return,
                        Some(_) if bucket.tokens >= 1.0 => {
                            bucket.tokens -= 1.0;
                            return;
                        }
                        Some(_) if next.is_some() => Err(next.map(|t| t - now).unwrap_or_default()),
                        rate => Ok(rate),
                    },
                }
            };
            let rate = match ask {
                Err(wait) => {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(rate) => rate,
            };
            // One task asks the fleet; the others wait for its answer, then look again.
            let _asking = self.asking.lock().await;
            {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let bucket = self.bucket(&mut buckets, host, now, 0.0);
                if bucket.tokens >= 1.0 || bucket.next_ask.is_some_and(|t| t > now) {
                    continue;
                }
            }
            let want = rate.map(|r| (r.per_second * GRANT_SECONDS).clamp(1.0, r.burst.max(1.0)));
            let grant = {
                let (fleet, host) = (fleet.clone(), host.to_string());
                tokio::task::spawn_blocking(move || fleet.grant(&host, rate, want.unwrap_or(0.0)))
                    .await
                    .unwrap_or_default()
            };
            let wait = {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let bucket = self.bucket(&mut buckets, host, now, 0.0);
                bucket.tokens += grant.tokens;
                if rate.is_none() {
                    bucket.next_ask = Some(now + FLEET_PAUSE_CHECK);
                    if grant.wait.is_zero() {
                        return;
                    }
                    bucket.paused_until = Some(now + grant.wait);
                    grant.wait
                } else if grant.tokens >= 1.0 {
                    bucket.next_ask = None;
                    Duration::ZERO
                } else {
                    let wait = grant.wait.max(Duration::from_millis(5));
                    bucket.next_ask = Some(now + wait);
                    wait
                }
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// The bucket of `host`, made with `tokens` when new.
    fn bucket<'b>(
        &self,
        buckets: &'b mut HashMap<String, Bucket>,
        host: &str,
        now: Instant,
        tokens: f64,
    ) -> &'b mut Bucket {
        buckets.entry(host.to_string()).or_insert_with(|| Bucket {
            rate: self.rate_for(host),
            tokens,
            last: now,
            paused_until: None,
            next_ask: None,
        })
    }

    /// [`HostLimiter::acquire`] from this process's own bucket.
    async fn acquire_local(&self, host: &str) {
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
                        next_ask: None,
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
        self.pause_for(host, delay, true);
    }

    fn pause_for(&self, host: &str, delay: Duration, retry_after: bool) {
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
            next_ask: None,
        });
        let until = now + delay;
        if bucket.paused_until.is_none_or(|p| p < until) {
            bucket.paused_until = Some(until);
        }
        drop(buckets);
        if retry_after {
            tracing::info!(
                host,
                delay_ms = delay.as_millis() as u64,
                "pausing host (Retry-After)"
            );
            // Every process sharing the budget holds back too (told from a blocking thread
            // when on a runtime: it may ask a database).
            if let Some(fleet) = self.fleet.get() {
                let (fleet, host) = (fleet.clone(), host.to_string());
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => drop(h.spawn_blocking(move || fleet.pause(&host, delay))),
                    Err(_) => fleet.pause(&host, delay),
                }
            }
        }
    }
}

/// The executor stops taking new keys once a host is unreachable (the runtime hands it this
/// limiter).
impl crate::exec::Reachability for HostLimiter {
    fn unreachable(&self) -> Option<(String, u32)> {
        HostLimiter::unreachable(self)
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
    async fn a_host_failing_to_connect_is_paused_then_marked_unreachable() {
        let mut l = HostLimiter::new(None);
        l.set_unreachable(3, Duration::from_secs(5));
        let t0 = Instant::now();
        l.connect_failed("dead:80", t0);
        l.connect_failed("dead:80", t0);
        // A response in between starts the count again.
        l.reached("dead:80");
        for _ in 0..3 {
            l.connect_failed("dead:80", t0);
        }
        assert_eq!(l.unreachable(), None);
        // Paused: the next request waits 5 s.
        l.acquire("dead:80").await;
        assert!(t0.elapsed() >= Duration::from_secs(5));
        // Failures of requests sent before the pause ended do not count as the probe.
        l.connect_failed("dead:80", t0);
        assert_eq!(l.unreachable(), None);
        l.connect_failed("dead:80", Instant::now());
        assert_eq!(l.unreachable(), Some(("dead:80".to_string(), 5)));
        l.reset_reach();
        assert_eq!(l.unreachable(), None);
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
