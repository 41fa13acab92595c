//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361): read a consume queue, answer with the
//! raw commitlog records, hold the request (long polling) when nothing is there yet.
//!
//! Java reference: `broker/.../processor/PullMessageProcessor.java` (status → code table,
//! remark = store status name, pre-checks) and `longpolling/PullRequestHoldService.java`;
//! docs/protocol/codes.md §3.6, store-format.md §3 and §6.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::headers::pull::{sys_flag, PullMessageRequestHeader, PullMessageResponseHeader};
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;
use store::{GetMessageResult, GetMessageStatus, MessageFilter};

use crate::body::SubscriptionData;
use tokio::time::Instant;

use crate::context::BrokerContext;

pub const CODES: &[i32] = &[request::PULL_MESSAGE, request::LITE_PULL_MESSAGE];

/// Longest hold: clients time a suspended pull out after 30 s, so never hold longer than
/// this whatever `suspendTimeoutMillis` says.
pub const MAX_SUSPEND_MS: u64 = 25_000;
/// Most messages one pull returns whatever `maxMsgNums` asks for.
pub const MAX_PULL_MSGS: i32 = 1024;
/// Longest subscription expression we parse.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Most tags in one expression.
pub const MAX_EXPRESSION_TAGS: usize = 256;

/// A TAG subscription as the broker filters it: by Java `String.hashCode` of the tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagFilter {
    /// `*` or empty expression: everything matches.
    pub all: bool,
    pub codes: Vec<i32>,
}

impl TagFilter {
    /// Parse `"A || B"` / `"*"` as `FilterAPI.buildSubscriptionData` does.
    pub fn parse(expression: &str) -> Result<TagFilter, String> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(format!(
                "subscription expression longer than {MAX_EXPRESSION_LEN}"
            ));
        }
        let expr = expression.trim();
        if expr.is_empty() || expr == "*" {
            return Ok(TagFilter {
                all: true,
                codes: Vec::new(),
            });
        }
        let mut codes = Vec::new();
        for tag in expr.split("||").map(str::trim).filter(|t| !t.is_empty()) {
            if codes.len() >= MAX_EXPRESSION_TAGS {
                return Err(format!("more than {MAX_EXPRESSION_TAGS} tags"));
            }
            codes.push(store::message::java_string_hash(tag));
        }
        if codes.is_empty() {
            return Err(format!("subscription expression `{expression}` has no tag"));
        }
        Ok(TagFilter { all: false, codes })
    }

    /// From a heartbeat subscription (hashes already computed by the client).
    pub fn from_subscription(sub: &SubscriptionData) -> TagFilter {
        let s = sub.sub_string.trim();
        TagFilter {
            all: sub.class_filter_mode || s.is_empty() || s == "*",
            codes: sub.code_set.iter().copied().collect(),
        }
    }
}

impl MessageFilter for TagFilter {
    fn is_matched_by_tags_code(&self, tags_code: i64) -> bool {
        // Java `ExpressionMessageFilter`: `*` matches all; otherwise the low 32 bits of the
        // unit's tags code must be one of the subscription's hashes.
        self.all || self.codes.contains(&(tags_code as i32))
    }
}

pub struct PullMessageProcessor {
    ctx: Arc<BrokerContext>,
}

impl PullMessageProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        PullMessageProcessor { ctx }
    }
}

impl RequestProcessor for PullMessageProcessor {
    fn process(&self, _conn: ConnectionContext, request: RemotingCommand) -> ProcessFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move { Ok(Some(process_pull(&ctx, &request).await)) })
    }
}

/// Handle one pull, holding it (long polling) when the queue has nothing new.
pub async fn process_pull(ctx: &Arc<BrokerContext>, request: &RemotingCommand) -> RemotingCommand {
    let header: PullMessageRequestHeader = match request.decode_header() {
        Ok(h) => h,
        Err(e) => {
            return RemotingCommand::error_response(request, response::SYSTEM_ERROR, e.to_string())
        }
    };
    let filter = match check_and_build_filter(ctx, request, &header) {
        Ok(f) => f,
        Err(resp) => return resp,
    };

    // Commit offset carried by the pull (bit 0), only on a master (Java: brokerAllowSuspend
    // && hasCommitOffsetFlag && role != SLAVE).
    if header.sys_flag & sys_flag::COMMIT_OFFSET != 0
        && ctx.is_master()
        && ctx.broker_id() == 0
        && header.commit_offset >= 0
    {
        if let Err(e) = ctx.consumer_offsets.commit(
            &header.consumer_group,
            &header.topic,
            header.queue_id,
            header.commit_offset,
        ) {
            tracing::warn!(group = %header.consumer_group, topic = %header.topic, error = %e, "commit offset carried by pull rejected");
        }
    }

    if !ctx.is_master() && !ctx.config.slave_read_enable {
        // Java slave without slaveReadEnable: retry at once, at the master (codes.md §3.6).
        return RemotingCommand::response_to(request, response::PULL_RETRY_IMMEDIATELY)
            .with_remark("the broker is a slave and slaveReadEnable is off")
            .with_header(&PullMessageResponseHeader {
                suggest_which_broker_id: 0,
                next_begin_offset: header.queue_offset,
                min_offset: ctx
                    .store
                    .min_offset_in_queue(&header.topic, header.queue_id),
                max_offset: ctx
                    .store
                    .max_offset_in_queue(&header.topic, header.queue_id),
                ..Default::default()
            });
    }
    let max_msgs = header.max_msg_nums.clamp(1, MAX_PULL_MSGS);
    let suspend = header.sys_flag & sys_flag::SUSPEND != 0;
    let hold_ms = if !suspend {
        0
    } else if ctx.config.long_polling_enable {
        u64::try_from(header.suspend_timeout_millis)
            .unwrap_or(0)
            .min(MAX_SUSPEND_MS)
    } else {
        ctx.config.short_polling_time_mills.min(MAX_SUSPEND_MS)
    };
    let deadline = Instant::now() + Duration::from_millis(hold_ms);
    let permit = if hold_ms > 0 {
        ctx.pull_hold.try_hold()
    } else {
        None
    };
    // `permit` stays alive for the whole hold (it counts this pull as parked).
    let may_hold = permit.is_some();

    loop {
        // Subscribe before reading so an arrival in between still wakes us.
        let mut waiter = may_hold.then(|| ctx.pull_hold.subscribe(&header.topic, header.queue_id));
        let result = read_queue(ctx, &header, max_msgs, &filter);
        let code = status_code(result.status, header.queue_offset);
        if let (response::PULL_NOT_FOUND, Some(w)) = (code, waiter.as_mut()) {
            if Instant::now() < deadline {
                tokio::select! {
                    _ = w.wait() => continue,
                    _ = tokio::time::sleep_until(deadline) => {
                        // Timed out: one last read (a message may have landed at the very
                        // end), answered whatever it says.
                        let last = read_queue(ctx, &header, max_msgs, &filter);
                        fault_in_off_runtime(&last.messages).await;
                        return build_response(ctx, request, &header, last);
                    }
                    _ = ctx.shutdown.wait() => {}
                }
            }
        }
        fault_in_off_runtime(&result.messages).await;
        return build_response(ctx, request, &header, result);
    }
}

/// Makes sure the records' pages are in memory before the response is built and written
/// from this runtime thread: cold pages (a consumer far behind, or after a restart) are read
/// on a blocking thread instead, so a slow disk never stalls the other requests on this
/// thread, nor the DLedger node loop that shares it in group mode.
async fn fault_in_off_runtime(records: &[Bytes]) {
    if records.is_empty() || store::residency::all_resident(records) {
        return;
    }
    let records = records.to_vec();
    let _ = tokio::task::spawn_blocking(move || store::residency::prefault(&records)).await;
}

/// One store read: consume-queue units and zero-copy slices of the mapped log. The log's
/// bytes are not touched here (see `fault_in_off_runtime`).
fn read_queue(
    ctx: &BrokerContext,
    header: &PullMessageRequestHeader,
    max_msgs: i32,
    filter: &TagFilter,
) -> GetMessageResult {
    let max_bytes = header
        .max_msg_bytes
        .and_then(|b| usize::try_from(b).ok())
        .filter(|b| *b > 0)
        .unwrap_or(ctx.config.max_transfer_bytes_on_message_in_memory);
    ctx.store.get_message(
        &header.topic,
        header.queue_id,
        header.queue_offset,
        max_msgs,
        max_bytes,
        filter,
    )
}

/// Java enum name of a store status (the pull response's remark).
pub fn status_name(status: GetMessageStatus) -> &'static str {
    match status {
        GetMessageStatus::Found => "FOUND",
        GetMessageStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
        GetMessageStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
        GetMessageStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
        GetMessageStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
        GetMessageStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
        GetMessageStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
        GetMessageStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
        GetMessageStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
    }
}

/// Java `PullMessageProcessor` status table (codes.md §3.6).
pub fn status_code(status: GetMessageStatus, requested_offset: i64) -> i32 {
    match status {
        GetMessageStatus::Found => response::SUCCESS,
        GetMessageStatus::MessageWasRemoving => response::PULL_RETRY_IMMEDIATELY,
        GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
            if requested_offset != 0 {
                response::PULL_OFFSET_MOVED
            } else {
                response::PULL_NOT_FOUND
            }
        }
        GetMessageStatus::NoMatchedMessage => response::PULL_RETRY_IMMEDIATELY,
        GetMessageStatus::OffsetFoundNull => response::PULL_NOT_FOUND,
        GetMessageStatus::OffsetOverflowBadly => response::PULL_OFFSET_MOVED,
        GetMessageStatus::OffsetOverflowOne => response::PULL_NOT_FOUND,
        GetMessageStatus::OffsetTooSmall => response::PULL_OFFSET_MOVED,
    }
}

fn build_response(
    ctx: &BrokerContext,
    request: &RemotingCommand,
    header: &PullMessageRequestHeader,
    result: GetMessageResult,
) -> RemotingCommand {
    let code = status_code(result.status, header.queue_offset);
    let suggest = if result.suggest_pull_from_slave && ctx.config.slave_read_enable {
        1
    } else {
        0
    };
    let mut resp = RemotingCommand::response_to(request, code)
        .with_remark(status_name(result.status))
        .with_header(&PullMessageResponseHeader {
            suggest_which_broker_id: suggest,
            next_begin_offset: result.next_begin_offset,
            min_offset: result.min_offset,
            max_offset: result.max_offset,
            ..Default::default()
        });
    if code == response::SUCCESS {
        // The records go out as they sit in the mapped log, one slice each, in one
        // vectored write (no concatenation).
        resp = resp.with_body_parts(result.messages);
    }
    resp
}

/// Pre-checks (codes.md §3.6) and the subscription to filter with.
#[allow(clippy::result_large_err)]
fn check_and_build_filter(
    ctx: &BrokerContext,
    request: &RemotingCommand,
    header: &PullMessageRequestHeader,
) -> Result<TagFilter, RemotingCommand> {
    let err = |code: i32, remark: String| RemotingCommand::error_response(request, code, remark);
    if ctx.config.broker_permission & PERM_READ == 0 {
        return Err(err(
            response::NO_PERMISSION,
            format!(
                "the broker[{}] pulling message is forbidden",
                ctx.config.broker_name
            ),
        ));
    }
    let group = if ctx.is_master() {
        ctx.subscription_groups
            .find_or_create(&header.consumer_group)
    } else {
        ctx.subscription_groups
            .find_or_default(&header.consumer_group)
    };
    let group = group.ok_or_else(|| {
        err(
            response::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!(
                "subscription group [{}] does not exist",
                header.consumer_group
            ),
        )
    })?;
    if !group.consume_enable {
        return Err(err(
            response::NO_PERMISSION,
            format!(
                "subscription group no permission, {}",
                header.consumer_group
            ),
        ));
    }
    let topic = ctx.topic_config.get(&header.topic).ok_or_else(|| {
        err(
            response::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", header.topic),
        )
    })?;
    if topic.perm & PERM_READ == 0 {
        return Err(err(
            response::NO_PERMISSION,
            format!("the topic[{}] pulling message is forbidden", header.topic),
        ));
    }
    if header.queue_id < 0 || header.queue_id >= topic.read_queue_nums {
        return Err(err(
            response::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                header.queue_id, header.topic, topic.read_queue_nums
            ),
        ));
    }
    if let Some(t) = header.expression_type.as_deref() {
        if !t.eq_ignore_ascii_case("TAG") {
            return Err(err(
                response::SYSTEM_ERROR,
                format!("expression type {t} is not supported (property filter disabled)"),
            ));
        }
    }
    if header.sys_flag & sys_flag::SUBSCRIPTION != 0 {
        let expr = header.subscription.as_deref().unwrap_or("*");
        return TagFilter::parse(expr).map_err(|e| {
            err(
                response::SUBSCRIPTION_PARSE_FAILED,
                format!("parse the consumer's subscription failed: {e}"),
            )
        });
    }
    let sub = ctx
        .consumer_manager
        .find_subscription(&header.consumer_group, &header.topic)
        .ok_or_else(|| {
            err(
                response::SUBSCRIPTION_NOT_EXIST,
                format!(
                    "the consumer's subscription not exist, group: {} topic: {}",
                    header.consumer_group, header.topic
                ),
            )
        })?;
    if sub.sub_version < header.sub_version {
        return Err(err(
            response::SUBSCRIPTION_NOT_LATEST,
            "the consumer's subscription not latest".to_string(),
        ));
    }
    let expr_type = sub.expression_type.trim();
    if !expr_type.is_empty() && !expr_type.eq_ignore_ascii_case("TAG") {
        // Java without `enablePropertyFilter`: SQL92 subscriptions are refused.
        return Err(err(
            response::SYSTEM_ERROR,
            format!("the broker does not support consumer to filter message by {expr_type}"),
        ));
    }
    Ok(TagFilter::from_subscription(&sub))
}

const PERM_READ: i32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expression_parsing() {
        assert!(TagFilter::parse("*").unwrap().all);
        assert!(TagFilter::parse("").unwrap().all);
        let f = TagFilter::parse("TagA || B ").unwrap();
        assert!(!f.all);
        assert_eq!(f.codes, vec![2598919, 66]);
        assert!(f.is_matched_by_tags_code(66));
        assert!(!f.is_matched_by_tags_code(65));
        assert!(TagFilter::parse("*").unwrap().is_matched_by_tags_code(65));
        assert!(TagFilter::parse("||").is_err());
    }

    #[test]
    fn heartbeat_subscription_filter() {
        let sub = SubscriptionData::from_tag_expression("T", "TagA || TagB", 1);
        let f = TagFilter::from_subscription(&sub);
        assert!(!f.all);
        assert!(f.is_matched_by_tags_code(i64::from(store::message::java_string_hash("TagB"))));
        assert!(!f.is_matched_by_tags_code(i64::from(store::message::java_string_hash("TagC"))));
        let all = SubscriptionData::from_tag_expression("T", "*", 1);
        assert!(TagFilter::from_subscription(&all).is_matched_by_tags_code(12345));
    }

    #[test]
    fn status_table() {
        assert_eq!(status_code(GetMessageStatus::Found, 3), response::SUCCESS);
        assert_eq!(
            status_code(GetMessageStatus::NoMessageInQueue, 0),
            response::PULL_NOT_FOUND
        );
        assert_eq!(
            status_code(GetMessageStatus::NoMessageInQueue, 5),
            response::PULL_OFFSET_MOVED
        );
        assert_eq!(
            status_code(GetMessageStatus::OffsetOverflowOne, 5),
            response::PULL_NOT_FOUND
        );
        assert_eq!(
            status_code(GetMessageStatus::OffsetOverflowBadly, 5),
            response::PULL_OFFSET_MOVED
        );
        assert_eq!(
            status_code(GetMessageStatus::OffsetTooSmall, 5),
            response::PULL_OFFSET_MOVED
        );
        assert_eq!(
            status_code(GetMessageStatus::NoMatchedMessage, 5),
            response::PULL_RETRY_IMMEDIATELY
        );
    }
}
