//! Consumer groups and their live channels (Java `ConsumerManager` + `ConsumerGroupInfo`).
//!
//! Mutations return the channels that must be told about a membership or subscription
//! change (NOTIFY_CONSUMER_IDS_CHANGED); sending is the caller's job, so this stays free
//! of I/O and never awaits under its lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use remoting::connection::ConnectionContext;

use super::{ClientChannelInfo, CHANNEL_EXPIRED_TIMEOUT_MS};
use crate::body::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};

/// Upper bound on consumer groups tracked.
pub const CONSUMER_GROUPS_MAX: usize = 100_000;
/// Upper bound on channels in one group.
pub const CHANNELS_PER_GROUP_MAX: usize = 10_000;

/// One consumer group's live state.
#[derive(Debug, Clone)]
pub struct ConsumerGroupInfo {
    pub group_name: String,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    /// Keyed by connection id.
    pub channels: BTreeMap<u64, ClientChannelInfo>,
    /// Keyed by topic.
    pub subscriptions: HashMap<String, Arc<SubscriptionData>>,
    pub last_update_ms: i64,
}

impl ConsumerGroupInfo {
    fn new(group: &str) -> Self {
        ConsumerGroupInfo {
            group_name: group.to_string(),
            consume_type: ConsumeType::default(),
            message_model: MessageModel::default(),
            consume_from_where: ConsumeFromWhere::default(),
            channels: BTreeMap::new(),
            subscriptions: HashMap::new(),
            last_update_ms: 0,
        }
    }

    pub fn client_ids(&self) -> Vec<String> {
        self.channels
            .values()
            .map(|c| c.client_id.clone())
            .collect()
    }

    pub fn connections(&self) -> Vec<ConnectionContext> {
        self.channels.values().map(|c| c.conn.clone()).collect()
    }

    /// Java `updateSubscription`: add new topics, take newer versions, drop topics the
    /// client no longer subscribes. `true` when the topic set changed.
    fn update_subscriptions(&mut self, subs: &[SubscriptionData]) -> bool {
        let mut changed = false;
        for s in subs {
            match self.subscriptions.get(&s.topic) {
                None => {
                    self.subscriptions
                        .insert(s.topic.clone(), Arc::new(s.clone()));
                    changed = true;
                }
                Some(old) if s.sub_version >= old.sub_version && **old != *s => {
                    self.subscriptions
                        .insert(s.topic.clone(), Arc::new(s.clone()));
                }
                Some(_) => {}
            }
        }
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|topic, _| subs.iter().any(|s| &s.topic == topic));
        changed || self.subscriptions.len() != before
    }
}

/// What a group change means for notification.
#[derive(Debug, Clone)]
pub struct GroupChange {
    pub group: String,
    /// Remaining channels to notify (empty when the group is gone).
    pub notify: Vec<ConnectionContext>,
}

#[derive(Default)]
pub struct ConsumerManager {
    groups: RwLock<HashMap<String, ConsumerGroupInfo>>,
}

impl ConsumerManager {
    pub fn new() -> ConsumerManager {
        ConsumerManager::default()
    }

    /// Register or refresh a consumer channel from a heartbeat. Returns the group's
    /// channels to notify when membership or the subscribed topic set changed.
    pub fn register_consumer(
        &self,
        group: &str,
        channel: ClientChannelInfo,
        consume_type: ConsumeType,
        message_model: MessageModel,
        consume_from_where: ConsumeFromWhere,
        subscriptions: &[SubscriptionData],
    ) -> Option<GroupChange> {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        if !groups.contains_key(group) && groups.len() >= CONSUMER_GROUPS_MAX {
            tracing::warn!(group, "consumer group table full, heartbeat ignored");
            return None;
        }
        let info = groups
            .entry(group.to_string())
            .or_insert_with(|| ConsumerGroupInfo::new(group));
        info.consume_type = consume_type;
        info.message_model = message_model;
        info.consume_from_where = consume_from_where;
        info.last_update_ms = channel.last_update_ms;
        let conn_id = channel.conn_id();
        let channel_added = match info.channels.get_mut(&conn_id) {
            Some(existing) => {
                if existing.client_id != channel.client_id {
                    tracing::warn!(group, old = %existing.client_id, new = %channel.client_id, "client id changed on a channel");
                }
                *existing = channel;
                false
            }
            None => {
                if info.channels.len() >= CHANNELS_PER_GROUP_MAX {
                    tracing::warn!(
                        group,
                        "consumer group has too many channels, heartbeat ignored"
                    );
                    return None;
                }
                tracing::info!(group, client = %channel.client_id, peer = %channel.conn.peer_addr(), "new consumer connected");
                info.channels.insert(conn_id, channel);
                true
            }
        };
        let subs_changed = info.update_subscriptions(subscriptions);
        (channel_added || subs_changed).then(|| GroupChange {
            group: group.to_string(),
            notify: info.connections(),
        })
    }

    /// UNREGISTER_CLIENT for a consumer group. Returns the remaining channels to notify
    /// when the channel was a member.
    pub fn unregister_consumer(&self, group: &str, conn_id: u64) -> Option<GroupChange> {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        let info = groups.get_mut(group)?;
        info.channels.remove(&conn_id)?;
        let notify = info.connections();
        if info.channels.is_empty() {
            groups.remove(group);
            tracing::info!(group, "consumer group has no more channels, removed");
        }
        Some(GroupChange {
            group: group.to_string(),
            notify,
        })
    }

    /// A connection closed: drop it from every group.
    pub fn do_channel_close_event(&self, conn_id: u64) -> Vec<GroupChange> {
        self.remove_channels(|c| c.conn_id() == conn_id)
    }

    /// Drop channels silent for more than 120 s (and close their connections).
    pub fn scan_not_active_channel(&self, now_ms: i64) -> Vec<GroupChange> {
        self.remove_channels(|c| {
            let expired = now_ms - c.last_update_ms > CHANNEL_EXPIRED_TIMEOUT_MS;
            if expired {
                tracing::warn!(client = %c.client_id, peer = %c.conn.peer_addr(), "consumer channel expired");
                c.conn.close();
            }
            expired
        })
    }

    fn remove_channels(
        &self,
        mut pred: impl FnMut(&ClientChannelInfo) -> bool,
    ) -> Vec<GroupChange> {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        let mut changes = Vec::new();
        groups.retain(|group, info| {
            let before = info.channels.len();
            info.channels.retain(|_, c| !pred(c));
            if info.channels.len() != before {
                changes.push(GroupChange {
                    group: group.clone(),
                    notify: info.connections(),
                });
            }
            !info.channels.is_empty()
        });
        changes
    }

    /// The subscription a group registered for `topic` by heartbeat.
    pub fn find_subscription(&self, group: &str, topic: &str) -> Option<Arc<SubscriptionData>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)?
            .subscriptions
            .get(topic)
            .cloned()
    }

    /// A copy of a group's state.
    pub fn group_info(&self, group: &str) -> Option<ConsumerGroupInfo> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
    }

    /// (consume type, message model, consume-from-where) of a live group.
    pub fn group_meta(&self, group: &str) -> Option<(ConsumeType, MessageModel, ConsumeFromWhere)> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .map(|g| (g.consume_type, g.message_model, g.consume_from_where))
    }

    /// Client ids of a group's live channels (GET_CONSUMER_LIST_BY_GROUP).
    pub fn client_ids(&self, group: &str) -> Vec<String> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .map(|g| g.client_ids())
            .unwrap_or_default()
    }

    /// The channel of `client_id` in `group`.
    pub fn find_channel(&self, group: &str, client_id: &str) -> Option<ClientChannelInfo> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)?
            .channels
            .values()
            .find(|c| c.client_id == client_id)
            .cloned()
    }

    pub fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        g.sort();
        g
    }

    /// Groups whose heartbeat subscribes `topic`.
    pub fn groups_by_topic(&self, topic: &str) -> Vec<String> {
        let mut g: Vec<String> = self
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|g| g.subscriptions.contains_key(topic))
            .map(|g| g.group_name.clone())
            .collect();
        g.sort();
        g
    }
}
