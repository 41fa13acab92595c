//! Producer groups and their live channels (Java `ProducerManager`): used to find a
//! producer connection for transaction checks and request/reply pushes.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use remoting::connection::ConnectionContext;

use super::{ClientChannelInfo, CHANNEL_EXPIRED_TIMEOUT_MS};

/// Upper bound on producer groups tracked.
pub const PRODUCER_GROUPS_MAX: usize = 100_000;
/// Upper bound on channels in one producer group.
pub const CHANNELS_PER_PRODUCER_GROUP_MAX: usize = 10_000;

#[derive(Default)]
pub struct ProducerManager {
    groups: RwLock<HashMap<String, BTreeMap<u64, ClientChannelInfo>>>,
}

impl ProducerManager {
    pub fn new() -> ProducerManager {
        ProducerManager::default()
    }

    pub fn register_producer(&self, group: &str, channel: ClientChannelInfo) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        if !groups.contains_key(group) && groups.len() >= PRODUCER_GROUPS_MAX {
            tracing::warn!(group, "producer group table full, heartbeat ignored");
            return;
        }
        let channels = groups.entry(group.to_string()).or_default();
        if !channels.contains_key(&channel.conn_id())
            && channels.len() >= CHANNELS_PER_PRODUCER_GROUP_MAX
        {
            return;
        }
        channels.insert(channel.conn_id(), channel);
    }

    pub fn unregister_producer(&self, group: &str, conn_id: u64) -> bool {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        let Some(channels) = groups.get_mut(group) else {
            return false;
        };
        let removed = channels.remove(&conn_id).is_some();
        if channels.is_empty() {
            groups.remove(group);
        }
        removed
    }

    pub fn do_channel_close_event(&self, conn_id: u64) {
        self.remove_channels(|c| c.conn_id() == conn_id);
    }

    pub fn scan_not_active_channel(&self, now_ms: i64) {
        self.remove_channels(|c| {
            let expired = now_ms - c.last_update_ms > CHANNEL_EXPIRED_TIMEOUT_MS;
            if expired {
                tracing::warn!(client = %c.client_id, "producer channel expired");
                c.conn.close();
            }
            expired
        });
    }

    fn remove_channels(&self, mut pred: impl FnMut(&ClientChannelInfo) -> bool) {
        let mut groups = self.groups.write().unwrap_or_else(|e| e.into_inner());
        groups.retain(|_, channels| {
            channels.retain(|_, c| !pred(c));
            !channels.is_empty()
        });
    }

    /// Some live channel of `group` (transaction check target).
    pub fn get_available_channel(&self, group: &str) -> Option<ConnectionContext> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)?
            .values()
            .find(|c| !c.conn.is_closed())
            .map(|c| c.conn.clone())
    }

    /// The channel of a producer client id (request/reply).
    pub fn find_channel(&self, client_id: &str) -> Option<ConnectionContext> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|g| g.values())
            .find(|c| c.client_id == client_id && !c.conn.is_closed())
            .map(|c| c.conn.clone())
    }

    pub fn group_channels(&self, group: &str) -> Vec<ClientChannelInfo> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default()
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
}
