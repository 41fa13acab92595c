//! Transport codec: every message round-trips; arbitrary or mutated frames are rejected
//! without panicking; a live transport delivers frames between two endpoints on 127.0.0.1.

use bytes::{Bytes, BytesMut};
use dledger::core::{Entry, EntryKind, Message, MsgKind, SnapshotMeta};
use dledger::transport::codec::{decode, encode, encoded_len, keeps_frame_bytes};
use proptest::prelude::*;

fn entry_strategy() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![Just(EntryKind::Normal), Just(EntryKind::Noop)],
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(index, term, kind, data)| Entry {
            index,
            term,
            kind,
            data: Bytes::from(data),
        })
}

fn kind_strategy() -> impl Strategy<Value = MsgKind> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(last_index, last_term)| MsgKind::PreVote {
            last_index,
            last_term
        }),
        any::<bool>().prop_map(|reject| MsgKind::PreVoteResp { reject }),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(last_index, last_term, transfer)| {
                MsgKind::Vote {
                    last_index,
                    last_term,
                    transfer,
                }
            }
        ),
        any::<bool>().prop_map(|reject| MsgKind::VoteResp { reject }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(entry_strategy(), 0..6),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(prev_index, prev_term, entries, commit, ctx)| MsgKind::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                    ctx
                }
            ),
        (
            any::<u64>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(index, reject, hint_index, hint_term, ctx)| MsgKind::AppendResp {
                    index,
                    reject,
                    hint_index,
                    hint_term,
                    ctx
                }
            ),
        (any::<u64>(), any::<u64>()).prop_map(|(commit, ctx)| MsgKind::Heartbeat { commit, ctx }),
        any::<u64>().prop_map(|ctx| MsgKind::HeartbeatResp { ctx }),
        (any::<u64>(), any::<u64>()).prop_map(|(index, term)| MsgKind::InstallSnapshot {
            snapshot: SnapshotMeta { index, term }
        }),
        Just(MsgKind::TimeoutNow),
    ]
}

fn msg_strategy() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), kind_strategy()).prop_map(
        |(from, to, term, kind)| Message {
            from,
            to,
            term,
            kind,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip(msg in msg_strategy(), aux in any::<u64>()) {
        let mut buf = BytesMut::new();
        encode(&msg, aux, &mut buf);
        prop_assert_eq!(buf.len(), encoded_len(&msg));
        let (back, back_aux) = decode(buf.freeze()).unwrap();
        let is_snap = matches!(msg.kind, MsgKind::InstallSnapshot { .. });
        prop_assert_eq!(back, msg);
        prop_assert_eq!(back_aux, if is_snap { aux } else { 0 });
    }

    /// The transport copies small frames out of its read buffer only when their message
    /// keeps slices of them: AppendEntries, and nothing else, read off a real encoding.
    #[test]
    fn only_append_frames_keep_their_bytes(msg in msg_strategy()) {
        let mut buf = BytesMut::new();
        encode(&msg, 0, &mut buf);
        let is_append = matches!(msg.kind, MsgKind::Append { .. });
        prop_assert_eq!(keeps_frame_bytes(&buf), is_append);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(Bytes::from(bytes));
    }

    #[test]
    fn truncated_frames_are_rejected(msg in msg_strategy(), cut in any::<prop::sample::Index>()) {
        let mut buf = BytesMut::new();
        encode(&msg, 9, &mut buf);
        let full = buf.freeze();
        let cut = cut.index(full.len());
        prop_assert!(decode(full.slice(..cut)).is_err());
        // Extra bytes are rejected too.
        let mut longer = BytesMut::from(&full[..]);
        longer.extend_from_slice(&[0]);
        prop_assert!(decode(longer.freeze()).is_err());
    }

    #[test]
    fn mutated_frames_never_panic(msg in msg_strategy(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = BytesMut::new();
        encode(&msg, 0, &mut buf);
        let i = at.index(buf.len());
        buf[i] = byte;
        let _ = decode(buf.freeze());
    }
}

#[test]
fn huge_entry_count_is_rejected_without_allocating() {
    let msg = Message {
        from: 1,
        to: 2,
        term: 3,
        kind: MsgKind::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![],
            commit: 0,
            ctx: 0,
        },
    };
    let mut buf = BytesMut::new();
    encode(&msg, 0, &mut buf);
    let n = buf.len();
    buf[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(decode(buf.freeze()).is_err());
}
