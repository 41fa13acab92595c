//! Offset and message queries: GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
//! SEARCH_OFFSET_BY_TIMESTAMP (29), GET_EARLIEST_MSG_STORETIME (32), VIEW_MESSAGE_BY_ID (33)
//! and QUERY_MESSAGE (12).
//!
//! Java reference: `broker/.../processor/AdminBrokerProcessor.java` (offset queries) and
//! `QueryMessageProcessor.java`; docs/protocol/codes.md §3.11–§3.12.

use std::sync::Arc;

use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::headers::offset::{
    GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
};
use remoting::headers::query::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
    UNIQUE_KEY_QUERY,
};
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use crate::context::BrokerContext;

pub const CODES: &[i32] = &[
    request::GET_MAX_OFFSET,
    request::GET_MIN_OFFSET,
    request::SEARCH_OFFSET_BY_TIMESTAMP,
    request::GET_EARLIEST_MSG_STORETIME,
    request::VIEW_MESSAGE_BY_ID,
    request::QUERY_MESSAGE,
];

pub struct QueryMessageProcessor {
    ctx: Arc<BrokerContext>,
}

impl QueryMessageProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        QueryMessageProcessor { ctx }
    }
}

impl RequestProcessor for QueryMessageProcessor {
    fn process(&self, _conn: ConnectionContext, request: RemotingCommand) -> ProcessFuture {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let resp = match handle(&ctx, &request).await {
                Ok(r) => r,
                Err(e) => RemotingCommand::error_response(&request, response::SYSTEM_ERROR, e),
            };
            Ok(Some(resp))
        })
    }
}

pub async fn handle(
    ctx: &BrokerContext,
    request: &RemotingCommand,
) -> Result<RemotingCommand, String> {
    let ok = || RemotingCommand::response_to(request, response::SUCCESS);
    match request.code {
        request::GET_MAX_OFFSET => {
            let h: GetMaxOffsetRequestHeader =
                request.decode_header().map_err(|e| e.to_string())?;
            let offset = ctx.store.max_offset_in_queue(&h.topic, h.queue_id);
            Ok(ok().with_header(&GetMaxOffsetResponseHeader { offset }))
        }
        request::GET_MIN_OFFSET => {
            let h: GetMinOffsetRequestHeader =
                request.decode_header().map_err(|e| e.to_string())?;
            let offset = ctx.store.min_offset_in_queue(&h.topic, h.queue_id);
            Ok(ok().with_header(&GetMinOffsetResponseHeader { offset }))
        }
        request::SEARCH_OFFSET_BY_TIMESTAMP => {
            let h: SearchOffsetRequestHeader =
                request.decode_header().map_err(|e| e.to_string())?;
            let offset = ctx
                .store
                .offset_in_queue_by_time(&h.topic, h.queue_id, h.timestamp);
            Ok(ok().with_header(&SearchOffsetResponseHeader { offset }))
        }
        request::GET_EARLIEST_MSG_STORETIME => {
            let h: GetEarliestMsgStoretimeRequestHeader =
                request.decode_header().map_err(|e| e.to_string())?;
            let timestamp = ctx.store.earliest_message_time(&h.topic, h.queue_id);
            Ok(ok().with_header(&GetEarliestMsgStoretimeResponseHeader { timestamp }))
        }
        request::VIEW_MESSAGE_BY_ID => {
            let h: ViewMessageRequestHeader = request.decode_header().map_err(|e| e.to_string())?;
            match ctx.store.look_message_by_offset(h.offset) {
                Some(record) => Ok(ok().with_body(record)),
                None => Ok(RemotingCommand::error_response(
                    request,
                    response::SYSTEM_ERROR,
                    format!("can not find message by the offset, {}", h.offset),
                )),
            }
        }
        request::QUERY_MESSAGE => {
            let h: QueryMessageRequestHeader =
                request.decode_header().map_err(|e| e.to_string())?;
            let unique = request.ext(UNIQUE_KEY_QUERY) == Some("true");
            let max = if unique {
                ctx.config.default_query_max_num
            } else {
                usize::try_from(h.max_num)
                    .unwrap_or(0)
                    .min(ctx.config.max_msgs_num_batch)
            };
            let result =
                ctx.store
                    .query_message(&h.topic, &h.key, max, h.begin_timestamp, h.end_timestamp);
            let header = QueryMessageResponseHeader {
                index_last_update_timestamp: result.index_last_update_timestamp,
                index_last_update_phyoffset: result.index_last_update_phy_offset,
            };
            if result.messages.is_empty() {
                return Ok(
                    RemotingCommand::response_to(request, response::QUERY_NOT_FOUND)
                        .with_remark("can not find message, maybe time range not correct")
                        .with_header(&header),
                );
            }
            Ok(ok().with_header(&header).with_body_parts(result.messages))
        }
        other => Ok(RemotingCommand::error_response(
            request,
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!("request code {other} not supported by the query processor"),
        )),
    }
}
