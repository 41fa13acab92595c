//! A small RocketMQ-compatible NameServer.
//!
//! Brokers register (REGISTER_BROKER every 30 s on a kept-open connection); clients ask
//! for topic routes. State is in memory only, like Java's NameServer (brokers re-register
//! after a restart).
//!
//! ```ignore
//! let shutdown = Shutdown::new();
//! let ns = NameServer::start("127.0.0.1:9876".parse()?, NamesrvConfig::default(), shutdown.clone()).await?;
//! println!("{}", ns.local_addr());
//! shutdown.trigger();
//! ns.join().await;
//! ```

pub mod config;
pub mod error;
pub mod kv;
pub mod processor;
pub mod route;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use remoting::server::{Dispatcher, RemotingServer};
use remoting::shutdown::Shutdown;
use tokio::task::JoinHandle;

pub use config::NamesrvConfig;
pub use error::NamesrvError;
pub use kv::KvConfigManager;
pub use route::RouteInfoManager;

/// Counters for observability and tests.
#[derive(Debug, Default)]
pub struct NamesrvStats {
    /// REGISTER_BROKER requests received (including refused ones).
    pub register_requests: AtomicU64,
}

/// Everything the processors share.
pub struct NamesrvState {
    pub config: NamesrvConfig,
    pub route: RouteInfoManager,
    pub kv: KvConfigManager,
    pub stats: NamesrvStats,
}

impl NamesrvState {
    pub fn new(config: NamesrvConfig) -> NamesrvState {
        NamesrvState {
            route: RouteInfoManager::new(route::RouteLimits {
                max_live_brokers: config.max_live_brokers,
                max_topics: config.max_topics,
            }),
            kv: KvConfigManager::new(config.max_kv_entries),
            stats: NamesrvStats::default(),
            config,
        }
    }
}

pub struct NameServer;

impl NameServer {
    /// Bind `addr`, serve until `shutdown` fires. Returns once the listener is bound.
    pub async fn start(
        addr: SocketAddr,
        config: NamesrvConfig,
        shutdown: Shutdown,
    ) -> Result<NameServerHandle, NamesrvError> {
        if config.broker_expiry_ms == 0 || config.scan_interval_ms == 0 {
            return Err(NamesrvError::Config(
                "broker_expiry_ms and scan_interval_ms must be > 0".into(),
            ));
        }
        let state = Arc::new(NamesrvState::new(config.clone()));
        let processor = Arc::new(processor::NamesrvProcessor::new(state.clone()));
        let mut dispatcher = Dispatcher::new();
        dispatcher.register_many(processor::SERVED_CODES, processor);
        let server = RemotingServer::bind(addr, config.server.clone(), dispatcher).await?;
        let local_addr = server.local_addr();
        tracing::info!(%local_addr, "NameServer started");

        let server_task = tokio::spawn(server.run(shutdown.clone()));
        let scan_task = tokio::spawn(scan_loop(state.clone(), shutdown));
        Ok(NameServerHandle {
            local_addr,
            state,
            tasks: Mutex::new(vec![server_task, scan_task]),
        })
    }
}

/// Periodically drops brokers that stopped registering.
async fn scan_loop(state: Arc<NamesrvState>, shutdown: Shutdown) {
    let expiry = Duration::from_millis(state.config.broker_expiry_ms);
    let mut ticker = tokio::time::interval(Duration::from_millis(state.config.scan_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = ticker.tick() => {
                state.route.scan_not_active_brokers(Instant::now(), expiry);
            }
        }
    }
}

/// A running NameServer.
pub struct NameServerHandle {
    local_addr: SocketAddr,
    state: Arc<NamesrvState>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl NameServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &Arc<NamesrvState> {
        &self.state
    }

    pub fn route_info(&self) -> &RouteInfoManager {
        &self.state.route
    }

    /// Wait until the server and the scan task have stopped (after shutdown fired).
    pub async fn join(&self) {
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}
