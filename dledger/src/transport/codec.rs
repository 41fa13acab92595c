//! Compact binary encoding of `core::Message` (big-endian), used inside length-prefixed
//! frames. The decoder validates every length against the remaining input and the frame
//! limit, so corrupt or hostile input yields `CodecError`, never a panic or a huge allocation.
//!
//! Message: `from u64 | to u64 | term u64 | tag u8 | fields…`
//! `InstallSnapshot` additionally carries `next_pos u64`: the leader's physical position of
//! entry `snapshot.index + 1`, so a follower that restarts its log there writes every entry at
//! the same position as the leader (physical offsets are identical cluster-wide, as DLedger
//! requires). The core does not know positions; the runtime passes it as `aux`.
//! Entry:   `index u64 | term u64 | kind u8 | len u32 | data`

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::core::{Entry, EntryKind, Message, MsgKind, SnapshotMeta};

/// Bound on entries in one append message (the frame size bounds it too).
pub const MAX_ENTRIES_PER_MSG: usize = 64 * 1024;
const ENTRY_HEADER_BYTES: usize = 8 + 8 + 1 + 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message truncated: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("unknown entry kind {0}")]
    UnknownEntryKind(u8),
    #[error("invalid bool byte {0}")]
    BadBool(u8),
    #[error("too many entries: {0}")]
    TooManyEntries(u32),
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
}

const TAG_PRE_VOTE: u8 = 1;
const TAG_PRE_VOTE_RESP: u8 = 2;
const TAG_VOTE: u8 = 3;
const TAG_VOTE_RESP: u8 = 4;
pub(crate) const TAG_APPEND: u8 = 5;
pub(crate) const TAG_APPEND_RESP: u8 = 6;
const TAG_HEARTBEAT: u8 = 7;
const TAG_HEARTBEAT_RESP: u8 = 8;
const TAG_INSTALL_SNAPSHOT: u8 = 9;
const TAG_TIMEOUT_NOW: u8 = 10;

fn kind_code(k: EntryKind) -> u8 {
    match k {
        EntryKind::Normal => 0,
        EntryKind::Noop => 1,
    }
}

/// Entry kind ↔ code, shared with the on-disk `kind` field.
pub fn entry_kind_from_code(c: u32) -> Option<EntryKind> {
    match c {
        0 => Some(EntryKind::Normal),
        1 => Some(EntryKind::Noop),
        _ => None,
    }
}

/// Code stored on disk / on the wire for an entry kind.
pub fn entry_kind_code(k: EntryKind) -> u32 {
    kind_code(k) as u32
}

/// Encoded size of `msg` in bytes (exact).
pub fn encoded_len(msg: &Message) -> usize {
    let fixed = 8 + 8 + 8 + 1;
    fixed
        + match &msg.kind {
            MsgKind::PreVote { .. } => 16,
            MsgKind::PreVoteResp { .. } | MsgKind::VoteResp { .. } => 1,
            MsgKind::Vote { .. } => 17,
            MsgKind::Append { entries, .. } => {
                8 + 8
                    + 8
                    + 8
                    + 4
                    + entries
                        .iter()
                        .map(|e| ENTRY_HEADER_BYTES + e.data.len())
                        .sum::<usize>()
            }
            MsgKind::AppendResp { .. } => 8 + 1 + 8 + 8 + 8,
            MsgKind::Heartbeat { .. } => 16,
            MsgKind::HeartbeatResp { .. } => 8,
            MsgKind::InstallSnapshot { .. } => 24,
            MsgKind::TimeoutNow => 0,
        }
}

/// Append the encoding of `msg` to `out`; `aux` is only encoded for `InstallSnapshot`.
pub fn encode(msg: &Message, aux: u64, out: &mut BytesMut) {
    out.reserve(encoded_len(msg));
    out.put_u64(msg.from);
    out.put_u64(msg.to);
    out.put_u64(msg.term);
    match &msg.kind {
        MsgKind::PreVote {
            last_index,
            last_term,
        } => {
            out.put_u8(TAG_PRE_VOTE);
            out.put_u64(*last_index);
            out.put_u64(*last_term);
        }
        MsgKind::PreVoteResp { reject } => {
            out.put_u8(TAG_PRE_VOTE_RESP);
            out.put_u8(*reject as u8);
        }
        MsgKind::Vote {
            last_index,
            last_term,
            transfer,
        } => {
            out.put_u8(TAG_VOTE);
            out.put_u64(*last_index);
            out.put_u64(*last_term);
            out.put_u8(*transfer as u8);
        }
        MsgKind::VoteResp { reject } => {
            out.put_u8(TAG_VOTE_RESP);
            out.put_u8(*reject as u8);
        }
        MsgKind::Append {
            prev_index,
            prev_term,
            entries,
            commit,
            ctx,
        } => {
            out.put_u8(TAG_APPEND);
            out.put_u64(*prev_index);
            out.put_u64(*prev_term);
            out.put_u64(*commit);
            out.put_u64(*ctx);
            assert!(
                entries.len() <= MAX_ENTRIES_PER_MSG,
                "core bounds entries per message"
            );
            out.put_u32(entries.len() as u32);
            for e in entries {
                out.put_u64(e.index);
                out.put_u64(e.term);
                out.put_u8(kind_code(e.kind));
                out.put_u32(e.data.len() as u32);
                out.put_slice(&e.data);
            }
        }
        MsgKind::AppendResp {
            index,
            reject,
            hint_index,
            hint_term,
            ctx,
        } => {
            out.put_u8(TAG_APPEND_RESP);
            out.put_u64(*index);
            out.put_u8(*reject as u8);
            out.put_u64(*hint_index);
            out.put_u64(*hint_term);
            out.put_u64(*ctx);
        }
        MsgKind::Heartbeat { commit, ctx } => {
            out.put_u8(TAG_HEARTBEAT);
            out.put_u64(*commit);
            out.put_u64(*ctx);
        }
        MsgKind::HeartbeatResp { ctx } => {
            out.put_u8(TAG_HEARTBEAT_RESP);
            out.put_u64(*ctx);
        }
        MsgKind::InstallSnapshot { snapshot } => {
            out.put_u8(TAG_INSTALL_SNAPSHOT);
            out.put_u64(snapshot.index);
            out.put_u64(snapshot.term);
            out.put_u64(aux);
        }
        MsgKind::TimeoutNow => out.put_u8(TAG_TIMEOUT_NOW),
    }
}

struct Reader {
    buf: Bytes,
}

impl Reader {
    fn need(&self, n: usize) -> Result<(), CodecError> {
        if self.buf.remaining() < n {
            return Err(CodecError::Truncated {
                needed: n - self.buf.remaining(),
            });
        }
        Ok(())
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }
    fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(CodecError::BadBool(b)),
        }
    }
    fn bytes(&mut self, n: usize) -> Result<Bytes, CodecError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }
}

/// Decode one message occupying all of `frame` plus its `aux` (0 unless `InstallSnapshot`).
/// Entry payloads are zero-copy slices of the frame.
/// Where a frame's tag byte is: after `from`, `to` and `term` (three u64s, see `encode`).
pub(crate) const TAG_OFFSET: usize = 3 * 8;

/// Whether the message decoded from `frame` keeps parts of it alive: only AppendEntries does
/// (its entries' data are slices of the frame); every other message is plain fields.
pub fn keeps_frame_bytes(frame: &[u8]) -> bool {
    match frame.get(TAG_OFFSET) {
        Some(&tag) => tag == TAG_APPEND,
        // Too short to decode at all: either way is fine.
        None => true,
    }
}

pub fn decode(frame: Bytes) -> Result<(Message, u64), CodecError> {
    let mut aux = 0;
    let mut r = Reader { buf: frame };
    let from = r.u64()?;
    let to = r.u64()?;
    let term = r.u64()?;
    let tag = r.u8()?;
    let kind = match tag {
        TAG_PRE_VOTE => MsgKind::PreVote {
            last_index: r.u64()?,
            last_term: r.u64()?,
        },
        TAG_PRE_VOTE_RESP => MsgKind::PreVoteResp { reject: r.bool()? },
        TAG_VOTE => MsgKind::Vote {
            last_index: r.u64()?,
            last_term: r.u64()?,
            transfer: r.bool()?,
        },
        TAG_VOTE_RESP => MsgKind::VoteResp { reject: r.bool()? },
        TAG_APPEND => {
            let prev_index = r.u64()?;
            let prev_term = r.u64()?;
            let commit = r.u64()?;
            let ctx = r.u64()?;
            let n = r.u32()?;
            // Each entry needs at least its header: reject counts the input cannot hold
            // before allocating.
            if n as usize > MAX_ENTRIES_PER_MSG {
                return Err(CodecError::TooManyEntries(n));
            }
            r.need(n as usize * ENTRY_HEADER_BYTES)?;
            let mut entries = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let index = r.u64()?;
                let eterm = r.u64()?;
                let k = r.u8()?;
                let kind = entry_kind_from_code(k as u32).ok_or(CodecError::UnknownEntryKind(k))?;
                let len = r.u32()? as usize;
                let data = r.bytes(len)?;
                entries.push(Entry {
                    index,
                    term: eterm,
                    kind,
                    data,
                });
            }
            MsgKind::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                ctx,
            }
        }
        TAG_APPEND_RESP => MsgKind::AppendResp {
            index: r.u64()?,
            reject: r.bool()?,
            hint_index: r.u64()?,
            hint_term: r.u64()?,
            ctx: r.u64()?,
        },
        TAG_HEARTBEAT => MsgKind::Heartbeat {
            commit: r.u64()?,
            ctx: r.u64()?,
        },
        TAG_HEARTBEAT_RESP => MsgKind::HeartbeatResp { ctx: r.u64()? },
        TAG_INSTALL_SNAPSHOT => {
            let snapshot = SnapshotMeta {
                index: r.u64()?,
                term: r.u64()?,
            };
            aux = r.u64()?;
            MsgKind::InstallSnapshot { snapshot }
        }
        TAG_TIMEOUT_NOW => MsgKind::TimeoutNow,
        other => return Err(CodecError::UnknownTag(other)),
    };
    if r.buf.has_remaining() {
        return Err(CodecError::Trailing(r.buf.remaining()));
    }
    Ok((
        Message {
            from,
            to,
            term,
            kind,
        },
        aux,
    ))
}
