//! Broker-facing requests: REGISTER_BROKER (103), UNREGISTER_BROKER (104),
//! QUERY_DATA_VERSION (322), BROKER_HEARTBEAT (904, 5.x). See namesrv.md §2–§3 and
//! `[A4] namesrv/.../processor/DefaultRequestProcessor.java`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use namesrv_client::body::NAMESPACE_ORDER_TOPIC_CONFIG;
use namesrv_client::client::crc32_positive;
use namesrv_client::headers::{
    BrokerHeartbeatRequestHeader, QueryDataVersionRequestHeader, QueryDataVersionResponseHeader,
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnRegisterBrokerRequestHeader,
};
use namesrv_client::{DataVersion, RegisterBrokerBody, TopicConfigSerializeWrapper};
use remoting::codes::response;
use remoting::connection::ConnectionContext;
use remoting::server::ProcessError;
use remoting::RemotingCommand;

use super::success;
use crate::route::Registration;
use crate::NamesrvState;

/// Request version from which the body is a `RegisterBrokerBody` (V3_0_11); older
/// brokers send a bare `TopicConfigSerializeWrapper`.
const V3_0_11: i32 = 37;

pub(super) fn register_broker(
    s: &NamesrvState,
    ctx: &ConnectionContext,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    s.stats.register_requests.fetch_add(1, Ordering::Relaxed);
    let h: RegisterBrokerRequestHeader = req.decode_header()?;
    if let Some(crc) = h.body_crc32.filter(|c| *c != 0) {
        if crc32_positive(&req.body) != crc {
            return Ok(RemotingCommand::error_response(
                req,
                response::SYSTEM_ERROR,
                "crc32 not match",
            ));
        }
    }
    let body = if req.body.is_empty() {
        // No body: an empty topic table with DataVersion {0, 0} (Java does the same).
        RegisterBrokerBody {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version: DataVersion::new(0, 0),
                ..Default::default()
            },
            ..Default::default()
        }
    } else if req.version >= V3_0_11 {
        RegisterBrokerBody::decode(&req.body, h.compressed.unwrap_or(false))
            .map_err(|e| ProcessError(format!("Failed to decode RegisterBrokerBody: {e}")))?
    } else {
        let wrapper = namesrv_client::body::decode_json::<TopicConfigSerializeWrapper>(&req.body)
            .map_err(|e| {
            ProcessError(format!("Failed to decode TopicConfigSerializeWrapper: {e}"))
        })?;
        RegisterBrokerBody {
            topic_config_serialize_wrapper: wrapper,
            filter_server_list: Vec::new(),
        }
    };
    let result = s.route.register_broker(
        Registration {
            cluster_name: &h.cluster_name,
            broker_addr: &h.broker_addr,
            broker_name: &h.broker_name,
            broker_id: h.broker_id,
            ha_server_addr: &h.ha_server_addr,
            topic_config_wrapper: &body.topic_config_serialize_wrapper,
            filter_server_list: &body.filter_server_list,
            conn: Some(ctx.clone()),
        },
        Instant::now(),
    );
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            return Ok(RemotingCommand::error_response(
                req,
                response::SYSTEM_ERROR,
                e.to_string(),
            ))
        }
    };
    let mut resp = success(req).with_header(&RegisterBrokerResponseHeader {
        ha_server_addr: result.ha_server_addr,
        master_addr: result.master_addr,
    });
    if let Some(kv) = s.kv.list(NAMESPACE_ORDER_TOPIC_CONFIG) {
        resp = resp.with_body(Bytes::from(kv.encode()));
    }
    Ok(resp)
}

pub(super) fn unregister_broker(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: UnRegisterBrokerRequestHeader = req.decode_header()?;
    s.route
        .unregister_broker(&h.cluster_name, &h.broker_addr, &h.broker_name, h.broker_id);
    Ok(success(req))
}

pub(super) fn query_data_version(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: QueryDataVersionRequestHeader = req.decode_header()?;
    let dv = DataVersion::decode(&req.body)
        .map_err(|e| ProcessError(format!("bad DataVersion body: {e}")))?;
    let changed = s.route.is_broker_topic_config_changed(&h.broker_addr, &dv);
    if !changed {
        s.route
            .update_broker_timestamp(&h.broker_addr, Instant::now());
    }
    let mut resp = success(req).with_header(&QueryDataVersionResponseHeader {
        changed: Some(changed),
    });
    if let Some(stored) = s.route.broker_data_version(&h.broker_addr) {
        resp = resp.with_body(Bytes::from(stored.encode()));
    }
    Ok(resp)
}

/// 5.x lightweight keep-alive: refreshes the liveness of an already registered broker.
/// Sent oneway; the response is only written if the request asked for one.
pub(super) fn broker_heartbeat(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: BrokerHeartbeatRequestHeader = req.decode_header()?;
    s.route
        .update_broker_timestamp(&h.broker_addr, Instant::now());
    Ok(success(req))
}
