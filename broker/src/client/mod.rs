//! Client channel state: which connection belongs to which producer/consumer group, kept
//! fresh by HEART_BEAT and dropped by UNREGISTER_CLIENT, connection close or 120 s of
//! silence (Java `ConsumerManager` / `ProducerManager`).

pub mod consumer_manager;
pub mod producer_manager;

use remoting::connection::ConnectionContext;
use remoting::LanguageCode;

pub use consumer_manager::{ConsumerGroupInfo, ConsumerManager, GroupChange};
pub use producer_manager::ProducerManager;

/// A client channel expires after this long without a heartbeat (Java
/// `CHANNEL_EXPIRED_TIMEOUT`, 120 s in `ConsumerManager`/`ProducerManager`).
pub const CHANNEL_EXPIRED_TIMEOUT_MS: i64 = 120_000;

/// One client connection as seen by a group (Java `ClientChannelInfo`).
#[derive(Debug, Clone)]
pub struct ClientChannelInfo {
    pub conn: ConnectionContext,
    pub client_id: String,
    pub language: LanguageCode,
    pub version: i32,
    pub last_update_ms: i64,
}

impl ClientChannelInfo {
    pub fn new(
        conn: ConnectionContext,
        client_id: impl Into<String>,
        language: LanguageCode,
        version: i32,
    ) -> Self {
        ClientChannelInfo {
            conn,
            client_id: client_id.into(),
            language,
            version,
            last_update_ms: crate::topic_config::now_ms(),
        }
    }

    pub fn conn_id(&self) -> u64 {
        self.conn.id()
    }
}
