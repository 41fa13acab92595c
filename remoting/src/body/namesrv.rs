//! NameServer protocol bodies: the one definition used by the broker, the broker-side
//! NameServer client (`namesrv-client` re-exports this module as its `body`), our NameServer,
//! the benchmark tool and tests.
//!
//! Field names, JSON member order (fastjson sorts bean members alphabetically) and default
//! values follow `[A4] common/.../protocol/body/*`, `protocol/route/*`, `common/TopicConfig.java`
//! and `common/DataVersion.java`. We emit the 4.9.7 form; parsing also accepts the 5.x
//! additions (`stateVersion`, `attributes`, mapping tables) and fastjson bare numeric keys.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super as lenient;
use super::fastjson::{self, JsonStyle};
use crate::error::BodyError;

/// Largest body we decode or decompress (the remoting frame limit).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest decompressed RegisterBrokerBody; bounds zlib bombs.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// Most topics one registration may carry.
pub const MAX_TOPICS_PER_REGISTRATION: usize = 1_000_000;

/// PermName bits (`common/constant/PermName.java`).
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;
    pub const READ_WRITE: i32 = READ | WRITE;
}

/// Master broker id (`MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// KV namespace whose table the namesrv returns in REGISTER_BROKER responses.
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

fn parse_json<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, BodyError> {
    serde_json::from_str(text).map_err(BodyError::Json)
}

/// Decode a fastjson body (either flavour) into `T`.
pub fn decode_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge {
            size_bytes: body.len(),
            limit_bytes: MAX_BODY_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    let normalized = fastjson::normalize(text);
    parse_json(&normalized)
}

fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs/maps of strings and numbers cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `{timestamp, counter}` (+ `stateVersion` in 5.x). The namesrv re-reads a broker's topic
/// table only when this differs from what it stored for that broker address.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    #[serde(deserialize_with = "lenient::lenient_i64")]
    pub counter: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_version: Option<i64>,
    #[serde(deserialize_with = "lenient::lenient_i64")]
    pub timestamp: i64,
}

impl PartialEq for DataVersion {
    /// 4.9.7 `DataVersion.equals`: timestamp and counter only.
    fn eq(&self, other: &Self) -> bool {
        self.timestamp == other.timestamp && self.counter == other.counter
    }
}
impl Eq for DataVersion {}

impl DataVersion {
    pub fn new(timestamp_ms: i64, counter: i64) -> DataVersion {
        DataVersion {
            counter,
            state_version: None,
            timestamp: timestamp_ms,
        }
    }

    /// `nextVersion()`: timestamp = now, counter + 1.
    pub fn next(&self, now_ms: i64) -> DataVersion {
        DataVersion {
            counter: self.counter + 1,
            state_version: self.state_version,
            timestamp: now_ms,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }

    pub fn decode(body: &[u8]) -> Result<DataVersion, BodyError> {
        decode_json(body)
    }
}

/// `TopicFilterType`, written by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TopicFilterType {
    #[default]
    #[serde(rename = "SINGLE_TAG")]
    SingleTag,
    #[serde(rename = "MULTI_TAG")]
    MultiTag,
}

impl TopicFilterType {
    pub fn name(self) -> &'static str {
        match self {
            TopicFilterType::SingleTag => "SINGLE_TAG",
            TopicFilterType::MultiTag => "MULTI_TAG",
        }
    }

    pub fn from_name(s: &str) -> Option<TopicFilterType> {
        match s {
            "SINGLE_TAG" => Some(TopicFilterType::SingleTag),
            "MULTI_TAG" => Some(TopicFilterType::MultiTag),
            _ => None,
        }
    }
}

/// Name, ordinal or null (fastjson accepts all three); unknown values → SINGLE_TAG.
fn lenient_filter_type<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<TopicFilterType, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => TopicFilterType::from_name(&s).unwrap_or_default(),
        serde_json::Value::Number(n) if n.as_i64() == Some(1) => TopicFilterType::MultiTag,
        _ => TopicFilterType::SingleTag,
    })
}

/// One topic as a broker serves it (`common/TopicConfig.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// 5.x only; omitted when `None` so a 4.9.7 namesrv sees the 4.9.7 form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "lenient::lenient_bool")]
    pub order: bool,
    #[serde(deserialize_with = "lenient::lenient_i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient::lenient_i32")]
    pub read_queue_nums: i32,
    #[serde(deserialize_with = "lenient_filter_type")]
    pub topic_filter_type: TopicFilterType,
    #[serde(deserialize_with = "lenient::null_default")]
    pub topic_name: String,
    #[serde(deserialize_with = "lenient::lenient_i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient::lenient_i32")]
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    /// Java defaults: 16/16 queues, RW, SINGLE_TAG.
    fn default() -> Self {
        TopicConfig {
            attributes: None,
            order: false,
            perm: perm::READ_WRITE,
            read_queue_nums: 16,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: 16,
        }
    }
}

impl TopicConfig {
    pub fn new(
        topic: impl Into<String>,
        read_queue_nums: i32,
        write_queue_nums: i32,
        perm: i32,
    ) -> Self {
        TopicConfig {
            topic_name: topic.into(),
            read_queue_nums,
            write_queue_nums,
            perm,
            ..Default::default()
        }
    }

    /// `TopicConfig.encode()`: `"name read write perm filterType"` (compressed registration).
    pub fn encode_text(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.topic_name,
            self.read_queue_nums,
            self.write_queue_nums,
            self.perm,
            self.topic_filter_type.name()
        )
    }

    /// `TopicConfig.decode()`. Accepts the 5.x sixth token (attributes JSON) and ignores it.
    pub fn decode_text(text: &str) -> Result<TopicConfig, BodyError> {
        let bad = || BodyError::Compressed(format!("bad topic config text `{text}`"));
        let mut parts = text.splitn(6, ' ');
        let mut next = || parts.next().ok_or_else(bad);
        let topic_name = next()?.to_string();
        let read_queue_nums = next()?.parse().map_err(|_| bad())?;
        let write_queue_nums = next()?.parse().map_err(|_| bad())?;
        let perm = next()?.parse().map_err(|_| bad())?;
        let topic_filter_type = TopicFilterType::from_name(next()?).ok_or_else(bad)?;
        if topic_name.is_empty() {
            return Err(bad());
        }
        Ok(TopicConfig {
            topic_name,
            read_queue_nums,
            write_queue_nums,
            perm,
            topic_filter_type,
            ..Default::default()
        })
    }
}

/// `{topicConfigTable, dataVersion}` (`TopicConfigSerializeWrapper`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    pub data_version: DataVersion,
    #[serde(deserialize_with = "lenient::null_default")]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

/// REGISTER_BROKER body (`RegisterBrokerBody`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    #[serde(deserialize_with = "lenient::null_default")]
    pub filter_server_list: Vec<String>,
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

impl RegisterBrokerBody {
    /// Plain (JSON) or compressed form, as chosen by the header's `compressed` flag.
    pub fn encode(&self, compressed: bool) -> Vec<u8> {
        if compressed {
            self.encode_compressed()
        } else {
            encode_json(self)
        }
    }

    pub fn decode(body: &[u8], compressed: bool) -> Result<RegisterBrokerBody, BodyError> {
        if compressed {
            Self::decode_compressed(body)
        } else {
            decode_json(body)
        }
    }

    /// zlib stream of: `i32 len + DataVersion JSON`, `i32 topicCount`, per topic
    /// `i32 len + TopicConfig text`, `i32 len + filterServerList JSON` (namesrv.md §2).
    /// `order` and `topicSysFlag` do not survive this form (as in Java).
    fn encode_compressed(&self) -> Vec<u8> {
        let wrapper = &self.topic_config_serialize_wrapper;
        let mut raw = Vec::with_capacity(64 + wrapper.topic_config_table.len() * 48);
        let mut put = |bytes: &[u8]| {
            raw.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            raw.extend_from_slice(bytes);
        };
        put(&wrapper.data_version.encode());
        let count = wrapper.topic_config_table.len() as i32;
        let mut body = Vec::new();
        for tc in wrapper.topic_config_table.values() {
            let text = tc.encode_text();
            body.extend_from_slice(&(text.len() as i32).to_be_bytes());
            body.extend_from_slice(text.as_bytes());
        }
        raw.extend_from_slice(&count.to_be_bytes());
        raw.extend_from_slice(&body);
        let filters = encode_json(&self.filter_server_list);
        raw.extend_from_slice(&(filters.len() as i32).to_be_bytes());
        raw.extend_from_slice(&filters);

        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&raw);
        enc.finish().unwrap_or_default()
    }

    fn decode_compressed(body: &[u8]) -> Result<RegisterBrokerBody, BodyError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge {
                size_bytes: body.len(),
                limit_bytes: MAX_BODY_BYTES,
            });
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(body)
            .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| BodyError::Compressed(format!("zlib: {e}")))?;
        if raw.len() > MAX_DECOMPRESSED_BYTES {
            return Err(BodyError::TooLarge {
                size_bytes: raw.len(),
                limit_bytes: MAX_DECOMPRESSED_BYTES,
            });
        }
        let mut cur = Cursor { buf: &raw, pos: 0 };
        let data_version = DataVersion::decode(cur.chunk()?)?;
        let count = cur.i32()?;
        if count < 0 || count as usize > MAX_TOPICS_PER_REGISTRATION {
            return Err(BodyError::Compressed(format!("bad topic count {count}")));
        }
        let mut table = BTreeMap::new();
        for _ in 0..count {
            let text = std::str::from_utf8(cur.chunk()?).map_err(|_| BodyError::NotUtf8)?;
            let tc = TopicConfig::decode_text(text)?;
            table.insert(tc.topic_name.clone(), tc);
        }
        // Java tolerates a broken filter list (logs, uses an empty list); so do we.
        let filter_server_list = match cur.chunk() {
            Ok(bytes) => decode_json(bytes).unwrap_or_default(),
            Err(e) => return Err(e),
        };
        Ok(RegisterBrokerBody {
            filter_server_list,
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version,
                topic_config_table: table,
            },
        })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn i32(&mut self) -> Result<i32, BodyError> {
        let end = self.pos + 4;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| BodyError::Compressed("truncated length".into()))?;
        self.pos = end;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn chunk(&mut self) -> Result<&'a [u8], BodyError> {
        let len = self.i32()?;
        if len < 0 {
            return Err(BodyError::Compressed(format!("negative length {len}")));
        }
        let end = self.pos + len as usize;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| BodyError::Compressed("truncated chunk".into()))?;
        self.pos = end;
        Ok(bytes)
    }
}

/// `KVTable` (`{"table":{...}}`): REGISTER_BROKER response body, GET_KVLIST_BY_NAMESPACE.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KvTable {
    #[serde(deserialize_with = "lenient::null_default")]
    pub table: BTreeMap<String, String>,
}

impl KvTable {
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }

    pub fn decode(body: &[u8]) -> Result<KvTable, BodyError> {
        decode_json(body)
    }
}

/// What one namesrv answered to REGISTER_BROKER.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegisterBrokerResult {
    /// The master's HA address (slaves only, when the master is registered).
    pub ha_server_addr: Option<String>,
    /// The master's address (slaves only).
    pub master_addr: Option<String>,
    /// `ORDER_TOPIC_CONFIG` KV namespace (empty when the namesrv has none).
    pub kv_table: KvTable,
}

/// Route data for one broker group serving a topic (`route/QueueData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    #[serde(deserialize_with = "lenient::null_default")]
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::lenient_i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient::lenient_i32")]
    pub read_queue_nums: i32,
    /// Pre-4.x Java spelled it `topicSynFlag`; accept both.
    #[serde(alias = "topicSynFlag", deserialize_with = "lenient::lenient_i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient::lenient_i32")]
    pub write_queue_nums: i32,
}

impl QueueData {
    fn write_json(&self, out: &mut String, style: JsonStyle) {
        out.push_str("{\"brokerName\":");
        fastjson::write_str(out, &self.broker_name, style);
        out.push_str(&format!(
            ",\"perm\":{},\"readQueueNums\":{},\"topicSysFlag\":{},\"writeQueueNums\":{}}}",
            self.perm, self.read_queue_nums, self.topic_sys_flag, self.write_queue_nums
        ));
    }
}

/// One broker group: id → address, id 0 = master (`route/BrokerData.java`).
/// Serde gives the standard JSON form (quoted `brokerAddrs` keys); [`BrokerData::write_json`]
/// gives either form.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    #[serde(deserialize_with = "lenient::null_default")]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(deserialize_with = "lenient::null_default")]
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::null_default")]
    pub cluster: String,
    /// 5.x only; omitted when `None` (the 4.9.7 form).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::lenient_opt_bool"
    )]
    pub enable_acting_master: Option<bool>,
    /// 5.x only; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }

    /// `{"brokerAddrs":{0:"a"},"brokerName":"b","cluster":"c"}`.
    pub fn write_json(&self, out: &mut String, style: JsonStyle) {
        out.push_str("{\"brokerAddrs\":{");
        for (i, (id, addr)) in self.broker_addrs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            fastjson::write_number_key(out, *id, style);
            out.push(':');
            fastjson::write_str(out, addr, style);
        }
        out.push_str("},\"brokerName\":");
        fastjson::write_str(out, &self.broker_name, style);
        out.push_str(",\"cluster\":");
        fastjson::write_str(out, &self.cluster, style);
        // Members stay in fastjson's alphabetical order; Java omits null members.
        if let Some(acting) = self.enable_acting_master {
            out.push_str(if acting {
                ",\"enableActingMaster\":true"
            } else {
                ",\"enableActingMaster\":false"
            });
        }
        if let Some(zone) = &self.zone_name {
            out.push_str(",\"zoneName\":");
            fastjson::write_str(out, zone, style);
        }
        out.push('}');
    }
}

/// GET_ROUTEINFO_BY_TOPIC body (`route/TopicRouteData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    pub broker_datas: Vec<BrokerData>,
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// Present only when set (Java omits null members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
}

impl TopicRouteData {
    /// Java's JSON: members in alphabetical order, `orderTopicConf` only when set,
    /// `filterServerTable` always present (`{}` normally).
    pub fn encode(&self, style: JsonStyle) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str("{\"brokerDatas\":[");
        for (i, bd) in self.broker_datas.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            bd.write_json(&mut out, style);
        }
        out.push_str("],\"filterServerTable\":{");
        for (i, (addr, servers)) in self.filter_server_table.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            fastjson::write_str(&mut out, addr, style);
            out.push_str(":[");
            for (j, s) in servers.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                fastjson::write_str(&mut out, s, style);
            }
            out.push(']');
        }
        out.push('}');
        if let Some(conf) = &self.order_topic_conf {
            out.push_str(",\"orderTopicConf\":");
            fastjson::write_str(&mut out, conf, style);
        }
        out.push_str(",\"queueDatas\":[");
        for (i, qd) in self.queue_datas.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            qd.write_json(&mut out, style);
        }
        out.push_str("]}");
        out.into_bytes()
    }

    /// Accepts both the fastjson (bare keys) and the standard form.
    pub fn decode(body: &[u8]) -> Result<TopicRouteData, BodyError> {
        decode_json(body)
    }
}

/// GET_BROKER_CLUSTER_INFO body (`body/ClusterInfo.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

impl ClusterInfo {
    /// Always the fastjson default form, as Java's namesrv.
    pub fn encode(&self) -> Vec<u8> {
        let style = JsonStyle::Fastjson;
        let mut out = String::with_capacity(256);
        out.push_str("{\"brokerAddrTable\":{");
        for (i, (name, bd)) in self.broker_addr_table.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            fastjson::write_str(&mut out, name, style);
            out.push(':');
            bd.write_json(&mut out, style);
        }
        out.push_str("},\"clusterAddrTable\":{");
        for (i, (cluster, names)) in self.cluster_addr_table.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            fastjson::write_str(&mut out, cluster, style);
            out.push_str(":[");
            for (j, n) in names.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                fastjson::write_str(&mut out, n, style);
            }
            out.push(']');
        }
        out.push_str("}}");
        out.into_bytes()
    }

    pub fn decode(body: &[u8]) -> Result<ClusterInfo, BodyError> {
        decode_json(body)
    }
}

/// `TopicList` (`{"brokerAddr":..., "topicList":[...]}`; brokerAddr only when set).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    pub topic_list: BTreeSet<String>,
}

impl TopicList {
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }

    pub fn decode(body: &[u8]) -> Result<TopicList, BodyError> {
        decode_json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_example() -> TopicRouteData {
        TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: BTreeMap::from([
                    (0, "127.0.0.1:10911".to_string()),
                    (1, "127.0.0.1:10921".to_string()),
                ]),
                broker_name: "broker-a".into(),
                cluster: "DefaultCluster".into(),
                ..Default::default()
            }],
            filter_server_table: BTreeMap::new(),
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }],
        }
    }

    /// Golden strings: namesrv.md §4, produced by running the 4.9.7 Java classes.
    const GOLDEN_FASTJSON: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
    const GOLDEN_STANDARD: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    #[test]
    fn route_data_matches_java_golden_json() {
        let route = route_example();
        assert_eq!(
            String::from_utf8(route.encode(JsonStyle::Fastjson)).unwrap(),
            GOLDEN_FASTJSON
        );
        assert_eq!(
            String::from_utf8(route.encode(JsonStyle::Standard)).unwrap(),
            GOLDEN_STANDARD
        );
    }

    #[test]
    fn broker_data_5x_members_follow_cluster_in_both_forms() {
        let mut route = route_example();
        route.broker_datas[0].enable_acting_master = Some(false);
        route.broker_datas[0].zone_name = Some("z\u{e9}".into());
        let fast = String::from_utf8(route.encode(JsonStyle::Fastjson)).unwrap();
        assert!(fast.contains(
            "\"cluster\":\"DefaultCluster\",\"enableActingMaster\":false,\"zoneName\":\"z\u{e9}\"}"
        ));
        let standard = String::from_utf8(route.encode(JsonStyle::Standard)).unwrap();
        assert!(standard.contains(r#""enableActingMaster":false,"zoneName":"z\u00E9"}"#));
        assert_eq!(TopicRouteData::decode(fast.as_bytes()).unwrap(), route);
        assert_eq!(TopicRouteData::decode(standard.as_bytes()).unwrap(), route);
        // serde (standard JSON) agrees with the hand-written standard form for ASCII data.
        route.broker_datas[0].zone_name = Some("z".into());
        assert_eq!(
            serde_json::to_vec(&route).unwrap(),
            route.encode(JsonStyle::Standard)
        );
    }

    #[test]
    fn route_data_parses_both_forms() {
        let expected = route_example();
        assert_eq!(
            TopicRouteData::decode(GOLDEN_FASTJSON.as_bytes()).unwrap(),
            expected
        );
        assert_eq!(
            TopicRouteData::decode(GOLDEN_STANDARD.as_bytes()).unwrap(),
            expected
        );
    }

    #[test]
    fn order_topic_conf_only_when_set() {
        let mut route = route_example();
        route.order_topic_conf = Some("broker-a:4".into());
        let text = String::from_utf8(route.encode(JsonStyle::Fastjson)).unwrap();
        assert!(
            text.contains(r#""filterServerTable":{},"orderTopicConf":"broker-a:4","queueDatas""#)
        );
        assert_eq!(TopicRouteData::decode(text.as_bytes()).unwrap(), route);
        assert!(
            !String::from_utf8(route_example().encode(JsonStyle::Fastjson))
                .unwrap()
                .contains("orderTopicConf")
        );
    }

    /// Golden string: namesrv.md §2 (4.9.7 RegisterBrokerBody, verified by execution).
    const GOLDEN_REGISTER_BODY: &str = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"timestamp":1700000000000},"topicConfigTable":{"T":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":0,"writeQueueNums":4}}}}"#;

    fn register_example() -> RegisterBrokerBody {
        let mut body = RegisterBrokerBody::default();
        body.topic_config_serialize_wrapper.data_version = DataVersion::new(1_700_000_000_000, 3);
        body.topic_config_serialize_wrapper
            .topic_config_table
            .insert("T".into(), TopicConfig::new("T", 4, 4, 6));
        body
    }

    #[test]
    fn register_body_matches_java_golden_json() {
        let body = register_example();
        assert_eq!(
            String::from_utf8(body.encode(false)).unwrap(),
            GOLDEN_REGISTER_BODY
        );
        assert_eq!(
            RegisterBrokerBody::decode(GOLDEN_REGISTER_BODY.as_bytes(), false).unwrap(),
            body
        );
    }

    #[test]
    fn register_body_accepts_5x_fields() {
        let text = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":5},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1},"topicConfigTable":{"T":{"attributes":{},"order":true,"perm":6,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"T","topicSysFlag":1,"writeQueueNums":8}},"topicQueueMappingInfoMap":{}}}"#;
        let body = RegisterBrokerBody::decode(text.as_bytes(), false).unwrap();
        let w = &body.topic_config_serialize_wrapper;
        assert_eq!(w.data_version, DataVersion::new(5, 3));
        let t = &w.topic_config_table["T"];
        assert!(t.order);
        assert_eq!((t.read_queue_nums, t.topic_sys_flag), (8, 1));
    }

    #[test]
    fn compressed_register_body_round_trips() {
        let mut body = register_example();
        body.topic_config_serialize_wrapper
            .topic_config_table
            .insert(
                "%RETRY%g".into(),
                TopicConfig {
                    topic_filter_type: TopicFilterType::MultiTag,
                    ..TopicConfig::new("%RETRY%g", 1, 1, 6)
                },
            );
        body.filter_server_list = vec!["127.0.0.1:1".into()];
        let bytes = body.encode(true);
        assert_eq!(bytes[0], 0x78, "zlib header");
        let back = RegisterBrokerBody::decode(&bytes, true).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn compressed_body_is_java_layout() {
        let body = register_example();
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&body.encode(true)[..])
            .read_to_end(&mut raw)
            .unwrap();
        let dv = br#"{"counter":3,"timestamp":1700000000000}"#;
        let tc = b"T 4 4 6 SINGLE_TAG";
        let mut expected = Vec::new();
        expected.extend_from_slice(&(dv.len() as i32).to_be_bytes());
        expected.extend_from_slice(dv);
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&(tc.len() as i32).to_be_bytes());
        expected.extend_from_slice(tc);
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"[]");
        assert_eq!(raw, expected);
    }

    #[test]
    fn compressed_body_rejects_garbage_and_truncation() {
        assert!(RegisterBrokerBody::decode(b"not zlib", true).is_err());
        let bytes = register_example().encode(true);
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap();
        raw.truncate(raw.len() - 3);
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw).unwrap();
        assert!(RegisterBrokerBody::decode(&enc.finish().unwrap(), true).is_err());
    }

    #[test]
    fn topic_config_text_accepts_5x_attributes_token() {
        let tc = TopicConfig::decode_text(r#"T 2 3 6 SINGLE_TAG {"+a":"b"}"#).unwrap();
        assert_eq!(
            (tc.read_queue_nums, tc.write_queue_nums, tc.perm),
            (2, 3, 6)
        );
        assert!(TopicConfig::decode_text("T 2 3").is_err());
        assert!(TopicConfig::decode_text("T x 3 6 SINGLE_TAG").is_err());
    }

    #[test]
    fn cluster_info_uses_bare_keys() {
        let route = route_example();
        let info = ClusterInfo {
            broker_addr_table: BTreeMap::from([("broker-a".into(), route.broker_datas[0].clone())]),
            cluster_addr_table: BTreeMap::from([(
                "DefaultCluster".into(),
                BTreeSet::from(["broker-a".to_string()]),
            )]),
        };
        let text = String::from_utf8(info.encode()).unwrap();
        assert_eq!(
            text,
            r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
        );
        assert_eq!(ClusterInfo::decode(text.as_bytes()).unwrap(), info);
    }

    #[test]
    fn topic_list_and_kv_table_json() {
        let list = TopicList {
            broker_addr: None,
            topic_list: BTreeSet::from(["A".to_string(), "B".to_string()]),
        };
        assert_eq!(list.encode(), br#"{"topicList":["A","B"]}"#);
        let kv = KvTable {
            table: BTreeMap::from([("T".to_string(), "broker-a:4".to_string())]),
        };
        assert_eq!(kv.encode(), br#"{"table":{"T":"broker-a:4"}}"#);
        assert_eq!(KvTable::decode(&kv.encode()).unwrap(), kv);
    }

    #[test]
    fn parsing_is_lenient_like_fastjson() {
        let text = r#"{"filterServerList":null,"topicConfigSerializeWrapper":{"dataVersion":{"counter":"3","timestamp":"5"},"topicConfigTable":{"T":{"order":0,"perm":"6","readQueueNums":"4","topicFilterType":1,"topicName":"T","writeQueueNums":4}}}}"#;
        let body = RegisterBrokerBody::decode(text.as_bytes(), false).unwrap();
        let w = &body.topic_config_serialize_wrapper;
        assert_eq!(w.data_version, DataVersion::new(5, 3));
        let t = &w.topic_config_table["T"];
        assert_eq!((t.perm, t.read_queue_nums, t.order), (6, 4, false));
        assert_eq!(t.topic_filter_type, TopicFilterType::MultiTag);
    }

    #[test]
    fn data_version_equality_ignores_state_version() {
        let a = DataVersion::new(10, 2);
        let b = DataVersion {
            state_version: Some(7),
            ..a
        };
        assert_eq!(a, b);
        assert_ne!(a, a.next(10));
        assert_eq!(a.next(11).counter, 3);
    }
}
