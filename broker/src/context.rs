//! `BrokerContext`: the shared state every processor holds (`Arc<BrokerContext>`).
//! Built once by `controller`; fields never change after construction (managers are
//! internally synchronised).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use remoting::shutdown::Shutdown;
use tokio::sync::watch;

use crate::client::{ConsumerManager, ProducerManager};
use crate::config::BrokerConfig;
use crate::consumer_offset::ConsumerOffsetManager;
use crate::group::Role;
use crate::lock_manager::RebalanceLockManager;
use crate::subscription_group::SubscriptionGroupManager;
use crate::topic_config::TopicConfigManager;

pub struct BrokerContext {
    pub config: Arc<BrokerConfig>,
    pub store: Arc<store::MessageStore>,
    pub topic_config: Arc<TopicConfigManager>,
    pub subscription_groups: Arc<SubscriptionGroupManager>,
    pub consumer_offsets: Arc<ConsumerOffsetManager>,
    pub consumer_manager: Arc<ConsumerManager>,
    pub producer_manager: Arc<ProducerManager>,
    pub lock_manager: Arc<RebalanceLockManager>,
    pub pull_hold: Arc<crate::long_polling::PullRequestHoldService>,
    pub schedule: Arc<crate::schedule::ScheduleMessageService>,
    /// NameServer re-registration trigger (no-op until registration started).
    pub register: Arc<RegisterTrigger>,
    /// `brokerIP1:listenPort`.
    pub broker_addr: String,
    /// The address written into stored records' STOREHOST (= broker_addr).
    pub store_host: SocketAddr,
    /// Fires when the broker shuts down.
    pub shutdown: Shutdown,
    /// Current role (single mode: constant master). Read by processors and registration.
    pub role: watch::Receiver<Role>,
    /// Group mode (`enableDLegerCommitLog`) state; None in single-replica mode.
    pub group: Option<Arc<crate::replication::GroupMode>>,
}

impl BrokerContext {
    /// The broker's own name (message queues, routes).
    pub fn broker_name(&self) -> &str {
        &self.config.broker_name
    }

    /// Accepts writes: always in single mode; the writable DLedger leader in group mode.
    pub fn is_master(&self) -> bool {
        self.role.borrow().master
    }

    /// The brokerId to advertise now (0 = master).
    pub fn broker_id(&self) -> i64 {
        self.role.borrow().broker_id
    }
}

/// Asks the registration task for an immediate REGISTER_BROKER round (topic changes).
/// Topic-table changes already trigger one through `TopicConfigManager::changes`, so
/// calling this is only needed for other changes (e.g. permissions).
#[derive(Default)]
pub struct RegisterTrigger {
    handle: OnceLock<namesrv_client::RegisterHandle>,
}

impl RegisterTrigger {
    pub fn register_now(&self) {
        if let Some(h) = self.handle.get() {
            h.register_now();
        }
    }

    /// Installed once by the controller after registration started.
    pub fn set(&self, handle: namesrv_client::RegisterHandle) {
        let _ = self.handle.set(handle);
    }

    pub fn handle(&self) -> Option<&namesrv_client::RegisterHandle> {
        self.handle.get()
    }
}
