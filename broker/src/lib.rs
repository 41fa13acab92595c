//! RocketMQ-compatible broker: request processors, client and consumer-group state, long
//! polling, delay/retry scheduling and NameServer registration.
//!
//! Module map (Apache RocketMQ names, one file per request family under `processor/`):
//! - `config`: broker.conf parsing (Java properties) and `--key=value` overrides.
//! - `context`: `BrokerContext`, the shared state every processor holds (incl. the role).
//! - `group`, `replication`: group mode (DLedger commitlog): roles, peers, the replicated
//!   metadata entries, forwarding to the leader, leadership hand-off.
//! - `controller`: builds everything, wires processors into the remoting dispatcher, runs.
//! - `topic_config`, `subscription_group`, `consumer_offset`: persisted metadata managers.
//! - `client`: consumer and producer channel managers (heartbeats, group membership).
//! - `lock_manager`: orderly-consumer queue locks.
//! - `body`: JSON bodies (heartbeat parsed leniently here; lock, consumer list,
//!   `MessageQueue` re-exported from `remoting::body`).
//! - `long_polling`: held pulls woken by message arrival.
//! - `schedule`: delay-level delivery from SCHEDULE_TOPIC_XXXX.
//! - `processor`: request processors.
//! - `persist`: atomic JSON files and fastjson shims.

pub mod body;
pub mod client;
pub mod config;
pub mod consumer_offset;
pub mod context;
pub mod controller;
pub mod group;
pub mod lock_manager;
pub mod long_polling;
pub mod persist;
pub mod processor;
pub mod replication;
pub mod schedule;
pub mod subscription_group;
pub mod topic_config;
