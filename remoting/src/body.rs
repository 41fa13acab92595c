//! JSON bodies shared by the broker, the NameServer and tools.
//!
//! Field names follow the Java beans (fastjson): `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/`
//! `heartbeat/{HeartbeatData,ConsumerData,ProducerData,SubscriptionData}.java`, `body/LockBatchRequestBody.java`,
//! `body/LockBatchResponseBody.java`, `body/UnlockBatchRequestBody.java`,
//! `header/GetConsumerListByGroupResponseBody.java`, `DataVersion.java`, `body/TopicConfigSerializeWrapper.java`,
//! `body/RegisterBrokerBody.java`, `body/KVTable.java`, `body/TopicList.java`, `body/ClusterInfo.java`,
//! `route/{TopicRouteData,QueueData,BrokerData}.java`, `admin/{TopicStatsTable,TopicOffset,ConsumeStats,OffsetWrapper}.java`,
//! `common/src/main/java/org/apache/rocketmq/common/message/MessageQueue.java`, `common/.../TopicConfig.java`.
//!
//! Parsing is lenient the way fastjson is and real clients need (docs/clients.md): enums as
//! names **or** ordinals, numbers as strings, booleans as `0`/`1`, `null` or missing
//! members → defaults, unknown members ignored. Emitting: serde gives standard JSON (member
//! order = field order, kept alphabetical like fastjson); maps whose Java key is a number or
//! a `MessageQueue` must be emitted in fastjson's non-standard form with [`fastjson`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::RemotingError;

/// Parse a JSON body leniently (see module docs).
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, RemotingError> {
    serde_json::from_slice(body).map_err(|e| RemotingError::MalformedBody(e.to_string()))
}

/// Encode a body as (standard) JSON.
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    // Serializing these plain data types cannot fail (no non-string map keys).
    bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

// ------------------------------------------------------------------ lenient helpers

/// `null` → `T::default()`.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A long given as a number, a numeric string, or null (→ 0).
pub fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or a numeric string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e18 {
                Ok(v as i64)
            } else {
                Err(E::custom("not an integer"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(0);
            }
            t.parse().map_err(|_| E::custom("not a numeric string"))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<i64, E> {
            Ok(v as i64)
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V)
}

/// An int given as a number, a numeric string, or null (→ 0).
pub fn lenient_i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = lenient_i64(d)?;
    i32::try_from(v).map_err(|_| de::Error::custom("int out of range"))
}

/// A boolean given as `true`/`false`, `0`/`1`, `"true"`/`"0"`…, or null (→ false).
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim() {
                s if s.eq_ignore_ascii_case("true") || s == "1" => Ok(true),
                s if s.eq_ignore_ascii_case("false") || s == "0" || s.is_empty() => Ok(false),
                _ => Err(E::custom("not a boolean")),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(V)
}

/// Optional boolean, lenient as [`lenient_bool`]; null → `None`.
pub fn lenient_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(v) => lenient_bool(v).map(Some).map_err(de::Error::custom),
    }
}

/// A list of ints, each lenient; null → empty.
pub fn lenient_i32_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
    let v = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    v.into_iter()
        .map(|x| lenient_i32(x).map_err(de::Error::custom))
        .collect()
}

/// Declares a Java enum that serializes by name and deserializes from its name or ordinal.
macro_rules! lenient_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $variant:ident = $ord:literal => $text:literal ),* $(,)? }
        default $default:ident
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $variant ),* }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl $name {
            pub fn name(self) -> &'static str {
                match self { $( $name::$variant => $text ),* }
            }
            pub fn ordinal(self) -> i64 {
                match self { $( $name::$variant => $ord ),* }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $( $text => Some($name::$variant), )* _ => None }
            }
            pub fn from_ordinal(n: i64) -> Option<Self> {
                match n { $( $ord => Some($name::$variant), )* _ => None }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name or ordinal"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        let t = v.trim();
                        $name::from_name(t)
                            .or_else(|| t.parse::<i64>().ok().and_then($name::from_ordinal))
                            .ok_or_else(|| E::custom(format!(
                                concat!("unknown ", stringify!($name), " `{}`"), v)))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        $name::from_ordinal(v).ok_or_else(|| E::custom(format!(
                            concat!("unknown ", stringify!($name), " ordinal {}"), v)))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        let v = i64::try_from(v).map_err(|_| E::custom("ordinal out of range"))?;
                        self.visit_i64(v)
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

lenient_enum! {
    /// `ConsumeType.java`: PULL (actively), PUSH (passively), POP (5.x).
    pub enum ConsumeType {
        ConsumeActively = 0 => "CONSUME_ACTIVELY",
        ConsumePassively = 1 => "CONSUME_PASSIVELY",
        ConsumePop = 2 => "CONSUME_POP",
    }
    default ConsumePassively
}

lenient_enum! {
    /// `MessageModel.java`.
    pub enum MessageModel {
        Broadcasting = 0 => "BROADCASTING",
        Clustering = 1 => "CLUSTERING",
    }
    default Clustering
}

lenient_enum! {
    /// `ConsumeFromWhere.java` (ordinals include the deprecated members).
    pub enum ConsumeFromWhere {
        ConsumeFromLastOffset = 0 => "CONSUME_FROM_LAST_OFFSET",
        ConsumeFromLastOffsetAndFromMinWhenBootFirst = 1 => "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        ConsumeFromMinOffset = 2 => "CONSUME_FROM_MIN_OFFSET",
        ConsumeFromMaxOffset = 3 => "CONSUME_FROM_MAX_OFFSET",
        ConsumeFromFirstOffset = 4 => "CONSUME_FROM_FIRST_OFFSET",
        ConsumeFromTimestamp = 5 => "CONSUME_FROM_TIMESTAMP",
    }
    default ConsumeFromLastOffset
}

// ------------------------------------------------------------------ MessageQueue

/// `MessageQueue.java`. Field order = fastjson's alphabetical member order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    #[serde(deserialize_with = "null_default")]
    pub broker_name: String,
    #[serde(deserialize_with = "lenient_i32")]
    pub queue_id: i32,
    #[serde(deserialize_with = "null_default")]
    pub topic: String,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            broker_name: broker_name.into(),
            queue_id,
            topic: topic.into(),
        }
    }
}

// ------------------------------------------------------------------ heartbeat

/// `SubscriptionData.java`. `subVersion` accepts a number or a string.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    #[serde(deserialize_with = "lenient_bool")]
    pub class_filter_mode: bool,
    #[serde(deserialize_with = "lenient_i32_vec")]
    pub code_set: Vec<i32>,
    /// `TAG` (default when missing) or `SQL92`.
    #[serde(deserialize_with = "null_default")]
    pub expression_type: String,
    #[serde(deserialize_with = "null_default")]
    pub sub_string: String,
    #[serde(deserialize_with = "lenient_i64")]
    pub sub_version: i64,
    #[serde(deserialize_with = "null_default")]
    pub tags_set: Vec<String>,
    #[serde(deserialize_with = "null_default")]
    pub topic: String,
}

impl SubscriptionData {
    /// `expressionType`, with Java's default `TAG` when the client left it out.
    pub fn expression_type_or_tag(&self) -> &str {
        if self.expression_type.is_empty() {
            "TAG"
        } else {
            &self.expression_type
        }
    }
}

/// `ConsumerData.java`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    #[serde(deserialize_with = "null_default")]
    pub group_name: String,
    pub message_model: MessageModel,
    #[serde(deserialize_with = "null_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(deserialize_with = "lenient_bool")]
    pub unit_mode: bool,
}

/// `ProducerData.java`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    #[serde(deserialize_with = "null_default")]
    pub group_name: String,
}

/// HEART_BEAT (34) body, `HeartbeatData.java`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID", deserialize_with = "null_default")]
    pub client_id: String,
    #[serde(deserialize_with = "null_default")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x heartbeat v2 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_fingerprint: Option<i64>,
    #[serde(deserialize_with = "null_default")]
    pub producer_data_set: Vec<ProducerData>,
    /// 5.x heartbeat v2 only.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_bool"
    )]
    pub without_sub: Option<bool>,
}

// ------------------------------------------------------------------ consumer bodies

/// LOCK_BATCH_MQ (41) request body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    #[serde(deserialize_with = "null_default")]
    pub client_id: String,
    #[serde(deserialize_with = "null_default")]
    pub consumer_group: String,
    #[serde(deserialize_with = "null_default")]
    pub mq_set: BTreeSet<MessageQueue>,
    /// 5.x only; absent from 4.x and C++ clients.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_bool"
    )]
    pub only_this_broker: Option<bool>,
}

/// LOCK_BATCH_MQ (41) response body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", deserialize_with = "null_default")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// UNLOCK_BATCH_MQ (42) request body: Java's `UnlockBatchRequestBody` has exactly the members
/// of the lock request (clientId, consumerGroup, mqSet, onlyThisBroker), so one type serves both.
pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// GET_CONSUMER_LIST_BY_GROUP (38) response body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetConsumerListByGroupResponseBody {
    #[serde(deserialize_with = "null_default")]
    pub consumer_id_list: Vec<String>,
}

/// QUERY_TOPIC_CONSUME_BY_WHO (300) response body, `GroupList.java`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupList {
    #[serde(deserialize_with = "null_default")]
    pub group_list: BTreeSet<String>,
}

// ------------------------------------------------------------------ topics, namesrv

/// NameServer protocol bodies (DataVersion, TopicConfig, RegisterBrokerBody, route data,
/// ClusterInfo, TopicList, KvTable). `namesrv-client` re-exports this module as its `body`.
pub mod namesrv;

pub use crate::error::BodyError;
pub use namesrv::{
    BrokerData, ClusterInfo, DataVersion, KvTable, QueueData, RegisterBrokerBody,
    RegisterBrokerResult, TopicConfig, TopicConfigSerializeWrapper, TopicFilterType, TopicList,
    TopicRouteData,
};

/// Java's spelling (`KVTable.java`).
pub type KVTable = KvTable;

// ------------------------------------------------------------------ connections, groups

impl Serialize for crate::command::LanguageCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// By name (`"JAVA"`) or code; unknown → `OTHER`.
impl<'de> Deserialize<'de> for crate::command::LanguageCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::command::LanguageCode;
        struct V;
        impl Visitor<'_> for V {
            type Value = LanguageCode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a language name or code")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LanguageCode, E> {
                Ok(match v.trim().parse::<u8>() {
                    Ok(code) => LanguageCode::from_code(code),
                    Err(_) => LanguageCode::from_name(v.trim()),
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LanguageCode, E> {
                Ok(u8::try_from(v)
                    .map(LanguageCode::from_code)
                    .unwrap_or(LanguageCode::Other))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LanguageCode, E> {
                Ok(u8::try_from(v)
                    .map(LanguageCode::from_code)
                    .unwrap_or(LanguageCode::Other))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LanguageCode, E> {
                Ok(LanguageCode::Java)
            }
        }
        d.deserialize_any(V)
    }
}

/// `Connection.java` (one client channel in admin answers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    #[serde(deserialize_with = "null_default")]
    pub client_addr: String,
    #[serde(deserialize_with = "null_default")]
    pub client_id: String,
    pub language: crate::command::LanguageCode,
    #[serde(deserialize_with = "lenient_i32")]
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST (203) response body, `ConsumerConnection.java`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    #[serde(deserialize_with = "null_default")]
    pub connection_set: BTreeSet<Connection>,
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    /// topic → subscription.
    #[serde(deserialize_with = "null_default")]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// GET_PRODUCER_CONNECTION_LIST (204) response body, `ProducerConnection.java`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    #[serde(deserialize_with = "null_default")]
    pub connection_set: BTreeSet<Connection>,
}

/// `SubscriptionGroupConfig.java` (4.9.7 members; 5.x extras are ignored on input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    #[serde(deserialize_with = "lenient_i64")]
    pub broker_id: i64,
    #[serde(deserialize_with = "lenient_bool")]
    pub consume_broadcast_enable: bool,
    #[serde(deserialize_with = "lenient_bool")]
    pub consume_enable: bool,
    #[serde(deserialize_with = "lenient_bool")]
    pub consume_from_min_enable: bool,
    #[serde(deserialize_with = "null_default")]
    pub group_name: String,
    #[serde(deserialize_with = "lenient_bool")]
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(deserialize_with = "lenient_i32")]
    pub retry_max_times: i32,
    #[serde(deserialize_with = "lenient_i32")]
    pub retry_queue_nums: i32,
    #[serde(deserialize_with = "lenient_i64")]
    pub which_broker_when_consume_slowly: i64,
}

impl Default for SubscriptionGroupConfig {
    /// Java defaults.
    fn default() -> Self {
        SubscriptionGroupConfig {
            broker_id: 0,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            group_name: String::new(),
            notify_consumer_ids_changed_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            which_broker_when_consume_slowly: 1,
        }
    }
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) response body, `SubscriptionGroupWrapper.java`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub data_version: DataVersion,
    #[serde(deserialize_with = "null_default")]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

// ------------------------------------------------------------------ admin stats

/// `TopicOffset.java`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    #[serde(deserialize_with = "lenient_i64")]
    pub last_update_timestamp: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub max_offset: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub min_offset: i64,
}

/// GET_TOPIC_STATS_INFO (202) body. Emit with [`TopicStatsTable::to_fastjson`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopicStatsTable {
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
}

/// `OffsetWrapper.java`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    #[serde(deserialize_with = "lenient_i64")]
    pub broker_offset: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub consumer_offset: i64,
    #[serde(deserialize_with = "lenient_i64")]
    pub last_timestamp: i64,
    /// 5.x only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_offset: Option<i64>,
}

/// GET_CONSUME_STATS (208) body. Emit with [`ConsumeStats::to_fastjson`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsumeStats {
    pub consume_tps: f64,
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
}

impl TopicStatsTable {
    /// fastjson form: `{"offsetTable":{{"brokerName":…,"queueId":0,"topic":"T"}:{…}}}`.
    pub fn to_fastjson(&self) -> String {
        let mut o = fastjson::Object::new();
        o.raw_field("offsetTable", &fastjson::mq_keyed_map(&self.offset_table));
        o.finish()
    }

    /// Parse the fastjson form (also accepts standard JSON with string keys holding the
    /// MessageQueue JSON).
    pub fn from_fastjson(text: &[u8]) -> Result<TopicStatsTable, RemotingError> {
        let v = fastjson::parse(text)?;
        Ok(TopicStatsTable {
            offset_table: fastjson::mq_map_from_value(v.get("offsetTable"))?,
        })
    }
}

impl ConsumeStats {
    /// fastjson form: `{"consumeTps":1.5,"offsetTable":{{…MessageQueue…}:{…}}}`.
    pub fn to_fastjson(&self) -> String {
        let mut o = fastjson::Object::new();
        o.field("consumeTps", &self.consume_tps);
        o.raw_field("offsetTable", &fastjson::mq_keyed_map(&self.offset_table));
        o.finish()
    }

    pub fn from_fastjson(text: &[u8]) -> Result<ConsumeStats, RemotingError> {
        let v = fastjson::parse(text)?;
        let consume_tps = v.get("consumeTps").and_then(|x| x.as_f64()).unwrap_or(0.0);
        Ok(ConsumeStats {
            consume_tps,
            offset_table: fastjson::mq_map_from_value(v.get("offsetTable"))?,
        })
    }
}

/// Emitting (and reading) fastjson's non-standard JSON (codes.md §3.15, README item 9):
/// maps keyed by numbers use bare keys (`{0:"addr"}`) and maps keyed by objects put the
/// object in key position (`{{"brokerName":"b","queueId":0,"topic":"T"}:{…}}`).
/// Source: alibaba/fastjson `MapSerializer` (keys written with `serializer.write(key)`).
pub mod fastjson {
    use std::collections::BTreeMap;
    use std::fmt::Display;

    use serde::Serialize;

    use super::{BrokerData, MessageQueue, TopicRouteData};
    use crate::error::RemotingError;

    mod style;
    pub use style::{normalize, write_number_key, write_str, JsonStyle};

    /// Nesting limit of the parser (bounded recursion on hostile input).
    pub const MAX_DEPTH: usize = 64;

    /// Standard JSON text of a value (fastjson writes the same for these plain types).
    pub fn value<T: Serialize + ?Sized>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
    }

    /// A JSON object written member by member.
    #[derive(Debug)]
    pub struct Object {
        buf: String,
        empty: bool,
    }

    impl Default for Object {
        fn default() -> Self {
            Object::new()
        }
    }

    impl Object {
        pub fn new() -> Object {
            Object {
                buf: String::from("{"),
                empty: true,
            }
        }

        fn key(&mut self, name: &str) {
            if !self.empty {
                self.buf.push(',');
            }
            self.empty = false;
            self.buf.push_str(&value(name));
            self.buf.push(':');
        }

        /// A member whose value is serialized with serde.
        pub fn field<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) -> &mut Self {
            self.key(name);
            self.buf.push_str(&value(v));
            self
        }

        /// A member whose value is already JSON text (e.g. from [`mq_keyed_map`]).
        pub fn raw_field(&mut self, name: &str, raw_json: &str) -> &mut Self {
            self.key(name);
            self.buf.push_str(raw_json);
            self
        }

        pub fn finish(&mut self) -> String {
            let mut out = std::mem::take(&mut self.buf);
            out.push('}');
            self.empty = true;
            self.buf.push('{');
            out
        }
    }

    /// `{0:"a",1:"b"}` — a map keyed by numbers, bare keys.
    pub fn number_keyed_map<'a, K, V, I>(entries: I) -> String
    where
        K: Display + 'a,
        V: Serialize + 'a,
        I: IntoIterator<Item = (&'a K, &'a V)>,
    {
        let mut out = String::from("{");
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&k.to_string());
            out.push(':');
            out.push_str(&value(v));
        }
        out.push('}');
        out
    }

    /// `{{"brokerName":…,"queueId":0,"topic":"T"}:V,…}` — a map keyed by MessageQueue.
    pub fn mq_keyed_map<'a, V, I>(entries: I) -> String
    where
        V: Serialize + 'a,
        I: IntoIterator<Item = (&'a MessageQueue, &'a V)>,
    {
        let mut out = String::from("{");
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&value(k));
            out.push(':');
            out.push_str(&value(v));
        }
        out.push('}');
        out
    }

    /// BrokerData with bare numeric `brokerAddrs` keys (fastjson default form).
    pub fn broker_data(b: &BrokerData) -> String {
        let mut out = String::with_capacity(128);
        b.write_json(&mut out, JsonStyle::Fastjson);
        out
    }

    /// TopicRouteData in fastjson's default form (what Java namesrvs send to clients whose
    /// request version < 401, namesrv.md §4).
    pub fn topic_route_data(r: &TopicRouteData) -> String {
        // `encode` writes only `&str` pieces, so the bytes are UTF-8.
        String::from_utf8(r.encode(JsonStyle::Fastjson)).unwrap_or_default()
    }

    /// Parse fastjson output into a `serde_json::Value`. Non-string keys (bare numbers,
    /// objects, arrays) become string keys holding their compact JSON text, so
    /// `{0:"a"}` → `{"0":"a"}` and `{{"topic":"T"}:1}` → `{"{\"topic\":\"T\"}":1}`.
    pub fn parse(text: &[u8]) -> Result<serde_json::Value, RemotingError> {
        let mut p = Parser { s: text, pos: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(v)
    }

    /// Read a `MessageQueue`-keyed map out of a parsed fastjson value.
    pub fn mq_map_from_value<V: for<'de> serde::Deserialize<'de>>(
        v: Option<&serde_json::Value>,
    ) -> Result<BTreeMap<MessageQueue, V>, RemotingError> {
        let mut out = BTreeMap::new();
        let Some(obj) = v.and_then(|v| v.as_object()) else {
            return Ok(out);
        };
        for (k, val) in obj {
            let mq: MessageQueue = serde_json::from_str(k)
                .map_err(|e| RemotingError::MalformedBody(format!("message queue key: {e}")))?;
            let val: V = serde_json::from_value(val.clone())
                .map_err(|e| RemotingError::MalformedBody(e.to_string()))?;
            out.insert(mq, val);
        }
        Ok(out)
    }

    struct Parser<'a> {
        s: &'a [u8],
        pos: usize,
    }

    impl Parser<'_> {
        fn err(&self, what: &str) -> RemotingError {
            RemotingError::MalformedBody(format!("fastjson: {what} at byte {}", self.pos))
        }

        fn ws(&mut self) {
            while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.pos).copied()
        }

        fn value(&mut self, depth: usize) -> Result<serde_json::Value, RemotingError> {
            if depth > MAX_DEPTH {
                return Err(self.err("nesting too deep"));
            }
            self.ws();
            match self.peek() {
                Some(b'{') => self.object(depth),
                Some(b'[') => {
                    self.pos += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return Ok(serde_json::Value::Array(items));
                    }
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                return Ok(serde_json::Value::Array(items));
                            }
                            _ => return Err(self.err("expected , or ]")),
                        }
                    }
                }
                Some(_) => self.scalar(),
                None => Err(self.err("unexpected end")),
            }
        }

        fn object(&mut self, depth: usize) -> Result<serde_json::Value, RemotingError> {
            self.pos += 1; // '{'
            let mut map = serde_json::Map::new();
            self.ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(serde_json::Value::Object(map));
            }
            loop {
                self.ws();
                let key = match self.value(depth + 1)? {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                self.ws();
                if self.peek() != Some(b':') {
                    return Err(self.err("expected :"));
                }
                self.pos += 1;
                let v = self.value(depth + 1)?;
                map.insert(key, v);
                self.ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(serde_json::Value::Object(map));
                    }
                    _ => return Err(self.err("expected , or }")),
                }
            }
        }

        /// A string, number, true/false/null: delegate to serde_json on the token.
        fn scalar(&mut self) -> Result<serde_json::Value, RemotingError> {
            let start = self.pos;
            if self.peek() == Some(b'"') {
                self.pos += 1;
                while let Some(c) = self.peek() {
                    self.pos += 1;
                    match c {
                        b'\\' => self.pos += 1,
                        b'"' => break,
                        _ => {}
                    }
                }
            } else {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b':') || c.is_ascii_whitespace() {
                        break;
                    }
                    self.pos += 1;
                }
            }
            let end = self.pos.min(self.s.len());
            self.pos = end;
            serde_json::from_slice(&self.s[start..end]).map_err(|_| self.err("bad scalar"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_java_form() {
        let raw = br#"{"clientID":"10.0.0.1@1234","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY",
 "groupName":"CG","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[65,66],
 "expressionType":"TAG","subString":"A || B","subVersion":1700000000000,"tagsSet":["A","B"],"topic":"T"}],"unitMode":false}],
 "producerDataSet":[{"groupName":"PG"}]}"#;
        let hb: HeartbeatData = decode(raw).unwrap();
        assert_eq!(hb.client_id, "10.0.0.1@1234");
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.subscription_data_set[0].code_set, vec![65, 66]);
        assert_eq!(c.subscription_data_set[0].sub_version, 1_700_000_000_000);
        assert_eq!(hb.producer_data_set[0].group_name, "PG");
        // Re-encoding keeps Java's member names and enum names.
        let text = String::from_utf8(encode(&hb).to_vec()).unwrap();
        assert!(text.contains(r#""clientID":"10.0.0.1@1234""#));
        assert!(text.contains(r#""consumeType":"CONSUME_PASSIVELY""#));
        let back: HeartbeatData = decode(text.as_bytes()).unwrap();
        assert_eq!(back, hb);
    }

    #[test]
    fn heartbeat_cpp_form_ordinals_and_missing() {
        let raw = br#"{"clientID":"c","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,"groupName":"CG","messageModel":0,
          "subscriptionDataSet":[{"subString":"*","subVersion":"1700000000001","topic":"T"}]}],"producerDataSet":null}"#;
        let hb: HeartbeatData = decode(raw).unwrap();
        let c = &hb.consumer_data_set[0];
        assert_eq!(
            c.consume_from_where,
            ConsumeFromWhere::ConsumeFromFirstOffset
        );
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert!(!c.unit_mode);
        let s = &c.subscription_data_set[0];
        assert_eq!(s.sub_version, 1_700_000_000_001);
        assert!(s.tags_set.is_empty() && s.code_set.is_empty());
        assert_eq!(s.expression_type_or_tag(), "TAG");
        assert!(hb.producer_data_set.is_empty());
        assert!(decode::<HeartbeatData>(br#"{"consumerDataSet":[{"consumeType":9}]}"#).is_err());
    }

    #[test]
    fn connections_and_groups() {
        let raw = br#"{"connectionSet":[{"clientAddr":"127.0.0.1:5","clientId":"c","language":"CPP","version":63}],
            "consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING",
            "subscriptionTable":{"T":{"subString":"*","topic":"T","subVersion":1}}}"#;
        let c: ConsumerConnection = decode(raw).unwrap();
        let conn = c.connection_set.iter().next().unwrap();
        assert_eq!(conn.language, crate::command::LanguageCode::Cpp);
        assert_eq!(c.subscription_table["T"].sub_string, "*");
        let text = String::from_utf8(encode(&c).to_vec()).unwrap();
        assert!(text.contains(r#""language":"CPP""#));
        assert_eq!(decode::<ConsumerConnection>(text.as_bytes()).unwrap(), c);

        let g: SubscriptionGroupConfig =
            decode(br#"{"groupName":"G","retryMaxTimes":"3"}"#).unwrap();
        assert_eq!(g.retry_max_times, 3);
        assert!(g.consume_enable && g.notify_consumer_ids_changed_enable);
        assert_eq!(g.retry_queue_nums, 1);
    }

    #[test]
    fn lock_body_without_only_this_broker() {
        let raw = br#"{"clientId":"c1","consumerGroup":"CG","mqSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"}]}"#;
        let b: LockBatchRequestBody = decode(raw).unwrap();
        assert_eq!(b.only_this_broker, None);
        assert!(b.mq_set.contains(&MessageQueue::new("T", "broker-a", 0)));
        let resp = LockBatchResponseBody {
            lock_ok_mq_set: b.mq_set.clone(),
        };
        let text = String::from_utf8(encode(&resp).to_vec()).unwrap();
        assert_eq!(
            text,
            r#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"}]}"#
        );
    }

    #[test]
    fn fastjson_topic_stats_round_trip() {
        let mut t = TopicStatsTable::default();
        t.offset_table.insert(
            MessageQueue::new("T", "broker-a", 0),
            TopicOffset {
                last_update_timestamp: 7,
                max_offset: 5,
                min_offset: 0,
            },
        );
        let text = t.to_fastjson();
        assert_eq!(
            text,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"lastUpdateTimestamp":7,"maxOffset":5,"minOffset":0}}}"#
        );
        assert_eq!(TopicStatsTable::from_fastjson(text.as_bytes()).unwrap(), t);
    }

    #[test]
    fn fastjson_consume_stats_and_numbers() {
        let mut c = ConsumeStats {
            consume_tps: 1.5,
            ..Default::default()
        };
        c.offset_table.insert(
            MessageQueue::new("T", "b", 1),
            OffsetWrapper {
                broker_offset: 5,
                consumer_offset: 3,
                last_timestamp: 9,
                pull_offset: None,
            },
        );
        let text = c.to_fastjson();
        assert!(text.starts_with(
            r#"{"consumeTps":1.5,"offsetTable":{{"brokerName":"b","queueId":1,"topic":"T"}:"#
        ));
        assert_eq!(ConsumeStats::from_fastjson(text.as_bytes()).unwrap(), c);

        let mut b = BrokerData {
            broker_name: "broker-a".into(),
            cluster: "DefaultCluster".into(),
            ..Default::default()
        };
        b.broker_addrs.insert(0, "127.0.0.1:10911".into());
        b.broker_addrs.insert(1, "127.0.0.1:10921".into());
        assert_eq!(
            fastjson::broker_data(&b),
            r#"{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}"#
        );
        let parsed = fastjson::parse(fastjson::broker_data(&b).as_bytes()).unwrap();
        let back: BrokerData = serde_json::from_value(parsed).unwrap();
        assert_eq!(back, b);
        assert!(fastjson::parse(b"{").is_err());
        assert!(fastjson::parse(&[b'['; 200]).is_err());
    }
}
