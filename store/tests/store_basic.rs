mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use store::message::{self, property, tags_hash};
use store::{
    AcceptAllFilter, FlushDiskType, GetMessageStatus, MessageFilter, MessageStore, StoreConfig,
};

struct TagFilter(Vec<i64>);

impl MessageFilter for TagFilter {
    fn is_matched_by_tags_code(&self, tags_code: i64) -> bool {
        self.0.contains(&tags_code)
    }
}

#[test]
fn put_get_round_trip_with_tag_filter() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let rt = rt();
    for i in 0..10 {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let r = rt
            .block_on(s.put_message(tagged("TopicT", 0, format!("body-{i}").as_bytes(), tag)))
            .unwrap();
        assert_eq!(r.queue_offset, i);
        let (host, phys) = message::decode_offset_msg_id(&r.msg_id).unwrap();
        assert_eq!(phys, r.phys_offset);
        assert_eq!(host.to_string(), "127.0.0.1:10911");
    }
    wait_dispatch(&s);

    let all = s.get_message("TopicT", 0, 0, 32, 1 << 20, &AcceptAllFilter);
    assert_eq!(all.status, GetMessageStatus::Found);
    assert_eq!(all.messages.len(), 10);
    assert_eq!(all.next_begin_offset, 10);
    assert_eq!((all.min_offset, all.max_offset), (0, 10));
    for (i, b) in all.messages.iter().enumerate() {
        let m = decode(b);
        assert_eq!(m.queue_offset, i as i64);
        assert_eq!(&m.body[..], format!("body-{i}").as_bytes());
        assert_eq!(m.topic, "TopicT");
        assert_eq!(m.store_host.to_string(), "127.0.0.1:10911");
        assert!(m.store_timestamp_ms > 0);
    }

    let f = TagFilter(vec![tags_hash("TagB")]);
    let only_b = s.get_message("TopicT", 0, 0, 32, 1 << 20, &f);
    assert_eq!(only_b.status, GetMessageStatus::Found);
    let bodies: Vec<String> = only_b
        .messages
        .iter()
        .map(|b| String::from_utf8(decode(b).body.to_vec()).unwrap())
        .collect();
    assert_eq!(bodies, ["body-1", "body-3", "body-5", "body-7", "body-9"]);
    assert_eq!(only_b.message_queue_offsets, vec![1, 3, 5, 7, 9]);

    let none = s.get_message(
        "TopicT",
        0,
        0,
        32,
        1 << 20,
        &TagFilter(vec![tags_hash("Nope")]),
    );
    assert_eq!(none.status, GetMessageStatus::NoMatchedMessage);
    assert_eq!(none.next_begin_offset, 10, "filtered units are consumed");

    // max_msg_nums and boundary statuses.
    let two = s.get_message("TopicT", 0, 3, 2, 1 << 20, &AcceptAllFilter);
    assert_eq!((two.messages.len(), two.next_begin_offset), (2, 5));
    let st = |o| s.get_message("TopicT", 0, o, 32, 1 << 20, &AcceptAllFilter);
    assert_eq!(st(10).status, GetMessageStatus::OffsetOverflowOne);
    assert_eq!(st(11).status, GetMessageStatus::OffsetOverflowBadly);
    assert_eq!(
        s.get_message("TopicT", 7, 0, 32, 1 << 20, &AcceptAllFilter)
            .status,
        GetMessageStatus::NoMatchedLogicQueue
    );
    assert_eq!(s.max_offset_in_queue("TopicT", 0), 10);
    assert_eq!(s.min_offset_in_queue("TopicT", 0), 0);

    // look up by physical offset
    let first = decode(&all.messages[0]);
    let again = s.look_message_by_offset(first.commit_log_offset).unwrap();
    assert_eq!(again, all.messages[0]);
    assert!(s
        .look_message_by_offset(first.commit_log_offset + 1)
        .is_none());
    s.shutdown();
}

#[test]
fn queue_offsets_dense_per_queue_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::AsyncFlush, &te);
    let rt = rt();
    let per_queue = 40;
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for q in 0..3 {
            for i in 0..per_queue {
                let s = Arc::clone(&s);
                set.spawn(async move {
                    s.put_message(tagged("Dense", q, format!("{q}-{i}").as_bytes(), "t"))
                        .await
                        .map(|r| (q, r.queue_offset))
                });
            }
        }
        let mut seen: HashMap<i32, Vec<i64>> = HashMap::new();
        while let Some(r) = set.join_next().await {
            let (q, o) = r.unwrap().unwrap();
            seen.entry(q).or_default().push(o);
        }
        for (_, mut v) in seen {
            v.sort();
            assert_eq!(v, (0..per_queue).collect::<Vec<i64>>());
        }
    });
    wait_dispatch(&s);
    for q in 0..3 {
        let mut next = 0;
        while next < per_queue {
            let r = s.get_message("Dense", q, next, 32, 1 << 20, &AcceptAllFilter);
            assert_eq!(r.status, GetMessageStatus::Found);
            for b in &r.messages {
                let m = decode(b);
                assert_eq!(m.queue_offset, next);
                assert_eq!(m.queue_id, q);
                next += 1;
            }
        }
    }
    s.shutdown();
}

#[test]
fn batch_put_is_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let rt = rt();
    rt.block_on(s.put_message(tagged("B", 1, b"single", "x")))
        .unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| tagged("B", 1, format!("b{i}").as_bytes(), "x"))
        .collect();
    let r = rt.block_on(s.put_messages(batch)).unwrap();
    assert_eq!(r.queue_offset, 1);
    let ids: Vec<&str> = r.msg_id.split(',').collect();
    assert_eq!(ids.len(), 5);
    wait_dispatch(&s);
    let g = s.get_message("B", 1, 1, 32, 1 << 20, &AcceptAllFilter);
    assert_eq!(g.messages.len(), 5);
    let mut expect_phys = r.phys_offset;
    for (i, b) in g.messages.iter().enumerate() {
        let m = decode(b);
        assert_eq!(m.queue_offset, 1 + i as i64);
        assert_eq!(m.commit_log_offset, expect_phys, "records are back to back");
        assert_eq!(m.msg_id(), ids[i]);
        expect_phys += m.store_size as i64;
    }
    let mixed = vec![tagged("B", 1, b"a", "x"), tagged("B", 2, b"b", "x")];
    assert!(rt.block_on(s.put_messages(mixed)).is_err());
    s.shutdown();
}

#[test]
fn oversized_and_illegal_messages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let rt = rt();
    let big = vec![0u8; 5000];
    assert!(matches!(
        rt.block_on(s.put_message(msg("T", 0, &big, ""))),
        Err(store::StoreError::MessageIllegal { .. })
    ));
    let long_topic = "t".repeat(128);
    assert!(rt
        .block_on(s.put_message(msg(&long_topic, 0, b"x", "")))
        .is_err());
    // The store still works afterwards.
    assert_eq!(
        rt.block_on(s.put_message(msg("T", 0, b"ok", "")))
            .unwrap()
            .queue_offset,
        0
    );
    // WAIT=false (Java isWaitStoreMsgOK) under SYNC_FLUSH: acknowledged, then visible.
    let r = rt
        .block_on(s.put_message(msg("T", 0, b"nowait", "WAIT\u{1}false\u{2}")))
        .unwrap();
    assert_eq!(r.queue_offset, 1);
    wait_dispatch(&s);
    let g = s.get_message("T", 0, 1, 32, 1 << 20, &AcceptAllFilter);
    assert_eq!(&decode(&g.messages[0]).body[..], b"nowait");
    // NUL in properties would defeat torn-tail detection: refused.
    assert!(rt
        .block_on(s.put_message(msg("T", 0, b"x", "A\u{1}\0\u{2}")))
        .is_err());
    s.shutdown();
}

#[test]
fn index_query_by_key_and_uniq_key() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let rt = rt();
    // Enough messages to roll the (64-entry) index file at least once.
    for i in 0..100 {
        let props =
            format!("KEYS\u{1}order-{i} shared\u{2}UNIQ_KEY\u{1}UNIQ{i:04}\u{2}TAGS\u{1}t\u{2}");
        rt.block_on(s.put_message(msg("IdxTopic", i % 4, format!("m{i}").as_bytes(), &props)))
            .unwrap();
    }
    wait_dispatch(&s);
    let r = s.query_message("IdxTopic", "order-42", 32, 0, i64::MAX);
    let found: Vec<_> = r
        .messages
        .iter()
        .map(decode)
        .filter(|m| {
            m.property(property::KEYS)
                .is_some_and(|k| k.split(' ').any(|x| x == "order-42"))
        })
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(&found[0].body[..], b"m42");
    assert!(r.index_last_update_timestamp > 0);

    let u = s.query_message("IdxTopic", "UNIQ0007", 32, 0, i64::MAX);
    assert!(u.messages.iter().map(decode).any(|m| &m.body[..] == b"m7"));

    let shared = s.query_message("IdxTopic", "shared", 64, 0, i64::MAX);
    assert!(shared.messages.len() >= 32, "got {}", shared.messages.len());
    let wrong_topic = s.query_message("Other", "order-42", 32, 0, i64::MAX);
    assert!(wrong_topic
        .messages
        .iter()
        .map(decode)
        .all(|m| m.topic != "Other"));
    s.shutdown();
}

#[test]
fn delay_message_is_parked_in_schedule_topic() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    assert_eq!(s.delay_level_millis().len(), 18);
    assert_eq!(s.delay_level_millis()[2], 10_000);
    let rt = rt();
    let r = rt
        .block_on(s.put_message(msg("Real", 3, b"later", "DELAY\u{1}3\u{2}TAGS\u{1}a\u{2}")))
        .unwrap();
    // level above the maximum is capped at 18
    rt.block_on(s.put_message(msg("Real", 1, b"cap", "DELAY\u{1}99\u{2}")))
        .unwrap();
    wait_dispatch(&s);
    assert_eq!(s.max_offset_in_queue("Real", 3), 0);
    let g = s.get_message(message::SCHEDULE_TOPIC, 2, 0, 32, 1 << 20, &AcceptAllFilter);
    assert_eq!(g.messages.len(), 1);
    let m = decode(&g.messages[0]);
    assert_eq!(m.topic, message::SCHEDULE_TOPIC);
    assert_eq!(m.queue_id, 2);
    assert_eq!(m.property(property::REAL_TOPIC), Some("Real"));
    assert_eq!(m.property(property::REAL_QID), Some("3"));
    assert_eq!(m.property(property::DELAY), Some("3"));
    assert_eq!(m.store_timestamp_ms, r.store_timestamp_ms);
    // The CQ tags code is the delivery time: a filter on it proves it.
    struct Exact(i64);
    impl MessageFilter for Exact {
        fn is_matched_by_tags_code(&self, t: i64) -> bool {
            t == self.0
        }
    }
    let deliver = r.store_timestamp_ms + 10_000;
    let g2 = s.get_message(message::SCHEDULE_TOPIC, 2, 0, 32, 1 << 20, &Exact(deliver));
    assert_eq!(g2.status, GetMessageStatus::Found);
    let unit = s.consume_queue_unit(message::SCHEDULE_TOPIC, 2, 0).unwrap();
    assert_eq!(unit.tags_code, deliver);
    assert_eq!(unit.phys, r.phys_offset);
    assert_eq!(
        s.commit_log_offset_in_queue(message::SCHEDULE_TOPIC, 2, 0),
        r.phys_offset
    );
    assert!(s
        .consume_queue_unit(message::SCHEDULE_TOPIC, 2, 1)
        .is_none());
    let capped = s.get_message(
        message::SCHEDULE_TOPIC,
        17,
        0,
        32,
        1 << 20,
        &AcceptAllFilter,
    );
    assert_eq!(
        decode(&capped.messages[0]).property(property::DELAY),
        Some("18")
    );
    s.shutdown();
}

#[test]
fn offset_by_time_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let rt = rt();
    let t0 = 1_700_000_000_000i64;
    for i in 0..10 {
        te.clock
            .0
            .store(t0 + i * 1000, std::sync::atomic::Ordering::SeqCst);
        rt.block_on(s.put_message(msg("Time", 0, b"x", "")))
            .unwrap();
    }
    wait_dispatch(&s);
    assert_eq!(s.offset_in_queue_by_time("Time", 0, t0 + 4500), 5);
    assert_eq!(s.offset_in_queue_by_time("Time", 0, t0 + 4000), 4);
    assert_eq!(s.offset_in_queue_by_time("Time", 0, 0), 0);
    assert_eq!(s.offset_in_queue_by_time("Time", 0, t0 + 100_000), 10);
    assert_eq!(
        s.offset_in_queue_by_time_boundary("Time", 0, t0 + 4500, true),
        4
    );
    assert_eq!(
        s.offset_in_queue_by_time_boundary("Time", 0, t0 + 4000, true),
        4
    );
    assert_eq!(
        s.offset_in_queue_by_time_boundary("Time", 0, t0 + 4000, false),
        4
    );
    assert_eq!(
        s.offset_in_queue_by_time_boundary("Time", 0, t0 + 99_000, true),
        9
    );
    assert_eq!(s.earliest_message_time("Time", 0), t0);
    assert_eq!(s.message_store_timestamp("Time", 0, 7), t0 + 7000);
    assert_eq!(s.message_store_timestamp("Time", 0, 70), -1);
    s.shutdown();
}

#[test]
fn arrival_listener_and_delete_topics() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::AsyncFlush, &te);
    let (tx, rx) = std::sync::mpsc::channel();
    s.set_message_arrival_listener(Arc::new(move |t: &str, q, next, code| {
        let _ = tx.send((t.to_string(), q, next, code));
    }));
    let rt = rt();
    rt.block_on(s.put_message(tagged("L", 2, b"x", "TagA")))
        .unwrap();
    let got = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(got, ("L".to_string(), 2, 1, tags_hash("TagA")));
    s.delete_topics(&["L".to_string()]);
    assert_eq!(s.max_offset_in_queue("L", 2), 0);
    assert!(!dir.path().join("consumequeue").join("L").exists());
    let r = rt
        .block_on(s.put_message(tagged("L", 2, b"y", "TagA")))
        .unwrap();
    assert_eq!(r.queue_offset, 0, "offsets restart for a deleted topic");
    let stats = s.runtime_stats();
    assert_eq!(stats.put_message_times_total, 2);
    s.shutdown();
}

/// Pulls run concurrently with appends across segment rollovers; every record a reader sees
/// is complete and in order (publication happens after the bytes are written).
#[test]
fn concurrent_pulls_see_complete_records() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::AsyncFlush, &te);
    let total = 300i64;
    let reader = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            let mut next = 0i64;
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            s.set_message_arrival_listener(Arc::new(move |_: &str, _, _, _| {
                let _ = tx.send(());
            }));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while next < total {
                assert!(
                    std::time::Instant::now() < deadline,
                    "reader stuck at {next}"
                );
                let r = s.get_message("C", 0, next, 32, 1 << 20, &AcceptAllFilter);
                if r.status != GetMessageStatus::Found {
                    // Event-driven wait for the next dispatch (bounded).
                    let _ = rx.recv_timeout(std::time::Duration::from_millis(200));
                    continue;
                }
                for b in &r.messages {
                    let m = decode(b);
                    assert_eq!(m.queue_offset, next);
                    let expect = format!("{next:05}").repeat(200);
                    assert_eq!(&m.body[..], expect.as_bytes());
                    next += 1;
                }
            }
            next
        })
    };
    let rt = rt();
    for i in 0..total {
        let body = format!("{i:05}").repeat(200);
        rt.block_on(s.put_message(msg("C", 0, body.as_bytes(), "")))
            .unwrap();
    }
    assert!(
        s.commit_log_max_offset() > 2 * SEG as i64,
        "rolled over segments"
    );
    assert_eq!(reader.join().unwrap(), total);
    s.shutdown();
}

#[test]
fn dispatched_log_pages_leave_rss_and_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let body = vec![7u8; 3000];
    put_and_dispatch(&s, "RssTopic", &body, 1000);
    let log_dir = dir.path().join("commitlog");
    // Read through the mappings by the dispatcher: ~3 MB resident (SYNC_FLUSH: all on disk).
    let before = testkit::mapped_rss_kb(&log_dir);
    assert!(before >= 2_500, "resident before: {before} kB");
    s.release_mapped_pages(0);
    let after = testkit::mapped_rss_kb(&log_dir);
    assert!(
        after < 100,
        "resident after release: {after} kB (before {before} kB)"
    );
    // Still readable: pages fault back in from the page cache.
    assert_queue_holds(&s, "RssTopic", &body, 1000);
    // That lagging read mapped the pages again; the next pass drops them again (the read
    // lowered the released mark).
    assert!(
        testkit::mapped_rss_kb(&log_dir) >= 2_500,
        "the re-read mapped the log again"
    );
    s.release_mapped_pages(0);
    let again = testkit::mapped_rss_kb(&log_dir);
    assert!(again < 100, "resident after the second release: {again} kB");
}

/// Drop-behind on the single-replica log: dispatched, flushed bytes more than `keep` behind
/// the dispatcher leave the page cache, the kept tail stays, and everything stays readable.
#[test]
fn log_pages_behind_the_kept_tail_leave_the_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let body = vec![7u8; 3000];
    put_and_dispatch(&s, "DropTopic", &body, 1000);
    let log_dir = dir.path().join("commitlog");
    let end = s.commit_log_max_offset() as u64;
    let keep: u64 = 1 << 20;
    assert!(end > 2 * keep, "log of {end} bytes");
    s.release_mapped_pages(0);
    let cold = end - keep;
    assert!(
        cached_log_pages(&log_dir, SEG, 0, cold) > 0,
        "written pages start cached"
    );
    s.drop_log_page_cache(keep);
    // A folio may straddle the boundary: check up to a segment below it.
    assert_eq!(cached_log_pages(&log_dir, SEG, 0, cold - SEG), 0);
    let tail_pages = (keep / 4096) as usize;
    assert!(
        cached_log_pages(&log_dir, SEG, cold, end) >= tail_pages * 9 / 10,
        "the kept tail stays cached"
    );
    assert_queue_holds(&s, "DropTopic", &body, 1000);
}

/// A pull takes its records (noting the read) before its response is written, which is
/// when the pages are touched: a release pass in between must not leave those pages mapped
/// for good.
#[test]
fn pages_touched_after_a_pass_are_dropped_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let body = vec![5u8; 3000];
    put_and_dispatch(&s, "RssLate", &body, 1000);
    let log_dir = dir.path().join("commitlog");
    s.release_mapped_pages(0);
    assert!(testkit::mapped_rss_kb(&log_dir) < 100);
    let mut taken: Vec<bytes::Bytes> = Vec::new();
    while taken.len() < 1000 {
        let r = s.get_message(
            "RssLate",
            0,
            taken.len() as i64,
            32,
            64 << 20,
            &AcceptAllFilter,
        );
        assert!(!r.messages.is_empty());
        taken.extend(r.messages);
    }
    s.release_mapped_pages(0);
    // The response is written now, and its bytes dropped.
    let touched: usize = taken.iter().map(|b| decode(b).body.len()).sum();
    assert_eq!(touched, 1000 * body.len());
    drop(taken);
    assert!(
        testkit::mapped_rss_kb(&log_dir) >= 2_500,
        "the write mapped the pages"
    );
    s.release_mapped_pages(0);
    let after = testkit::mapped_rss_kb(&log_dir);
    assert!(after < 100, "resident after the next pass: {after} kB");
}

/// A consumer catching up on a topic of many queues reads each queue's records far apart in
/// the log, with release passes between its pulls; a fault maps the cached pages around a
/// record too (below it as well), and none of them may stay mapped.
#[test]
fn interleaved_catch_up_reads_leave_nothing_mapped() {
    const QUEUES: i32 = 8;
    const PER_QUEUE: i64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let body = vec![3u8; 1000];
    let rt = rt();
    for i in 0..PER_QUEUE {
        for q in 0..QUEUES {
            rt.block_on(s.put_message(msg("RssWide", q, &body, &format!("i={i}"))))
                .unwrap();
        }
    }
    wait_dispatch(&s);
    let log_dir = dir.path().join("commitlog");
    s.release_mapped_pages(0);
    assert!(testkit::mapped_rss_kb(&log_dir) < 100);
    let mut next = [0i64; QUEUES as usize];
    let mut pulls = 0;
    while next.iter().any(|n| *n < PER_QUEUE) {
        for q in 0..QUEUES {
            let at = next[q as usize];
            if at >= PER_QUEUE {
                continue;
            }
            let r = s.get_message("RssWide", q, at, 32, 64 << 20, &AcceptAllFilter);
            assert!(!r.messages.is_empty(), "queue {q} at {at}");
            for b in &r.messages {
                assert_eq!(decode(b).body.len(), body.len());
            }
            next[q as usize] += r.messages.len() as i64;
            pulls += 1;
            if pulls % 5 == 0 {
                s.release_mapped_pages(0);
            }
        }
    }
    s.release_mapped_pages(0);
    let after = testkit::mapped_rss_kb(&log_dir);
    assert!(after < 100, "resident after catching up: {after} kB");
}

#[test]
fn unflushed_log_pages_can_leave_rss_without_losing_data() {
    // ASYNC_FLUSH with a flush interval far beyond the test: the dispatched records are in
    // the page cache only when their mappings are dropped.
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let cfg = StoreConfig {
        flush_interval_commit_log_ms: 600_000,
        ..config(dir.path(), FlushDiskType::AsyncFlush)
    };
    let s = MessageStore::open_with_env(cfg.clone(), te.env()).unwrap();
    let body = vec![9u8; 3000];
    put_and_dispatch(&s, "RssAsync", &body, 1000);
    let log_dir = dir.path().join("commitlog");
    assert!(
        testkit::mapped_rss_kb(&log_dir) >= 2_500,
        "the dispatcher mapped the log"
    );
    s.release_mapped_pages(0);
    let after = testkit::mapped_rss_kb(&log_dir);
    assert!(after < 100, "resident after release: {after} kB");
    // Clean shutdown flushes; every record is intact after a reopen.
    s.shutdown();
    drop(s);
    let s = MessageStore::open_with_env(cfg, te.env()).unwrap();
    wait_dispatch(&s);
    assert_queue_holds(&s, "RssAsync", &body, 1000);
    s.shutdown();
}

/// Puts `count` messages with `body` into queue 0 of `topic` and waits for their dispatch.
fn put_and_dispatch(s: &MessageStore, topic: &str, body: &[u8], count: i64) {
    let rt = rt();
    for i in 0..count {
        rt.block_on(s.put_message(msg(topic, 0, body, &format!("i={i}"))))
            .unwrap();
    }
    wait_dispatch(s);
}

/// Queue 0 of `topic` holds `count` messages with `body`, at offsets 0.., all readable.
fn assert_queue_holds(s: &MessageStore, topic: &str, body: &[u8], count: i64) {
    let mut next = 0;
    while next < count {
        let r = s.get_message(topic, 0, next, 32, 64 << 20, &AcceptAllFilter);
        assert!(!r.messages.is_empty(), "nothing at {next}");
        for b in &r.messages {
            let m = decode(b);
            assert_eq!(&m.body[..], body);
            assert_eq!(m.queue_offset, next);
            next += 1;
        }
    }
}

/// Dispatch passes are paced (`dispatch_interval_us`): a commit that lands while the
/// dispatcher pauses must still be dispatched after the pause (a lost wake-up would show as
/// `wait_dispatch` timing out), and the longest interval is the largest one accepted.
#[test]
fn paced_dispatch_misses_no_commit_made_during_a_pause() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let cfg = StoreConfig {
        dispatch_interval_us: store::MAX_DISPATCH_INTERVAL_US,
        ..config(dir.path(), FlushDiskType::AsyncFlush)
    };
    let s = MessageStore::open_with_env(cfg.clone(), te.env()).unwrap();
    let rt = rt();
    let mut sent = 0i64;
    for burst in 1..=5i64 {
        // Each burst starts right after the previous one was dispatched, i.e. inside the
        // dispatcher's pause.
        for _ in 0..burst * 7 {
            rt.block_on(s.put_message(msg("Paced", 0, b"paced", "")))
                .unwrap();
            sent += 1;
        }
        wait_dispatch(&s);
        assert_queue_holds(&s, "Paced", b"paced", sent);
    }
    s.shutdown();

    let too_long = StoreConfig {
        dispatch_interval_us: store::MAX_DISPATCH_INTERVAL_US + 1,
        ..cfg
    };
    assert!(MessageStore::open_with_env(too_long, te.env()).is_err());
}

/// Consume-queue units behind each queue's 64 KiB tail and written index entries leave the
/// process's RSS in a release pass (they grow with every message), and both still answer.
#[test]
fn queue_and_index_pages_behind_the_tail_are_unmapped() {
    let dir = tempfile::tempdir().unwrap();
    let te = TestEnv::new();
    let s = open(dir.path(), FlushDiskType::SyncFlush, &te);
    let rt = rt();
    let n = 20_000i64;
    for i in 0..n {
        let props = format!("KEYS\u{1}key-{i}\u{2}");
        rt.block_on(s.put_message(msg("RssQueue", 0, b"x", &props)))
            .unwrap();
    }
    wait_dispatch(&s);
    let (cq_dir, index_dir) = (dir.path().join("consumequeue"), dir.path().join("index"));
    s.release_mapped_pages(0);
    // The housekeeping thread runs passes too; what counts is what stays mapped after one.
    // Unreleased, the queue maps 1,600 KiB (400 files of 50 units, a page each) and the
    // index its 20-byte entries (~390 KiB) plus the slot pages puts touched.
    let cq_kb = testkit::mapped_rss_kb(&cq_dir);
    let tail_files = 64 * 1024 / (50 * 20) + 2;
    assert!(cq_kb <= tail_files * 4, "{cq_kb} KiB of queue still mapped");
    // Index files of 64 entries here: every full one leaves, the one being written stays.
    let index_kb = testkit::mapped_rss_kb(&index_dir);
    assert!(index_kb <= 8, "{index_kb} KiB of index still mapped");
    // Everything still reads: the oldest units, and keys whose entries were unmapped.
    assert_queue_holds(&s, "RssQueue", b"x", n);
    for key in ["key-0", "key-9999", "key-19999"] {
        let r = s.query_message("RssQueue", key, 4, 0, i64::MAX);
        assert_eq!(r.messages.len(), 1, "{key}");
    }
}
