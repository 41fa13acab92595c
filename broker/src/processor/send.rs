//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
//! CONSUMER_SEND_MSG_BACK (36).
//!
//! Java reference: `broker/.../processor/SendMessageProcessor.java` and
//! `AbstractSendMessageProcessor.java` (`msgCheck`, retry/DLQ handling, send-back),
//! `common/.../topic/TopicValidator.java`; docs/protocol/codes.md §3.1, §3.2, §3.10 and
//! special-topics.md §1, §4, §5.
//!
//! Every response to a successful send carries extFields `msgId` (offset id, upper-case
//! hex; batch: comma-joined), `queueId`, `queueOffset`, `MSG_REGION` and `TRACE_ON`: the
//! Java client dereferences them.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use compact_str::{CompactString, ToCompactString};
use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::headers::consumer::ConsumerSendMsgBackRequestHeader;
use remoting::headers::send::{SendMessageRequestHeader, SendMessageRequestHeaderV2};
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;
use store::message::{self as msg, property, sys_flag, MessageToStore};
use store::StoreError;

use crate::context::BrokerContext;
use crate::topic_config::{
    self as topics, perm, TopicConfig, TopicFilterType, DLQ_GROUP_TOPIC_PREFIX as DLQ_PREFIX,
    RETRY_GROUP_TOPIC_PREFIX as RETRY_PREFIX, TRANS_HALF_TOPIC,
};

pub const CODES: &[i32] = &[
    request::SEND_MESSAGE,
    request::SEND_MESSAGE_V2,
    request::SEND_BATCH_MESSAGE,
    request::CONSUMER_SEND_MSG_BACK,
];

/// Longest topic name the Java broker accepts (`TopicValidator.TOPIC_MAX_LENGTH`).
pub const TOPIC_MAX_LEN: usize = 127;
/// Properties string limit: signed 16-bit length in the record (message-format.md §1).
pub const PROPERTIES_MAX_LEN: usize = i16::MAX as usize;
/// Inner messages per batch we accept (a batch is ≤ 4 MiB, so this only bounds garbage).
pub const BATCH_MAX_MESSAGES: usize = 65_536;
/// Largest inflated batch body: a zlib bomb must not take the broker's memory.
pub const BATCH_MAX_INFLATED_BYTES: usize = 8 * 1024 * 1024;
/// Highest delay level when the configured level list cannot be read (Java default: 18 = 2 h).
pub const MAX_RETRY_DELAY_LEVEL: i32 = 18;

pub struct SendMessageProcessor {
    ctx: Arc<BrokerContext>,
}

impl SendMessageProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        SendMessageProcessor { ctx }
    }
}

impl RequestProcessor for SendMessageProcessor {
    fn process(&self, conn: ConnectionContext, request: RemotingCommand) -> ProcessFuture {
        let ctx = Arc::clone(&self.ctx);
        let born_host = conn.peer_addr();
        Box::pin(async move {
            let mut request = request;
            let resp = match request.code {
                // Group mode: a follower forwards send-backs to the leader (clients address
                // them by the record's STOREHOST, which may be a former leader); physical
                // offsets are identical on every replica.
                request::CONSUMER_SEND_MSG_BACK => match (ctx.is_master(), ctx.group.clone()) {
                    (false, Some(gm)) => gm.forward_to_leader(&ctx, &request).await,
                    _ => consumer_send_msg_back(&ctx, &request).await,
                },
                _ => send_message(&ctx, &mut request, born_host).await,
            };
            Ok(Some(resp))
        })
    }
}

/// Remark of a send refused by a slave / DLedger follower (Java's SERVICE_NOT_AVAILABLE
/// remark names "messages are put to the slave" among its causes).
pub const SLAVE_SEND_REMARK: &str =
    "service not available now: this broker is not the master (messages are put to the slave)";

/// An error answer: response code + remark.
type Reject = (i32, String);

fn reject(code: i32, remark: impl Into<String>) -> Reject {
    (code, remark.into())
}

/// Decode either header form, moving its fields out of the request's extFields (the
/// topic and properties change hands without a copy).
pub fn decode_send_header(
    request: &mut RemotingCommand,
) -> Result<SendMessageRequestHeader, String> {
    // The two forms use disjoint keys, so a failed first attempt leaves the other's
    // fields in place.
    let r = match request.code {
        request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => request
            .take_header::<SendMessageRequestHeaderV2>()
            .map(Into::into)
            // Some clients send V1 names on V2 codes; accept them too.
            .or_else(|_| request.take_header::<SendMessageRequestHeader>()),
        _ => request
            .take_header::<SendMessageRequestHeader>()
            .or_else(|_| {
                request
                    .take_header::<SendMessageRequestHeaderV2>()
                    .map(Into::into)
            }),
    };
    r.map_err(|e| e.to_string())
}

/// SEND_MESSAGE / V2 / BATCH.
pub async fn send_message(
    ctx: &Arc<BrokerContext>,
    request: &mut RemotingCommand,
    born_host: SocketAddr,
) -> RemotingCommand {
    match send_message_inner(ctx, request, born_host).await {
        Ok(resp) => resp,
        Err((code, remark)) => RemotingCommand::error_response(request, code, remark),
    }
}

async fn send_message_inner(
    ctx: &Arc<BrokerContext>,
    request: &mut RemotingCommand,
    born_host: SocketAddr,
) -> Result<RemotingCommand, Reject> {
    let mut header = decode_send_header(request).map_err(|e| reject(response::SYSTEM_ERROR, e))?;
    // Java dispatches on the header's `batch` flag, not the request code: the C++ client
    // sends batches as SEND_MESSAGE(_V2) with `batch=true` (often zlib-compressed).
    let is_batch = request.code == request::SEND_BATCH_MESSAGE || header.batch == Some(true);
    // A slave (or DLedger follower) refuses sends like Java's store does for a slave
    // (PutMessageStatus.SERVICE_NOT_AVAILABLE → SERVICE_NOT_AVAILABLE), before any topic
    // auto-creation: clients retry on another broker.
    if !ctx.is_master() || (ctx.config.broker_id != 0 && !ctx.config.enable_dleger_commit_log) {
        return Err(reject(response::SERVICE_NOT_AVAILABLE, SLAVE_SEND_REMARK));
    }
    let topics_before = ctx.group.as_ref().map(|_| ctx.topic_config.data_version());
    let topic_config = check_topic(ctx, &header, born_host)?;
    if let (Some(before), Some(gm)) = (topics_before, ctx.group.as_ref()) {
        if ctx.topic_config.data_version() != before {
            // Group mode: an auto-created topic is committed through the metadata log
            // before its first message, so a failover never leaves messages of a topic
            // the new leader does not know.
            gm.propose_changes(ctx)
                .await
                .map_err(|e| reject(response::SERVICE_NOT_AVAILABLE, e.to_string()))?;
        }
    }

    // Queue selection (Java: random write queue when < 0).
    let queue_nums = topic_config
        .write_queue_nums
        .max(topic_config.read_queue_nums);
    let mut queue_id = header.queue_id;
    if queue_id < 0 {
        queue_id = random_queue(topic_config.write_queue_nums);
    }
    if queue_id >= queue_nums {
        return Err(reject(
            response::SYSTEM_ERROR,
            format!(
                "request queueId[{queue_id}] is illegal, topic:[{}] readQueueNums:[{}] writeQueueNums:[{}]",
                header.topic, topic_config.read_queue_nums, topic_config.write_queue_nums
            ),
        ));
    }
    if ctx.config.broker_permission & perm::WRITE == 0 && topic_config.order {
        return Err(reject(
            response::NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden",
                ctx.config.broker_name
            ),
        ));
    }

    // Java answers with the queue the client addressed (or the one picked for it), even
    // when the message is redirected to a DLQ or parked as a half/delayed message.
    let response_queue_id = queue_id;
    // Moved out, not cloned: nothing below reads the header's topic or properties again.
    let mut topic = std::mem::take(&mut header.topic);
    let reconsume_times = header.reconsume_times.unwrap_or(0);
    if topic.starts_with(RETRY_PREFIX) {
        // Direct sends to a retry topic (client fallback, orderly consumer): after
        // maxReconsumeTimes the message goes to the group's DLQ.
        let group = &topic[RETRY_PREFIX.len()..];
        let group_config = ctx
            .subscription_groups
            .find_or_auto_create(group)
            .ok_or_else(|| {
                reject(
                    response::SUBSCRIPTION_GROUP_NOT_EXIST,
                    format!("subscription group not exist, {group}"),
                )
            })?;
        let max = header
            .max_reconsume_times
            .unwrap_or(group_config.retry_max_times);
        if reconsume_times >= max {
            ensure_dlq_topic(ctx, group)?;
            topic = topics::dlq_topic(group).into();
            queue_id = 0;
        }
    }

    let header_props = header.properties.take().unwrap_or_default();
    if is_batch {
        return send_batch(
            ctx,
            request,
            &header,
            topic,
            queue_id,
            born_host,
            &header_props,
        )
        .await;
    }

    if request.body.len() > ctx.config.max_message_size {
        return Err(reject(
            response::MESSAGE_ILLEGAL,
            format!(
                "message body size {} exceeds the limit {}",
                request.body.len(),
                ctx.config.max_message_size
            ),
        ));
    }
    let mut sys_flag = header.sys_flag;
    if topic_config.topic_filter_type == TopicFilterType::MultiTag {
        sys_flag |= sys_flag::MULTI_TAGS_FLAG;
    }
    let mut props = stored_properties(header_props, &ctx.config.broker_cluster_name);
    // One pass over the properties for everything below.
    let scan = SendProperties::scan(&props);
    scan.check_timer()?;
    let uniq_key = scan.uniq_key.map(str::to_string);
    if scan.transaction_prepared {
        if ctx.config.reject_transaction_message {
            return Err(reject(
                response::NO_PERMISSION,
                format!(
                    "the broker[{}] sending transaction message is forbidden",
                    ctx.config.broker_name
                ),
            ));
        }
        // Half message: parked in the half topic until END_TRANSACTION (special-topics.md §4).
        props = msg::set_property(&props, property::REAL_TOPIC, &topic);
        props = msg::set_property(&props, property::REAL_QID, &queue_id.to_string());
        sys_flag &= !sys_flag::TRANSACTION_ROLLBACK_TYPE;
        topic = CompactString::const_new(TRANS_HALF_TOPIC);
        queue_id = 0;
    }
    if props.len() > PROPERTIES_MAX_LEN {
        return Err(reject(
            response::MESSAGE_ILLEGAL,
            format!(
                "message properties length {} exceeds {PROPERTIES_MAX_LEN}",
                props.len()
            ),
        ));
    }
    let mut m = MessageToStore::new(topic, queue_id, request.body.clone(), props);
    m.flag = header.flag;
    m.sys_flag = sys_flag;
    m.born_timestamp_ms = header.born_timestamp;
    m.born_host = born_host;
    m.store_host = ctx.store_host;
    m.reconsume_times = reconsume_times;

    let put = ctx.store.put_message(m).await.map_err(store_reject)?;
    Ok(send_ok(
        ctx,
        request,
        put.msg_id,
        response_queue_id,
        put.queue_offset,
        uniq_key,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn send_batch(
    ctx: &Arc<BrokerContext>,
    request: &mut RemotingCommand,
    header: &SendMessageRequestHeader,
    topic: CompactString,
    queue_id: i32,
    born_host: SocketAddr,
    header_props: &str,
) -> Result<RemotingCommand, Reject> {
    if topic.len() > TOPIC_MAX_LEN {
        return Err(reject(
            response::MESSAGE_ILLEGAL,
            format!("batch topic length {} exceeds {TOPIC_MAX_LEN}", topic.len()),
        ));
    }
    if request.body.len() > ctx.config.max_message_size {
        return Err(reject(
            response::MESSAGE_ILLEGAL,
            format!(
                "batch body size {} exceeds the limit {}",
                request.body.len(),
                ctx.config.max_message_size
            ),
        ));
    }
    let (items, inflated) = decode_batch(&request.body, header.sys_flag)
        .map_err(|e| reject(response::MESSAGE_ILLEGAL, e))?;
    if items.is_empty() {
        return Err(reject(response::MESSAGE_ILLEGAL, "batch is empty"));
    }
    // Inner bodies are plain when we inflated the whole batch: the stored records must not
    // claim to be compressed.
    let sys_flag = if inflated {
        header.sys_flag & !(sys_flag::COMPRESSED_FLAG | sys_flag::COMPRESSION_TYPE_MASK)
    } else {
        header.sys_flag
    };
    if sys_flag::transaction_value(sys_flag) != sys_flag::TRANSACTION_NOT_TYPE {
        return Err(reject(
            response::MESSAGE_ILLEGAL,
            "batch messages cannot be transactional",
        ));
    }
    // Batch-level properties (normally only WAIT) are appended to every inner message,
    // plus CLUSTER, as the Java encoder does.
    let mut extra = std::collections::HashMap::new();
    msg::for_each_property(header_props, |k, v| {
        extra.insert(k.to_string(), v.to_string());
    });
    extra.insert(
        property::CLUSTER.to_string(),
        ctx.config.broker_cluster_name.clone(),
    );
    let extra = msg::encode_properties(&extra);
    let reconsume_times = header.reconsume_times.unwrap_or(0);
    let mut messages = Vec::with_capacity(items.len());
    let mut uniq_keys = Vec::with_capacity(items.len());
    for item in items {
        if item.body.len() > ctx.config.max_message_size {
            return Err(reject(
                response::MESSAGE_ILLEGAL,
                "inner message body too large",
            ));
        }
        if msg::property_value(&item.properties, property::DELAY).is_some_and(|d| d != "0") {
            return Err(reject(
                response::MESSAGE_ILLEGAL,
                "batch messages cannot be delayed",
            ));
        }
        let mut props = item.properties;
        if !props.is_empty() && !props.ends_with(msg::PROPERTY_SEPARATOR) {
            props.push(msg::PROPERTY_SEPARATOR);
        }
        props.push_str(&extra);
        if props.len() > PROPERTIES_MAX_LEN {
            return Err(reject(
                response::MESSAGE_ILLEGAL,
                "inner message properties too long",
            ));
        }
        if let Some(u) = msg::property_value(&props, property::UNIQ_KEY) {
            uniq_keys.push(u.to_string());
        }
        let mut m = MessageToStore::new(topic.clone(), queue_id, item.body, props);
        m.flag = item.flag;
        m.sys_flag = sys_flag;
        m.born_timestamp_ms = header.born_timestamp;
        m.born_host = born_host;
        m.store_host = ctx.store_host;
        m.reconsume_times = reconsume_times;
        messages.push(m);
    }
    let put = ctx
        .store
        .put_messages(messages)
        .await
        .map_err(store_reject)?;
    let uniq = (!uniq_keys.is_empty()).then(|| uniq_keys.join(","));
    // `put.msg_id` holds the comma-joined offset ids of the whole batch.
    Ok(send_ok(
        ctx,
        request,
        put.msg_id,
        queue_id,
        put.queue_offset,
        uniq,
    ))
}

/// 5.x arbitrary-time delay properties (special-topics.md §2).
pub const TIMER_PROPERTIES: &[&str] = &["TIMER_DELIVER_MS", "TIMER_DELAY_SEC", "TIMER_DELAY_MS"];

/// What the send path reads from a message's properties, found in one pass (this runs for
/// every message). The last occurrence wins, as in `property_value`.
#[derive(Default)]
struct SendProperties<'a> {
    delay: Option<&'a str>,
    has_timer: bool,
    /// `TRAN_MSG=true`: a transaction's half message.
    transaction_prepared: bool,
    uniq_key: Option<&'a str>,
}

impl<'a> SendProperties<'a> {
    fn scan(props: &'a str) -> Self {
        let mut s = SendProperties::default();
        msg::for_each_property(props, |k, v| match k {
            property::DELAY => s.delay = Some(v),
            property::TRAN_MSG => s.transaction_prepared = v.eq_ignore_ascii_case("true"),
            property::UNIQ_KEY => s.uniq_key = Some(v),
            _ if TIMER_PROPERTIES.contains(&k) => s.has_timer = true,
            _ => {}
        });
        s
    }

    /// We have no timer wheel: answer timer messages as a 5.x broker with
    /// `timerWheelEnable=false` does (MESSAGE_ILLEGAL) instead of delivering them at once.
    /// A `DELAY` level wins over timer properties (Java drops them then), so that still
    /// works.
    fn check_timer(&self) -> Result<(), Reject> {
        let has_level = self
            .delay
            .and_then(|d| d.parse::<i32>().ok())
            .is_some_and(|d| d > 0);
        if !has_level && self.has_timer {
            return Err(reject(
                response::MESSAGE_ILLEGAL,
                "accurate timer message is not enabled, timerWheelEnable is false",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
fn check_timer_message(props: &str) -> Result<(), Reject> {
    SendProperties::scan(props).check_timer()
}

/// The stored properties of a single send: the client's entries that
/// [`msg::for_each_property`] accepts, each `NAME\u{1}VALUE\u{2}`, without `WAIT` (4.9.7
/// strips it from the stored copy), then `CLUSTER`. Rewritten in the client's own buffer:
/// every kept entry moves left or stays, so this runs for every message without an
/// allocation unless `CLUSTER` does not fit the spare capacity.
pub fn stored_properties(client: String, cluster: &str) -> String {
    const NV: u8 = msg::NAME_VALUE_SEPARATOR as u8;
    const SEP: u8 = msg::PROPERTY_SEPARATOR as u8;
    let mut b = client.into_bytes();
    let len = b.len();
    let mut write = 0usize;
    let mut start = 0usize;
    while start <= len {
        let end = b[start..]
            .iter()
            .position(|&c| c == SEP)
            .map_or(len, |i| start + i);
        let seg = &b[start..end];
        let keep = match seg.iter().position(|&c| c == NV) {
            Some(idx) if idx >= 1 && idx + 1 < seg.len() => {
                let key = &seg[..idx];
                key != property::WAIT.as_bytes() && key != property::CLUSTER.as_bytes()
            }
            _ => false,
        };
        if keep {
            let n = end - start;
            b.copy_within(start..end, write);
            write += n;
            // `write <= end` here: the separator goes where the segment's own was (or,
            // for a last segment without one, just past the end).
            if write < b.len() {
                b[write] = SEP;
            } else {
                b.push(SEP);
            }
            write += 1;
        }
        start = end + 1;
    }
    b.truncate(write);
    b.extend_from_slice(property::CLUSTER.as_bytes());
    b.push(NV);
    b.extend_from_slice(cluster.as_bytes());
    b.push(SEP);
    // Only whole segments between ASCII separators moved, so this is still UTF-8.
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn send_ok(
    ctx: &BrokerContext,
    request: &mut RemotingCommand,
    msg_id: String,
    queue_id: i32,
    queue_offset: i64,
    uniq_key: Option<String>,
) -> RemotingCommand {
    // The response takes over the request's extFields vector (its fields were moved out or
    // are no longer needed): no allocation for the map. Numbers and short values are
    // formatted inline, and the two long strings (message id, UNIQ_KEY) hand their buffers
    // over.
    let mut resp = RemotingCommand::response_to(request, response::SUCCESS);
    resp.ext_fields = std::mem::take(&mut request.ext_fields);
    resp.ext_fields.clear();
    let ext = &mut resp.ext_fields;
    ext.insert("msgId", msg_id);
    ext.insert("queueId", queue_id.to_compact_string());
    ext.insert("queueOffset", queue_offset.to_compact_string());
    if let Some(u) = uniq_key {
        // 5.x fills transactionId with the UNIQ_KEY; 4.x clients ignore it.
        ext.insert("transactionId", u);
    }
    ext.insert(property::MSG_REGION, ctx.config.region_id.as_str());
    ext.insert(
        property::TRACE_SWITCH,
        if ctx.config.trace_on { "true" } else { "false" },
    );
    resp
}

/// Map a store failure to the code the Java client reacts to (codes.md §3.1).
pub fn store_reject(e: StoreError) -> Reject {
    let code = match &e {
        StoreError::MessageIllegal { .. } | StoreError::UnsupportedCompression { .. } => {
            response::MESSAGE_ILLEGAL
        }
        StoreError::FlushTimeout { .. } => response::FLUSH_DISK_TIMEOUT,
        StoreError::DiskFull { .. }
        | StoreError::ShutDown
        | StoreError::ReadOnly { .. }
        | StoreError::NotLeader { .. } => response::SERVICE_NOT_AVAILABLE,
        StoreError::Busy { .. } => response::SYSTEM_BUSY,
        _ => response::SYSTEM_ERROR,
    };
    (code, e.to_string())
}

/// Topic checks and auto-creation (Java `msgCheck`).
fn check_topic(
    ctx: &BrokerContext,
    header: &SendMessageRequestHeader,
    born_host: SocketAddr,
) -> Result<Arc<TopicConfig>, Reject> {
    topics::validate_topic_name(&header.topic)
        .map_err(|e| reject(response::SYSTEM_ERROR, e.to_string()))?;
    if topics::is_not_allowed_send_topic(&header.topic) {
        return Err(reject(
            response::NO_PERMISSION,
            format!("Sending message to topic[{}] is forbidden.", header.topic),
        ));
    }
    if let Some(tc) = ctx.topic_config.get(&header.topic) {
        return Ok(tc);
    }
    // Java `msgCheck`: unit-mode sends create UNIT topics, or UNIT_SUB for retry topics.
    let is_retry = header.topic.starts_with(RETRY_PREFIX);
    let unit_flag = match (header.unit_mode.unwrap_or(false), is_retry) {
        (false, _) => 0,
        (true, false) => topics::topic_sys_flag::UNIT,
        (true, true) => topics::topic_sys_flag::UNIT_SUB,
    };
    let created = if is_retry {
        ctx.topic_config.create_topic_in_send_message_back_method(
            &header.topic,
            1,
            perm::READ | perm::WRITE,
            unit_flag,
        )
    } else {
        let created = ctx.topic_config.create_topic_in_send_message_method(
            &header.topic,
            &header.default_topic,
            header.default_topic_queue_nums,
            unit_flag,
        );
        if created.is_some() {
            // The topic manager's change signal re-registers with the namesrv at once.
            tracing::info!(topic = %header.topic, client = %born_host, "auto-created topic on send");
        }
        created
    };
    created.ok_or_else(|| {
        reject(
            response::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", header.topic),
        )
    })
}

fn ensure_dlq_topic(ctx: &BrokerContext, group: &str) -> Result<Arc<TopicConfig>, Reject> {
    ctx.topic_config.create_dlq_topic(group).ok_or_else(|| {
        reject(
            response::SYSTEM_ERROR,
            format!("topic[{DLQ_PREFIX}{group}] not exist"),
        )
    })
}

fn random_queue(write_queue_nums: i32) -> i32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Round-robin is as good as random here and needs no RNG.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = write_queue_nums.max(1) as u32;
    (NEXT.fetch_add(1, Ordering::Relaxed) % n) as i32
}

/// CONSUMER_SEND_MSG_BACK (special-topics.md §1).
pub async fn consumer_send_msg_back(
    ctx: &Arc<BrokerContext>,
    request: &RemotingCommand,
) -> RemotingCommand {
    match send_back_inner(ctx, request).await {
        Ok(()) => RemotingCommand::response_to(request, response::SUCCESS),
        Err((code, remark)) => RemotingCommand::error_response(request, code, remark),
    }
}

async fn send_back_inner(
    ctx: &Arc<BrokerContext>,
    request: &RemotingCommand,
) -> Result<(), Reject> {
    let header: ConsumerSendMsgBackRequestHeader = request
        .decode_header()
        .map_err(|e| reject(response::SYSTEM_ERROR, e.to_string()))?;
    if !ctx.is_master() {
        return Err(reject(response::SERVICE_NOT_AVAILABLE, SLAVE_SEND_REMARK));
    }
    let group_config = ctx
        .subscription_groups
        .find_or_auto_create(&header.group)
        .ok_or_else(|| {
            reject(
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {}", header.group),
            )
        })?;
    if ctx.config.broker_permission & perm::WRITE == 0 {
        return Err(reject(
            response::NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden",
                ctx.config.broker_name
            ),
        ));
    }
    if group_config.retry_queue_nums <= 0 {
        return Ok(());
    }
    let record = ctx
        .store
        .look_message_by_offset(header.offset)
        .ok_or_else(|| {
            reject(
                response::SYSTEM_ERROR,
                format!("look message by offset failed, {}", header.offset),
            )
        })?;
    let old = msg::decode_message_bytes(&record)
        .map_err(|e| reject(response::SYSTEM_ERROR, e.to_string()))?;

    let mut props = old.properties_string.clone();
    if msg::property_value(&props, property::RETRY_TOPIC).is_none() {
        props = msg::set_property(&props, property::RETRY_TOPIC, &old.topic);
    }
    // Java honours the header's max only for request version >= 121 (V3_4_9).
    let max_reconsume = match header.max_reconsume_times {
        Some(m) if request.version >= 121 => m,
        _ => group_config.retry_max_times,
    };
    let (topic, queue_id, delay) = if old.reconsume_times >= max_reconsume || header.delay_level < 0
    {
        ensure_dlq_topic(ctx, &header.group)?;
        (topics::dlq_topic(&header.group), 0, 0)
    } else {
        let retry = topics::retry_topic(&header.group);
        let tc = ctx
            .topic_config
            .create_retry_topic(
                &header.group,
                group_config.retry_queue_nums,
                header.unit_mode.unwrap_or(false),
            )
            .ok_or_else(|| reject(response::SYSTEM_ERROR, format!("topic[{retry}] not exist")))?;
        let delay = if header.delay_level == 0 {
            3 + old.reconsume_times
        } else {
            header.delay_level
        };
        // The store caps at the highest level too; capping here keeps the property sane.
        let max_level =
            i32::try_from(ctx.config.delay_levels_ms().len()).unwrap_or(MAX_RETRY_DELAY_LEVEL);
        let delay = delay.min(max_level.max(1));
        (retry, random_queue(tc.write_queue_nums), delay)
    };
    if delay > 0 {
        props = msg::set_property(&props, property::DELAY, &delay.to_string());
    } else if msg::property_value(&props, property::DELAY).is_some() {
        let mut map = msg::decode_properties(&props);
        map.remove(property::DELAY);
        props = msg::encode_properties(&map);
    }
    // Java keeps an existing ORIGIN_MESSAGE_ID, else the old record's offset id (not the
    // header's originMsgId).
    if msg::property_value(&props, property::ORIGIN_MESSAGE_ID).is_none() {
        props = msg::set_property(&props, property::ORIGIN_MESSAGE_ID, &old.msg_id());
    }
    props = msg::set_property(&props, property::WAIT, "false");
    let mut m = MessageToStore::new(topic, queue_id, old.body.clone(), props);
    m.flag = old.flag;
    m.sys_flag = old.sys_flag & !(sys_flag::BORNHOST_V6_FLAG | sys_flag::STOREHOSTADDRESS_V6_FLAG);
    m.born_timestamp_ms = old.born_timestamp_ms;
    m.born_host = old.born_host;
    m.store_host = ctx.store_host;
    m.reconsume_times = old.reconsume_times + 1;
    ctx.store.put_message(m).await.map_err(|e| {
        let (_, remark) = store_reject(e);
        reject(response::SYSTEM_ERROR, remark)
    })?;
    Ok(())
}

/// Decode a batch body. When the header's sysFlag says "compressed" the C++ client has
/// zlib-compressed the *whole* encoded batch (it compresses any body over 4 KiB), so we
/// inflate first. Returns whether we inflated (the stored records then must not carry the
/// compression bits: their bodies are plain). Malformed input is an `Err`, never a panic.
pub fn decode_batch(body: &Bytes, sys_flag: i32) -> Result<(Vec<msg::BatchItem>, bool), String> {
    if sys_flag & sys_flag::COMPRESSED_FLAG != 0 {
        match msg::inflate_body(sys_flag, body, BATCH_MAX_INFLATED_BYTES) {
            Ok(plain) => {
                return msg::decode_batch(&plain, BATCH_MAX_MESSAGES)
                    .map(|v| (v, true))
                    .map_err(|e| format!("bad batch body: {e}"))
            }
            // Not one zlib stream: maybe only the inner bodies are compressed and the flag
            // describes them; accept the body if it parses as a plain batch.
            Err(e) => {
                return msg::decode_batch(body, BATCH_MAX_MESSAGES)
                    .map(|v| (v, false))
                    .map_err(|_| format!("compressed batch body does not inflate: {e}"))
            }
        }
    }
    msg::decode_batch(body, BATCH_MAX_MESSAGES)
        .map(|v| (v, false))
        .map_err(|e| format!("bad batch body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> String {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}\u{1}{v}"))
            .collect::<Vec<_>>()
            .join("\u{2}")
    }

    #[test]
    fn timer_properties_are_refused_unless_a_delay_level_wins() {
        let illegal = |p: &[(&str, &str)]| {
            check_timer_message(&props(p)).map_err(|(code, _)| code)
                == Err(response::MESSAGE_ILLEGAL)
        };
        assert!(!illegal(&[]));
        assert!(!illegal(&[("TAGS", "a"), ("KEYS", "k")]));
        for t in TIMER_PROPERTIES {
            assert!(illegal(&[("TAGS", "a"), (t, "1000")]), "{t}");
            assert!(!illegal(&[(property::DELAY, "3"), (t, "1000")]), "{t}");
            assert!(illegal(&[(property::DELAY, "0"), (t, "1000")]), "{t}");
            assert!(illegal(&[(property::DELAY, "x"), (t, "1000")]), "{t}");
            // The last DELAY wins, like every property lookup.
            assert!(illegal(&[
                (property::DELAY, "3"),
                (t, "1"),
                (property::DELAY, "0")
            ]));
            assert!(!illegal(&[
                (property::DELAY, "0"),
                (t, "1"),
                (property::DELAY, "2")
            ]));
        }
    }

    fn item(body: &'static [u8], props: &str) -> msg::BatchItem {
        msg::BatchItem {
            flag: 7,
            body: Bytes::from_static(body),
            properties: props.to_string(),
        }
    }

    #[test]
    fn batch_plain_and_compressed() {
        use std::io::Write;
        let items = vec![item(b"one", "TAGS\u{1}A\u{2}"), item(b"two", "TAGS\u{1}B")];
        let plain = msg::encode_batch(&items);
        let (got, inflated) = decode_batch(&plain, 0).unwrap();
        assert_eq!(got, items);
        assert!(!inflated);

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        z.write_all(&plain).unwrap();
        let compressed = Bytes::from(z.finish().unwrap());
        let (got, inflated) = decode_batch(&compressed, 0x301).unwrap();
        assert_eq!(got, items);
        assert!(inflated);
    }

    #[test]
    fn malformed_batches_are_errors() {
        let items = vec![item(b"one", "K\u{1}V")];
        let plain = msg::encode_batch(&items);
        for cut in 1..plain.len() {
            assert!(
                decode_batch(&plain.slice(..cut), 0).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad = plain.to_vec();
        bad[0..4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_batch(&Bytes::from(bad), 0).is_err());
        assert!(decode_batch(&Bytes::from_static(b"not zlib at all"), 1).is_err());
    }

    proptest::proptest! {
        /// The in-place rewrite equals rebuilding the string from the accepted entries.
        #[test]
        fn stored_properties_match_a_rebuilt_string(
            segments in proptest::collection::vec(
                ("(WAIT|CLUSTER|TAGS|K|é)?", "\u{1}?", "(true|v|é\u{1}x)?"), 0..6),
            trailing in proptest::bool::ANY,
            spare in 0usize..64,
        ) {
            let mut client = segments
                .iter()
                .map(|(k, s, v)| format!("{k}{s}{v}"))
                .collect::<Vec<_>>()
                .join("\u{2}");
            if trailing {
                client.push('\u{2}');
            }
            let mut want = String::new();
            msg::for_each_property(&client, |k, v| {
                if k != property::WAIT && k != property::CLUSTER {
                    want.push_str(&format!("{k}\u{1}{v}\u{2}"));
                }
            });
            want.push_str("CLUSTER\u{1}C9\u{2}");
            let mut owned = String::with_capacity(client.len() + spare);
            owned.push_str(&client);
            proptest::prop_assert_eq!(stored_properties(owned, "C9"), want);
        }
    }

    #[test]
    fn stored_properties_drop_wait_and_add_cluster() {
        let p = stored_properties("TAGS\u{1}A\u{2}WAIT\u{1}true\u{2}KEYS\u{1}k".into(), "C1");
        assert_eq!(msg::property_value(&p, "TAGS"), Some("A"));
        assert_eq!(msg::property_value(&p, "KEYS"), Some("k"));
        assert_eq!(msg::property_value(&p, "WAIT"), None);
        assert_eq!(msg::property_value(&p, "CLUSTER"), Some("C1"));
        assert_eq!(stored_properties(String::new(), "C"), "CLUSTER\u{1}C\u{2}");
    }

    #[test]
    fn timer_messages_are_rejected_unless_a_level_is_set() {
        assert!(check_timer_message("TIMER_DELAY_SEC\u{1}5\u{2}").is_err());
        assert!(check_timer_message("TIMER_DELIVER_MS\u{1}1\u{2}DELAY\u{1}2\u{2}").is_ok());
        assert!(check_timer_message("TAGS\u{1}A\u{2}").is_ok());
    }

    #[test]
    fn v2_header_maps_to_v1() {
        let mut ext = remoting::command::ExtFieldMap::new();
        for (k, v) in [
            ("a", "pg"),
            ("b", "T"),
            ("c", "TBW102"),
            ("d", "4"),
            ("e", "1"),
            ("f", "0"),
            ("g", "5"),
            ("h", "0"),
            ("j", "2"),
            ("m", "1"),
        ] {
            ext.insert(k.to_string(), v.to_string());
        }
        let mut cmd = RemotingCommand::request(request::SEND_MESSAGE_V2);
        cmd.ext_fields = ext;
        let h = decode_send_header(&mut cmd).unwrap();
        assert_eq!(h.topic, "T");
        assert_eq!(h.queue_id, 1);
        assert_eq!(h.reconsume_times, Some(2));
        assert_eq!(h.batch, Some(true));
    }
}
