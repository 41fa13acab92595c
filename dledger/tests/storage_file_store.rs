//! File store: append/read, recovery (torn tail, corruption refusal), suffix and prefix
//! truncation, snapshot reset, disk-full refusal, hard-state atomicity.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use dledger::storage::codec::HEADER_SIZE_BYTES;
use dledger::storage::{
    FileStore, FileStoreConfig, HardStateFile, HardStateRecord, StorageError, StoredEntry,
};

fn cfg(dir: &std::path::Path) -> FileStoreConfig {
    FileStoreConfig {
        dir: dir.to_path_buf(),
        segment_size_bytes: 64 * 1024,
        max_entry_size_bytes: 8 * 1024,
        disk_quota_bytes: None,
        cache_bytes: 16 * 1024,
        // Smaller than a segment, so appends keep crossing zeroed and unzeroed ground.
        zero_ahead_bytes: 16 * 1024,
    }
}

fn entry(index: u64, term: u64, len: usize) -> StoredEntry {
    let data: Vec<u8> = (0..len).map(|i| (index as usize * 31 + i) as u8).collect();
    StoredEntry {
        index,
        term,
        kind: 0,
        data: Bytes::from(data),
    }
}

/// Writes and syncs like the storage thread: the mark is raised after the sync, when due.
fn append(store: &FileStore, entries: &[StoredEntry]) {
    store.write_entries(entries).unwrap();
    store.sync_and_publish().unwrap();
    store.persist_synced_mark_if_due().unwrap();
}

fn segment_path(dir: &std::path::Path, base: u64) -> std::path::PathBuf {
    dir.join(format!("{base:020}"))
}

#[test]
fn append_read_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (1, 0));
    let entries: Vec<_> = (1..=300).map(|i| entry(i, 1 + i / 100, 700)).collect();
    store.write_entries(&entries[..150]).unwrap();
    // Not visible before the fsync.
    assert_eq!(store.last_index(), 0);
    let d = store.sync_and_publish().unwrap();
    assert_eq!((d.last_index, d.last_term), (150, 2));
    append(&store, &entries[150..]);
    assert!(store.segment_count() >= 3, "entries must span segments");
    let got = store.entries(1, 301, u64::MAX).unwrap();
    assert_eq!(got, entries);
    // Physical position: the body lies at pos + 48.
    let pos = store.entry_pos(123).unwrap();
    let body = store.read_at(pos + HEADER_SIZE_BYTES as u64, 700).unwrap();
    assert_eq!(body, entries[122].data);
    // Size limit returns a prefix, but at least one entry.
    assert_eq!(store.entries(5, 100, 1).unwrap().len(), 1);
    assert_eq!(store.entries(5, 100, 2000).unwrap().len(), 2);
    drop(store);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 300);
    assert_eq!(store.entries(1, 301, u64::MAX).unwrap(), entries);
    assert_eq!(store.entry_pos(123).unwrap(), pos);
    // Appending continues at the same place.
    append(&store, &[entry(301, 4, 10)]);
    assert_eq!(store.term(301).unwrap(), 4);
}

#[test]
fn entries_never_straddle_segments_and_blank_marks_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    let entries: Vec<_> = (1..=40).map(|i| entry(i, 1, 3000)).collect();
    append(&store, &entries);
    let seg = 64 * 1024;
    for i in 1..=40 {
        let p = store.entry_pos(i).unwrap();
        assert_eq!(
            p / seg,
            (p + 3048 - 1) / seg,
            "entry {i} straddles a segment"
        );
    }
    // First segment ends with the blank marker (-1, remaining).
    let first_of_second = (1..=40)
        .find(|i| store.entry_pos(*i).unwrap() >= seg)
        .unwrap();
    let end_of_first = store.entry_pos(first_of_second - 1).unwrap() + 3048;
    let f = std::fs::read(segment_path(dir.path(), 0)).unwrap();
    let e = end_of_first as usize;
    assert_eq!(&f[e..e + 4], &(-1i32).to_be_bytes());
    assert_eq!(
        u32::from_be_bytes(f[e + 4..e + 8].try_into().unwrap()) as u64,
        seg - end_of_first
    );
}

#[test]
fn torn_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    let entries: Vec<_> = (1..=10).map(|i| entry(i, 1, 500)).collect();
    append(&store, &entries[..9]);
    // Entry 10 is written but never synced: the crash tears it.
    let last_pos = store.end_pos();
    store.write_entries(&entries[9..]).unwrap();
    drop(store);
    // Tear the last entry: keep its header, zero half of its body.
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    f.write_all_at(&[0u8; 250], last_pos + 48 + 250).unwrap();
    drop(f);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 9);
    assert_eq!(store.entries(1, 10, u64::MAX).unwrap(), entries[..9]);
    // The torn bytes were zeroed: new entries go where entry 10 was and survive a reopen.
    append(&store, &[entry(10, 2, 100), entry(11, 2, 100)]);
    assert_eq!(store.entry_pos(10).unwrap(), last_pos);
    drop(store);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 11);
    assert_eq!(store.term(10).unwrap(), 2);
}

#[test]
fn partial_header_at_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=3).map(|i| entry(i, 1, 64)).collect::<Vec<_>>(),
    );
    let end = store.end_pos();
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    // Only the first 20 bytes of a header landed.
    f.write_all_at(
        &[0, 0, 0, 1, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0],
        end,
    )
    .unwrap();
    drop(f);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 3);
}

#[test]
fn corruption_before_tail_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=10).map(|i| entry(i, 1, 500)).collect::<Vec<_>>(),
    );
    let pos = store.entry_pos(4).unwrap();
    drop(store);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos + 60).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], pos + 60).unwrap();
    drop(f);
    match FileStore::open(cfg(dir.path())) {
        Err(StorageError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, segment_path(dir.path(), 0));
            assert_eq!(offset, pos);
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("corrupt store opened"),
    }
    // Also a corrupted header (bad magic) in the middle is refused.
    let dir2 = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir2.path())).unwrap();
    append(
        &store,
        &(1..=10).map(|i| entry(i, 1, 500)).collect::<Vec<_>>(),
    );
    let pos = store.entry_pos(2).unwrap();
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir2.path(), 0))
        .unwrap();
    f.write_all_at(&[0x7f], pos).unwrap();
    drop(f);
    let err = FileStore::open(cfg(dir2.path()))
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains("00000000000000000000"), "{msg}");
    assert!(msg.contains(&format!("offset {pos}")), "{msg}");
}

#[test]
fn zeroed_header_before_the_tail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=10).map(|i| entry(i, 1, 300)).collect::<Vec<_>>(),
    );
    let pos = store.entry_pos(5).unwrap();
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    f.write_all_at(&[0u8; 48], pos).unwrap();
    drop(f);
    match FileStore::open(cfg(dir.path())) {
        Err(StorageError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, segment_path(dir.path(), 0));
            assert_eq!(offset, pos);
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened a store with a zeroed entry in the middle"),
    }
}

#[test]
fn suffix_truncation_replaces_conflicting_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=20).map(|i| entry(i, 1, 400)).collect::<Vec<_>>(),
    );
    let pos8 = store.entry_pos(8).unwrap();
    // A new leader overwrites from 8 with shorter entries of term 2.
    let new: Vec<_> = (8..=9).map(|i| entry(i, 2, 100)).collect();
    append(&store, &new);
    assert_eq!(store.last_index(), 9);
    assert_eq!(store.entry_pos(8).unwrap(), pos8);
    assert_eq!(store.entries(8, 10, u64::MAX).unwrap(), new);
    drop(store);
    // Old entries 10..20 must not come back, even though their bytes had valid CRCs.
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 9);
    assert_eq!(store.term(9).unwrap(), 2);
    store.truncate_suffix(5).unwrap();
    assert_eq!(store.last_index(), 4);
    drop(store);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 4);
}

#[test]
fn prefix_truncation_deletes_whole_segments_and_keeps_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    let entries: Vec<_> = (1..=200).map(|i| entry(i, 1, 1000)).collect();
    append(&store, &entries);
    let segs_before = store.segment_count();
    assert!(segs_before >= 3);
    let pos150 = store.entry_pos(150).unwrap();
    let deleted = store.truncate_prefix(150).unwrap();
    assert_eq!(deleted, (pos150 / (64 * 1024)) as usize);
    assert_eq!(store.first_index(), 150);
    assert_eq!(store.term(149).unwrap(), 1);
    assert!(matches!(
        store.entries(149, 151, u64::MAX),
        Err(StorageError::Compacted { .. })
    ));
    assert!(!segment_path(dir.path(), 0).exists());
    drop(store);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (150, 200));
    assert_eq!(store.entries(150, 201, u64::MAX).unwrap(), entries[149..]);
    assert_eq!(store.entry_pos(150).unwrap(), pos150);
}

#[test]
fn reset_to_snapshot_restarts_log_at_leader_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=5).map(|i| entry(i, 1, 100)).collect::<Vec<_>>(),
    );
    let next_pos = 5 * 64 * 1024 + 1234;
    store.reset_to_snapshot(1000, 3, next_pos).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (1001, 1000));
    assert_eq!(store.term(1000).unwrap(), 3);
    append(
        &store,
        &(1001..=1003).map(|i| entry(i, 3, 100)).collect::<Vec<_>>(),
    );
    assert_eq!(store.entry_pos(1001).unwrap(), next_pos);
    drop(store);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (1001, 1003));
    assert_eq!(store.entry_pos(1001).unwrap(), next_pos);
    assert_eq!(store.term(1000).unwrap(), 3);
}

#[test]
fn disk_full_refuses_append_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.disk_quota_bytes = Some(2 * 64 * 1024);
    let store = FileStore::open(c.clone()).unwrap();
    let entries: Vec<_> = (1..=140).map(|i| entry(i, 1, 1000)).collect();
    append(&store, &entries[..100]);
    assert_eq!(store.segment_count(), 2);
    let end_before = store.end_pos();
    // The next batch needs a third segment: refused up front, nothing written.
    match store.write_entries(&entries[100..140]) {
        Err(StorageError::DiskFull(msg)) => assert!(msg.contains("quota"), "{msg}"),
        other => panic!("expected DiskFull, got {other:?}"),
    }
    assert_eq!(store.segment_count(), 2);
    assert_eq!(store.last_index(), 100);
    // The store stays usable for what fits.
    append(&store, &entries[100..105]);
    assert_eq!(store.last_index(), 105);
    assert!(store.end_pos() > end_before);
    drop(store);
    let store = FileStore::open(c).unwrap();
    assert_eq!(store.entries(1, 106, u64::MAX).unwrap(), entries[..105]);
}

#[test]
fn oversized_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert!(matches!(
        store.write_entries(&[entry(1, 1, 8 * 1024 + 1)]),
        Err(StorageError::EntryTooLarge { .. })
    ));
    assert_eq!(store.last_index(), 0);
}

#[test]
fn hard_state_is_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let hs = HardStateFile::new(dir.path());
    assert_eq!(hs.load().unwrap(), HardStateRecord::default());
    let a = HardStateRecord {
        term: 3,
        vote: 2,
        commit: 10,
    };
    hs.store(&a).unwrap();
    assert_eq!(hs.load().unwrap(), a);
    // A crash after writing the temp file but before the rename leaves the old state.
    std::fs::write(dir.path().join("hardstate.tmp"), b"garbage").unwrap();
    assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), a);
    let b = HardStateRecord {
        term: 4,
        vote: 0,
        commit: 12,
    };
    hs.store(&b).unwrap();
    assert_eq!(HardStateFile::new(dir.path()).load().unwrap(), b);
    assert!(!dir.path().join("hardstate.tmp").exists());
    // A damaged file is reported, not trusted.
    let mut raw = std::fs::read(dir.path().join("hardstate")).unwrap();
    raw[6] ^= 1;
    std::fs::write(dir.path().join("hardstate"), raw).unwrap();
    match hs.load() {
        Err(StorageError::Corrupt { file, .. }) => assert!(file.ends_with("hardstate")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn truncation_behind_a_blank_marker_places_entries_from_the_previous_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    // 3000-byte bodies: 21 fit in the 64 KiB first segment, the 22nd rolls over.
    append(
        &store,
        &(1..=22).map(|i| entry(i, 1, 3000)).collect::<Vec<_>>(),
    );
    let p22 = store.entry_pos(22).unwrap();
    let end21 = store.entry_end_pos(21).unwrap();
    assert_eq!(p22, 64 * 1024, "entry 22 starts the second segment");
    assert!(end21 < p22);
    // A new leader replaces 22 with a small entry: it fits behind 21, where every replica
    // that never had the old 22 puts it too.
    append(&store, &[entry(22, 2, 100)]);
    assert_eq!(store.entry_pos(22).unwrap(), end21);
    drop(store);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 22);
    assert_eq!(store.entry_pos(22).unwrap(), end21);
    assert_eq!(store.term(22).unwrap(), 2);
    // After a crash that loses the entry behind a durable blank marker, the next entry is
    // still placed from the end of the last entry.
    append(&store, &[entry(23, 2, 3000)]);
    // Entry 24 is written but never synced (so the crash may tear it).
    let p24 = dledger::storage::file_store::place_entry(64 * 1024, store.end_pos(), 3000);
    store.write_entries(&[entry(24, 2, 3000)]).unwrap();
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), p24 / (64 * 1024) * (64 * 1024)))
        .unwrap();
    f.write_all_at(&[0xff; 16], p24 % (64 * 1024) + 48).unwrap();
    drop(f);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 23);
    append(&store, &[entry(24, 3, 10)]);
    assert_eq!(
        store.entry_pos(24).unwrap(),
        store
            .entry_end_pos(23)
            .unwrap()
            .max(dledger::storage::file_store::place_entry(
                64 * 1024,
                store.entry_end_pos(23).unwrap(),
                10
            ))
    );
}

#[test]
fn crash_between_snapshot_meta_and_segment_deletion_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=5).map(|i| entry(i, 1, 100)).collect::<Vec<_>>(),
    );
    drop(store);
    // Simulate: the meta file of a reset far ahead was written, the old segment not deleted.
    let old = std::fs::read(segment_path(dir.path(), 0)).unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    let next_pos = 40 * 64 * 1024 + 100;
    store.reset_to_snapshot(500, 4, next_pos).unwrap();
    drop(store);
    std::fs::write(segment_path(dir.path(), 0), &old).unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert!(!segment_path(dir.path(), 0).exists());
    assert_eq!((store.first_index(), store.last_index()), (501, 500));
    append(&store, &[entry(501, 4, 100)]);
    assert_eq!(store.entry_pos(501).unwrap(), next_pos);
    assert_eq!(
        store.segment_count(),
        1,
        "no intermediate segments are created"
    );
}

/// A bad entry at or beyond the durable "synced up to" mark is a torn tail, even when valid
/// (unsynced) entries follow it: pages of unsynced writes reach the disk in any order.
#[test]
fn damage_beyond_the_synced_mark_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    let entries: Vec<_> = (1..=10).map(|i| entry(i, 1, 500)).collect();
    append(&store, &entries[..5]);
    store.persist_synced_mark().unwrap();
    let mark = store.persisted_synced_mark();
    assert_eq!(mark, store.end_pos());
    // 6..=10 written, never synced; the crash leaves 7 torn but 8..=10 intact.
    store.write_entries(&entries[5..]).unwrap();
    // Entry 6 starts at the old end; 7 follows it (48-byte header + 500-byte body).
    let pos7 = store.end_pos() + 548;
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    f.write_all_at(&[0xAB; 16], pos7 + 100).unwrap();
    drop(f);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 6);
    assert_eq!(store.entries(1, 7, u64::MAX).unwrap(), entries[..6]);
    // What recovery kept is now synced and recorded as such.
    assert_eq!(store.persisted_synced_mark(), store.end_pos());
    assert_eq!(store.end_pos(), pos7);
}

/// A bad entry below the mark is corruption, even at the very end of the log (where a
/// torn write would look the same without the mark).
#[test]
fn damage_below_the_synced_mark_is_refused_even_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=10).map(|i| entry(i, 1, 500)).collect::<Vec<_>>(),
    );
    store.persist_synced_mark().unwrap();
    let last_pos = store.entry_pos(10).unwrap();
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    f.write_all_at(&[0u8; 250], last_pos + 48 + 250).unwrap();
    drop(f);
    match FileStore::open(cfg(dir.path())) {
        Err(StorageError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, segment_path(dir.path(), 0));
            assert_eq!(offset, last_pos);
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(s) => panic!(
            "opened with a damaged synced entry (last {})",
            s.last_index()
        ),
    }
}

/// A synced segment that disappeared is corruption (the log ends below the mark).
#[test]
fn missing_synced_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    append(
        &store,
        &(1..=40).map(|i| entry(i, 1, 3000)).collect::<Vec<_>>(),
    );
    store.persist_synced_mark().unwrap();
    let bases = store.segment_bases();
    assert!(bases.len() >= 2);
    drop(store);
    std::fs::remove_file(segment_path(dir.path(), *bases.last().unwrap())).unwrap();
    match FileStore::open(cfg(dir.path())) {
        Err(StorageError::Corrupt { reason, .. }) => assert!(reason.contains("synced mark")),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened without a synced segment"),
    }
}

/// Suffix truncation and snapshot reset lower the mark durably before overwriting synced
/// bytes, so a crash while rewriting the tail is recovered as a tear, not corruption.
#[test]
fn overwriting_a_synced_tail_lowers_the_mark_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    let old: Vec<_> = (1..=10).map(|i| entry(i, 1, 500)).collect();
    append(&store, &old);
    store.persist_synced_mark().unwrap();
    let pos5 = store.entry_pos(5).unwrap();
    // A new leader replaces 5.. ; the crash happens before the new entries are synced.
    let new: Vec<_> = (5..=8).map(|i| entry(i, 2, 300)).collect();
    store.write_entries(&new).unwrap();
    assert_eq!(store.persisted_synced_mark(), pos5);
    let pos6 = pos5 + 348;
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    f.write_all_at(&[0xCD; 8], pos6 + 60).unwrap();
    drop(f);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 5);
    assert_eq!(store.term(5).unwrap(), 2);

    // Snapshot reset to a lower position: the mark follows before the segments go.
    let next_pos = 1000;
    store.reset_to_snapshot(20, 3, next_pos).unwrap();
    assert_eq!(store.persisted_synced_mark(), next_pos);
    store
        .write_entries(&[entry(21, 3, 100), entry(22, 3, 100)])
        .unwrap();
    drop(store);
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0))
        .unwrap();
    f.write_all_at(&[0xEF; 8], next_pos + 60).unwrap();
    drop(f);
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (21, 20));
}

#[test]
fn zeros_stay_ahead_of_the_writer_inside_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let (seg, ahead) = (c.segment_size_bytes, c.zero_ahead_bytes);
    let store = FileStore::open(c.clone()).unwrap();
    // ~1.1 KiB entries, 64 KiB segments: about 58 per segment, so writes reach every
    // segment end (where the zeroed region must stop) and start fresh segments.
    let entries: Vec<_> = (1..=300).map(|i| entry(i, 1, 1024)).collect();
    let mut topped_up = 0;
    let mut last_zeroed = 0;
    for e in &entries {
        append(&store, std::slice::from_ref(e));
        let (pos, zeroed) = store.zero_ahead_state();
        if pos % seg == 0 {
            continue; // a full segment: nothing to zero until the next one exists
        }
        let seg_end = pos / seg * seg + seg;
        assert!(
            zeroed > pos && zeroed <= seg_end,
            "pos {pos} zeroed {zeroed}"
        );
        // Topped up in steps, never left below half of the lead it aims for (a step is
        // larger than one entry).
        assert!(
            zeroed - pos >= (ahead / 2).min(seg_end - pos),
            "pos {pos} zeroed {zeroed}"
        );
        if zeroed != last_zeroed {
            topped_up += 1;
            last_zeroed = zeroed;
        }
    }
    assert!(
        topped_up >= store.segment_count(),
        "zeroed {topped_up} times"
    );
    // Zeroing never grows a segment file, and the log reads back whole, before and after
    // a reopen (recovery sees the zeros as the free space they are).
    let bases = store.segment_bases();
    assert!(bases.len() >= 4, "entries must span segments");
    for b in &bases {
        assert_eq!(
            std::fs::metadata(segment_path(dir.path(), *b))
                .unwrap()
                .len(),
            seg
        );
    }
    assert_eq!(store.entries(1, 301, u64::MAX).unwrap(), entries);
    drop(store);
    let store = FileStore::open(c).unwrap();
    assert_eq!(store.entries(1, 301, u64::MAX).unwrap(), entries);
    append(&store, &[entry(301, 1, 1024)]);
    assert_eq!(store.last_index(), 301);
}

/// `sync_and_publish` never writes the mark file itself (acks wait on the sync, not on the
/// mark); the writer raises it afterwards.
#[test]
fn the_synced_mark_is_raised_after_the_sync_not_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(cfg(dir.path())).unwrap();
    let before = store.persisted_synced_mark();
    store.write_entries(&[entry(1, 1, 100)]).unwrap();
    store.sync_and_publish().unwrap();
    assert_eq!(store.persisted_synced_mark(), before);
    store.persist_synced_mark_if_due().unwrap();
    assert_eq!(store.persisted_synced_mark(), store.end_pos());
}

/// The CRC scan at open reads the whole log through the segment mappings; none of it may
/// stay mapped (it would be the broker's RSS after every restart, and pinned in the page
/// cache against drop-behind), and reads still work.
#[test]
fn the_recovery_scan_leaves_nothing_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<_> = (1..=200).map(|i| entry(i, 1, 2000)).collect();
    {
        let store = FileStore::open(cfg(dir.path())).unwrap();
        append(&store, &entries);
    }
    let store = FileStore::open(cfg(dir.path())).unwrap();
    assert_eq!(store.last_index(), 200);
    let rss = testkit::mapped_rss_kb(dir.path());
    assert!(rss <= 8, "{rss} kB of the log mapped after open");
    assert_eq!(store.entries(1, 201, u64::MAX).unwrap(), entries);
}
