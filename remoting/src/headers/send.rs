//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), replies (324/325/326).
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/SendMessageRequestHeader.java`,
//! `SendMessageRequestHeaderV2.java`, `SendMessageResponseHeader.java`, `[A4] ReplyMessageRequestHeader.java`
//! (codes.md §3.1–§3.3).

use compact_str::CompactString;

/// Extra send-response extField: broker region (Java: `MessageConst.PROPERTY_MSG_REGION`).
pub const MSG_REGION: &str = "MSG_REGION";
/// Extra send-response extField: `"true"`/`"false"` (Java: `MessageConst.PROPERTY_TRACE_SWITCH`).
pub const TRACE_ON: &str = "TRACE_ON";

command_header! {
    /// SEND_MESSAGE (10) request header with full field names.
    pub struct SendMessageRequestHeader {
        producer_group: CompactString => "producerGroup",
        /// Inline up to 24 bytes (most topic names): no allocation per send.
        topic: CompactString => "topic",
        default_topic: CompactString => "defaultTopic",
        default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        queue_id: i32 => "queueId",
        sys_flag: i32 => "sysFlag",
        born_timestamp: i64 => "bornTimestamp",
        flag: i32 => "flag",
        properties: Option<String> => "properties",
        reconsume_times: Option<i32> => "reconsumeTimes",
        unit_mode: Option<bool> => "unitMode",
        batch: Option<bool> => "batch",
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        /// 4.9.7 RPC key for the target broker name.
        bname: Option<CompactString> => "bname",
        /// 5.x key for the target broker name.
        broker_name: Option<CompactString> => "brokerName",
    }
}

command_header! {
    /// SEND_MESSAGE_V2 (310) / SEND_BATCH_MESSAGE (320) request header: Java's
    /// single-letter keys, in the order of [`SendMessageRequestHeader`].
    pub struct SendMessageRequestHeaderV2 {
        /// producerGroup
        a: CompactString => "a",
        /// topic
        b: CompactString => "b",
        /// defaultTopic
        c: CompactString => "c",
        /// defaultTopicQueueNums
        d: i32 => "d",
        /// queueId
        e: i32 => "e",
        /// sysFlag
        f: i32 => "f",
        /// bornTimestamp
        g: i64 => "g",
        /// flag
        h: i32 => "h",
        /// properties
        i: Option<String> => "i",
        /// reconsumeTimes
        j: Option<i32> => "j",
        /// unitMode
        k: Option<bool> => "k",
        /// maxReconsumeTimes
        l: Option<i32> => "l",
        /// batch
        m: Option<bool> => "m",
        /// brokerName (inline up to 24 bytes: no allocation per send)
        n: Option<CompactString> => "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v: SendMessageRequestHeaderV2) -> Self {
        SendMessageRequestHeader {
            producer_group: v.a,
            topic: v.b,
            default_topic: v.c,
            default_topic_queue_nums: v.d,
            queue_id: v.e,
            sys_flag: v.f,
            born_timestamp: v.g,
            flag: v.h,
            properties: v.i,
            reconsume_times: v.j,
            unit_mode: v.k,
            max_reconsume_times: v.l,
            batch: v.m,
            bname: None,
            broker_name: v.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v: SendMessageRequestHeader) -> Self {
        SendMessageRequestHeaderV2 {
            a: v.producer_group,
            b: v.topic,
            c: v.default_topic,
            d: v.default_topic_queue_nums,
            e: v.queue_id,
            f: v.sys_flag,
            g: v.born_timestamp,
            h: v.flag,
            i: v.properties,
            j: v.reconsume_times,
            k: v.unit_mode,
            l: v.max_reconsume_times,
            m: v.batch,
            n: v.broker_name.or(v.bname),
        }
    }
}

impl SendMessageRequestHeader {
    /// Decode a send request of either code (10 uses full names, 310/320/325 the V2 keys).
    pub fn decode_any(
        cmd: &crate::RemotingCommand,
    ) -> Result<SendMessageRequestHeader, crate::RemotingError> {
        use crate::codes::request::{SEND_BATCH_MESSAGE, SEND_MESSAGE_V2, SEND_REPLY_MESSAGE_V2};
        match cmd.code {
            SEND_MESSAGE_V2 | SEND_BATCH_MESSAGE | SEND_REPLY_MESSAGE_V2 => {
                Ok(cmd.decode_header::<SendMessageRequestHeaderV2>()?.into())
            }
            _ => cmd.decode_header::<SendMessageRequestHeader>(),
        }
    }
}

command_header! {
    /// Send response header; add [`MSG_REGION`] and [`TRACE_ON`] extFields as Java does.
    pub struct SendMessageResponseHeader {
        msg_id: String => "msgId",
        queue_id: i32 => "queueId",
        queue_offset: i64 => "queueOffset",
        transaction_id: Option<String> => "transactionId",
        batch_uniq_id: Option<String> => "batchUniqId",
        recall_handle: Option<String> => "recallHandle",
    }
}

command_header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326) header (broker → requester).
    pub struct ReplyMessageRequestHeader {
        producer_group: String => "producerGroup",
        topic: String => "topic",
        default_topic: String => "defaultTopic",
        default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        queue_id: i32 => "queueId",
        sys_flag: i32 => "sysFlag",
        born_timestamp: i64 => "bornTimestamp",
        flag: i32 => "flag",
        properties: Option<String> => "properties",
        reconsume_times: Option<i32> => "reconsumeTimes",
        unit_mode: Option<bool> => "unitMode",
        born_host: String => "bornHost",
        store_host: String => "storeHost",
        store_timestamp: i64 => "storeTimestamp",
    }
}
