//! GET_CONSUMER_LIST_BY_GROUP (38) and the broker→client NOTIFY_CONSUMER_IDS_CHANGED (40)
//! (Java `ConsumerManageProcessor.getConsumerListByGroup`, `Broker2Client`,
//! `DefaultConsumerIdsChangeListener`).

use std::sync::Arc;

use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::headers::consumer::{
    GetConsumerListByGroupRequestHeader, NotifyConsumerIdsChangedRequestHeader,
};
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use super::{bad_request, ready, success};
use crate::body::GetConsumerListByGroupResponseBody;
use crate::client::GroupChange;
use crate::context::BrokerContext;

pub const CODES: &[i32] = &[request::GET_CONSUMER_LIST_BY_GROUP];

pub struct ConsumerProcessor {
    ctx: Arc<BrokerContext>,
}

impl ConsumerProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        ConsumerProcessor { ctx }
    }

    fn consumer_list(&self, req: &RemotingCommand) -> RemotingCommand {
        let header: GetConsumerListByGroupRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        let ids = self.ctx.consumer_manager.client_ids(&header.consumer_group);
        if ids.is_empty() {
            // Java answers SYSTEM_ERROR; the client skips this rebalance round.
            return RemotingCommand::error_response(
                req,
                response::SYSTEM_ERROR,
                format!("no consumer for this group, {}", header.consumer_group),
            );
        }
        let body = GetConsumerListByGroupResponseBody {
            consumer_id_list: ids,
        };
        success(req).with_body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl RequestProcessor for ConsumerProcessor {
    fn process(&self, _conn: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        ready(self.consumer_list(&req))
    }
}

/// Tell every remaining member of a group that membership changed (oneway
/// NOTIFY_CONSUMER_IDS_CHANGED), unless the broker or the group disabled it. Sends run in a
/// spawned task; a slow or dead client never blocks the caller.
pub fn notify_consumer_ids_changed(ctx: &BrokerContext, change: GroupChange) {
    if change.notify.is_empty() || !ctx.config.notify_consumer_ids_changed_enable {
        return;
    }
    if let Some(g) = ctx.subscription_groups.get(&change.group) {
        if !g.notify_consumer_ids_changed_enable {
            return;
        }
    }
    let header = NotifyConsumerIdsChangedRequestHeader {
        consumer_group: change.group.clone(),
    };
    let cmd = RemotingCommand::request_with_header(request::NOTIFY_CONSUMER_IDS_CHANGED, &header);
    let spawn = tokio::runtime::Handle::try_current();
    let Ok(handle) = spawn else {
        return;
    };
    handle.spawn(async move {
        for conn in change.notify {
            if let Err(e) = conn.send_oneway(cmd.clone()).await {
                tracing::debug!(group = %change.group, peer = %conn.peer_addr(), error = %e, "notify consumer ids changed failed");
            }
        }
    });
}
