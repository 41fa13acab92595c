//! The storage thread: jobs complete in order, one fsync covers many jobs, the hard state is
//! durable before a job is reported, and a full disk stalls (not corrupts) the log.

use bytes::Bytes;
use dledger::storage::thread::{Event, Job, PersistJob, StorageThread, StorageThreadConfig};
use dledger::storage::{FileStore, FileStoreConfig, HardStateFile, HardStateRecord, StoredEntry};
use tokio::sync::mpsc;

fn cfg(dir: &std::path::Path, quota: Option<u64>) -> FileStoreConfig {
    FileStoreConfig {
        dir: dir.join("data"),
        segment_size_bytes: 64 * 1024,
        max_entry_size_bytes: 8 * 1024,
        disk_quota_bytes: quota,
        cache_bytes: 1 << 20,
        // Small, so appends keep crossing zeroed and unzeroed ground.
        zero_ahead_bytes: 16 * 1024,
    }
}

fn job(seq: u64, first: u64, n: u64, hs: Option<HardStateRecord>) -> Job {
    Job::Persist(PersistJob {
        seq,
        snapshot: None,
        entries: (first..first + n)
            .map(|i| StoredEntry {
                index: i,
                term: 1,
                kind: 0,
                data: Bytes::from(vec![i as u8; 1000]),
            })
            .collect(),
        hard_state: hs,
    })
}

#[tokio::test]
async fn group_commit_in_order_with_hard_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path(), None)).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let st = StorageThread::spawn(
        store.clone(),
        HardStateFile::new(dir.path()),
        HardStateRecord::default(),
        StorageThreadConfig {
            max_batch_jobs: 64,
            disk_full_retry_ms: 10,
            fsync_linger_us: 0,
            fsync_linger_bytes: 0,
        },
        tx,
    )
    .unwrap();
    let hs = HardStateRecord {
        term: 1,
        vote: 2,
        commit: 0,
    };
    for seq in 1..=40u64 {
        let h = (seq == 1).then_some(hs);
        assert!(st.submit(job(seq, (seq - 1) * 2 + 1, 2, h)));
    }
    let mut groups = std::collections::HashSet::new();
    for seq in 1..=40u64 {
        match rx.recv().await.unwrap() {
            Event::Persisted {
                seq: s,
                job_last,
                group_first_seq,
                ..
            } => {
                assert_eq!(s, seq, "jobs complete in submission order");
                assert_eq!(job_last, Some((seq * 2, 1)));
                // Durable and visible when reported.
                assert!(store.last_index() >= seq * 2);
                if seq == 1 {
                    assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), hs);
                }
                groups.insert(group_first_seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(groups.len() <= 40);
    st.join();
    let store = FileStore::open(cfg(dir.path(), None)).unwrap();
    assert_eq!(store.last_index(), 80);
}

#[tokio::test]
async fn disk_full_stalls_without_reporting_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path(), Some(64 * 1024))).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let st = StorageThread::spawn(
        store.clone(),
        HardStateFile::new(dir.path()),
        HardStateRecord::default(),
        StorageThreadConfig {
            max_batch_jobs: 64,
            disk_full_retry_ms: 10,
            fsync_linger_us: 0,
            fsync_linger_bytes: 0,
        },
        tx,
    )
    .unwrap();
    assert!(st.submit(job(1, 1, 40, None)));
    assert!(matches!(
        rx.recv().await.unwrap(),
        Event::Persisted { seq: 1, .. }
    ));
    // 40 more KiB do not fit in the one-segment quota.
    assert!(st.submit(job(2, 41, 40, None)));
    match rx.recv().await.unwrap() {
        Event::DiskFull { seq, message } => {
            assert_eq!(seq, 2);
            assert!(message.contains("quota"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(store.last_index(), 40);
    st.join();
    let store = FileStore::open(cfg(dir.path(), Some(64 * 1024))).unwrap();
    assert_eq!(store.last_index(), 40);
}
