//! Client/consumer management: UNREGISTER_CLIENT (35), CONSUMER_SEND_MSG_BACK (36),
//! GET_CONSUMER_LIST_BY_GROUP (38), NOTIFY_CONSUMER_IDS_CHANGED (40), and broker→client
//! calls (220, 221, 307, 309).
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/`
//! `UnregisterClientRequestHeader.java`, `ConsumerSendMsgBackRequestHeader.java`,
//! `GetConsumerListByGroupRequestHeader.java`, `NotifyConsumerIdsChangedRequestHeader.java`,
//! `GetConsumerRunningInfoRequestHeader.java`, `ResetOffsetRequestHeader.java`,
//! `GetConsumerStatusRequestHeader.java`, `ConsumeMessageDirectlyResultRequestHeader.java`,
//! `GetConsumerConnectionListRequestHeader.java` (codes.md §3.5, §3.8, §3.10, §3.14).

command_header! {
    pub struct UnregisterClientRequestHeader {
        client_id: String => "clientID",
        producer_group: Option<String> => "producerGroup",
        consumer_group: Option<String> => "consumerGroup",
    }
}

command_header! {
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commitlog offset of the failed message.
        offset: i64 => "offset",
        group: String => "group",
        /// 0 = broker chooses, -1 = straight to DLQ, > 0 explicit level.
        delay_level: i32 => "delayLevel",
        origin_msg_id: Option<String> => "originMsgId",
        origin_topic: Option<String> => "originTopic",
        unit_mode: Option<bool> => "unitMode",
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
    }
}

command_header! {
    pub struct GetConsumerListByGroupRequestHeader {
        consumer_group: String => "consumerGroup",
    }
}

command_header! {
    /// Broker → client, oneway.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        consumer_group: String => "consumerGroup",
    }
}

command_header! {
    pub struct GetConsumerRunningInfoRequestHeader {
        consumer_group: String => "consumerGroup",
        client_id: String => "clientId",
        jstack_enable: Option<bool> => "jstackEnable",
    }
}

command_header! {
    /// RESET_CONSUMER_CLIENT_OFFSET (220), broker → client, oneway.
    pub struct ResetOffsetRequestHeader {
        topic: String => "topic",
        group: String => "group",
        timestamp: i64 => "timestamp",
        is_force: bool => "isForce",
        /// 5.x only (default -1).
        queue_id: Option<i32> => "queueId",
        /// 5.x only.
        offset: Option<i64> => "offset",
    }
}

command_header! {
    /// GET_CONSUMER_STATUS_FROM_CLIENT (221).
    pub struct GetConsumerStatusRequestHeader {
        topic: String => "topic",
        group: String => "group",
        client_addr: Option<String> => "clientAddr",
    }
}

command_header! {
    /// CONSUME_MESSAGE_DIRECTLY (309).
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: String => "consumerGroup",
        client_id: Option<String> => "clientId",
        msg_id: Option<String> => "msgId",
        broker_name: Option<String> => "brokerName",
        topic: Option<String> => "topic",
        topic_sys_flag: Option<i32> => "topicSysFlag",
        group_sys_flag: Option<i32> => "groupSysFlag",
    }
}

command_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203).
    pub struct GetConsumerConnectionListRequestHeader {
        consumer_group: String => "consumerGroup",
    }
}

command_header! {
    /// HEART_BEAT (34): no fields (5.x sends an empty header).
    pub struct HeartbeatRequestHeader {}
}
