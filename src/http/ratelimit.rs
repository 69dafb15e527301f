//! Per-client budgets of *failed* requests on the trigger endpoints (token
//! buckets). Only requests that fail authentication (or are refused before
//! it: too large, too slow) spend the budget, and a request is authenticated
//! before the budget is looked at: behind an Ingress every delivery comes
//! from the same client address, so charging every request would let junk
//! from anywhere block the real deliveries. Valid requests need no budget:
//! their syncs coalesce into one pending sync. Memory is bounded:
//! at most [`MAX_CLIENTS`] buckets; when full, buckets that have refilled
//! completely (idle clients) are dropped first, and if none has, the
//! request is refused rather than growing the table. A refusal says when
//! the client's next request may pass (`Retry-After`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_CLIENTS: usize = 4096;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter {
    capacity: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` requests per minute per client, with a burst of the same size.
    pub fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self {
            capacity,
            per_second: capacity / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Charges one failed request to `client`; `false` when its budget was
    /// already spent (answer 429 instead of the failure itself).
    /// Charges one failed request to `client`; `Err(wait)` when its budget
    /// is spent, `wait` being how long until the next one passes.
    pub fn charge_failure(&self, client: IpAddr) -> Result<(), Duration> {
        self.charge_at(client, Instant::now())
    }

    fn charge_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let one_token = Duration::from_secs_f64(1.0 / self.per_second);
        let Ok(mut buckets) = self.buckets.lock() else {
            return Err(one_token);
        };
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            let full_after = Duration::from_secs_f64(self.capacity / self.per_second);
            buckets.retain(|_, b| now.duration_since(b.updated) < full_after);
            if buckets.len() >= MAX_CLIENTS {
                return Err(one_token);
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_capped_and_refills_over_time() {
        let limiter = RateLimiter::new(60);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        assert_eq!(
            (0..100)
                .filter(|_| limiter.charge_at(ip, t0).is_ok())
                .count(),
            60
        );
        assert_eq!(limiter.charge_at(ip, t0), Err(Duration::from_secs(1)));
        let half = t0 + Duration::from_millis(500);
        let wait = limiter.charge_at(ip, half).expect_err("half a token");
        assert!(
            wait.abs_diff(Duration::from_millis(500)) < Duration::from_millis(1),
            "{wait:?}"
        );
        assert!(
            limiter.charge_at(ip, t0 + Duration::from_secs(1)).is_ok(),
            "one token per second"
        );
        let other: IpAddr = [127, 0, 0, 2].into();
        assert!(
            limiter.charge_at(other, t0).is_ok(),
            "clients are independent"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = RateLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            let _ = limiter.charge_at(ip, t0);
        }
        assert!(limiter.buckets.lock().map(|b| b.len()).unwrap_or(0) <= MAX_CLIENTS);
        // Much later, idle buckets are evicted and new clients get in again.
        let later = t0 + Duration::from_secs(3600);
        assert!(limiter
            .charge_at(IpAddr::from([10, 9, 8, 7]), later)
            .is_ok());
    }
}
