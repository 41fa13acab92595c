//! LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42) (Java `AdminBrokerProcessor.lockBatchMQ` /
//! `unlockBatchMQ`, codes.md §3.9). Bodies without `onlyThisBroker` are accepted.
//! Group mode: a follower forwards both to the leader; the leader answers a change of
//! holders once it is committed through the metadata log.

use std::sync::Arc;

use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use super::{bad_request, ready, success};
use crate::body::{decode_lock_batch, LockBatchResponseBody, MessageQueue};
use crate::context::BrokerContext;

pub const CODES: &[i32] = &[request::LOCK_BATCH_MQ, request::UNLOCK_BATCH_MQ];

pub struct LockProcessor {
    ctx: Arc<BrokerContext>,
}

impl LockProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        LockProcessor { ctx }
    }

    fn handle(&self, req: &RemotingCommand) -> RemotingCommand {
        let body = match decode_lock_batch(&req.body) {
            Ok(b) => b,
            Err(e) => return bad_request(req, format!("bad lock body: {e}")),
        };
        let locks = &self.ctx.lock_manager;
        // Java's mqSet is a set: the lock manager walks it in order.
        let mqs: Vec<MessageQueue> = body.mq_set.into_iter().collect();
        if req.code == request::LOCK_BATCH_MQ {
            let locked = locks.try_lock_batch(&body.consumer_group, &mqs, &body.client_id);
            let resp = LockBatchResponseBody {
                lock_ok_mq_set: locked.into_iter().collect(),
            };
            success(req).with_body(serde_json::to_vec(&resp).unwrap_or_default())
        } else {
            locks.unlock_batch(&body.consumer_group, &mqs, &body.client_id);
            success(req)
        }
    }
}

impl RequestProcessor for LockProcessor {
    fn process(&self, _conn: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        let Some(gm) = self.ctx.group.clone() else {
            return ready(self.handle(&req));
        };
        let ctx = Arc::clone(&self.ctx);
        if !ctx.is_master() {
            // Group mode: locks only mean something on the master (clients with a stale
            // route may still ask a former master): forward.
            return Box::pin(async move { Ok(Some(gm.forward_to_leader(&ctx, &req).await)) });
        }
        let before = ctx.lock_manager.version();
        let resp = self.handle(&req);
        if ctx.lock_manager.version() == before {
            return ready(resp);
        }
        // A new holder is answered once replicated, so it keeps the queue on failover.
        Box::pin(async move {
            Ok(Some(match gm.propose_changes(&ctx).await {
                Ok(()) => resp,
                Err(e) => RemotingCommand::error_response(
                    &req,
                    response::SYSTEM_ERROR,
                    format!("lock not replicated: {e}"),
                ),
            }))
        })
    }
}
