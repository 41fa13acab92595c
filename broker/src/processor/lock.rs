//! LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42) (Java `AdminBrokerProcessor.lockBatchMQ` /
//! `unlockBatchMQ`, codes.md §3.9). Bodies without `onlyThisBroker` are accepted.

use std::sync::Arc;

use remoting::codes::request;
use remoting::connection::ConnectionContext;
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use super::{bad_request, ready, success};
use crate::body::{LockBatchRequestBody, LockBatchResponseBody};
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
        let body = match LockBatchRequestBody::decode(&req.body) {
            Ok(b) => b,
            Err(e) => return bad_request(req, format!("bad lock body: {e}")),
        };
        let locks = &self.ctx.lock_manager;
        if req.code == request::LOCK_BATCH_MQ {
            let locked = locks.try_lock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
            let resp = LockBatchResponseBody {
                lock_ok_mq_set: locked,
            };
            success(req).with_body(serde_json::to_vec(&resp).unwrap_or_default())
        } else {
            locks.unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
            success(req)
        }
    }
}

impl RequestProcessor for LockProcessor {
    fn process(&self, _conn: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        ready(self.handle(&req))
    }
}
