//! KV config requests: PUT/GET/DELETE_KV_CONFIG (100–102), GET_KVLIST_BY_NAMESPACE (219).
//! Missing entries answer QUERY_NOT_FOUND (22) with Java's remark; clients call these
//! (e.g. for ORDER_TOPIC_CONFIG / PROJECT_CONFIG) and expect exactly that.

use bytes::Bytes;
use namesrv_client::headers::{
    GetKvConfigResponseHeader, GetKvListByNamespaceRequestHeader, KvConfigKeyRequestHeader,
    PutKvConfigRequestHeader,
};
use remoting::codes::response;
use remoting::server::ProcessError;
use remoting::RemotingCommand;

use super::success;
use crate::NamesrvState;

pub(super) fn put(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: PutKvConfigRequestHeader = req.decode_header()?;
    Ok(match s.kv.put(&h.namespace, &h.key, &h.value) {
        Ok(()) => success(req),
        Err(e) => RemotingCommand::error_response(req, response::SYSTEM_ERROR, e.to_string()),
    })
}

pub(super) fn get(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: KvConfigKeyRequestHeader = req.decode_header()?;
    Ok(match s.kv.get(&h.namespace, &h.key) {
        Some(value) => success(req).with_header(&GetKvConfigResponseHeader { value: Some(value) }),
        None => RemotingCommand::error_response(
            req,
            response::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {} Key: {}", h.namespace, h.key),
        ),
    })
}

pub(super) fn delete(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: KvConfigKeyRequestHeader = req.decode_header()?;
    s.kv.delete(&h.namespace, &h.key);
    Ok(success(req))
}

pub(super) fn list(
    s: &NamesrvState,
    req: &RemotingCommand,
) -> Result<RemotingCommand, ProcessError> {
    let h: GetKvListByNamespaceRequestHeader = req.decode_header()?;
    Ok(match s.kv.list(&h.namespace) {
        Some(table) => success(req).with_body(Bytes::from(table.encode())),
        None => RemotingCommand::error_response(
            req,
            response::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {}", h.namespace),
        ),
    })
}
