//! NameServer calls: REGISTER_BROKER (103), UNREGISTER_BROKER (104), GET_ROUTEINFO_BY_TOPIC
//! (105), QUERY_DATA_VERSION (322), BROKER_HEARTBEAT (904).
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/namesrv/`
//! `RegisterBroker{Request,Response}Header.java`, `UnRegisterBrokerRequestHeader.java`,
//! `GetRouteInfoRequestHeader.java`, `QueryDataVersion{Request,Response}Header.java`,
//! `BrokerHeartbeatRequestHeader.java` (namesrv.md §2–§4).

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
        changed: bool => "changed",
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
