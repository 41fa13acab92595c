//! NameServer protocol bodies and the broker-side NameServer client.
//!
//! - [`body`]: DataVersion, TopicConfig, RegisterBrokerBody (plain + compressed),
//!   TopicRouteData/QueueData/BrokerData, ClusterInfo, TopicList, KvTable — shared with
//!   the `namesrv` crate so both sides agree byte for byte.
//! - [`fastjson`]: Java-compatible JSON output (bare numeric keys) and lenient input.
//! - [`headers`]: custom headers of the NameServer request family.
//! - [`client`]: `NamesrvClient` (register/unregister to every NameServer, periodic task).

pub mod body;
pub mod client;
pub mod convert;
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
