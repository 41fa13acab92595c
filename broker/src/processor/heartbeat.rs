//! HEART_BEAT (34), UNREGISTER_CLIENT (35), CHECK_CLIENT_CONFIG (46) (Java
//! `ClientManageProcessor`). Also drops a connection's channels when it closes.

use std::sync::Arc;

use remoting::codes::request;
use remoting::connection::ConnectionContext;
use remoting::headers::consumer::UnregisterClientRequestHeader;
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use super::consumer::notify_consumer_ids_changed;
use super::{bad_request, ready, success};
use crate::body::HeartbeatData;
use crate::client::ClientChannelInfo;
use crate::context::BrokerContext;

pub const CODES: &[i32] = &[
    request::HEART_BEAT,
    request::UNREGISTER_CLIENT,
    request::CHECK_CLIENT_CONFIG,
];

pub struct HeartbeatProcessor {
    ctx: Arc<BrokerContext>,
}

impl HeartbeatProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        HeartbeatProcessor { ctx }
    }

    fn heartbeat(&self, conn: &ConnectionContext, req: &RemotingCommand) -> RemotingCommand {
        let hb = match HeartbeatData::decode(&req.body) {
            Ok(hb) => hb,
            Err(e) => return bad_request(req, format!("bad heartbeat body: {e}")),
        };
        let ctx = &self.ctx;
        for c in &hb.consumers {
            // Java creates the group's retry topic here (retryQueueNums queues). Only the
            // master changes metadata (group mode: a follower gets it from the log).
            let group_cfg = if ctx.is_master() {
                ctx.subscription_groups.find_or_auto_create(&c.group_name)
            } else {
                None
            };
            if let Some(group_cfg) = group_cfg {
                if group_cfg.retry_queue_nums > 0 {
                    ctx.topic_config.create_retry_topic(
                        &c.group_name,
                        group_cfg.retry_queue_nums,
                        c.unit_mode,
                    );
                }
            }
            let channel =
                ClientChannelInfo::new(conn.clone(), &hb.client_id, req.language, req.version);
            if let Some(change) = ctx.consumer_manager.register_consumer(
                &c.group_name,
                channel,
                c.consume_type,
                c.message_model,
                c.consume_from_where,
                &c.subscriptions,
            ) {
                notify_consumer_ids_changed(ctx, change);
            }
        }
        for group in &hb.producer_groups {
            let channel =
                ClientChannelInfo::new(conn.clone(), &hb.client_id, req.language, req.version);
            ctx.producer_manager.register_producer(group, channel);
        }
        success(req)
    }

    fn unregister(&self, conn: &ConnectionContext, req: &RemotingCommand) -> RemotingCommand {
        let header: UnregisterClientRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        if let Some(group) = header.producer_group.as_deref().filter(|g| !g.is_empty()) {
            self.ctx
                .producer_manager
                .unregister_producer(group, conn.id());
        }
        if let Some(group) = header.consumer_group.as_deref().filter(|g| !g.is_empty()) {
            let released = self
                .ctx
                .lock_manager
                .unlock_all_of_client(group, &header.client_id);
            if released > 0 {
                tracing::info!(group, client = %header.client_id, released,
                    "released queue locks of an unregistered consumer");
            }
            if let Some(change) = self
                .ctx
                .consumer_manager
                .unregister_consumer(group, conn.id())
            {
                tracing::info!(group, client = %header.client_id, "consumer unregistered");
                notify_consumer_ids_changed(&self.ctx, change);
            }
        }
        success(req)
    }
}

impl RequestProcessor for HeartbeatProcessor {
    fn process(&self, conn: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        let resp = match req.code {
            request::HEART_BEAT => self.heartbeat(&conn, &req),
            request::UNREGISTER_CLIENT => self.unregister(&conn, &req),
            // We have no client-side filter classes to check: always fine.
            _ => success(&req),
        };
        ready(resp)
    }

    fn on_connection_closed(&self, conn: &ConnectionContext) {
        self.ctx.producer_manager.do_channel_close_event(conn.id());
        for change in self.ctx.consumer_manager.do_channel_close_event(conn.id()) {
            tracing::info!(group = %change.group, peer = %conn.peer_addr(), "consumer connection closed");
            notify_consumer_ids_changed(&self.ctx, change);
        }
    }
}
