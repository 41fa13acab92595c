//! Topic and subscription-group admin, runtime info and connection lists (Java
//! `AdminBrokerProcessor`, codes.md §3.15).

use std::collections::BTreeMap;
use std::sync::Arc;

use remoting::codes::{request, response};
use remoting::connection::ConnectionContext;
use remoting::headers::admin::{
    CreateTopicRequestHeader, DeleteSubscriptionGroupRequestHeader, DeleteTopicRequestHeader,
    QueryTopicConsumeByWhoRequestHeader,
};
use remoting::headers::consumer::{
    GetConsumerConnectionListRequestHeader, GetConsumerRunningInfoRequestHeader,
};
use remoting::server::{ProcessFuture, RequestProcessor};
use remoting::RemotingCommand;
use serde_json::{json, Value};

use super::{bad_request, ready, success};
use crate::config::BrokerRole;
use crate::config::ConfigValue;
use crate::context::BrokerContext;
use crate::subscription_group::SubscriptionGroupConfig;
use crate::topic_config::{is_system_topic, validate_topic_name, TopicConfig, TopicFilterType};

pub const CODES: &[i32] = &[
    request::UPDATE_AND_CREATE_TOPIC,
    request::DELETE_TOPIC_IN_BROKER,
    request::GET_ALL_TOPIC_CONFIG,
    request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    request::DELETE_SUBSCRIPTIONGROUP,
    request::GET_BROKER_RUNTIME_INFO,
    request::GET_CONSUMER_CONNECTION_LIST,
    request::GET_ALL_CONSUMER_OFFSET,
    request::QUERY_TOPIC_CONSUME_BY_WHO,
    request::GET_BROKER_CONFIG,
    request::GET_PRODUCER_CONNECTION_LIST,
    request::GET_CONSUMER_RUNNING_INFO,
    request::GET_ALL_DELAY_OFFSET,
];

/// Java `Broker2Client.callClient` timeout for admin calls forwarded to a consumer.
const CALL_CLIENT_TIMEOUT_MS: u64 = 10_000;

/// Largest subscription-group body we decode.
const GROUP_BODY_MAX_BYTES: usize = 64 * 1024;

pub struct AdminProcessor {
    ctx: Arc<BrokerContext>,
    boot_timestamp_ms: i64,
}

impl AdminProcessor {
    pub fn new(ctx: Arc<BrokerContext>) -> Self {
        AdminProcessor {
            ctx,
            boot_timestamp_ms: crate::topic_config::now_ms(),
        }
    }

    fn create_topic(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: CreateTopicRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        if self.ctx.config.broker_role == BrokerRole::Slave {
            return bad_request(req, "can't create topic on a slave broker");
        }
        if let Err(e) = validate_topic_name(&h.topic) {
            return bad_request(req, e);
        }
        if is_system_topic(&h.topic, &self.ctx.config) {
            return bad_request(
                req,
                format!("The topic[{}] is conflict with system topic.", h.topic),
            );
        }
        let filter = match h.topic_filter_type.as_str() {
            "" => TopicFilterType::SingleTag,
            name => match TopicFilterType::from_name(name) {
                Some(f) => f,
                None => return bad_request(req, format!("bad topicFilterType `{name}`")),
            },
        };
        let tc = TopicConfig {
            order: h.order,
            perm: h.perm,
            read_queue_nums: h.read_queue_nums,
            topic_filter_type: filter,
            topic_name: h.topic.clone(),
            topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
            write_queue_nums: h.write_queue_nums,
            attributes: None,
        };
        match self.ctx.topic_config.update(tc) {
            // The topic manager's change signal makes the registration task re-register.
            Ok(_) => success(req),
            Err(e) => bad_request(req, e),
        }
    }

    fn delete_topic(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: DeleteTopicRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        if is_system_topic(&h.topic, &self.ctx.config) {
            return bad_request(
                req,
                format!("The topic[{}] is conflict with system topic.", h.topic),
            );
        }
        self.ctx.topic_config.delete(&h.topic);
        self.ctx.consumer_offsets.remove_topic(&h.topic);
        self.ctx.store.delete_topics(std::slice::from_ref(&h.topic));
        success(req)
    }

    fn all_topic_config(&self, req: &RemotingCommand) -> RemotingCommand {
        success(req).with_body(self.ctx.topic_config.encode().into_bytes())
    }

    fn create_group(&self, req: &RemotingCommand) -> RemotingCommand {
        if req.body.len() > GROUP_BODY_MAX_BYTES {
            return bad_request(req, "subscription group body too large");
        }
        let g: SubscriptionGroupConfig = match serde_json::from_slice(&req.body) {
            Ok(g) => g,
            Err(e) => return bad_request(req, format!("bad subscription group body: {e}")),
        };
        match self.ctx.subscription_groups.update(g) {
            Ok(()) => success(req),
            Err(e) => bad_request(req, e),
        }
    }

    fn delete_group(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: DeleteSubscriptionGroupRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        self.ctx.subscription_groups.delete(&h.group_name);
        if h.clean_offset == Some(true) {
            self.ctx.consumer_offsets.remove_group(&h.group_name);
        }
        success(req)
    }

    fn runtime_table(&self) -> BTreeMap<&'static str, String> {
        let s = self.ctx.store.runtime_stats();
        let now = crate::topic_config::now_ms();
        let mut t: BTreeMap<&str, String> = BTreeMap::new();
        t.insert("brokerVersionDesc", "V4_9_7".to_string());
        t.insert("brokerVersion", remoting::command::OUR_VERSION.to_string());
        t.insert("bootTimestamp", self.boot_timestamp_ms.to_string());
        t.insert(
            "runtime",
            java_runtime_text(now.saturating_sub(self.boot_timestamp_ms)),
        );
        t.insert("brokerActive", "true".to_string());
        let role = self.ctx.role.borrow().clone();
        // As Java's DLedger role handler rewrites brokerRole: the leader is a SYNC_MASTER
        // (quorum-acknowledged), followers are SLAVEs.
        let broker_role = match (&self.ctx.group, role.master) {
            (None, _) => self.ctx.config.broker_role.render_config(),
            (Some(_), true) => "SYNC_MASTER".to_string(),
            (Some(_), false) => "SLAVE".to_string(),
        };
        t.insert("brokerRole", broker_role);
        t.insert("brokerId", role.broker_id.to_string());
        if self.ctx.group.is_some() {
            t.insert("dLegerTerm", role.term.to_string());
            t.insert("dLegerLeaderId", role.leader_id.clone().unwrap_or_default());
        }
        t.insert("commitLogMinOffset", s.commit_log_min_offset.to_string());
        t.insert("commitLogMaxOffset", s.commit_log_max_offset.to_string());
        t.insert(
            "commitLogDiskRatio",
            format!("{:.4}", s.commit_log_disk_ratio / 100.0),
        );
        t.insert("dispatchBehindBytes", s.dispatch_behind_bytes.to_string());
        t.insert("putTps", format!("{:.2}", s.put_tps));
        t.insert(
            "putMessageTimesTotal",
            s.put_message_times_total.to_string(),
        );
        t.insert("putMessageSizeTotal", s.put_message_size_total.to_string());
        t.insert(
            "getMessageTimesTotal",
            s.get_message_times_total.to_string(),
        );
        t.insert("getFoundTotal", s.get_message_found_total.to_string());
        t.insert("diskFull", s.disk_full.to_string());
        t.insert("msgPutTotalTodayNow", s.put_message_times_total.to_string());
        t.insert("msgGetTotalTodayNow", s.get_message_found_total.to_string());
        t.insert("pullHeldCount", self.ctx.pull_hold.held_count().to_string());
        t.insert(
            "consumerGroups",
            self.ctx.consumer_manager.groups().len().to_string(),
        );
        t
    }

    fn consumer_connections(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: GetConsumerConnectionListRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        let Some(info) = self.ctx.consumer_manager.group_info(&h.consumer_group) else {
            return RemotingCommand::error_response(
                req,
                response::CONSUMER_NOT_ONLINE,
                format!("the consumer group[{}] not online", h.consumer_group),
            );
        };
        let connections: Vec<Value> = info
            .channels
            .values()
            .map(|c| {
                json!({
                    "clientAddr": c.conn.peer_addr().to_string(),
                    "clientId": c.client_id,
                    "language": c.language.name(),
                    "version": c.version,
                })
            })
            .collect();
        let subs: serde_json::Map<String, Value> = info
            .subscriptions
            .iter()
            .map(|(t, s)| (t.clone(), s.to_json_value()))
            .collect();
        let body = json!({
            "connectionSet": connections,
            "consumeFromWhere": info.consume_from_where.name(),
            "consumeType": info.consume_type.name(),
            "messageModel": info.message_model.name(),
            "subscriptionTable": subs,
        });
        success(req).with_body(body.to_string().into_bytes())
    }

    fn topic_consumed_by_who(&self, req: &RemotingCommand) -> RemotingCommand {
        let h: QueryTopicConsumeByWhoRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(req, e),
        };
        let mut groups = self.ctx.consumer_manager.groups_by_topic(&h.topic);
        groups.extend(self.ctx.consumer_offsets.groups_of_topic(&h.topic));
        groups.sort();
        groups.dedup();
        success(req).with_body(json!({ "groupList": groups }).to_string().into_bytes())
    }

    fn producer_connections(&self, req: &RemotingCommand) -> RemotingCommand {
        let Some(group) = req.ext("producerGroup").filter(|g| !g.is_empty()) else {
            return bad_request(req, "missing header field `producerGroup`");
        };
        let channels = self.ctx.producer_manager.group_channels(group);
        if channels.is_empty() {
            return bad_request(req, format!("the producer group[{group}] not exist"));
        }
        let connections: Vec<Value> = channels
            .iter()
            .map(|c| {
                json!({
                    "clientAddr": c.conn.peer_addr().to_string(),
                    "clientId": c.client_id,
                    "language": c.language.name(),
                    "version": c.version,
                })
            })
            .collect();
        success(req).with_body(
            json!({ "connectionSet": connections })
                .to_string()
                .into_bytes(),
        )
    }

    /// GET_CONSUMER_RUNNING_INFO from an admin tool: forward to the consumer's own
    /// connection and relay its answer (Java `AdminBrokerProcessor.callConsumer`).
    async fn call_consumer(ctx: Arc<BrokerContext>, req: RemotingCommand) -> RemotingCommand {
        let h: GetConsumerRunningInfoRequestHeader = match req.decode_header() {
            Ok(h) => h,
            Err(e) => return bad_request(&req, e),
        };
        let Some(channel) = ctx
            .consumer_manager
            .find_channel(&h.consumer_group, &h.client_id)
        else {
            return bad_request(
                &req,
                format!(
                    "The Consumer <{}> <{}> not online",
                    h.consumer_group, h.client_id
                ),
            );
        };
        let mut forward = RemotingCommand::request(req.code);
        forward.ext_fields = req.ext_fields.clone();
        forward.body = req.body.clone();
        match channel.conn.invoke(forward, CALL_CLIENT_TIMEOUT_MS).await {
            Ok(answer) => {
                let mut resp = RemotingCommand::response_to(&req, answer.code);
                resp.remark = answer.remark;
                resp.ext_fields = answer.ext_fields;
                resp.body = answer.body;
                resp
            }
            Err(remoting::RemotingError::Timeout { .. }) => RemotingCommand::error_response(
                &req,
                response::CONSUME_MSG_TIMEOUT,
                format!("consumer <{}> <{}> Timeout", h.consumer_group, h.client_id),
            ),
            Err(e) => bad_request(&req, format!("invoke consumer failed: {e}")),
        }
    }

    fn broker_config(&self, req: &RemotingCommand) -> RemotingCommand {
        let mut text = String::new();
        for (k, v) in self.ctx.config.to_properties() {
            text.push_str(k);
            text.push('=');
            text.push_str(&v);
            text.push('\n');
        }
        success(req).with_body(text.into_bytes())
    }
}

/// Java `BrokerController`'s runtime text: `[ D days, H hours, M minutes, S seconds ]`.
fn java_runtime_text(elapsed_ms: i64) -> String {
    let secs = elapsed_ms.max(0) / 1000;
    format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Java 5.x `AdminBrokerProcessor.validateSlave` answer (checked by its
/// `AdminBrokerProcessorTest`): topic and subscription-group changes on a slave get
/// SYSTEM_ERROR with this remark. A DLedger follower answers the same way.
pub const SLAVE_MODIFY_REMARK: &str =
    "Can't modify topic or subscription group from slave broker, please execute it from master broker.";

/// Requests that change the topic or subscription-group tables.
fn is_metadata_change(code: i32) -> bool {
    matches!(
        code,
        request::UPDATE_AND_CREATE_TOPIC
            | request::DELETE_TOPIC_IN_BROKER
            | request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP
            | request::DELETE_SUBSCRIPTIONGROUP
    )
}

impl AdminProcessor {
    /// Applies a topic or subscription-group change locally (the caller makes it durable).
    fn apply_metadata_change(&self, req: &RemotingCommand) -> RemotingCommand {
        match req.code {
            request::UPDATE_AND_CREATE_TOPIC => self.create_topic(req),
            request::DELETE_TOPIC_IN_BROKER => self.delete_topic(req),
            request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => self.create_group(req),
            _ => self.delete_group(req),
        }
    }
}

/// Makes an applied metadata change durable before it is acknowledged, so a topic or group
/// that was answered SUCCESS survives a crash (as Java's `persist()` before the response) or,
/// in group mode, a failover (committed through the metadata log).
async fn commit_metadata_change(ctx: &Arc<BrokerContext>, code: i32) -> Result<(), String> {
    if let Some(gm) = ctx.group.clone() {
        return gm
            .propose_changes(ctx)
            .await
            .map_err(|e| format!("change not replicated: {e}"));
    }
    let ctx = ctx.clone();
    let is_topic = matches!(
        code,
        request::UPDATE_AND_CREATE_TOPIC | request::DELETE_TOPIC_IN_BROKER
    );
    let written = tokio::task::spawn_blocking(move || {
        if is_topic {
            ctx.topic_config.persist_blocking()
        } else {
            ctx.subscription_groups.persist_blocking()
        }
    })
    .await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("change applied but not persisted: {e}")),
        Err(e) => Err(format!("persist task failed: {e}")),
    }
}

impl RequestProcessor for AdminProcessor {
    fn process(&self, _conn: ConnectionContext, req: RemotingCommand) -> ProcessFuture {
        if req.code == request::GET_CONSUMER_RUNNING_INFO {
            let ctx = self.ctx.clone();
            return Box::pin(async move { Ok(Some(Self::call_consumer(ctx, req).await)) });
        }
        if is_metadata_change(req.code) {
            if !self.ctx.is_master() {
                return ready(RemotingCommand::error_response(
                    &req,
                    response::SYSTEM_ERROR,
                    SLAVE_MODIFY_REMARK,
                ));
            }
            let resp = self.apply_metadata_change(&req);
            let ctx = self.ctx.clone();
            return Box::pin(async move {
                if resp.code != response::SUCCESS {
                    return Ok(Some(resp));
                }
                Ok(Some(match commit_metadata_change(&ctx, req.code).await {
                    Ok(()) => resp,
                    Err(e) => RemotingCommand::error_response(&req, response::SYSTEM_ERROR, e),
                }))
            });
        }
        let resp = match req.code {
            request::GET_ALL_DELAY_OFFSET => {
                success(&req).with_body(self.ctx.schedule.encode().into_bytes())
            }
            request::GET_ALL_TOPIC_CONFIG => self.all_topic_config(&req),
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
                success(&req).with_body(self.ctx.subscription_groups.encode().into_bytes())
            }
            request::GET_BROKER_RUNTIME_INFO => {
                let mut table = self.runtime_table();
                let Some(status) = self
                    .ctx
                    .group
                    .as_ref()
                    .map(|_| self.ctx.store.dledger_status())
                else {
                    return ready(runtime_info_response(&req, &table));
                };
                return Box::pin(async move {
                    if let Some(s) = status.await {
                        add_dledger_metrics(&mut table, &s);
                    }
                    Ok(Some(runtime_info_response(&req, &table)))
                });
            }
            request::GET_CONSUMER_CONNECTION_LIST => self.consumer_connections(&req),
            request::GET_ALL_CONSUMER_OFFSET => {
                success(&req).with_body(self.ctx.consumer_offsets.encode().into_bytes())
            }
            request::QUERY_TOPIC_CONSUME_BY_WHO => self.topic_consumed_by_who(&req),
            request::GET_BROKER_CONFIG => self.broker_config(&req),
            request::GET_PRODUCER_CONNECTION_LIST => self.producer_connections(&req),
            other => RemotingCommand::error_response(
                &req,
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!("request code {other} not supported"),
            ),
        };
        ready(resp)
    }
}

fn runtime_info_response(req: &RemotingCommand, table: &BTreeMap<&str, String>) -> RemotingCommand {
    success(req).with_body(json!({ "table": table }).to_string().into_bytes())
}

/// Our own additions to the runtime table (Java has no such keys; admin tools show unknown
/// keys as they are): the replicated log's group-commit figures since start, which is what
/// a benchmark of a DLedger group needs to explain its latency.
fn add_dledger_metrics(t: &mut BTreeMap<&'static str, String>, s: &dledger::node::NodeStatus) {
    t.insert("dLedgerCommitIndex", s.commit_index.to_string());
    t.insert("dLedgerLastIndex", s.last_index.to_string());
    t.insert("dLedgerFsyncs", s.fsyncs.to_string());
    t.insert("dLedgerEntriesPersisted", s.entries_persisted.to_string());
    t.insert("dLedgerFsyncP50Us", s.fsync_latency.p50_us.to_string());
    t.insert("dLedgerFsyncP99Us", s.fsync_latency.p99_us.to_string());
    t.insert("dLedgerFsyncMaxUs", s.fsync_latency.max_us.to_string());
    t.insert("dLedgerCommitP50Us", s.commit_latency.p50_us.to_string());
    t.insert("dLedgerCommitP99Us", s.commit_latency.p99_us.to_string());
    t.insert("dLedgerMsgsDropped", s.msgs_dropped.to_string());
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtime_text_like_java() {
        assert_eq!(
            super::java_runtime_text(((2 * 86_400) + (3 * 3600) + (4 * 60) + 5) * 1000 + 999),
            "[ 2 days, 3 hours, 4 minutes, 5 seconds ]"
        );
    }
}
