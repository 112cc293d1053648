//! Token buckets per client address: how the public verification route
//! keeps one client from looking up assertions as fast as it can.
//!
//! A bucket holds at most `burst` tokens and gains `per_second` a second; a
//! lookup takes one, and an empty bucket answers how long until the next.
//! The clock is passed in (`now`), so the arithmetic is tested without
//! sleeping.
//!
//! Memory is bounded: the buckets live in a fixed number of shards (each its
//! own lock, held for one map lookup), each shard holds at most a fixed
//! number of clients, and a full bucket is the same as no bucket, so full
//! ones are dropped every few seconds and first whenever a shard is full.
//! IPv6 clients are counted by their /64, which one host usually has whole.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How fast tokens come back and how many a bucket holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    /// `per_second` above 0, `burst` at least 1.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, String> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(format!("a rate is a number above 0, not {per_second}"));
        }
        if burst == 0 {
            return Err("a burst is at least 1".into());
        }
        Ok(Self {
            per_second,
            burst: f64::from(burst),
        })
    }
}

/// One client's tokens, as of `at`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    /// The tokens at `now` (never more than the burst; a `now` before the
    /// last one, as racing threads may pass, adds nothing).
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.at = self.at.max(now);
    }

    /// Takes a token; when there is none, says how long until there is.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / rate.per_second,
            ))
        }
    }

    /// Full at `now`: forgetting it changes nothing.
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(rate, now);
        probe.tokens >= rate.burst
    }

    fn tokens_at(&self, rate: Rate, now: Instant) -> f64 {
        let mut probe = *self;
        probe.refill(rate, now);
        probe.tokens
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Who a bucket is for: the IPv4 address, or the /64 of an IPv6 one.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How often a shard drops its full buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

struct Shard {
    buckets: HashMap<IpAddr, Bucket>,
    swept: Instant,
}

impl Shard {
    fn sweep(&mut self, rate: Rate, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(rate, now));
        self.swept = now;
    }
}

/// Buckets per client address, for one rate.
pub struct RateLimiter {
    rate: Rate,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl RateLimiter {
    /// 64 shards of at most 1,024 clients: 65,536 clients, a few MiB.
    pub fn new(rate: Rate, now: Instant) -> Self {
        Self::with_capacity(rate, 64, 1024, now)
    }

    pub fn with_capacity(rate: Rate, shards: usize, per_shard: usize, now: Instant) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(Shard {
                    buckets: HashMap::new(),
                    swept: now,
                })
            })
            .collect();
        Self {
            rate,
            shards,
            per_shard: per_shard.max(1),
            hasher: RandomState::new(),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes a token for `ip`; when it has none, says how long until it
    /// has.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(ip);
        let index = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rate = self.rate;
        if now.saturating_duration_since(shard.swept) >= SWEEP_EVERY {
            shard.sweep(rate, now);
        }
        if let Some(bucket) = shard.buckets.get_mut(&key) {
            return bucket.take(rate, now);
        }
        if shard.buckets.len() >= self.per_shard {
            shard.sweep(rate, now);
        }
        if shard.buckets.len() >= self.per_shard {
            // Every client of the shard is spending: forget the one with
            // the most tokens left, the one it costs least to forget.
            let fullest = shard
                .buckets
                .iter()
                .max_by(|a, b| {
                    a.1.tokens_at(rate, now)
                        .total_cmp(&b.1.tokens_at(rate, now))
                })
                .map(|(k, _)| *k);
            if let Some(fullest) = fullest {
                shard.buckets.remove(&fullest);
            }
        }
        let mut bucket = Bucket::full(rate, now);
        let taken = bucket.take(rate, now);
        shard.buckets.insert(key, bucket);
        taken
    }

    /// The clients that have a bucket.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .buckets
                    .len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_bucket_gives_its_burst_then_one_token_per_interval() {
        let rate = Rate::new(50.0, 100).unwrap();
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        for i in 0..100 {
            assert_eq!(b.take(rate, t0), Ok(()), "token {i}");
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert_eq!(wait, ms(20));
        // 10 ms later: half a token, 10 ms to wait.
        assert_eq!(b.take(rate, t0 + ms(10)).unwrap_err(), ms(10));
        assert_eq!(b.take(rate, t0 + ms(20)), Ok(()));
        assert!(b.take(rate, t0 + ms(20)).is_err());
        // One second refills 50, never more than the burst.
        for _ in 0..50 {
            assert_eq!(b.take(rate, t0 + ms(1020)), Ok(()));
        }
        assert!(b.take(rate, t0 + ms(1020)).is_err());
        assert!(!b.is_full(rate, t0 + ms(2000)));
        assert!(b.is_full(rate, t0 + ms(3020)));
        assert!(b.is_full(rate, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn a_clock_that_steps_back_adds_nothing() {
        let rate = Rate::new(1.0, 1).unwrap();
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = Bucket::full(rate, t0);
        assert_eq!(b.take(rate, t0), Ok(()));
        assert!(b.take(rate, t0 - Duration::from_secs(5)).is_err());
        assert!(b.take(rate, t0 + ms(500)).is_err());
        assert_eq!(b.take(rate, t0 + ms(1000)), Ok(()));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ms(20)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }

    #[test]
    fn rates_and_bursts_are_checked() {
        assert!(Rate::new(0.0, 10).is_err());
        assert!(Rate::new(-1.0, 10).is_err());
        assert!(Rate::new(f64::NAN, 10).is_err());
        assert!(Rate::new(f64::INFINITY, 10).is_err());
        assert!(Rate::new(1.0, 0).is_err());
        assert!(Rate::new(0.5, 1).is_ok());
    }

    #[test]
    fn clients_have_buckets_of_their_own() {
        let rate = Rate::new(1.0, 3).unwrap();
        let t0 = Instant::now();
        let limiter = RateLimiter::new(rate, t0);
        for _ in 0..3 {
            assert!(limiter.check(ip(1), t0).is_ok());
        }
        assert_eq!(limiter.check(ip(1), t0), Err(Duration::from_secs(1)));
        assert!(
            limiter.check(ip(2), t0).is_ok(),
            "another client is not limited"
        );
        assert!(limiter.check(ip(1), t0 + ms(1000)).is_ok());
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_a_mapped_ipv4_its_ipv4() {
        let rate = Rate::new(1.0, 2).unwrap();
        let t0 = Instant::now();
        let limiter = RateLimiter::new(rate, t0);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(a, t0).is_ok());
        assert!(limiter.check(b, t0).is_ok());
        assert!(limiter.check(a, t0).is_err(), "the same /64");
        assert!(limiter.check(c, t0).is_ok(), "another /64");
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(limiter.check(v4, t0).is_ok());
        assert!(limiter.check(mapped, t0).is_ok());
        assert!(limiter.check(v4, t0).is_err(), "the same IPv4 client");
    }

    #[test]
    fn full_buckets_are_forgotten_and_memory_stays_bounded() {
        let rate = Rate::new(10.0, 5).unwrap();
        let t0 = Instant::now();
        let limiter = RateLimiter::with_capacity(rate, 4, 16, t0);
        // Many clients at once: never more than 4 × 16 buckets.
        for n in 0..10_000 {
            assert!(limiter
                .check(ip(n), t0 + Duration::from_micros(u64::from(n)))
                .is_ok());
            assert!(limiter.len() <= 64);
        }
    }

    #[test]
    fn buckets_that_filled_up_again_are_swept() {
        let rate = Rate::new(10.0, 5).unwrap();
        let t0 = Instant::now();
        let limiter = RateLimiter::with_capacity(rate, 1, 100, t0);
        for n in 0..10 {
            assert!(limiter.check(ip(n), t0).is_ok());
        }
        assert_eq!(limiter.len(), 10);
        // Not yet full (0.1 s to refill), and too soon to sweep anyway.
        assert!(limiter.check(ip(50), t0 + ms(50)).is_ok());
        assert_eq!(limiter.len(), 11);
        // Long after: the first request of the period sweeps them away.
        assert!(limiter.check(ip(99), t0 + Duration::from_secs(60)).is_ok());
        assert_eq!(limiter.len(), 1);
    }

    #[test]
    fn a_full_shard_forgets_its_fullest_bucket_not_a_spent_one() {
        let rate = Rate::new(1.0, 10).unwrap();
        let t0 = Instant::now();
        let limiter = RateLimiter::with_capacity(rate, 1, 2, t0);
        for _ in 0..10 {
            assert!(limiter.check(ip(1), t0).is_ok());
        }
        assert!(limiter.check(ip(1), t0).is_err(), "ip 1 is spent");
        assert!(limiter.check(ip(2), t0).is_ok());
        // A third client: ip 2 (9 tokens left) is forgotten, not ip 1.
        assert!(limiter.check(ip(3), t0).is_ok());
        assert_eq!(limiter.len(), 2);
        assert!(limiter.check(ip(1), t0).is_err(), "ip 1 is still spent");
    }

    #[test]
    fn threads_share_one_clients_bucket() {
        let rate = Rate::new(0.001, 1000).unwrap();
        let t0 = Instant::now();
        let limiter = RateLimiter::new(rate, t0);
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..500)
                            .filter(|_| limiter.check(ip(9), t0).is_ok())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 1000);
    }
}
