//! Client/admin-facing route requests: GET_ROUTEINFO_BY_TOPIC (105),
//! GET_BROKER_CLUSTER_INFO (106), topic lists, DELETE_TOPIC_IN_NAMESRV (216),
//! WIPE/ADD_WRITE_PERM_OF_BROKER (205/327). See namesrv.md §4.

use bytes::Bytes;
use namesrv_client::body::NAMESPACE_ORDER_TOPIC_CONFIG;
use namesrv_client::headers::{
    AddWritePermOfBrokerResponseHeader, BrokerNameRequestHeader,
    DeleteTopicFromNamesrvRequestHeader, GetRouteInfoRequestHeader,
    GetTopicsByClusterRequestHeader, WipeWritePermOfBrokerResponseHeader,
};
use namesrv_client::{JsonStyle, TopicList};
use remoting::codes::response;
use remoting::server::ProcessError;
use remoting::RemotingCommand;

use super::success;
use crate::NamesrvState;

/// From this request version (V4_9_4) Java answers route data in standard JSON.
const V4_9_4: i32 = 401;

pub(super) fn get_route_info(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: GetRouteInfoRequestHeader = req.decode_header()?;
    let Some(mut route) = s.route.pickup_topic_route_data(&h.topic) else {
        return Ok(RemotingCommand::error_response(
            req,
            response::TOPIC_NOT_EXIST,
            format!(
                "No topic route info in name server for the topic: {}",
                h.topic
            ),
        ));
    };
    if s.config.order_message_enable {
        route.order_topic_conf = s.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, &h.topic);
    }
    let style = if req.version >= V4_9_4 || h.accept_standard_json_only == Some(true) {
        JsonStyle::Standard
    } else {
        JsonStyle::Fastjson
    };
    Ok(success(req).with_body(Bytes::from(route.encode(style))))
}

pub(super) fn get_cluster_info(s: &NamesrvState, req: &RemotingCommand) -> RemotingCommand {
    success(req).with_body(Bytes::from(s.route.cluster_info().encode()))
}

pub(super) fn topic_list(req: &RemotingCommand, list: TopicList) -> RemotingCommand {
    success(req).with_body(Bytes::from(list.encode()))
}

pub(super) fn get_topics_by_cluster(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: GetTopicsByClusterRequestHeader = req.decode_header()?;
    Ok(topic_list(req, s.route.topics_by_cluster(&h.cluster)))
}

pub(super) fn delete_topic(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: DeleteTopicFromNamesrvRequestHeader = req.decode_header()?;
    let cluster = h.cluster_name.as_deref().filter(|c| !c.is_empty());
    s.route.delete_topic(&h.topic, cluster);
    Ok(success(req))
}

pub(super) fn set_write_perm(
    s: &NamesrvState,
    req: &RemotingCommand,
    writable: bool,
) -> Result<RemotingCommand, ProcessError> {
    let h: BrokerNameRequestHeader = req.decode_header()?;
    let count = s.route.set_write_perm_of_broker(&h.broker_name, writable);
    tracing::info!(broker_name = %h.broker_name, writable, count, "write perm of broker changed");
    let resp = success(req);
    Ok(if writable {
        resp.with_header(&AddWritePermOfBrokerResponseHeader {
            add_topic_count: Some(count),
        })
    } else {
        resp.with_header(&WipeWritePermOfBrokerResponseHeader {
            wipe_topic_count: Some(count),
        })
    })
}
