//! Fixed-rate schedule. Send number `k` (counted over all senders) is *intended* to start at
//! `start + k / rate`. Senders claim slots from one shared counter, wait for the slot's
//! intended time, and latency is measured from that intended time — so when the broker
//! stalls, the queued-up sends are charged the stall instead of being silently delayed
//! (no coordinated omission, as in wrk2 / HdrHistogram's `recordValueWithExpectedInterval`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Highest supported rate (sends per second); keeps the interval ≥ 1 ns.
pub const MAX_RATE_PER_S: u64 = 1_000_000_000;

#[derive(Debug)]
pub struct RateSchedule {
    start: Instant,
    rate_per_s: u64,
    next_slot: AtomicU64,
}

impl RateSchedule {
    pub fn new(start: Instant, rate_per_s: u64) -> RateSchedule {
        assert!(
            rate_per_s > 0 && rate_per_s <= MAX_RATE_PER_S,
            "rate out of range"
        );
        RateSchedule {
            start,
            rate_per_s,
            next_slot: AtomicU64::new(0),
        }
    }

    /// Intended start time of slot `k`. Computed from `k` directly (not by accumulating an
    /// interval) so rounding never drifts: `start + floor(k * 1e9 / rate)` ns.
    pub fn intended(&self, slot: u64) -> Instant {
        let ns = u128::from(slot) * 1_000_000_000 / u128::from(self.rate_per_s);
        // u64 nanoseconds cover 584 years; saturate rather than wrap beyond that.
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// Claim the next slot (shared by all senders) and return `(slot, intended time)`.
    pub fn claim(&self) -> (u64, Instant) {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        (slot, self.intended(slot))
    }

    pub fn start(&self) -> Instant {
        self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced() {
        let t0 = Instant::now();
        let s = RateSchedule::new(t0, 4);
        assert_eq!(s.intended(0), t0);
        assert_eq!(s.intended(1), t0 + Duration::from_millis(250));
        assert_eq!(s.intended(4), t0 + Duration::from_secs(1));
        assert_eq!(s.intended(10), t0 + Duration::from_millis(2500));
    }

    #[test]
    fn no_drift_with_non_divisible_rate() {
        let t0 = Instant::now();
        let s = RateSchedule::new(t0, 3);
        // 1e9 / 3 is not an integer; slot 3_000_000 must still land exactly on 1_000_000 s.
        assert_eq!(s.intended(3_000_000), t0 + Duration::from_secs(1_000_000));
        assert_eq!(s.intended(1), t0 + Duration::from_nanos(333_333_333));
        assert_eq!(s.intended(2), t0 + Duration::from_nanos(666_666_666));
    }

    #[test]
    fn claims_are_unique_and_ordered_across_threads() {
        let t0 = Instant::now();
        let s = std::sync::Arc::new(RateSchedule::new(t0, 1000));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (0..250).map(|_| s.claim()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<(u64, Instant)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        all.sort_by_key(|(k, _)| *k);
        for (i, (k, at)) in all.iter().enumerate() {
            assert_eq!(*k, i as u64);
            assert_eq!(*at, t0 + Duration::from_millis(i as u64));
        }
    }
}
