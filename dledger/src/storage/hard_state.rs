//! The term/vote/commit file. Written atomically and fsynced before the node sends any vote
//! or reply that depends on it (the node only calls `on_hard_state_persisted` afterwards).

use std::path::{Path, PathBuf};

use super::atomic_file::{read_atomic, write_atomic};
use super::StorageError;

const HARD_STATE_FILE: &str = "hardstate";
const HARD_STATE_VERSION: u32 = 1;
const HARD_STATE_LEN_BYTES: usize = 4 + 8 + 8 + 8;

/// Term, vote and commit as persisted (`vote` 0 = none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardStateRecord {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// Owner of the hard-state file in one store directory.
#[derive(Debug)]
pub struct HardStateFile {
    dir: PathBuf,
}

impl HardStateFile {
    pub fn new(dir: &Path) -> Self {
        HardStateFile {
            dir: dir.to_path_buf(),
        }
    }

    /// Load the last durably written record (default if never written).
    pub fn load(&self) -> Result<HardStateRecord, StorageError> {
        let Some(p) = read_atomic(&self.dir, HARD_STATE_FILE)? else {
            return Ok(HardStateRecord::default());
        };
        if p.len() != HARD_STATE_LEN_BYTES
            || u32::from_be_bytes([p[0], p[1], p[2], p[3]]) != HARD_STATE_VERSION
        {
            return Err(StorageError::Corrupt {
                file: self.dir.join(HARD_STATE_FILE),
                offset: 0,
                reason: "unknown hard state version or length".into(),
            });
        }
        let u = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&p[at..at + 8]);
            u64::from_be_bytes(a)
        };
        Ok(HardStateRecord {
            term: u(4),
            vote: u(12),
            commit: u(20),
        })
    }

    /// Durably replace the record (temp file + fsync + rename + fsync dir).
    pub fn store(&self, hs: &HardStateRecord) -> Result<(), StorageError> {
        let mut p = [0u8; HARD_STATE_LEN_BYTES];
        p[0..4].copy_from_slice(&HARD_STATE_VERSION.to_be_bytes());
        p[4..12].copy_from_slice(&hs.term.to_be_bytes());
        p[12..20].copy_from_slice(&hs.vote.to_be_bytes());
        p[20..28].copy_from_slice(&hs.commit.to_be_bytes());
        write_atomic(&self.dir, HARD_STATE_FILE, &p)
    }
}
