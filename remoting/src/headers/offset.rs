//! Consumer offsets (14, 15) and queue offset queries (29, 30, 31, 32).
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/`
//! `QueryConsumerOffset{Request,Response}Header.java`, `UpdateConsumerOffset{Request,Response}Header.java`,
//! `Get{Max,Min}Offset{Request,Response}Header.java`, `SearchOffset{Request,Response}Header.java`,
//! `GetEarliestMsgStoretime{Request,Response}Header.java` (codes.md §3.7, §3.11).

command_header! {
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// 5.x only.
        set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
    }
}

command_header! {
    pub struct QueryConsumerOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

command_header! {
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        commit_offset: i64 => "commitOffset",
    }
}

command_header! {
    pub struct UpdateConsumerOffsetResponseHeader {}
}

command_header! {
    pub struct GetMaxOffsetRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// 5.x only; Java default true.
        committed: Option<bool> => "committed",
    }
}

command_header! {
    pub struct GetMaxOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

command_header! {
    pub struct GetMinOffsetRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
    }
}

command_header! {
    pub struct GetMinOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

command_header! {
    pub struct SearchOffsetRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
        timestamp: i64 => "timestamp",
        /// 5.x only: `LOWER` (default) or `UPPER`, case-insensitive.
        boundary_type: Option<String> => "boundaryType",
    }
}

command_header! {
    pub struct SearchOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

command_header! {
    pub struct GetEarliestMsgStoretimeRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
    }
}

command_header! {
    pub struct GetEarliestMsgStoretimeResponseHeader {
        timestamp: i64 => "timestamp",
    }
}

command_header! {
    /// QUERY_BROKER_OFFSET (13) has no fields; kept for completeness.
    pub struct QueryBrokerOffsetRequestHeader {}
}
