//! Request processors, one file per request family (mini-redis style). A single
//! `NamesrvProcessor` is registered for every code we serve and dispatches to the family.

mod broker;
mod kv;
mod route;

use std::sync::Arc;

use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::server::{ProcessError, ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;

use crate::NamesrvState;

/// Every request code this NameServer answers.
pub const SERVED_CODES: &[i32] = &[
    request::PUT_KV_CONFIG,
    request::GET_KV_CONFIG,
    request::DELETE_KV_CONFIG,
    request::GET_KVLIST_BY_NAMESPACE,
    request::REGISTER_BROKER,
    request::UNREGISTER_BROKER,
    request::QUERY_DATA_VERSION,
    request::BROKER_HEARTBEAT,
    request::GET_ROUTEINFO_BY_TOPIC,
    request::GET_BROKER_CLUSTER_INFO,
    request::WIPE_WRITE_PERM_OF_BROKER,
    request::ADD_WRITE_PERM_OF_BROKER,
    request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    request::DELETE_TOPIC_IN_NAMESRV,
    request::GET_TOPICS_BY_CLUSTER,
    request::GET_SYSTEM_TOPIC_LIST_FROM_NS,
    request::GET_UNIT_TOPIC_LIST,
    request::GET_HAS_UNIT_SUB_TOPIC_LIST,
    request::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
];

pub struct NamesrvProcessor {
    state: Arc<NamesrvState>,
}

impl NamesrvProcessor {
    pub fn new(state: Arc<NamesrvState>) -> NamesrvProcessor {
        NamesrvProcessor { state }
    }

    /// Every request is answered from in-memory tables without awaiting, so the
    /// response is computed synchronously.
    fn handle(
        &self,
        ctx: &ConnectionContext,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, ProcessError> {
        let s = &self.state;
        match req.code {
            request::REGISTER_BROKER => broker::register_broker(s, ctx, req),
            request::UNREGISTER_BROKER => broker::unregister_broker(s, req),
            request::QUERY_DATA_VERSION => broker::query_data_version(s, req),
            request::BROKER_HEARTBEAT => broker::broker_heartbeat(s, req),
            request::GET_ROUTEINFO_BY_TOPIC => route::get_route_info(s, req),
            request::GET_BROKER_CLUSTER_INFO => Ok(route::get_cluster_info(s, req)),
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                Ok(route::topic_list(req, s.route.all_topic_list()))
            }
            request::GET_TOPICS_BY_CLUSTER => route::get_topics_by_cluster(s, req),
            request::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                Ok(route::topic_list(req, s.route.system_topic_list()))
            }
            request::GET_UNIT_TOPIC_LIST => Ok(route::topic_list(req, s.route.unit_topics())),
            request::GET_HAS_UNIT_SUB_TOPIC_LIST => {
                Ok(route::topic_list(req, s.route.has_unit_sub_topics()))
            }
            request::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST => {
                Ok(route::topic_list(req, s.route.has_unit_sub_ununit_topics()))
            }
            request::DELETE_TOPIC_IN_NAMESRV => route::delete_topic(s, req),
            request::WIPE_WRITE_PERM_OF_BROKER => route::set_write_perm(s, req, false),
            request::ADD_WRITE_PERM_OF_BROKER => route::set_write_perm(s, req, true),
            request::PUT_KV_CONFIG => kv::put(s, req),
            request::GET_KV_CONFIG => kv::get(s, req),
            request::DELETE_KV_CONFIG => kv::delete(s, req),
            request::GET_KVLIST_BY_NAMESPACE => kv::list(s, req),
            code => Ok(RemotingCommand::error_response(
                req,
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!(" request type {code} not supported"),
            )),
        }
    }
}

impl RequestProcessor for NamesrvProcessor {
    fn process(&self, ctx: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        let result = self.handle(&ctx, &req).map(Some);
        Box::pin(std::future::ready(result))
    }

    fn on_connection_closed(&self, ctx: &ConnectionContext) {
        self.state.route.on_connection_closed(ctx.id());
    }
}

fn success(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS)
}
