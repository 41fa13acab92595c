//! GET_TOPIC_STATS_INFO (202) and GET_CONSUME_STATS (208): what `mqadmin topicStatus` and
//! `mqadmin consumerProgress` read.
//!
//! The bodies are fastjson maps keyed by `MessageQueue` *objects*
//! (`{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{…}}}`), which the Java
//! client parses; standard JSON cannot express them, so they are built as remoting's
//! `TopicStatsTable` / `ConsumeStats` and written with their `to_fastjson` (fastjson's
//! alphabetical field order; entries ordered by queue). Java reference: `AdminBrokerProcessor.java`
//! (`getTopicStatsInfo`, `getConsumeStats`), `TopicStatsTable`, `TopicOffset`,
//! `ConsumeStats`, `OffsetWrapper`; codes.md §3.15.

use std::sync::Arc;

use remoting::body::{ConsumeStats, MessageQueue, OffsetWrapper, TopicOffset, TopicStatsTable};
use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::headers::admin::{GetConsumeStatsRequestHeader, GetTopicStatsInfoRequestHeader};
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use crate::context::BrokerContext;

pub const CODES: &[i32] = &[request::GET_TOPIC_STATS_INFO, request::GET_CONSUME_STATS];

/// Most topics one GET_CONSUME_STATS reports (bounds the body).
pub const MAX_TOPICS_PER_GROUP: usize = 4096;

pub struct StatsProcessor {
    ctx: Arc<BrokerContext>,
}

impl StatsProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        StatsProcessor { ctx }
    }
}

impl RequestProcessor for StatsProcessor {
    fn process(&self, _conn: ConnectionContext, request: RemotingCommand) -> ProcessFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let resp = match request.code {
                request::GET_TOPIC_STATS_INFO => topic_stats(&ctx, &request).await,
                request::GET_CONSUME_STATS => consume_stats(&ctx, &request).await,
                other => Ok(RemotingCommand::error_response(
                    &request,
                    response::REQUEST_CODE_NOT_SUPPORTED,
                    format!("request code {other} not supported by the stats processor"),
                )),
            };
            Ok(Some(resp.unwrap_or_else(|e| {
                RemotingCommand::error_response(&request, response::SYSTEM_ERROR, e)
            })))
        })
    }
}

/// Store time of the message at `offset` in the queue, 0 if none.
async fn store_time_at(ctx: &BrokerContext, topic: &str, queue_id: i32, offset: i64) -> i64 {
    if offset < 0 {
        return 0;
    }
    ctx.store
        .message_store_timestamp(topic, queue_id, offset)
        .max(0)
}

pub async fn topic_stats(
    ctx: &BrokerContext,
    request: &RemotingCommand,
) -> Result<RemotingCommand, String> {
    let h: GetTopicStatsInfoRequestHeader = request.decode_header().map_err(|e| e.to_string())?;
    let Some(tc) = ctx.topic_config.get(&h.topic) else {
        return Ok(RemotingCommand::error_response(
            request,
            response::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist", h.topic),
        ));
    };
    let mut stats = TopicStatsTable::default();
    for queue_id in 0..tc.write_queue_nums.max(0) {
        let min = ctx.store.min_offset_in_queue(&h.topic, queue_id);
        let max = ctx.store.max_offset_in_queue(&h.topic, queue_id);
        let last = if max > 0 {
            store_time_at(ctx, &h.topic, queue_id, max - 1).await
        } else {
            0
        };
        stats.offset_table.insert(
            MessageQueue::new(h.topic.as_str(), ctx.config.broker_name.as_str(), queue_id),
            TopicOffset {
                last_update_timestamp: last,
                max_offset: max,
                min_offset: min,
            },
        );
    }
    Ok(RemotingCommand::response_to(request, response::SUCCESS)
        .with_body(stats.to_fastjson().into_bytes()))
}

pub async fn consume_stats(
    ctx: &BrokerContext,
    request: &RemotingCommand,
) -> Result<RemotingCommand, String> {
    let h: GetConsumeStatsRequestHeader = request.decode_header().map_err(|e| e.to_string())?;
    let topics: Vec<String> = match h.topic.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => vec![t.to_string()],
        _ => ctx.consumer_offsets.topics_of_group(&h.consumer_group),
    };
    let mut stats = ConsumeStats::default();
    for topic in topics.iter().take(MAX_TOPICS_PER_GROUP) {
        let Some(tc) = ctx.topic_config.get(topic) else {
            // Java skips unknown topics (an empty table makes mqadmin report "not found").
            continue;
        };
        for queue_id in 0..tc.read_queue_nums.max(0) {
            let broker_offset = ctx.store.max_offset_in_queue(topic, queue_id).max(0);
            let consumer_offset = ctx
                .consumer_offsets
                .query(&h.consumer_group, topic, queue_id)
                .unwrap_or(0)
                .max(0);
            let last = if consumer_offset > 0 {
                store_time_at(ctx, topic, queue_id, consumer_offset - 1).await
            } else {
                0
            };
            stats.offset_table.insert(
                MessageQueue::new(topic.as_str(), ctx.config.broker_name.as_str(), queue_id),
                OffsetWrapper {
                    broker_offset,
                    consumer_offset,
                    last_timestamp: last,
                    pull_offset: None,
                },
            );
        }
    }
    Ok(RemotingCommand::response_to(request, response::SUCCESS)
        .with_body(stats.to_fastjson().into_bytes()))
}
