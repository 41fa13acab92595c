//! Topic, subscription-group and KV admin: 17, 100–102, 202, 207, 208, 215, 216, 219, 224, 300.
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/`
//! `CreateTopicRequestHeader.java`, `DeleteTopicRequestHeader.java`,
//! `GetTopicStatsInfoRequestHeader.java`, `GetConsumeStatsRequestHeader.java`,
//! `DeleteSubscriptionGroupRequestHeader.java`, `QueryTopicConsumeByWhoRequestHeader.java`,
//! `namesrv/{GetKVConfig,PutKVConfig,DeleteKVConfig,GetKVListByNamespace}RequestHeader.java`,
//! `namesrv/DeleteTopicFromNamesrvRequestHeader.java`, `namesrv/GetTopicsByClusterRequestHeader.java`
//! (codes.md §3.15).

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17).
    pub struct CreateTopicRequestHeader {
        topic: String => "topic",
        default_topic: String => "defaultTopic",
        read_queue_nums: i32 => "readQueueNums",
        write_queue_nums: i32 => "writeQueueNums",
        perm: i32 => "perm",
        /// `SINGLE_TAG` / `MULTI_TAG`.
        topic_filter_type: String => "topicFilterType",
        topic_sys_flag: Option<i32> => "topicSysFlag",
        order: bool => "order",
        /// 5.x only: `+key=value,…`.
        attributes: Option<String> => "attributes",
        /// 5.x only.
        force: Option<bool> => "force",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_BROKER (215).
    pub struct DeleteTopicRequestHeader {
        topic: String => "topic",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216).
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: String => "topic",
        cluster_name: Option<String> => "clusterName",
    }
}

command_header! {
    /// GET_TOPIC_STATS_INFO (202).
    pub struct GetTopicStatsInfoRequestHeader {
        topic: String => "topic",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208).
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: Option<String> => "topic",
        /// 5.x only: comma-separated topics.
        topic_list: Option<String> => "topicList",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        group_name: String => "groupName",
        clean_offset: Option<bool> => "cleanOffset",
    }
}

command_header! {
    /// QUERY_TOPIC_CONSUME_BY_WHO (300).
    pub struct QueryTopicConsumeByWhoRequestHeader {
        topic: String => "topic",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224).
    pub struct GetTopicsByClusterRequestHeader {
        cluster: String => "cluster",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100).
    pub struct PutKVConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
        value: String => "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101).
    pub struct GetKVConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
    }
}

command_header! {
    pub struct GetKVConfigResponseHeader {
        value: Option<String> => "value",
    }
}

command_header! {
    /// DELETE_KV_CONFIG (102).
    pub struct DeleteKVConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219).
    pub struct GetKVListByNamespaceRequestHeader {
        namespace: String => "namespace",
    }
}
