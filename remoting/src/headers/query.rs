//! VIEW_MESSAGE_BY_ID (33) / QUERY_MESSAGE (12).
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/`
//! `ViewMessageRequestHeader.java`, `QueryMessage{Request,Response}Header.java` (codes.md §3.12).

/// extField set to `"true"` when querying by UNIQ_KEY (`MixAll.UNIQUE_MSG_QUERY_FLAG`).
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

command_header! {
    pub struct ViewMessageRequestHeader {
        /// Commitlog offset.
        offset: i64 => "offset",
        /// 5.x only.
        topic: Option<String> => "topic",
    }
}

command_header! {
    pub struct QueryMessageRequestHeader {
        topic: String => "topic",
        key: String => "key",
        max_num: i32 => "maxNum",
        begin_timestamp: i64 => "beginTimestamp",
        end_timestamp: i64 => "endTimestamp",
    }
}

command_header! {
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp: i64 => "indexLastUpdateTimestamp",
        index_last_update_phyoffset: i64 => "indexLastUpdatePhyoffset",
    }
}
