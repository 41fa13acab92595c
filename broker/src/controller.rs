//! Builds and runs a broker (Java `BrokerController`): opens the metadata managers and the
//! store, wires every processor into the remoting dispatcher, starts the background tasks
//! (offset persistence, client-channel expiry, NameServer registration, long polling,
//! delay delivery) and shuts everything down in order.
//!
//! Shutdown order (as Java): UNREGISTER_BROKER, stop serving, persist metadata and
//! consumer offsets, flush and close the store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use remoting::server::{Dispatcher, RemotingServer, ServerConfig, SharedProcessor};
use remoting::shutdown::Shutdown;
use tokio::task::JoinHandle;

use crate::client::{ConsumerManager, ProducerManager};
use crate::config::{BrokerConfig, ConfigError, FlushDiskType};
use crate::consumer_offset::ConsumerOffsetManager;
use crate::context::{BrokerContext, RegisterTrigger};
use crate::group::{Peers, Role};
use crate::lock_manager::RebalanceLockManager;
use crate::processor;
use crate::replication::{self, Appliers, GroupMode};
use crate::subscription_group::SubscriptionGroupManager;
use crate::topic_config::{now_ms, perm, TopicConfigManager};

/// How often silent client channels are looked for (Java: every 10 s).
const CHANNEL_SCAN_INTERVAL_MS: u64 = 10_000;
/// How long start-up waits for the first registration round.
const FIRST_REGISTER_WAIT_SLACK_MS: u64 = 1_000;
/// Upper bound on waiting for background tasks at shutdown.
const SHUTDOWN_TASK_WAIT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("metadata: {0}")]
    Metadata(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("remoting: {0}")]
    Remoting(#[from] remoting::RemotingError),
    #[error("embedded namesrv: {0}")]
    Namesrv(String),
    #[error("start-up task failed: {0}")]
    Join(String),
}

/// A running broker.
pub struct Broker {
    pub ctx: Arc<BrokerContext>,
    local_addr: SocketAddr,
    namesrv: Option<Arc<namesrv_client::NamesrvClient>>,
    /// Stops the registration task before UNREGISTER_BROKER, so no round (e.g. one a
    /// role change triggered) can re-register the broker after it unregistered.
    register_shutdown: Shutdown,
    embedded_namesrv: Option<(namesrv::NameServerHandle, Shutdown)>,
    tasks: Vec<JoinHandle<()>>,
}

fn bad(key: &str, value: impl std::fmt::Display, reason: &str) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The store configuration implied by the broker configuration.
pub fn store_config(config: &BrokerConfig, store_host: SocketAddr) -> store::StoreConfig {
    store::StoreConfig {
        store_path_root_dir: config.store_path_root_dir.clone().into(),
        mapped_file_size_commit_log: config.mapped_file_size_commit_log,
        mapped_file_size_consume_queue_units: (config.mapped_file_size_consume_queue
            / store::CQ_UNIT_SIZE as u64)
            .max(1),
        flush_disk_type: match config.flush_disk_type {
            FlushDiskType::AsyncFlush => store::FlushDiskType::AsyncFlush,
            FlushDiskType::SyncFlush => store::FlushDiskType::SyncFlush,
        },
        flush_interval_commit_log_ms: config.flush_interval_commit_log,
        flush_interval_consume_queue_ms: config.flush_interval_consume_queue,
        max_message_size_bytes: config.max_message_size,
        file_reserved_time_hours: config.file_reserved_time,
        delete_when: config.delete_when.clone(),
        disk_max_used_space_ratio: config.disk_max_used_space_ratio.min(100) as u8,
        message_delay_level: config.message_delay_level.clone(),
        store_host,
        max_hash_slot_num: config.max_hash_slot_num,
        max_index_num: config.max_index_num,
        sync_flush_timeout_ms: config.sync_flush_timeout,
        max_transfer_count_on_message_in_memory: config.max_transfer_count_on_message_in_memory,
        max_transfer_bytes_on_message_in_memory: config.max_transfer_bytes_on_message_in_memory,
        max_msgs_num_batch: config.max_msgs_num_batch,
        dispatch_interval_us: config.dispatch_interval_us,
        log_page_cache_keep_bytes: config
            .log_drop_behind_enable
            .then_some(config.log_page_cache_keep_bytes),
        ..store::StoreConfig::default()
    }
}

/// The DLedger part of the store configuration (group mode).
pub fn dledger_store_config(config: &BrokerConfig, peers: &Peers) -> store::DLedgerStoreConfig {
    let peers_text = peers
        .peers
        .iter()
        .map(|p| format!("{}-{}", p.id, p.dledger_addr))
        .collect::<Vec<_>>()
        .join(";");
    let mut dl = store::DLedgerStoreConfig::new(&peers.group, &peers_text, &peers.self_id);
    let nonzero_u64 = |v: u64| (v != 0).then_some(v);
    let nonzero_u32 = |v: u32| (v != 0).then_some(v);
    dl.tick_ms = nonzero_u64(config.dleger_tick_ms);
    dl.heartbeat_ticks = nonzero_u32(config.dleger_heartbeat_ticks);
    dl.election_timeout_ticks = nonzero_u32(config.dleger_election_timeout_ticks);
    dl.fsync_linger_us = Some(config.dleger_fsync_linger_us);
    if config.dleger_runtime_threads == 0 {
        // Share a multi-threaded runtime only (the store blocks while the node starts and
        // stops; see `DLedgerStoreConfig::runtime`); otherwise the node gets its own.
        dl.runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    } else {
        dl.runtime_threads = config.dleger_runtime_threads;
    }
    dl
}

/// The REGISTER_BROKER content for the current topic table (Java `registerBrokerAll`):
/// when the broker is not read-write, every topic advertises the broker permission.
/// `broker_id` is the current role's (0 = master).
pub fn registration(
    config: &BrokerConfig,
    topics: &TopicConfigManager,
    broker_id: i64,
) -> namesrv_client::BrokerRegistration {
    let snapshot = topics.snapshot();
    let rw = perm::READ | perm::WRITE;
    let override_perm = (config.broker_permission & rw != rw).then_some(config.broker_permission);
    let table = snapshot
        .topic_config_table
        .into_iter()
        .map(|(name, t)| {
            // Registration carries the 4.9.7 form and the broker-wide permission override.
            let tc = namesrv_client::TopicConfig {
                attributes: None,
                perm: override_perm.unwrap_or(t.perm),
                ..t
            };
            (name, tc)
        })
        .collect();
    namesrv_client::BrokerRegistration {
        cluster_name: config.broker_cluster_name.clone(),
        broker_name: config.broker_name.clone(),
        broker_addr: config.broker_addr(),
        broker_id,
        ha_server_addr: config.ha_server_addr(),
        topic_config_wrapper: namesrv_client::TopicConfigSerializeWrapper {
            data_version: snapshot.data_version,
            topic_config_table: table,
        },
        filter_server_list: Vec::new(),
        compressed: false,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Join(e.to_string()))
}

impl Broker {
    /// Start a broker; returns once it serves requests (and, with NameServers configured,
    /// after the first registration round finished or timed out).
    pub async fn start(mut config: BrokerConfig) -> Result<Broker, BrokerError> {
        config.validate()?;
        let ip: IpAddr = config
            .broker_ip1
            .parse()
            .map_err(|_| bad("brokerIP1", &config.broker_ip1, "expected an IP address"))?;
        if config.listen_port == 0 {
            // Tests: pick a free port now, because stored records carry the address.
            let probe = std::net::TcpListener::bind((ip, 0))?;
            config.listen_port = probe.local_addr()?.port();
        }
        let listen_addr = SocketAddr::new(ip, config.listen_port);

        // Embedded NameServer first, so our own registration finds it.
        let mut embedded_namesrv = None;
        if let Some(addr) = &config.with_namesrv {
            let ns_addr: SocketAddr = addr
                .parse()
                .map_err(|_| bad("withNamesrv", addr, "expected ip:port"))?;
            let ns_shutdown = Shutdown::new();
            let handle = namesrv::NameServer::start(
                ns_addr,
                namesrv::NamesrvConfig::default(),
                ns_shutdown.clone(),
            )
            .await
            .map_err(|e| BrokerError::Namesrv(e.to_string()))?;
            tracing::info!(addr = %handle.local_addr(), "embedded NameServer started");
            embedded_namesrv = Some((handle, ns_shutdown));
        }

        match Self::start_services(config, listen_addr).await {
            Ok(mut broker) => {
                broker.embedded_namesrv = embedded_namesrv;
                Ok(broker)
            }
            Err(e) => {
                // Do not leave an embedded NameServer running behind a failed start.
                if let Some((handle, ns_shutdown)) = embedded_namesrv {
                    ns_shutdown.trigger();
                    handle.join().await;
                }
                Err(e)
            }
        }
    }

    /// Everything after the listen address is known and the embedded NameServer runs.
    async fn start_services(
        config: BrokerConfig,
        listen_addr: SocketAddr,
    ) -> Result<Broker, BrokerError> {
        let config = Arc::new(config);
        let (topic_config, subscription_groups, consumer_offsets) = {
            let c = config.clone();
            blocking(move || -> std::io::Result<_> {
                Ok((
                    TopicConfigManager::open(c.clone(), true)?,
                    SubscriptionGroupManager::open(c.clone(), true)?,
                    ConsumerOffsetManager::open(&c, true)?,
                ))
            })
            .await??
        };
        let schedule = Arc::new(crate::schedule::ScheduleMessageService::new());
        let lock_manager = Arc::new(RebalanceLockManager::default());
        let (role_tx, role_rx) = tokio::sync::watch::channel(Role::single(&config));
        let (store, group) = if config.enable_dleger_commit_log {
            let peers = Peers::from_config(&config)?;
            let gm = GroupMode::new(
                peers,
                Duration::from_millis(config.dleger_metadata_checkpoint_interval_ms),
            );
            let mut dl = dledger_store_config(&config, &gm.peers);
            // Retention stops at the latest metadata checkpoint's round start.
            dl.retention_floor = Arc::clone(&gm.retention_floor);
            // Registered before the store replays the retained metadata history.
            dl.metadata_listener = Some(gm.metadata_listener(
                Appliers {
                    topics: topic_config.clone(),
                    groups: subscription_groups.clone(),
                    offsets: consumer_offsets.clone(),
                    schedule: schedule.clone(),
                    locks: lock_manager.clone(),
                },
                tokio::runtime::Handle::current(),
            ));
            let sc = store_config(&config, listen_addr);
            let store = blocking(move || store::MessageStore::open_dledger(sc, dl)).await??;
            // Until the role task runs: a follower of an unknown leader.
            role_tx.send_replace(Role::group(false, false, 0, None, gm.peers.self_index));
            (store, Some(gm))
        } else {
            let sc = store_config(&config, listen_addr);
            (
                blocking(move || store::MessageStore::open(sc)).await??,
                None,
            )
        };

        let shutdown = Shutdown::new();
        let ctx = Arc::new(BrokerContext {
            config: config.clone(),
            store,
            topic_config,
            subscription_groups,
            consumer_offsets,
            consumer_manager: Arc::new(ConsumerManager::new()),
            producer_manager: Arc::new(ProducerManager::new()),
            lock_manager,
            pull_hold: Arc::new(crate::long_polling::PullRequestHoldService::new()),
            schedule,
            register: Arc::new(RegisterTrigger::default()),
            broker_addr: config.broker_addr(),
            store_host: listen_addr,
            shutdown: shutdown.clone(),
            role: role_rx,
            group: group.clone(),
        });
        // Persist the built-in topics right away so topics.json always exists.
        {
            let t = ctx.topic_config.clone();
            blocking(move || t.persist_blocking()).await??;
        }

        let dispatcher = build_dispatcher(&ctx);
        let server = RemotingServer::bind(listen_addr, ServerConfig::default(), dispatcher).await?;
        let local_addr = server.local_addr();
        let mut tasks = vec![tokio::spawn(server.run(shutdown.clone()))];

        if let Some(gm) = &group {
            let store_role = ctx.store.role();
            tasks.push(tokio::spawn(replication::run_role_loop(
                ctx.clone(),
                store_role,
                role_tx,
            )));
            tasks.push(tokio::spawn(replication::run_replicator(
                ctx.clone(),
                gm.clone(),
            )));
        }
        ctx.pull_hold.start(ctx.clone());
        ctx.schedule.start(ctx.clone());
        tasks.push(tokio::spawn(offset_persist_loop(ctx.clone())));
        tasks.push(tokio::spawn(channel_scan_loop(ctx.clone())));
        tasks.push(tokio::spawn(topic_change_loop(ctx.clone())));

        let namesrv_addrs = config.namesrv_addrs();
        let mut namesrv = None;
        let register_shutdown = Shutdown::new();
        if !namesrv_addrs.is_empty() {
            let client_cfg = namesrv_client::NamesrvClientConfig {
                register_timeout_ms: config.register_broker_timeout_mills,
                ..Default::default()
            };
            let client = Arc::new(namesrv_client::NamesrvClient::new(
                namesrv_addrs,
                client_cfg,
            ));
            let source_ctx = ctx.clone();
            // Reads the current role each round: a role change registers the new brokerId.
            let source: namesrv_client::RegistrationSource = Arc::new(move || {
                registration(
                    &source_ctx.config,
                    &source_ctx.topic_config,
                    source_ctx.broker_id(),
                )
            });
            let handle = client.clone().start_periodic(
                config.register_name_server_period,
                source,
                register_shutdown.clone(),
            );
            ctx.register.set(handle.clone());
            let wait_ms = config.register_broker_timeout_mills + FIRST_REGISTER_WAIT_SLACK_MS;
            if tokio::time::timeout(Duration::from_millis(wait_ms), handle.wait_rounds(1))
                .await
                .is_err()
            {
                tracing::warn!("first NameServer registration did not finish in {wait_ms} ms");
            } else if handle.last_ok_count() == 0 {
                tracing::warn!(errors = ?handle.last_errors(), "first NameServer registration failed; retrying periodically");
            }
            namesrv = Some(client);
        } else {
            tracing::warn!("no namesrvAddr configured: clients cannot find this broker");
        }

        tracing::info!(
            addr = %local_addr,
            broker = %config.broker_name,
            cluster = %config.broker_cluster_name,
            id = config.broker_id,
            "broker started"
        );
        Ok(Broker {
            ctx,
            local_addr,
            namesrv,
            register_shutdown,
            embedded_namesrv: None,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Graceful stop: UNREGISTER_BROKER, stop serving, persist metadata and offsets,
    /// close the store.
    pub async fn shutdown(self) {
        let ctx = self.ctx;
        let handed_off = ctx.group.is_some() && ctx.is_master();
        if let Some(gm) = &ctx.group {
            // Group mode: a master hands leadership to the most caught-up follower first,
            // so clients find a new master before this one disappears.
            gm.hand_off(&ctx).await;
        }
        self.register_shutdown.trigger();
        if let Some(handle) = ctx.register.handle() {
            let join = handle.join();
            if tokio::time::timeout(Duration::from_millis(SHUTDOWN_TASK_WAIT_MS), join)
                .await
                .is_err()
            {
                tracing::warn!("registration task did not stop in {SHUTDOWN_TASK_WAIT_MS} ms");
            }
        }
        if let Some(client) = &self.namesrv {
            if handed_off {
                wait_for_new_master_in_route(client, &ctx).await;
            }
            let reg = registration(&ctx.config, &ctx.topic_config, ctx.broker_id());
            match client.unregister_broker(&reg).await {
                Ok(_) => tracing::info!("unregistered from NameServer"),
                Err(e) => tracing::warn!(error = %e, "UNREGISTER_BROKER failed"),
            }
        }
        ctx.shutdown.trigger();
        let wait = futures::future::join_all(self.tasks);
        if tokio::time::timeout(Duration::from_millis(SHUTDOWN_TASK_WAIT_MS), wait)
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in {SHUTDOWN_TASK_WAIT_MS} ms");
        }
        let c = ctx.clone();
        let persisted = tokio::task::spawn_blocking(move || {
            for (what, r) in [
                (
                    "consumerOffset.json",
                    c.consumer_offsets.persist_blocking().map(|_| ()),
                ),
                ("topics.json", c.topic_config.persist_blocking()),
                (
                    "subscriptionGroup.json",
                    c.subscription_groups.persist_blocking(),
                ),
                ("delayOffset.json", c.schedule.persist_blocking()),
            ] {
                if let Err(e) = r {
                    tracing::error!(error = %e, "persisting {what} at shutdown failed");
                }
            }
            c.store.shutdown();
        })
        .await;
        if let Err(e) = persisted {
            tracing::error!(error = %e, "shutdown persistence task failed");
        }
        if let Some((handle, ns_shutdown)) = self.embedded_namesrv {
            ns_shutdown.trigger();
            handle.join().await;
        }
        tracing::info!("broker stopped");
    }
}

/// Every processor, registered by request code.
pub fn build_dispatcher(ctx: &Arc<BrokerContext>) -> Dispatcher {
    let mut d = Dispatcher::new();
    let mut add = |codes: &[i32], p: SharedProcessor| d.register_many(codes, p);
    add(
        processor::heartbeat::CODES,
        Arc::new(processor::heartbeat::HeartbeatProcessor::new(ctx.clone())),
    );
    add(
        processor::consumer::CODES,
        Arc::new(processor::consumer::ConsumerProcessor::new(ctx.clone())),
    );
    add(
        processor::offset::CODES,
        Arc::new(processor::offset::OffsetProcessor::new(ctx.clone())),
    );
    add(
        processor::lock::CODES,
        Arc::new(processor::lock::LockProcessor::new(ctx.clone())),
    );
    add(
        processor::admin::CODES,
        Arc::new(processor::admin::AdminProcessor::new(ctx.clone())),
    );
    add(
        processor::send::CODES,
        Arc::new(processor::send::SendMessageProcessor::new(ctx.clone())),
    );
    add(
        processor::pull::CODES,
        Arc::new(processor::pull::PullMessageProcessor::new(ctx.clone())),
    );
    add(
        processor::query::CODES,
        Arc::new(processor::query::QueryMessageProcessor::new(ctx.clone())),
    );
    add(
        processor::stats::CODES,
        Arc::new(processor::stats::StatsProcessor::new(ctx.clone())),
    );
    d
}

/// consumerOffset.json every `flushConsumerOffsetInterval`, on a blocking thread.
async fn offset_persist_loop(ctx: Arc<BrokerContext>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(
        ctx.config.flush_consumer_offset_interval,
    ));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ctx.shutdown.wait() => break,
            _ = ticker.tick() => {}
        }
        let offsets = ctx.consumer_offsets.clone();
        match tokio::task::spawn_blocking(move || offsets.persist_blocking()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "persisting consumer offsets failed"),
            Err(e) => tracing::error!(error = %e, "offset persist task failed"),
        }
    }
}

/// Expire client channels silent for 120 s.
async fn channel_scan_loop(ctx: Arc<BrokerContext>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(CHANNEL_SCAN_INTERVAL_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.wait() => break,
            _ = ticker.tick() => {}
        }
        let now = now_ms();
        for change in ctx.consumer_manager.scan_not_active_channel(now) {
            processor::consumer::notify_consumer_ids_changed(&ctx, change);
        }
        ctx.producer_manager.scan_not_active_channel(now);
    }
}

/// Re-register at once whenever the topic table changed (and, in group mode, wake the
/// metadata replicator so the change is proposed without waiting for its next batch).
async fn topic_change_loop(ctx: Arc<BrokerContext>) {
    loop {
        tokio::select! {
            _ = ctx.shutdown.wait() => break,
            _ = ctx.topic_config.changes().notified() => {
                ctx.register.register_now();
                if let Some(gm) = &ctx.group {
                    gm.poke();
                }
            }
        }
    }
}

/// After a hand-off, wait (bounded) until the NameServer lists another address as this
/// group's master before unregistering: otherwise our UNREGISTER_BROKER can overtake the new
/// master's registration and leave the route without a master for a moment, which clients
/// see as "no route" errors. There is no push from the NameServer, so this polls.
async fn wait_for_new_master_in_route(client: &namesrv_client::NamesrvClient, ctx: &BrokerContext) {
    const POLL_INTERVAL_MS: u64 = 20;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(ctx.config.dleger_transfer_leader_timeout_ms);
    let own_addr = ctx.broker_addr.as_str();
    loop {
        if let Ok(info) = client.get_cluster_info().await {
            let new_master = info
                .broker_addr_table
                .get(&ctx.config.broker_name)
                .and_then(|b| b.broker_addrs.get(&0))
                .is_some_and(|addr| addr != own_addr);
            if new_master {
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("no new master in the NameServer route before unregistering");
            return;
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_advertises_broker_permission_when_not_rw() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_test(dir.path());
        config.listen_port = 10999;
        let topics = TopicConfigManager::open(Arc::new(config.clone()), false).unwrap();
        let reg = registration(&config, &topics, config.broker_id);
        assert_eq!(reg.broker_addr, "127.0.0.1:10999");
        assert_eq!(
            reg.topic_config_wrapper.topic_config_table["TBW102"].perm,
            7
        );
        assert_eq!(
            reg.topic_config_wrapper.data_version.counter,
            topics.data_version().counter
        );

        config.broker_permission = perm::READ; // draining: read-only
        let reg = registration(&config, &topics, 0);
        assert!(reg
            .topic_config_wrapper
            .topic_config_table
            .values()
            .all(|t| t.perm == perm::READ));
    }

    #[test]
    fn store_config_follows_broker_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::for_test(dir.path());
        config.flush_disk_type = FlushDiskType::SyncFlush;
        config.mapped_file_size_consume_queue = 300_000 * 20;
        let addr: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let sc = store_config(&config, addr);
        assert_eq!(sc.flush_disk_type, store::FlushDiskType::SyncFlush);
        assert_eq!(sc.mapped_file_size_consume_queue_units, 300_000);
        assert_eq!(sc.store_host, addr);
        assert_eq!(
            sc.mapped_file_size_commit_log,
            config.mapped_file_size_commit_log
        );
    }
}
