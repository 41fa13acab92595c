//! Loopback ports for tests, chosen below the kernel's ephemeral range (and, in `mapped_rss_kb`,
//! how much of a store's files the test process has mapped; in `CountingAlloc`, how many heap
//! allocations it made).
//!
//! `bind("127.0.0.1:0")` hands out an ephemeral port. Released again for a server to take, it
//! can be given to any outbound connection in the meantime (another test's client or peer
//! link), and the server's bind then fails with `AddrInUse`. Ports from a fixed range below
//! the ephemeral one are only ever taken by someone who asks for them by number.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// First port handed out.
pub const PORTS_FROM: u16 = 20_000;
/// Number of ports in the range (20000–29999; Linux's ephemeral range starts at 32768).
pub const PORTS_COUNT: u16 = 10_000;

/// Next offset into the range for this process.
static CURSOR: AtomicU32 = AtomicU32::new(0);

/// A 127.0.0.1 port that was free just now, different from every other port this process was
/// given. Panics when the whole range is taken (a test-environment failure, not a result).
pub fn free_port() -> u16 {
    free_port_where(|_| true)
}

/// A DLedger peer list `n0-127.0.0.1:<port>;n1-…` for replicas listening on `ports`.
pub fn dledger_peers(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// A free port `p` for which `ok(p)` also holds (for example: neighbours that a server binds
/// too are free). Neighbours that `ok` checks are not reserved; the caller retries on
/// `AddrInUse` if it needs them.
pub fn free_port_where(mut ok: impl FnMut(u16) -> bool) -> u16 {
    let start = std::process::id() % u32::from(PORTS_COUNT);
    for _ in 0..PORTS_COUNT {
        let k = CURSOR.fetch_add(1, Ordering::Relaxed);
        let port = PORTS_FROM + (start.wrapping_add(k) % u32::from(PORTS_COUNT)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && ok(port) {
            return port;
        }
    }
    panic!(
        "no free port in 127.0.0.1:{PORTS_FROM}..{}",
        PORTS_FROM + PORTS_COUNT
    );
}

/// Resident kB of this process's mappings of files under `dir`, from `/proc/self/smaps`.
pub fn mapped_rss_kb(dir: &std::path::Path) -> u64 {
    let want = format!("{}/", dir.to_string_lossy());
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let (mut inside, mut total) = (false, 0);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.contains(&want);
        } else if inside && line.starts_with("Rss:") {
            total += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// A global allocator that counts allocations (alloc, alloc_zeroed, realloc) and forwards
/// everything to the system allocator. A test binary that measures allocations per operation
/// installs it with `#[global_allocator] static A: testkit::CountingAlloc = testkit::CountingAlloc;`
/// and reads [`allocations`] before and after.
pub struct CountingAlloc;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Allocations made so far through [`CountingAlloc`], by every thread of the process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_in_range() {
        let ports = free_ports(50);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "a port was handed out twice");
        for p in ports {
            assert!((PORTS_FROM..PORTS_FROM + PORTS_COUNT).contains(&p));
        }
    }

    #[test]
    fn a_port_held_by_a_listener_is_skipped() {
        // Hold the next few ports the cursor will reach; none of them may be handed out.
        let p = free_port();
        let held: Vec<u16> = (1..=3)
            .map(|d| PORTS_FROM + (p - PORTS_FROM + d) % PORTS_COUNT)
            .collect();
        let _listeners: Vec<TcpListener> = held
            .iter()
            .filter_map(|q| TcpListener::bind(("127.0.0.1", *q)).ok())
            .collect();
        let next = free_port();
        assert!(!held.contains(&next), "{next} is held by a listener");
    }

    #[test]
    fn the_predicate_filters_ports() {
        let p = free_port_where(|p| p % 7 == 0);
        assert_eq!(p % 7, 0);
    }
}
