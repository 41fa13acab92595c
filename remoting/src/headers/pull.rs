//! PULL_MESSAGE (11) / LITE_PULL_MESSAGE (361).
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/PullMessageRequestHeader.java`,
//! `PullMessageResponseHeader.java` (codes.md §3.6).

/// PullSysFlag bits (`common/src/main/java/org/apache/rocketmq/common/sysflag/PullSysFlag.java`).
pub mod sys_flag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;
}

command_header! {
    pub struct PullMessageRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        queue_offset: i64 => "queueOffset",
        max_msg_nums: i32 => "maxMsgNums",
        sys_flag: i32 => "sysFlag",
        commit_offset: i64 => "commitOffset",
        suspend_timeout_millis: i64 => "suspendTimeoutMillis",
        subscription: Option<String> => "subscription",
        sub_version: i64 => "subVersion",
        expression_type: Option<String> => "expressionType",
        max_msg_bytes: Option<i32> => "maxMsgBytes",
        request_source: Option<i32> => "requestSource",
        /// Spelled like Java's field.
        proxy_froward_client_id: Option<String> => "proxyFrowardClientId",
        bname: Option<String> => "bname",
    }
}

command_header! {
    /// All four base fields must always be present (codes.md §3.6).
    pub struct PullMessageResponseHeader {
        suggest_which_broker_id: i64 => "suggestWhichBrokerId",
        next_begin_offset: i64 => "nextBeginOffset",
        min_offset: i64 => "minOffset",
        max_offset: i64 => "maxOffset",
        offset_delta: Option<i64> => "offsetDelta",
        topic_sys_flag: Option<i32> => "topicSysFlag",
        group_sys_flag: Option<i32> => "groupSysFlag",
        forbidden_type: Option<i32> => "forbiddenType",
    }
}
