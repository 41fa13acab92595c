//! Length-prefixed frame codec (frames.md §1):
//! `i32 length` (bytes after itself) | `i32 (serializeType << 24 | headerLength)` | header | body.
//!
//! Mirrors Netty's `LengthFieldBasedFrameDecoder(max, 0, 4, 0, 4)` used by
//! `remoting/src/main/java/org/apache/rocketmq/remoting/netty/NettyDecoder.java`: the 4-byte
//! length field counts toward the limit, so a frame is accepted iff `length + 4 <= max`.
//! The body is a zero-copy slice of the received frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::command::{RemotingCommand, SerializeType};
use crate::error::RemotingError;
use crate::header;

/// Java's default `com.rocketmq.remoting.frameMaxLength`: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE_BYTES: usize = 16 * 1024 * 1024;
/// Largest single buffer reservation made while waiting for the rest of a frame.
const RESERVE_STEP_BYTES: usize = 1024 * 1024;
/// The header length field is 24 bits.
pub const MAX_HEADER_SIZE_BYTES: usize = (1 << 24) - 1;

/// Frame codec for both directions.
#[derive(Debug, Clone)]
pub struct RemotingCodec {
    max_frame_size_bytes: usize,
}

impl RemotingCodec {
    pub fn new(max_frame_size_bytes: usize) -> RemotingCodec {
        assert!(
            max_frame_size_bytes >= 8,
            "frame limit must fit the fixed fields"
        );
        RemotingCodec {
            max_frame_size_bytes,
        }
    }

    pub fn max_frame_size_bytes(&self) -> usize {
        self.max_frame_size_bytes
    }
}

impl Default for RemotingCodec {
    fn default() -> Self {
        RemotingCodec::new(DEFAULT_MAX_FRAME_SIZE_BYTES)
    }
}

impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = RemotingError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, RemotingError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let length = usize::try_from(length).map_err(|_| {
            RemotingError::MalformedFrame(format!("negative frame length {length}"))
        })?;
        let total = length + 4;
        if total > self.max_frame_size_bytes {
            return Err(RemotingError::FrameTooLarge {
                size_bytes: total,
                limit_bytes: self.max_frame_size_bytes,
            });
        }
        if length < 4 {
            return Err(RemotingError::MalformedFrame(format!(
                "frame length {length} shorter than the header-length field"
            )));
        }
        if src.len() < total {
            // Grow toward the announced size in steps: memory follows bytes that actually
            // arrived, not what a peer claims it will send.
            src.reserve((total - src.len()).min(RESERVE_STEP_BYTES));
            return Ok(None);
        }
        let mut frame = src.split_to(total);
        frame.advance(4);
        let frame = frame.freeze();
        decode_frame_payload(frame).map(Some)
    }
}

/// Decode `serializeType/headerLength | header | body` (the frame after its length field).
pub fn decode_frame_payload(mut frame: Bytes) -> Result<RemotingCommand, RemotingError> {
    if frame.len() < 4 {
        return Err(RemotingError::MalformedFrame("frame too short".into()));
    }
    let mark = frame.get_u32();
    let header_len = (mark & 0x00ff_ffff) as usize;
    let serialize_type = match mark >> 24 {
        0 => SerializeType::Json,
        1 => SerializeType::RocketMq,
        other => {
            return Err(RemotingError::MalformedFrame(format!(
                "unknown serialize type {other}"
            )))
        }
    };
    if header_len > frame.len() {
        return Err(RemotingError::MalformedFrame(format!(
            "bad header length {header_len} in a frame of {} bytes",
            frame.len() + 4
        )));
    }
    let header_bytes = frame.split_to(header_len);
    let mut cmd = match serialize_type {
        SerializeType::Json => header::decode_json(&header_bytes)?,
        SerializeType::RocketMq => header::decode_binary(&header_bytes)?,
    };
    cmd.serialize_type = serialize_type;
    cmd.body = frame;
    Ok(cmd)
}

/// Append the frame prefix and header of `cmd` to `dst` (everything but the body).
/// The caller writes the body parts right after; this keeps bodies uncopied on the write path.
pub fn encode_head(
    cmd: &RemotingCommand,
    dst: &mut BytesMut,
    max_frame_size_bytes: usize,
) -> Result<(), RemotingError> {
    let start = dst.len();
    dst.put_u32(0); // length, patched below
    dst.put_u32(0); // type | header length, patched below
    let header_start = dst.len();
    match cmd.serialize_type {
        SerializeType::Json => header::encode_json(cmd, dst),
        SerializeType::RocketMq => {
            if let Err(e) = header::encode_binary(cmd, dst) {
                dst.truncate(start);
                return Err(e);
            }
        }
    }
    let header_len = dst.len() - header_start;
    let total = 8 + header_len + cmd.body_len();
    if header_len > MAX_HEADER_SIZE_BYTES || total > max_frame_size_bytes {
        dst.truncate(start);
        return Err(RemotingError::FrameTooLarge {
            size_bytes: total,
            limit_bytes: max_frame_size_bytes,
        });
    }
    let length = (total - 4) as u32;
    let mark = ((cmd.serialize_type as u32) << 24) | header_len as u32;
    dst[start..start + 4].copy_from_slice(&length.to_be_bytes());
    dst[start + 4..start + 8].copy_from_slice(&mark.to_be_bytes());
    Ok(())
}

/// Whole-frame encoder (copies the body into `dst`). The connection writer does not use
/// this; it writes the head from [`encode_head`] and the body `Bytes` separately.
impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = RemotingError;

    fn encode(&mut self, cmd: RemotingCommand, dst: &mut BytesMut) -> Result<(), RemotingError> {
        encode_head(&cmd, dst, self.max_frame_size_bytes)?;
        for part in cmd.body_parts() {
            dst.extend_from_slice(part);
        }
        Ok(())
    }
}

impl Encoder<&RemotingCommand> for RemotingCodec {
    type Error = RemotingError;

    fn encode(&mut self, cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), RemotingError> {
        encode_head(cmd, dst, self.max_frame_size_bytes)?;
        for part in cmd.body_parts() {
            dst.extend_from_slice(part);
        }
        Ok(())
    }
}

/// Encode a whole frame into fresh bytes (tests, tools).
pub fn encode_frame(cmd: &RemotingCommand) -> Result<Bytes, RemotingError> {
    let mut buf = BytesMut::with_capacity(256 + cmd.body_len());
    RemotingCodec::new(usize::MAX).encode(cmd, &mut buf)?;
    Ok(buf.freeze())
}
