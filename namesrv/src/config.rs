//! NameServer settings.

use remoting::server::ServerConfig;

/// Java `BROKER_CHANNEL_EXPIRED_TIME`: a broker silent this long is dropped.
pub const DEFAULT_BROKER_EXPIRY_MS: u64 = 120_000;
/// How often the expiry scan runs (5.3.3: 5 s; 4.9.7: 10 s).
pub const DEFAULT_SCAN_INTERVAL_MS: u64 = 5_000;
/// Live broker addresses we track at most; more registrations are refused.
pub const DEFAULT_MAX_LIVE_BROKERS: usize = 4_096;
/// Topics the route table holds at most; topics beyond are not added.
pub const DEFAULT_MAX_TOPICS: usize = 1_000_000;
/// KV entries (all namespaces together) at most.
pub const DEFAULT_MAX_KV_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct NamesrvConfig {
    pub broker_expiry_ms: u64,
    pub scan_interval_ms: u64,
    /// Java `orderMessageEnable`: put `orderTopicConf` (KV namespace ORDER_TOPIC_CONFIG)
    /// into route data.
    pub order_message_enable: bool,
    pub max_live_brokers: usize,
    pub max_topics: usize,
    pub max_kv_entries: usize,
    pub server: ServerConfig,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            broker_expiry_ms: DEFAULT_BROKER_EXPIRY_MS,
            scan_interval_ms: DEFAULT_SCAN_INTERVAL_MS,
            order_message_enable: false,
            max_live_brokers: DEFAULT_MAX_LIVE_BROKERS,
            max_topics: DEFAULT_MAX_TOPICS,
            max_kv_entries: DEFAULT_MAX_KV_ENTRIES,
            server: ServerConfig::default(),
        }
    }
}
