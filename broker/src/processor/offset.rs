//! QUERY_CONSUMER_OFFSET (14) / UPDATE_CONSUMER_OFFSET (15) (Java
//! `ConsumerManageProcessor`, codes.md §3.7).
//!
//! No committed offset: QUERY_NOT_FOUND (22), except — like Java — for a "young" queue
//! (min offset 0, messages present, first message still within the memory window), where
//! the answer is SUCCESS with offset 0 so a CONSUME_FROM_LAST_OFFSET consumer started right
//! after its producer still sees the first messages. 5.x `setZeroIfNotFound=false` always
//! gets QUERY_NOT_FOUND.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::headers::offset::{
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use super::{bad_request, ready, success};
use crate::context::BrokerContext;

pub const CODES: &[i32] = &[
    request::QUERY_CONSUMER_OFFSET,
    request::UPDATE_CONSUMER_OFFSET,
];

/// Java `accessMessageInMemoryMaxRatio` (40 % of physical memory).
const ACCESS_MESSAGE_IN_MEMORY_MAX_RATIO_PERCENT: u64 = 40;
/// Longest wait for the consume-queue dispatcher before judging a queue young.
const DISPATCH_WAIT_MS: u64 = 500;
/// Used when the physical memory size cannot be read.
const FALLBACK_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Bytes of commitlog (counted back from its end) considered "in memory".
fn in_memory_window_bytes() -> i64 {
    static WINDOW: OnceLock<i64> = OnceLock::new();
    *WINDOW.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it only reads system configuration.
        let (pages, page_size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let total = if pages > 0 && page_size > 0 {
            (pages as u64).saturating_mul(page_size as u64)
        } else {
            FALLBACK_MEMORY_BYTES
        };
        (total / 100 * ACCESS_MESSAGE_IN_MEMORY_MAX_RATIO_PERCENT).min(i64::MAX as u64) as i64
    })
}

pub struct OffsetProcessor {
    ctx: Arc<BrokerContext>,
}

impl OffsetProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        OffsetProcessor { ctx }
    }

    async fn query(ctx: Arc<BrokerContext>, req: RemotingCommand) -> RemotingCommand {
        let h: QueryConsumerOffsetRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(&req, e),
        };
        // Some clients commit -1 for queues they never consumed; like Java (`offset >= 0`)
        // a negative stored offset counts as none.
        let found = ctx
            .consumer_offsets
            .query(&h.consumer_group, &h.topic, h.queue_id)
            .filter(|o| *o >= 0);
        let offset = match found {
            Some(o) => Some(o),
            None if h.set_zero_if_not_found != Some(false) => {
                let store = ctx.store.clone();
                let (topic, queue_id) = (h.topic.clone(), h.queue_id);
                // Waits on the dispatcher (a blocking condition wait): off the executor.
                let young =
                    tokio::task::spawn_blocking(move || is_young_queue(&store, &topic, queue_id))
                        .await
                        .unwrap_or(false);
                young.then_some(0)
            }
            None => None,
        };
        tracing::debug!(group = %h.consumer_group, topic = %h.topic, queue = h.queue_id,
            committed = ?found, answer = ?offset, "query consumer offset");
        match offset {
            Some(offset) => {
                success(&req).with_header(&QueryConsumerOffsetResponseHeader { offset })
            }
            None => RemotingCommand::error_response(
                &req,
                response::QUERY_NOT_FOUND,
                "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
            ),
        }
    }

    fn update(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: UpdateConsumerOffsetRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        tracing::debug!(group = %h.consumer_group, topic = %h.topic, queue = h.queue_id,
            offset = h.commit_offset, "update consumer offset");
        match self.ctx.consumer_offsets.commit(
            &h.consumer_group,
            &h.topic,
            h.queue_id,
            h.commit_offset,
        ) {
            Ok(()) => success(req),
            Err(e) => bad_request(req, e),
        }
    }
}

/// Java: `minOffset <= 0 && !checkInDiskByConsumeOffset(topic, queueId, 0)`. We have no
/// per-unit physical offset here, so "in memory" is approximated by the whole commitlog
/// span fitting in the memory window (then every message, including the queue's first,
/// is in it). Empty queues answer QUERY_NOT_FOUND: the client's fallback lands on 0
/// anyway. Consume queues are built asynchronously after a send is acknowledged, so the
/// dispatcher first gets a bounded chance to catch up with the commitlog: otherwise a
/// consumer started right after its producer could start behind the last sends (seen
/// with the C++ client: NOT_FOUND here, then GET_MAX_OFFSET already counting them).
fn is_young_queue(store: &store::MessageStore, topic: &str, queue_id: i32) -> bool {
    let end = store.commit_log_max_offset();
    if !store.wait_dispatched(end, Duration::from_millis(DISPATCH_WAIT_MS)) {
        tracing::debug!(end, "dispatch behind while answering QUERY_CONSUMER_OFFSET");
    }
    store.min_offset_in_queue(topic, queue_id) <= 0
        && store.max_offset_in_queue(topic, queue_id) > 0
        && store.commit_log_max_offset() - store.commit_log_min_offset() <= in_memory_window_bytes()
}

impl RequestProcessor for OffsetProcessor {
    fn process(&self, _conn: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        if req.code == request::QUERY_CONSUMER_OFFSET {
            let ctx = self.ctx.clone();
            Box::pin(async move { Ok(Some(Self::query(ctx, req).await)) })
        } else if let (false, Some(gm)) = (self.ctx.is_master(), self.ctx.group.clone()) {
            // A follower (clients fall back to a slave while their route is stale) forwards
            // the commit to the leader instead of dropping it.
            let ctx = self.ctx.clone();
            Box::pin(async move { Ok(Some(gm.forward_to_leader(&ctx, &req).await)) })
        } else if let Some(gm) = self.ctx.group.clone() {
            // Group master: acknowledge a commit only once it is in the replicated log, so
            // an offset the client saw succeed never goes back after a failover.
            let resp = self.update(&req);
            if resp.code != response::SUCCESS || req.is_oneway() {
                return ready(resp);
            }
            let timeout = Duration::from_millis(self.ctx.config.dleger_forward_timeout_ms);
            Box::pin(async move {
                Ok(Some(match gm.wait_replicated(timeout).await {
                    Ok(()) => resp,
                    Err(e) => RemotingCommand::error_response(
                        &req,
                        response::SYSTEM_ERROR,
                        format!("consumer offset not replicated: {e}"),
                    ),
                }))
            })
        } else {
            ready(self.update(&req))
        }
    }
}
