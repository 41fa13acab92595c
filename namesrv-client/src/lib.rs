//! NameServer protocol bodies and the broker-side NameServer client.
//!
//! - [`body`]: DataVersion, TopicConfig, RegisterBrokerBody (plain + compressed),
//!   TopicRouteData/QueueData/BrokerData, ClusterInfo, TopicList, KvTable — re-exported from
//!   `remoting::body::namesrv`, the single definition shared with the broker and `namesrv`.
//! - [`fastjson`]: Java-compatible JSON output (bare numeric keys) and lenient input
//!   (re-exported from `remoting::body::fastjson`).
//! - [`headers`]: custom headers of the NameServer request family (re-exported from
//!   `remoting::headers::namesrv`).
//! - [`client`]: `NamesrvClient` (register/unregister to every NameServer, periodic task).

pub mod body;
pub mod client;
pub mod error;
pub mod fastjson;
pub mod headers;

pub use body::{
    BrokerData, ClusterInfo, DataVersion, KvTable, QueueData, RegisterBrokerBody,
    RegisterBrokerResult, TopicConfig, TopicConfigSerializeWrapper, TopicFilterType, TopicList,
    TopicRouteData,
};
pub use client::{
    BrokerRegistration, NamesrvClient, NamesrvClientConfig, RegisterHandle, RegistrationSource,
};
pub use error::{BodyError, NamesrvClientError};
pub use fastjson::JsonStyle;
