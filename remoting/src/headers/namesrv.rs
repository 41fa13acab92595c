//! NameServer request family: REGISTER_BROKER (103), UNREGISTER_BROKER (104),
//! GET_ROUTEINFO_BY_TOPIC (105), QUERY_DATA_VERSION (322), BROKER_HEARTBEAT (904), the KV
//! config calls (100–102, 219), topic/cluster listing (216, 224) and write-permission
//! changes (205, 327). `namesrv-client` re-exports this module as its `headers`.
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/namesrv/`
//! `RegisterBroker{Request,Response}Header.java`, `UnRegisterBrokerRequestHeader.java`,
//! `GetRouteInfoRequestHeader.java`, `QueryDataVersion{Request,Response}Header.java`,
//! `BrokerHeartbeatRequestHeader.java`, `namesrv/{PutKVConfig,GetKVConfig,DeleteKVConfig,GetKVListByNamespace,
//! DeleteTopicFromNamesrv,WipeWritePermOfBroker,AddWritePermOfBroker}*Header.java`,
//! `GetTopicsByClusterRequestHeader.java` (namesrv.md §2–§4).

/// Optional extField read by 5.x NameServers on REGISTER_BROKER.
pub const ZONE_NAME: &str = "__ZONE_NAME";

command_header! {
    pub struct RegisterBrokerRequestHeader {
        broker_name: String => "brokerName",
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        ha_server_addr: String => "haServerAddr",
        /// 0 = master.
        broker_id: i64 => "brokerId",
        heartbeat_timeout_millis: Option<i64> => "heartbeatTimeoutMillis",
        enable_acting_master: Option<bool> => "enableActingMaster",
        compressed: Option<bool> => "compressed",
        /// `crc32(body) & 0x7FFFFFFF`; 0 = unchecked.
        body_crc32: Option<i32> => "bodyCrc32",
    }
}

command_header! {
    /// REGISTER_BROKER response: filled only for slaves whose master is registered.
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: Option<String> => "haServerAddr",
        master_addr: Option<String> => "masterAddr",
    }
}

command_header! {
    pub struct UnRegisterBrokerRequestHeader {
        broker_name: String => "brokerName",
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        broker_id: i64 => "brokerId",
    }
}

command_header! {
    pub struct GetRouteInfoRequestHeader {
        topic: String => "topic",
        accept_standard_json_only: Option<bool> => "acceptStandardJsonOnly",
    }
}

command_header! {
    pub struct QueryDataVersionRequestHeader {
        broker_name: String => "brokerName",
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        broker_id: i64 => "brokerId",
    }
}

command_header! {
    pub struct QueryDataVersionResponseHeader {
        /// Absent from some answers; callers treat `None` as "changed".
        changed: Option<bool> => "changed",
    }
}

command_header! {
    /// 5.x only, acting-master mode.
    pub struct BrokerHeartbeatRequestHeader {
        cluster_name: String => "clusterName",
        broker_addr: String => "brokerAddr",
        broker_name: String => "brokerName",
        broker_id: Option<i64> => "brokerId",
        epoch: Option<i32> => "epoch",
        max_offset: Option<i64> => "maxOffset",
        confirm_offset: Option<i64> => "confirmOffset",
        heartbeat_timeout_mills: Option<i64> => "heartbeatTimeoutMills",
        election_priority: Option<i32> => "electionPriority",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100).
    pub struct PutKvConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
        value: String => "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102).
    pub struct KvConfigKeyRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
    }
}

command_header! {
    pub struct GetKvConfigResponseHeader {
        value: Option<String> => "value",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219).
    pub struct GetKvListByNamespaceRequestHeader {
        namespace: String => "namespace",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216); `clusterName` limits the deletion to that cluster.
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: String => "topic",
        cluster_name: Option<String> => "clusterName",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224).
    pub struct GetTopicsByClusterRequestHeader {
        cluster: String => "cluster",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) and ADD_WRITE_PERM_OF_BROKER (327).
    pub struct BrokerNameRequestHeader {
        broker_name: String => "brokerName",
    }
}

command_header! {
    pub struct WipeWritePermOfBrokerResponseHeader {
        wipe_topic_count: Option<i32> => "wipeTopicCount",
    }
}

command_header! {
    pub struct AddWritePermOfBrokerResponseHeader {
        add_topic_count: Option<i32> => "addTopicCount",
    }
}
