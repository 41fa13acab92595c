//! Helpers shared by the multi-node dledger tests.
#![allow(dead_code)] // each test binary uses its own subset

use dledger::config::DLedgerConfig;

pub use testkit::free_port;

/// Three node configs of one group under `dir` (small segments and entries), with election
/// seeds `seed_base + i` so each test's timing is its own but reproducible.
pub fn configs(dir: &std::path::Path, seed_base: u64) -> Vec<DLedgerConfig> {
    let peers = (0..3)
        .map(|i| format!("n{i}-127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(";");
    (0..3)
        .map(|i| {
            let mut c = DLedgerConfig::new("test-group", &peers, &format!("n{i}"), dir).unwrap();
            c.segment_size_bytes = 64 * 1024;
            c.max_entry_size_bytes = 16 * 1024;
            c.rng_seed = Some(seed_base + i as u64);
            c
        })
        .collect()
}
