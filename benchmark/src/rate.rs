//! Fixed-rate schedule. Send number `k` (counted over all senders) is *intended* to start at
//! `start + k / rate`. Senders claim slots from one shared counter, wait for the slot's
//! intended time, and latency is measured from that intended time — so when the broker
//! stalls, the queued-up sends are charged the stall instead of being silently delayed
//! (no coordinated omission, as in wrk2 / HdrHistogram's `recordValueWithExpectedInterval`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

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

    /// How many slots fall strictly before `end`: the number of `k` with `intended(k) < end`
    /// (a run of `d` seconds at `r` per second has exactly `d × r`).
    pub fn due_before(&self, end: Instant) -> u64 {
        match end.checked_sub(Duration::from_nanos(1)) {
            Some(t) if end > self.start => self.due_by(t),
            _ => 0,
        }
    }

    /// How many slots are due at `now`: the number of `k` with `intended(k) <= now`.
    pub fn due_by(&self, now: Instant) -> u64 {
        let Some(elapsed) = now.checked_duration_since(self.start) else {
            return 0;
        };
        let due = elapsed.as_nanos() * u128::from(self.rate_per_s) / 1_000_000_000 + 1;
        u64::try_from(due).unwrap_or(u64::MAX)
    }
}

/// Longest pause of the pacer thread, so it notices `close` and the end promptly.
const PACER_MAX_PAUSE: Duration = Duration::from_millis(5);
/// Shortest pause: at high rates the pacer releases the slots of 200 µs at a time, so it
/// wakes at most 5,000 times a second (a wake-up per slot cost the 2-core machine more CPU
/// than the broker saves); a slot is then released at most 200 µs late.
const PACER_MIN_PAUSE: Duration = Duration::from_micros(200);

/// Hands out the schedule's slots at their intended times, from a thread of its own.
///
/// Why not `tokio::time::sleep_until(intended)` in each sender: tokio's timer wheel ticks
/// once per millisecond, so such a sleep ends up to a millisecond late, and because latency
/// is (deliberately) measured from the intended time, that lateness of the load generator was
/// charged to the broker (+0.5 ms p50 on a fixed-rate run). A plain thread sleep is accurate
/// to tens of microseconds. Each released slot is one semaphore permit; a sender takes a
/// permit, then claims the next slot, so it never starts a send before the slot is due.
/// At the end every slot intended before it is released, even when the pacer's thread wakes
/// late (a loaded machine): a run of `d` seconds at `r` per second offers exactly `d × r`.
/// Dropping it closes it; the thread then ends by itself within `PACER_MAX_PAUSE` (it is not
/// joined, so a drop never blocks the async thread it happens on).
#[derive(Debug)]
pub struct Pacer {
    due: Arc<Semaphore>,
    counts: Arc<PacerCounts>,
}

/// Permits beyond `released` are the end marker: once the pacer is finished it floods the
/// semaphore, and a sender whose permit is number `released` or later learns the run is over
/// (closing the semaphore instead would discard permits released but not yet taken).
#[derive(Debug, Default)]
struct PacerCounts {
    /// Slots released so far; raised before their permits are added.
    released: AtomicU64,
    /// Permits taken so far (slots and end markers).
    taken: AtomicU64,
    closed: AtomicBool,
}

impl Pacer {
    /// Start releasing the slots of `schedule`; stop (and close) at `end`, if given.
    pub fn start(schedule: Arc<RateSchedule>, end: Option<Instant>) -> std::io::Result<Pacer> {
        let due = Arc::new(Semaphore::new(0));
        let counts = Arc::new(PacerCounts::default());
        let (sem, c) = (due.clone(), counts.clone());
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pace(&schedule, end, &sem, &c))?;
        Ok(Pacer { due, counts })
    }

    /// Wait until a slot is due. `false` once every slot before the end has been handed out,
    /// or at once after `close`.
    pub async fn wait_due(&self) -> bool {
        match self.due.acquire().await {
            Ok(permit) => {
                permit.forget();
                let nth = self.counts.taken.fetch_add(1, Ordering::AcqRel);
                nth < self.counts.released.load(Ordering::Acquire)
            }
            Err(_) => false,
        }
    }

    /// Stop releasing slots (an interrupted run); waiting senders return `false` at once.
    pub fn close(&self) {
        self.counts.closed.store(true, Ordering::Relaxed);
        self.due.close();
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Release slots up to `target` (in total). Permits pile up while the broker stalls: the
/// senders then catch up at once, each send charged from its own intended time.
fn release_up_to(target: u64, due: &Semaphore, counts: &PacerCounts) {
    let released = counts.released.load(Ordering::Relaxed);
    if target <= released {
        return;
    }
    let room = (Semaphore::MAX_PERMITS - due.available_permits()) as u64;
    let add = (target - released).min(room);
    // Count first: a sender taking one of these permits must find it counted.
    counts.released.store(released + add, Ordering::Release);
    due.add_permits(usize::try_from(add).unwrap_or(0));
}

fn pace(schedule: &RateSchedule, end: Option<Instant>, due: &Semaphore, counts: &PacerCounts) {
    while !counts.closed.load(Ordering::Relaxed) {
        let now = Instant::now();
        if let Some(e) = end.filter(|e| now >= *e) {
            // Woken at or after the end: the slots since the last wake-up are still owed.
            release_up_to(schedule.due_before(e), due, counts);
            // Only this thread adds permits, so the room cannot shrink meanwhile.
            due.add_permits(Semaphore::MAX_PERMITS - due.available_permits());
            return;
        }
        release_up_to(schedule.due_by(now), due, counts);
        let next = schedule.intended(counts.released.load(Ordering::Relaxed));
        let pause = next.saturating_duration_since(now);
        std::thread::sleep(pause.clamp(PACER_MIN_PAUSE, PACER_MAX_PAUSE));
    }
    due.close();
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
    fn due_by_counts_the_slots_whose_time_has_come() {
        let t0 = Instant::now();
        let s = RateSchedule::new(t0, 1000);
        assert_eq!(s.due_by(t0), 1);
        assert_eq!(s.due_by(t0 + Duration::from_micros(999)), 1);
        assert_eq!(s.due_by(t0 + Duration::from_millis(1)), 2);
        assert_eq!(s.due_by(t0 + Duration::from_millis(10)), 11);
        for k in 0..50 {
            assert_eq!(s.due_by(s.intended(k)), k + 1);
            assert_eq!(s.due_before(s.intended(k)), k);
        }
        assert_eq!(s.due_before(t0), 0);
        assert_eq!(s.due_before(t0 + Duration::from_secs(4)), 4_000);
    }

    #[tokio::test]
    async fn pacer_never_releases_a_slot_early_and_closes_at_the_end() {
        let t0 = Instant::now();
        let end = t0 + Duration::from_millis(40);
        let schedule = Arc::new(RateSchedule::new(t0, 2_000));
        let pacer = Pacer::start(schedule.clone(), Some(end)).expect("thread");
        let mut k = 0u64;
        while pacer.wait_due().await {
            let now = Instant::now();
            assert!(now >= schedule.intended(k), "slot {k} released early");
            k += 1;
        }
        // Exactly the slots intended before the end, however late the pacer woke.
        assert!(Instant::now() >= end);
        assert_eq!(k, schedule.due_before(end));
        assert_eq!(k, 80);
        assert!(!pacer.wait_due().await);
    }

    #[tokio::test]
    async fn a_pacer_waking_after_the_end_still_offers_every_slot_before_it() {
        // The end has passed before the pacer's thread first looks (as when a loaded machine
        // wakes it late): all 1,000 slots of that second must still be offered.
        let t0 = Instant::now();
        let start = t0.checked_sub(Duration::from_secs(2)).expect("uptime");
        let schedule = Arc::new(RateSchedule::new(start, 1_000));
        let pacer = Pacer::start(schedule, Some(start + Duration::from_secs(1))).expect("thread");
        let mut k = 0u64;
        while pacer.wait_due().await {
            k += 1;
        }
        assert_eq!(k, 1_000);
    }

    #[tokio::test]
    async fn closing_the_pacer_wakes_waiting_senders() {
        let schedule = Arc::new(RateSchedule::new(
            Instant::now() + Duration::from_secs(3600),
            1,
        ));
        let pacer = Arc::new(Pacer::start(schedule, None).expect("thread"));
        let waiter = tokio::spawn({
            let p = pacer.clone();
            async move { p.wait_due().await }
        });
        pacer.close();
        assert!(!waiter.await.expect("join"));
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
