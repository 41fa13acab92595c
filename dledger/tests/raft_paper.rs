//! The Raft paper's rules, one test each (in the manner of etcd-io/raft `raft_paper_test.go`),
//! driven through the public `RawNode` API over `MemStorage`.

use bytes::Bytes;
use dledger::core::{
    Config, CoreError, Entry, EntryKind, HardState, MemStorage, Message, MsgKind, NodeId,
    ProposeError, RawNode, Ready, Role, SnapshotMeta, Storage,
};

fn cfg(id: NodeId, peers: &[NodeId]) -> Config {
    let mut c = Config::new(id, peers.to_vec());
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"x"),
    }
}

fn storage_with(entries: &[Entry], hs: HardState) -> MemStorage {
    let mut s = MemStorage::new();
    s.append(entries).expect("test log is contiguous");
    s.set_hard_state(hs);
    s
}

fn node(id: NodeId, peers: &[NodeId], s: MemStorage) -> RawNode<MemStorage> {
    RawNode::new(cfg(id, peers), s, id).expect("valid config")
}

/// Persist one Ready into the node's own MemStorage (all writes durable at once) and return
/// it with everything it asked to send.
fn persist(n: &mut RawNode<MemStorage>) -> (Ready, Vec<Message>) {
    let rd = n.ready();
    let st = n.storage_mut();
    if let Some(s) = rd.snapshot {
        st.apply_snapshot(s);
    }
    st.append(&rd.entries).expect("append in order");
    if let Some(hs) = rd.hard_state {
        st.set_hard_state(hs);
    }
    if let Some((i, t)) = rd.persist_point() {
        n.on_entries_persisted(i, t);
    }
    let mut msgs = rd.messages.clone();
    msgs.extend(rd.persisted_messages.clone());
    (rd, msgs)
}

fn drain(n: &mut RawNode<MemStorage>) -> Vec<Message> {
    let mut out = Vec::new();
    for _ in 0..16 {
        if !n.has_ready() {
            break;
        }
        out.extend(persist(n).1);
    }
    out
}

fn msg(from: NodeId, to: NodeId, term: u64, kind: MsgKind) -> Message {
    Message {
        from,
        to,
        term,
        kind,
    }
}

fn append(
    from: NodeId,
    to: NodeId,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Message {
    msg(
        from,
        to,
        term,
        MsgKind::Append {
            prev_index: prev.0,
            prev_term: prev.1,
            entries,
            commit,
            ctx: 1,
        },
    )
}

/// Node 1 of {1,2,3} elected leader in term 1 with its NOOP (index 1) committed.
fn leader() -> RawNode<MemStorage> {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    n.campaign();
    drain(&mut n);
    n.step(msg(2, 1, 1, MsgKind::VoteResp { reject: false }))
        .expect("step");
    assert_eq!(n.role(), Role::Leader);
    drain(&mut n);
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 1,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 1,
        },
    ))
    .expect("step");
    drain(&mut n);
    assert!(n.ready_for_writes());
    n
}

#[test]
fn core_is_sans_io() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let banned = [
        "tokio",
        "std::fs",
        "std::net",
        "std::thread",
        "Instant",
        "SystemTime",
    ];
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("src/core exists") {
        let path = e.expect("dir entry").path();
        if path.extension().is_some_and(|x| x == "rs") {
            let src = std::fs::read_to_string(&path).expect("readable source");
            for b in banned {
                assert!(!src.contains(b), "{} mentions {b}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "expected the core sources, saw {seen}");
}

#[test]
fn config_validate_rejects_bad_values() {
    let mut c = Config::new(1, vec![1, 2, 3]);
    assert!(c.validate().is_ok());
    c.lease_ticks = c.election_timeout_ticks;
    assert!(c.validate().is_err());
    let c = Config::new(4, vec![1, 2, 3]);
    assert!(matches!(
        RawNode::new(c, MemStorage::new(), 0),
        Err(CoreError::Config(_))
    ));
}

// §5.1: a server that sees a higher term updates its term and reverts to follower.
#[test]
fn follower_updates_term_on_higher_term() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    n.step(append(2, 1, 5, (0, 0), vec![], 0)).expect("step");
    assert_eq!(
        (n.term(), n.role(), n.leader()),
        (5, Role::Follower, Some(2))
    );
}

#[test]
fn leader_steps_down_on_higher_term() {
    let mut n = leader();
    n.step(msg(3, 1, 7, MsgKind::HeartbeatResp { ctx: 0 }))
        .expect("step");
    assert_eq!((n.term(), n.role(), n.leader()), (7, Role::Follower, None));
}

// §5.1: requests with a stale term are rejected, and the sender learns the newer term.
#[test]
fn rejects_stale_term() {
    let mut n = node(
        1,
        &[1, 2, 3],
        storage_with(
            &[],
            HardState {
                term: 3,
                vote: None,
                commit: 0,
            },
        ),
    );
    n.step(append(2, 1, 2, (0, 0), vec![ent(1, 2)], 0))
        .expect("step");
    assert_eq!(n.last_index(), 0, "stale append must not be accepted");
    let msgs = drain(&mut n);
    assert_eq!(msgs.len(), 1);
    assert_eq!((msgs[0].to, msgs[0].term), (2, 3));
}

// §5.2: a candidate increments its term, votes for itself and asks everyone; the request
// leaves only after the vote is durable.
#[test]
fn candidate_votes_for_self() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    n.campaign();
    assert_eq!(
        (n.role(), n.term(), n.vote()),
        (Role::Candidate, 1, Some(1))
    );
    let rd = n.ready();
    assert_eq!(rd.hard_state.map(|h| (h.term, h.vote)), Some((1, Some(1))));
    assert!(
        rd.messages.is_empty(),
        "vote requests must wait for persistence"
    );
    let mut to: Vec<NodeId> = rd.persisted_messages.iter().map(|m| m.to).collect();
    to.sort_unstable();
    assert_eq!(to, vec![2, 3]);
    assert!(rd
        .persisted_messages
        .iter()
        .all(|m| matches!(m.kind, MsgKind::Vote { .. })));
}

#[test]
fn candidate_wins_with_majority_and_loses_with_majority_reject() {
    let mut n = node(1, &[1, 2, 3, 4, 5], MemStorage::new());
    n.campaign();
    n.step(msg(2, 1, 1, MsgKind::VoteResp { reject: false }))
        .expect("step");
    assert_eq!(n.role(), Role::Candidate);
    n.step(msg(3, 1, 1, MsgKind::VoteResp { reject: false }))
        .expect("step");
    assert_eq!(n.role(), Role::Leader);

    let mut m = node(1, &[1, 2, 3, 4, 5], MemStorage::new());
    m.campaign();
    for from in [2, 3, 4] {
        m.step(msg(from, 1, 1, MsgKind::VoteResp { reject: true }))
            .expect("step");
    }
    assert_eq!(m.role(), Role::Follower);
}

// §5.2: each server votes for at most one candidate per term; the reply needs a durable vote.
#[test]
fn vote_once_per_term() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    let vote = |from| {
        msg(
            from,
            1,
            1,
            MsgKind::Vote {
                last_index: 0,
                last_term: 0,
                transfer: false,
            },
        )
    };
    n.step(vote(2)).expect("step");
    let rd = n.ready();
    assert_eq!(rd.hard_state.map(|h| h.vote), Some(Some(2)));
    assert!(rd.messages.is_empty());
    assert_eq!(
        rd.persisted_messages[0].kind,
        MsgKind::VoteResp { reject: false }
    );
    n.step(vote(3)).expect("step");
    assert_eq!(
        n.ready().persisted_messages[0].kind,
        MsgKind::VoteResp { reject: true }
    );
    n.step(vote(2)).expect("step");
    assert_eq!(
        n.ready().persisted_messages[0].kind,
        MsgKind::VoteResp { reject: false },
        "repeat grant"
    );
}

// §5.4.1: votes only for candidates whose log is at least as up-to-date.
#[test]
fn vote_requires_up_to_date_log() {
    // Our log: (1,1), (2,2), (3,2).
    let check = |last_index: u64, last_term: u64, expect_reject: bool| {
        let s = storage_with(
            &[ent(1, 1), ent(2, 2), ent(3, 2)],
            HardState {
                term: 2,
                vote: None,
                commit: 0,
            },
        );
        let mut n = node(1, &[1, 2, 3], s);
        n.step(msg(
            2,
            1,
            3,
            MsgKind::Vote {
                last_index,
                last_term,
                transfer: false,
            },
        ))
        .expect("step");
        let rd = n.ready();
        assert_eq!(
            rd.persisted_messages[0].kind,
            MsgKind::VoteResp {
                reject: expect_reject
            },
            "candidate last ({last_index},{last_term})"
        );
    };
    check(2, 1, true);
    check(9, 1, true);
    check(2, 2, true);
    check(3, 2, false);
    check(4, 2, false);
    check(1, 3, false);
}

// §5.2: an election timeout is randomized in [et, 2et).
#[test]
fn election_timeout_is_randomized() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let mut n = RawNode::new(cfg(1, &[1, 2, 3]), MemStorage::new(), seed).expect("config");
        let et = n.config().election_timeout_ticks;
        let mut ticks = 0;
        while n.role() == Role::Follower {
            n.tick();
            ticks += 1;
            assert!(ticks < 2 * et, "no campaign within 2*et");
        }
        assert!(ticks >= et, "campaigned after {ticks} < et ticks");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts not randomized: {seen:?}");
}

// §8: a new leader appends a NOOP of its term; writes are accepted only once it commits.
#[test]
fn leader_appends_noop_and_waits_for_it() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    n.campaign();
    drain(&mut n);
    n.step(msg(2, 1, 1, MsgKind::VoteResp { reject: false }))
        .expect("step");
    assert_eq!(n.role(), Role::Leader);
    assert_eq!(
        n.propose(Bytes::from_static(b"a")),
        Err(ProposeError::NotReady)
    );
    let (rd, msgs) = persist(&mut n);
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(
        (rd.entries[0].index, rd.entries[0].term, rd.entries[0].kind),
        (1, 1, EntryKind::Noop)
    );
    assert!(!rd.ready_for_writes);
    assert!(msgs
        .iter()
        .any(|m| matches!(&m.kind, MsgKind::Append { entries, .. } if entries.len() == 1)));
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 1,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 1,
        },
    ))
    .expect("step");
    let rd = n.ready();
    assert!(rd.ready_for_writes);
    assert_eq!(rd.committed_entries.len(), 1);
    assert_eq!(n.propose(Bytes::from_static(b"a")), Ok(2));
}

#[test]
fn follower_rejects_proposals_with_leader_hint() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    n.step(append(3, 1, 1, (0, 0), vec![], 0)).expect("step");
    assert_eq!(
        n.propose(Bytes::new()),
        Err(ProposeError::NotLeader {
            leader_hint: Some(3)
        })
    );
}

// §5.3/§5.4: the leader commits once a quorum holds the entry DURABLY, counting its own
// durable index (not what it merely appended).
#[test]
fn leader_commit_counts_durable_indexes() {
    let mut n = leader();
    let idx = n.propose(Bytes::from_static(b"a")).expect("leader");
    let rd = n.ready(); // not persisted yet
    assert_eq!(rd.entries.len(), 1);
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: idx,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 2,
        },
    ))
    .expect("step");
    // 2 of 3 durable (follower 2 + ... no, leader not durable): follower alone is not a quorum.
    assert_eq!(n.committed(), 1);
    n.storage_mut().append(&rd.entries).expect("append");
    n.on_entries_persisted(idx, 1);
    assert_eq!(n.committed(), idx);
}

#[test]
fn leader_commit_with_followers_before_own_fsync() {
    let mut n = leader();
    let idx = n.propose(Bytes::from_static(b"a")).expect("leader");
    let rd = n.ready();
    for f in [2, 3] {
        n.step(msg(
            f,
            1,
            1,
            MsgKind::AppendResp {
                index: idx,
                reject: false,
                hint_index: 0,
                hint_term: 0,
                ctx: 2,
            },
        ))
        .expect("step");
    }
    assert_eq!(n.committed(), idx, "two durable followers are a quorum");
    // ...but it is handed out (and persisted as the commit) only once durable locally too:
    // the runtime reads what it dispatches from its own store.
    let rd2 = n.ready();
    assert!(rd2.committed_entries.is_empty());
    if let Some(h) = rd2.hard_state {
        assert!(h.commit < idx);
    }
    n.storage_mut().append(&rd.entries).expect("append");
    n.on_entries_persisted(idx, 1);
    let rd3 = n.ready();
    assert_eq!(rd3.committed_entries.last().map(|e| e.index), Some(idx));
    assert_eq!(rd3.hard_state.map(|h| h.commit), Some(idx));
}

// §5.4.2 (figure 8): an entry from an older term is never committed by counting replicas.
#[test]
fn commit_only_current_term_by_counting() {
    // Node 1 holds (1,1),(2,2) and becomes leader in term 3.
    let s = storage_with(
        &[ent(1, 1), ent(2, 2)],
        HardState {
            term: 2,
            vote: None,
            commit: 1,
        },
    );
    let mut n = node(1, &[1, 2, 3], s);
    n.campaign();
    drain(&mut n);
    n.step(msg(2, 1, 3, MsgKind::VoteResp { reject: false }))
        .expect("step");
    assert_eq!(n.role(), Role::Leader);
    drain(&mut n); // NOOP at index 3, durable
    n.step(msg(
        2,
        1,
        3,
        MsgKind::AppendResp {
            index: 2,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 1,
        },
    ))
    .expect("step");
    assert_eq!(
        n.committed(),
        1,
        "term-2 entry must not commit by counting in term 3"
    );
    n.step(msg(
        2,
        1,
        3,
        MsgKind::AppendResp {
            index: 3,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 1,
        },
    ))
    .expect("step");
    assert_eq!(
        n.committed(),
        3,
        "the term-3 NOOP commits everything before it"
    );
}

// §5.3: a follower rejects an append whose previous entry does not match, with a hint.
#[test]
fn follower_rejects_mismatched_prev() {
    let s = storage_with(
        &[ent(1, 1), ent(2, 1)],
        HardState {
            term: 1,
            vote: None,
            commit: 0,
        },
    );
    let mut n = node(1, &[1, 2, 3], s);
    n.step(append(2, 1, 3, (5, 3), vec![ent(6, 3)], 0))
        .expect("step");
    let msgs = drain(&mut n);
    let hint = msgs.iter().find_map(|m| match m.kind {
        MsgKind::AppendResp {
            reject: true,
            hint_index,
            hint_term,
            index,
            ..
        } => Some((index, hint_index, hint_term)),
        _ => None,
    });
    assert_eq!(hint, Some((5, 2, 1)));
    assert_eq!(n.last_index(), 2);
}

// §5.3: conflicting entries (same index, different term) and all after them are deleted.
#[test]
fn follower_truncates_conflicting_entries() {
    let s = storage_with(
        &[ent(1, 1), ent(2, 1), ent(3, 2), ent(4, 2)],
        HardState {
            term: 2,
            vote: None,
            commit: 1,
        },
    );
    let mut n = node(1, &[1, 2, 3], s);
    n.step(append(2, 1, 3, (1, 1), vec![ent(2, 1), ent(3, 3)], 1))
        .expect("step");
    let (rd, msgs) = persist(&mut n);
    assert_eq!(
        rd.entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>(),
        vec![(3, 3)]
    );
    assert_eq!((n.last_index(), n.term_of(3)), (3, Ok(3)));
    assert_eq!(n.storage().last_index(), 3);
    assert!(
        rd.messages.is_empty(),
        "append responses wait for persistence"
    );
    assert!(msgs.iter().any(|m| matches!(
        m.kind,
        MsgKind::AppendResp {
            index: 3,
            reject: false,
            ..
        }
    )));
}

// §5.3: follower commit = min(leader commit, index of last new entry).
#[test]
fn follower_commit_bounded_by_last_new_entry() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    n.step(append(2, 1, 1, (0, 0), vec![ent(1, 1), ent(2, 1)], 5))
        .expect("step");
    assert_eq!(n.committed(), 2);
    n.step(msg(2, 1, 1, MsgKind::Heartbeat { commit: 9, ctx: 1 }))
        .expect("step");
    assert_eq!(n.committed(), 2);
}

// The leader never tells a follower to commit past what that follower holds.
#[test]
fn heartbeat_commit_bounded_by_match() {
    let mut n = leader();
    n.tick();
    n.tick();
    let msgs = drain(&mut n);
    let to3 = msgs.iter().find_map(|m| match m.kind {
        MsgKind::Heartbeat { commit, .. } if m.to == 3 => Some(commit),
        _ => None,
    });
    let to2 = msgs.iter().find_map(|m| match m.kind {
        MsgKind::Heartbeat { commit, .. } if m.to == 2 => Some(commit),
        _ => None,
    });
    assert_eq!((to2, to3), (Some(1), Some(0)));
}

// Pre-vote (thesis §9.6): no term change until a quorum would grant.
#[test]
fn prevote_does_not_bump_term() {
    let mut c = cfg(1, &[1, 2, 3]);
    c.pre_vote = true;
    let mut n = RawNode::new(c, MemStorage::new(), 1).expect("config");
    n.campaign();
    assert_eq!((n.role(), n.term()), (Role::PreCandidate, 0));
    let rd = n.ready();
    assert!(rd
        .messages
        .iter()
        .all(|m| matches!(m.kind, MsgKind::PreVote { .. }) && m.term == 1));
    n.step(msg(2, 1, 1, MsgKind::PreVoteResp { reject: false }))
        .expect("step");
    assert_eq!((n.role(), n.term()), (Role::Candidate, 1));
}

// Check-quorum: a leader that heard from no quorum within an election timeout steps down;
// its lease expires before that.
#[test]
fn check_quorum_steps_down_and_lease_expires() {
    let mut c = cfg(1, &[1, 2, 3]);
    c.check_quorum = true;
    let mut n = RawNode::new(c, MemStorage::new(), 3).expect("config");
    n.campaign();
    drain(&mut n);
    n.step(msg(2, 1, 1, MsgKind::VoteResp { reject: false }))
        .expect("step");
    drain(&mut n);
    assert!(!n.lease_valid(), "no acknowledgement yet");
    let ctx = match drain_after_tick(&mut n)
        .into_iter()
        .find(|m| m.to == 2)
        .map(|m| m.kind)
    {
        Some(MsgKind::Heartbeat { ctx, .. }) => ctx,
        other => panic!("expected heartbeat, got {other:?}"),
    };
    n.step(msg(2, 1, 1, MsgKind::HeartbeatResp { ctx }))
        .expect("step");
    assert!(n.lease_valid());
    let et = n.config().election_timeout_ticks;
    let lease = n.config().lease_ticks;
    let mut lease_gone_at = None;
    for t in 0..3 * et {
        n.tick();
        if lease_gone_at.is_none() && !n.lease_valid() {
            lease_gone_at = Some(t);
        }
        if n.role() != Role::Leader {
            break;
        }
    }
    assert_eq!(n.role(), Role::Follower);
    assert!(lease_gone_at.is_some_and(|t| t < lease));
}

fn drain_after_tick(n: &mut RawNode<MemStorage>) -> Vec<Message> {
    for _ in 0..8 {
        n.tick();
        let msgs = drain(n);
        if msgs
            .iter()
            .any(|m| matches!(m.kind, MsgKind::Heartbeat { .. }))
        {
            return msgs;
        }
    }
    Vec::new()
}

// Followers that recently heard from a leader ignore (pre-)votes: no disruption, safe leases.
#[test]
fn follower_in_lease_ignores_votes() {
    let mut c = cfg(1, &[1, 2, 3]);
    c.check_quorum = true;
    let mut n = RawNode::new(c, MemStorage::new(), 3).expect("config");
    for _ in 0..20 {
        n.tick();
    }
    let _ = drain(&mut n);
    let mut n2 = n;
    n2.step(append(2, 1, 5, (0, 0), vec![], 0)).expect("step");
    let _ = drain(&mut n2);
    n2.step(msg(
        3,
        1,
        6,
        MsgKind::Vote {
            last_index: 9,
            last_term: 9,
            transfer: false,
        },
    ))
    .expect("step");
    assert_eq!(n2.term(), 5, "vote inside lease ignored");
    n2.step(msg(
        3,
        1,
        6,
        MsgKind::Vote {
            last_index: 9,
            last_term: 9,
            transfer: true,
        },
    ))
    .expect("step");
    assert_eq!(
        (n2.term(), n2.vote()),
        (6, Some(3)),
        "transfer votes bypass the lease"
    );
}

// Leadership transfer: catch the target up, send TimeoutNow, step down.
#[test]
fn leadership_transfer() {
    let mut n = leader();
    n.transfer_leader(3);
    let msgs = drain(&mut n);
    assert!(
        !msgs.iter().any(|m| m.kind == MsgKind::TimeoutNow),
        "target not caught up yet"
    );
    assert_eq!(n.role(), Role::Leader);
    assert_eq!(n.propose(Bytes::new()), Err(ProposeError::Transferring));
    n.step(msg(
        3,
        1,
        1,
        MsgKind::AppendResp {
            index: 1,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 3,
        },
    ))
    .expect("step");
    let msgs = drain(&mut n);
    assert!(msgs
        .iter()
        .any(|m| m.to == 3 && m.kind == MsgKind::TimeoutNow));
    assert_eq!(n.role(), Role::Follower);

    // The target campaigns immediately, flagged as a transfer.
    let mut t = node(3, &[1, 2, 3], MemStorage::new());
    t.step(append(
        1,
        3,
        1,
        (0, 0),
        vec![Entry {
            index: 1,
            term: 1,
            kind: EntryKind::Noop,
            data: Bytes::new(),
        }],
        1,
    ))
    .expect("step");
    drain(&mut t);
    t.step(msg(1, 3, 1, MsgKind::TimeoutNow)).expect("step");
    assert_eq!((t.role(), t.term()), (Role::Candidate, 2));
    let msgs = drain(&mut t);
    assert!(msgs
        .iter()
        .all(|m| matches!(m.kind, MsgKind::Vote { transfer: true, .. })));
}

// A follower behind the leader's first retained entry gets InstallSnapshot and restarts its log.
#[test]
fn lagging_follower_gets_snapshot() {
    let mut n = leader();
    for _ in 0..5 {
        n.propose(Bytes::from_static(b"p")).expect("leader");
    }
    drain(&mut n);
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 6,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 4,
        },
    ))
    .expect("step");
    drain(&mut n);
    assert_eq!(n.committed(), 6);
    n.compact(5).expect("compact within applied");
    assert!(matches!(
        n.compact(99),
        Err(CoreError::CompactTooFar { .. })
    ));
    // Follower 3 never answered the first probe; its heartbeat response resumes probing
    // from index 1, which is compacted now.
    n.step(msg(3, 1, 1, MsgKind::HeartbeatResp { ctx: 4 }))
        .expect("step");
    let msgs = drain(&mut n);
    let snap = msgs.iter().find_map(|m| match m.kind {
        MsgKind::InstallSnapshot { snapshot } if m.to == 3 => Some(snapshot),
        _ => None,
    });
    assert_eq!(snap, Some(SnapshotMeta { index: 4, term: 1 }));

    let mut f = node(3, &[1, 2, 3], MemStorage::new());
    f.step(msg(
        1,
        3,
        1,
        MsgKind::InstallSnapshot {
            snapshot: SnapshotMeta { index: 4, term: 1 },
        },
    ))
    .expect("step");
    let (rd, msgs) = persist(&mut f);
    assert_eq!(rd.snapshot, Some(SnapshotMeta { index: 4, term: 1 }));
    assert_eq!((f.first_index(), f.last_index(), f.committed()), (5, 4, 4));
    assert!(msgs.iter().any(|m| matches!(
        m.kind,
        MsgKind::AppendResp {
            index: 4,
            reject: false,
            ..
        }
    )));
}

// Backpressure: too many uncommitted bytes refuse new proposals.
#[test]
fn backpressure_on_uncommitted_bytes() {
    let mut c = cfg(1, &[1, 2, 3]);
    c.max_uncommitted_bytes = 100;
    let mut n = RawNode::new(c, MemStorage::new(), 1).expect("config");
    n.campaign();
    drain(&mut n);
    n.step(msg(2, 1, 1, MsgKind::VoteResp { reject: false }))
        .expect("step");
    drain(&mut n);
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 1,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 1,
        },
    ))
    .expect("step");
    drain(&mut n);
    let data = Bytes::from(vec![0u8; 40]);
    assert!(n.propose(data.clone()).is_ok());
    assert_eq!(n.propose(data.clone()), Err(ProposeError::Backpressure));
    drain(&mut n);
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 2,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 1,
        },
    ))
    .expect("step");
    assert!(n.propose(data).is_ok(), "commit frees the budget");
}

// A node that lost acknowledged data neither votes nor campaigns until caught up.
#[test]
fn recovering_node_abstains() {
    let mut s = storage_with(
        &[ent(1, 1)],
        HardState {
            term: 2,
            vote: None,
            commit: 1,
        },
    );
    s.data_loss = Some(dledger::core::DataLoss {
        term_at_loss: 2,
        known_last_index: Some(5),
    });
    let mut n = node(1, &[1, 2, 3], s);
    assert!(n.is_recovering());
    n.campaign();
    assert_eq!(n.role(), Role::Follower);
    n.step(msg(
        2,
        1,
        3,
        MsgKind::Vote {
            last_index: 9,
            last_term: 3,
            transfer: false,
        },
    ))
    .expect("step");
    assert_eq!(
        n.ready().persisted_messages[0].kind,
        MsgKind::VoteResp { reject: true }
    );
    n.step(append(2, 1, 3, (1, 1), vec![ent(2, 2), ent(3, 3)], 3))
        .expect("step");
    assert!(
        !n.is_recovering(),
        "an entry newer than the loss term proves catch-up"
    );
}

// Entries of a newer term survived a crash but the hard state did not: never vote again in it.
#[test]
fn restart_with_entries_newer_than_hard_state() {
    let s = storage_with(
        &[ent(1, 1), ent(2, 4)],
        HardState {
            term: 2,
            vote: Some(2),
            commit: 0,
        },
    );
    let mut n = node(1, &[1, 2, 3], s);
    assert_eq!((n.term(), n.vote()), (4, Some(1)));
    n.step(msg(
        3,
        1,
        4,
        MsgKind::Vote {
            last_index: 9,
            last_term: 4,
            transfer: false,
        },
    ))
    .expect("step");
    assert_eq!(
        n.ready().persisted_messages[0].kind,
        MsgKind::VoteResp { reject: true }
    );
}

#[test]
fn single_node_commits_on_own_persistence() {
    let mut n = RawNode::new(cfg(1, &[1]), MemStorage::new(), 1).expect("config");
    n.campaign();
    assert_eq!(n.role(), Role::Leader);
    drain(&mut n);
    assert!(n.ready_for_writes());
    let idx = n.propose(Bytes::from_static(b"solo")).expect("leader");
    let (_, _) = persist(&mut n);
    let rd = n.ready();
    assert_eq!(rd.committed_entries.last().map(|e| e.index), Some(idx));
}

#[test]
fn messages_to_unknown_peers_are_errors() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    assert!(matches!(
        n.step(msg(9, 1, 1, MsgKind::TimeoutNow)),
        Err(CoreError::UnknownPeer(9))
    ));
    assert!(matches!(
        n.step(msg(2, 7, 1, MsgKind::TimeoutNow)),
        Err(CoreError::WrongRecipient { .. })
    ));
}

// A malformed batch (gap between prev and the entries) is dropped, not trusted.
#[test]
fn malformed_append_is_dropped() {
    let mut n = node(1, &[1, 2, 3], MemStorage::new());
    n.step(append(2, 1, 1, (0, 0), vec![ent(2, 1)], 0))
        .expect("step");
    assert_eq!(n.last_index(), 0);
    n.step(append(2, 1, 1, (0, 0), vec![ent(1, 5)], 0))
        .expect("step");
    assert_eq!(n.last_index(), 0, "entry term above the sender's term");
}

// The leader's appends may leave before its own fsync; only its commit waits for it.
#[test]
fn leader_appends_leave_before_own_fsync() {
    let mut n = leader();
    let idx = n.propose(Bytes::from_static(b"a")).expect("leader");
    let idx2 = n.propose(Bytes::from_static(b"b")).expect("leader");
    let rd = n.ready();
    assert_eq!(
        rd.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![idx, idx2]
    );
    let to2: Vec<&Message> = rd.messages.iter().filter(|m| m.to == 2).collect();
    assert_eq!(
        to2.len(),
        1,
        "proposals between two ready() calls are batched"
    );
    assert!(matches!(&to2[0].kind, MsgKind::Append { entries, .. } if entries.len() == 2));
}

// Pipelining is bounded by the inflight window.
#[test]
fn replicate_window_bounds_pipelining() {
    let mut c = cfg(1, &[1, 2, 3]);
    c.max_inflight_msgs = 2;
    c.max_size_per_msg_bytes = 30; // one small entry per message
    let mut n = RawNode::new(c, MemStorage::new(), 1).expect("config");
    n.campaign();
    drain(&mut n);
    n.step(msg(2, 1, 1, MsgKind::VoteResp { reject: false }))
        .expect("step");
    drain(&mut n);
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 1,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 1,
        },
    ))
    .expect("step");
    drain(&mut n);
    for _ in 0..5 {
        n.propose(Bytes::from_static(b"z")).expect("leader");
    }
    let msgs = drain(&mut n);
    let appends = msgs
        .iter()
        .filter(|m| m.to == 2 && matches!(m.kind, MsgKind::Append { .. }))
        .count();
    assert_eq!(appends, 2, "window of 2 in Replicate state");
}

// A follower that lost acknowledged entries rejects below its old match: the leader resets
// its view and probes from what the follower still has.
#[test]
fn leader_resets_match_after_follower_data_loss() {
    let mut n = leader();
    for _ in 0..3 {
        n.propose(Bytes::from_static(b"p")).expect("leader");
    }
    drain(&mut n);
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 4,
            reject: false,
            hint_index: 0,
            hint_term: 0,
            ctx: 2,
        },
    ))
    .expect("step");
    drain(&mut n);
    assert_eq!(
        n.status().progress.iter().find(|p| p.0 == 2).map(|p| p.1),
        Some(4)
    );
    n.step(msg(
        2,
        1,
        1,
        MsgKind::AppendResp {
            index: 4,
            reject: true,
            hint_index: 1,
            hint_term: 1,
            ctx: 3,
        },
    ))
    .expect("step");
    let msgs = drain(&mut n);
    assert_eq!(
        n.status()
            .progress
            .iter()
            .find(|p| p.0 == 2)
            .map(|p| (p.1, p.2)),
        Some((1, 2))
    );
    assert!(msgs
        .iter()
        .any(|m| m.to == 2 && matches!(m.kind, MsgKind::Append { prev_index: 1, .. })));
}

// Stale or duplicated responses never move a follower's match backwards.
#[test]
fn stale_responses_are_harmless() {
    let mut n = leader();
    n.propose(Bytes::from_static(b"p")).expect("leader");
    drain(&mut n);
    let ok = |i| {
        msg(
            2,
            1,
            1,
            MsgKind::AppendResp {
                index: i,
                reject: false,
                hint_index: 0,
                hint_term: 0,
                ctx: 2,
            },
        )
    };
    n.step(ok(2)).expect("step");
    n.step(ok(1)).expect("step");
    n.step(ok(2)).expect("step");
    assert_eq!(
        n.status().progress.iter().find(|p| p.0 == 2).map(|p| p.1),
        Some(2)
    );
    assert_eq!(n.committed(), 2);
}

mod backoff {
    use super::*;
    use proptest::prelude::*;

    fn log_from_terms(terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| ent(i as u64 + 1, t))
            .collect()
    }

    fn leader_term_at(l: &[u64], i: u64) -> u64 {
        if i == 0 {
            0
        } else {
            l[(i - 1) as usize]
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// A divergent follower converges to the leader's log through reject hints, in a number
        /// of round trips bounded by the terms involved (not by the log length), and its
        /// conflicting tail is truncated.
        #[test]
        fn divergent_follower_converges(
            mut lterms in proptest::collection::vec(1u64..6, 0..40),
            mut fsuffix in proptest::collection::vec(1u64..6, 0..15),
            prefix_frac in 0.0f64..1.0,
        ) {
            lterms.sort_unstable();
            fsuffix.sort_unstable();
            let p = ((lterms.len() as f64) * prefix_frac) as usize;
            let base = if p == 0 { 0 } else { lterms[p - 1] };
            let fsuffix: Vec<u64> = fsuffix.into_iter().map(|t| t.max(base)).collect();
            // Log Matching: a divergent entry never shares (index, term) with the leader.
            for (k, &t) in fsuffix.iter().enumerate() {
                prop_assume!(lterms.get(p + k) != Some(&t));
            }
            let mut fterms: Vec<u64> = lterms[..p].to_vec();
            fterms.extend(&fsuffix);
            let leader_term = lterms.iter().chain(fterms.iter()).copied().max().unwrap_or(0) + 1;
            let hs = HardState { term: leader_term - 1, vote: None, commit: 0 };
            let mut f = node(2, &[1, 2, 3], storage_with(&log_from_terms(&fterms), hs));
            let lastl = lterms.len() as u64;
            let mut prev = lastl;
            let mut trips = 0;
            loop {
                trips += 1;
                prop_assert!(trips <= 16, "too many round trips");
                let entries: Vec<Entry> = (prev + 1..=lastl).map(|i| ent(i, leader_term_at(&lterms, i))).collect();
                let m = append(1, 2, leader_term, (prev, leader_term_at(&lterms, prev)), entries, 0);
                f.step(m).expect("step");
                let msgs = drain(&mut f);
                let resp = msgs.iter().find_map(|m| match m.kind {
                    MsgKind::AppendResp { index, reject, hint_index, hint_term, .. } => Some((index, reject, hint_index, hint_term)),
                    _ => None,
                });
                let Some((index, reject, hint_index, hint_term)) = resp else {
                    return Err(TestCaseError::fail("no append response"));
                };
                if !reject {
                    prop_assert_eq!(index, lastl);
                    break;
                }
                // Leader side of the back-off (as the core does): largest index <= hint whose
                // term is <= the follower's hint term.
                let mut probe = hint_index.min(lastl);
                while probe > 0 && leader_term_at(&lterms, probe) > hint_term {
                    probe -= 1;
                }
                prop_assert!(probe < prev, "no progress: prev {} probe {}", prev, probe);
                prop_assert_eq!(index, prev, "a reject names the rejected prev index");
                prev = probe;
            }
            // The leader's log is now a prefix; an extra (uncommitted) tail may remain until
            // the leader appends over it (only conflicting entries are deleted, §5.3).
            prop_assert!(f.last_index() >= lastl);
            let got: Vec<u64> = (1..=lastl).map(|i| f.term_of(i).unwrap_or(0)).collect();
            prop_assert_eq!(got, lterms);
        }
    }
}
