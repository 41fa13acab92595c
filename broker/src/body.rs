//! JSON request/response bodies the broker's client-facing processors read and write:
//! HEART_BEAT (`HeartbeatData`), lock/unlock bodies, consumer lists, `MessageQueue`.
//! Types whose wire form is all the broker needs (`MessageQueue`, lock bodies, consumer
//! list, the consumer enums) are remoting's, re-exported; the heartbeat stays here because
//! the broker keeps it in a derived form (tag hash sets built from the expression, bounded
//! lists) that pull filtering and the consumer manager use.
//!
//! Parsing is lenient like Java's fastjson-based broker (clients.md): enums may arrive as
//! names or ordinals, `subVersion` as a string, and `unitMode`, `classFilterMode`,
//! `expressionType`, `tagsSet`, `codeSet`, `onlyThisBroker` may be missing. Every list is
//! bounded.

use std::collections::BTreeSet;

// Bodies whose wire form is shared with clients live in remoting; re-exported so broker
// modules keep one import path.
pub use remoting::body::{
    ConsumeFromWhere, ConsumeType, GetConsumerListByGroupResponseBody, LockBatchRequestBody,
    LockBatchResponseBody, MessageModel, MessageQueue,
};
use serde_json::Value;

/// Most consumer groups / producer groups one heartbeat may carry.
pub const HEARTBEAT_GROUPS_MAX: usize = 1024;
/// Most subscriptions per consumer group in one heartbeat.
pub const SUBSCRIPTIONS_PER_GROUP_MAX: usize = 4096;
/// Most tags per subscription expression.
pub const TAGS_PER_SUBSCRIPTION_MAX: usize = 1024;
/// Most queues in one lock/unlock request.
pub const LOCK_BATCH_QUEUES_MAX: usize = 8192;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("body field `{0}` is missing or has the wrong type")]
    Field(&'static str),
    #[error("body field `{field}` has {count} entries, limit {limit}")]
    TooMany {
        field: &'static str,
        count: usize,
        limit: usize,
    },
}

/// A Java enum member sent as a name, an ordinal or an ordinal string (fastjson reads all
/// three); missing or unknown values take the Java default.
fn enum_from_value<T: Default>(
    v: Option<&Value>,
    from_name: fn(&str) -> Option<T>,
    from_ordinal: fn(i64) -> Option<T>,
) -> T {
    let parsed = match v {
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => from_ordinal(i),
            Err(_) => from_name(s.as_str()),
        },
        Some(Value::Number(n)) => n.as_i64().and_then(from_ordinal),
        _ => None,
    };
    parsed.unwrap_or_default()
}

/// Expression type `TAG` (default) or `SQL92`.
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
/// Subscribe-all expression.
pub const SUB_ALL: &str = "*";

/// Java `SubscriptionData`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionData {
    pub topic: String,
    pub sub_string: String,
    /// Empty for `*`.
    pub tags_set: BTreeSet<String>,
    /// Java `String.hashCode` of each tag (what consume-queue units store).
    pub code_set: BTreeSet<i32>,
    pub sub_version: i64,
    pub expression_type: String,
    pub class_filter_mode: bool,
}

impl SubscriptionData {
    /// Build from a TAG expression such as `"A || B"` (`*` or blank = everything).
    pub fn from_tag_expression(topic: &str, sub_string: &str, sub_version: i64) -> Self {
        let mut s = SubscriptionData {
            topic: topic.to_string(),
            sub_string: sub_string.trim().to_string(),
            sub_version,
            expression_type: EXPRESSION_TYPE_TAG.to_string(),
            ..Default::default()
        };
        if s.sub_string.is_empty() || s.sub_string == SUB_ALL {
            s.sub_string = SUB_ALL.to_string();
            return s;
        }
        for tag in s
            .sub_string
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .take(TAGS_PER_SUBSCRIPTION_MAX)
        {
            s.code_set.insert(java_string_hash(tag));
            s.tags_set.insert(tag.to_string());
        }
        s
    }

    /// Whether this is a subscribe-everything TAG subscription.
    pub fn is_sub_all(&self) -> bool {
        self.sub_string == SUB_ALL || self.sub_string.is_empty()
    }

    /// Whether a consume-queue unit's tags code passes this (TAG) subscription.
    pub fn matches_tags_code(&self, tags_code: i64) -> bool {
        self.is_sub_all()
            || self.expression_type != EXPRESSION_TYPE_TAG
            || i32::try_from(tags_code).is_ok_and(|c| self.code_set.contains(&c))
    }

    fn from_json(v: &Value) -> Result<SubscriptionData, BodyError> {
        let topic = v
            .get("topic")
            .and_then(Value::as_str)
            .ok_or(BodyError::Field("subscriptionDataSet.topic"))?;
        let sub_string = v
            .get("subString")
            .and_then(Value::as_str)
            .unwrap_or(SUB_ALL);
        let sub_version = match v.get("subVersion") {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        };
        let expression_type = v
            .get("expressionType")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(EXPRESSION_TYPE_TAG);
        let mut s = if expression_type == EXPRESSION_TYPE_TAG {
            SubscriptionData::from_tag_expression(topic, sub_string, sub_version)
        } else {
            SubscriptionData {
                topic: topic.to_string(),
                sub_string: sub_string.to_string(),
                sub_version,
                expression_type: expression_type.to_string(),
                ..Default::default()
            }
        };
        // Prefer what the client sent, when it sent it (Java keeps the client's sets).
        if let Some(tags) = v.get("tagsSet").and_then(Value::as_array) {
            if !tags.is_empty() {
                s.tags_set = tags
                    .iter()
                    .filter_map(Value::as_str)
                    .take(TAGS_PER_SUBSCRIPTION_MAX)
                    .map(str::to_string)
                    .collect();
            }
        }
        if let Some(codes) = v.get("codeSet").and_then(Value::as_array) {
            if !codes.is_empty() {
                s.code_set = codes
                    .iter()
                    .filter_map(|c| match c {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    })
                    .filter_map(|c| i32::try_from(c).ok())
                    .take(TAGS_PER_SUBSCRIPTION_MAX)
                    .collect();
            }
        }
        s.class_filter_mode = json_bool(v.get("classFilterMode"));
        Ok(s)
    }

    /// Java JSON form (fastjson field order), for consumer-connection answers.
    pub fn to_json_value(&self) -> Value {
        serde_json::json!({
            "classFilterMode": self.class_filter_mode,
            "codeSet": self.code_set,
            "expressionType": self.expression_type,
            "subString": self.sub_string,
            "subVersion": self.sub_version,
            "tagsSet": self.tags_set,
            "topic": self.topic,
        })
    }
}

/// Java `String.hashCode`: the store's, which also computes the tags codes it indexes.
pub use store::message::java_string_hash;

fn json_bool(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "1"),
        _ => false,
    }
}

/// Java `ConsumerData`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerData {
    pub group_name: String,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub subscriptions: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

/// Java `HeartbeatData`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatData {
    pub client_id: String,
    /// Producer group names.
    pub producer_groups: Vec<String>,
    pub consumers: Vec<ConsumerData>,
}

fn bounded_array<'a>(
    v: Option<&'a Value>,
    field: &'static str,
    limit: usize,
) -> Result<&'a [Value], BodyError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) if a.len() <= limit => Ok(a),
        Some(Value::Array(a)) => Err(BodyError::TooMany {
            field,
            count: a.len(),
            limit,
        }),
        Some(_) => Err(BodyError::Field(field)),
    }
}

impl HeartbeatData {
    pub fn decode(body: &[u8]) -> Result<HeartbeatData, BodyError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
        let client_id = v
            .get("clientID")
            .and_then(Value::as_str)
            .ok_or(BodyError::Field("clientID"))?
            .to_string();
        let mut hb = HeartbeatData {
            client_id,
            ..Default::default()
        };
        for p in bounded_array(
            v.get("producerDataSet"),
            "producerDataSet",
            HEARTBEAT_GROUPS_MAX,
        )? {
            if let Some(g) = p.get("groupName").and_then(Value::as_str) {
                hb.producer_groups.push(g.to_string());
            }
        }
        for c in bounded_array(
            v.get("consumerDataSet"),
            "consumerDataSet",
            HEARTBEAT_GROUPS_MAX,
        )? {
            let group_name = c
                .get("groupName")
                .and_then(Value::as_str)
                .ok_or(BodyError::Field("consumerDataSet.groupName"))?
                .to_string();
            let mut subscriptions = Vec::new();
            for s in bounded_array(
                c.get("subscriptionDataSet"),
                "subscriptionDataSet",
                SUBSCRIPTIONS_PER_GROUP_MAX,
            )? {
                subscriptions.push(SubscriptionData::from_json(s)?);
            }
            hb.consumers.push(ConsumerData {
                group_name,
                consume_type: enum_from_value(
                    c.get("consumeType"),
                    ConsumeType::from_name,
                    ConsumeType::from_ordinal,
                ),
                message_model: enum_from_value(
                    c.get("messageModel"),
                    MessageModel::from_name,
                    MessageModel::from_ordinal,
                ),
                consume_from_where: enum_from_value(
                    c.get("consumeFromWhere"),
                    ConsumeFromWhere::from_name,
                    ConsumeFromWhere::from_ordinal,
                ),
                subscriptions,
                unit_mode: json_bool(c.get("unitMode")),
            });
        }
        Ok(hb)
    }
}

/// Decode a LOCK_BATCH_MQ / UNLOCK_BATCH_MQ body (remoting's lenient
/// [`LockBatchRequestBody`]; `onlyThisBroker` optional and ignored: we are always "this
/// broker"), bounding `mqSet` and requiring the group and client id.
pub fn decode_lock_batch(body: &[u8]) -> Result<LockBatchRequestBody, BodyError> {
    let b: LockBatchRequestBody =
        serde_json::from_slice(body).map_err(|e| BodyError::Json(e.to_string()))?;
    if b.mq_set.len() > LOCK_BATCH_QUEUES_MAX {
        return Err(BodyError::TooMany {
            field: "mqSet",
            count: b.mq_set.len(),
            limit: LOCK_BATCH_QUEUES_MAX,
        });
    }
    if b.consumer_group.is_empty() {
        return Err(BodyError::Field("consumerGroup"));
    }
    if b.client_id.is_empty() {
        return Err(BodyError::Field("clientId"));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_heartbeat() {
        let j = r#"{"clientID":"10.0.0.1@1234","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_PASSIVELY",
 "groupName":"CG","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[65,66],
 "expressionType":"TAG","subString":"A || B","subVersion":1700000000000,"tagsSet":["A","B"],"topic":"T"}],"unitMode":false}],
 "producerDataSet":[{"groupName":"PG"}]}"#;
        let hb = HeartbeatData::decode(j.as_bytes()).unwrap();
        assert_eq!(hb.client_id, "10.0.0.1@1234");
        assert_eq!(hb.producer_groups, vec!["PG"]);
        let c = &hb.consumers[0];
        assert_eq!(
            c.consume_from_where,
            ConsumeFromWhere::ConsumeFromFirstOffset
        );
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.subscriptions[0].code_set, [65, 66].into_iter().collect());
        assert_eq!(c.subscriptions[0].sub_version, 1_700_000_000_000);
    }

    #[test]
    fn lenient_heartbeat() {
        // Ordinals, subVersion as string, no tagsSet/codeSet/expressionType/unitMode.
        let j = r#"{"clientID":"c1","consumerDataSet":[{"consumeFromWhere":4,"consumeType":0,"groupName":"CG",
            "messageModel":0,"subscriptionDataSet":[{"subString":"TagA || TagB","subVersion":"123","topic":"T"},
            {"subString":"*","subVersion":"x","topic":"%RETRY%CG"}]}]}"#;
        let hb = HeartbeatData::decode(j.as_bytes()).unwrap();
        let c = &hb.consumers[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumeActively);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert_eq!(
            c.consume_from_where,
            ConsumeFromWhere::ConsumeFromFirstOffset
        );
        assert!(!c.unit_mode);
        let s = &c.subscriptions[0];
        assert_eq!(s.sub_version, 123);
        assert_eq!(s.expression_type, "TAG");
        assert!(s.tags_set.contains("TagA") && s.tags_set.contains("TagB"));
        assert!(s.matches_tags_code(java_string_hash("TagA") as i64));
        assert!(!s.matches_tags_code(java_string_hash("TagC") as i64));
        assert!(c.subscriptions[1].is_sub_all());
        assert_eq!(c.subscriptions[1].sub_version, 0);
        assert!(hb.producer_groups.is_empty());
    }

    #[test]
    fn lenient_enums() {
        let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
        let cfw = |x: Option<&Value>| {
            enum_from_value(
                x,
                ConsumeFromWhere::from_name,
                ConsumeFromWhere::from_ordinal,
            )
        };
        assert_eq!(
            cfw(Some(&v(r#""5""#))),
            ConsumeFromWhere::ConsumeFromTimestamp
        );
        assert_eq!(cfw(Some(&v("3"))), ConsumeFromWhere::ConsumeFromMaxOffset);
        assert_eq!(
            cfw(Some(&v(r#""CONSUME_FROM_MIN_OFFSET""#))),
            ConsumeFromWhere::ConsumeFromMinOffset
        );
        // Unknown names, out-of-range ordinals and absence: Java's default.
        assert_eq!(cfw(Some(&v(r#""NOPE""#))), ConsumeFromWhere::default());
        assert_eq!(cfw(Some(&v("9"))), ConsumeFromWhere::default());
        assert_eq!(cfw(None), ConsumeFromWhere::ConsumeFromLastOffset);
        let model = enum_from_value(
            Some(&v("true")),
            MessageModel::from_name,
            MessageModel::from_ordinal,
        );
        assert_eq!(model, MessageModel::Clustering);
    }

    #[test]
    fn java_hash() {
        assert_eq!(java_string_hash("A"), 65);
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash(""), 0);
    }

    #[test]
    fn bad_bodies() {
        assert!(HeartbeatData::decode(b"{").is_err());
        assert!(HeartbeatData::decode(br#"{"consumerDataSet":[]}"#).is_err());
        assert!(HeartbeatData::decode(br#"{"clientID":"c","consumerDataSet":5}"#).is_err());
    }

    #[test]
    fn lock_body_limits() {
        assert!(decode_lock_batch(br#"{"clientId":"c1","mqSet":[]}"#).is_err());
        assert!(decode_lock_batch(br#"{"consumerGroup":"CG","mqSet":[]}"#).is_err());
        assert!(decode_lock_batch(b"[").is_err());
    }

    #[test]
    fn lock_body_without_only_this_broker() {
        let j = br#"{"clientId":"c1","consumerGroup":"CG","mqSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"}]}"#;
        let b = decode_lock_batch(j).unwrap();
        assert!(b.mq_set.contains(&MessageQueue::new("T", "broker-a", 0)));
        let resp = LockBatchResponseBody {
            lock_ok_mq_set: b.mq_set.clone(),
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":0,"topic":"T"}]}"#
        );
    }
}
