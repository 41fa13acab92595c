//! `benchmark`: a producer/consumer load generator for the RocketMQ-compatible broker, in the
//! spirit of RocketMQ's `benchmark/producer.sh` and `consumer.sh`. A test tool, not an SDK.
//!
//! Module map:
//! - [`cli`]: command-line arguments (clap derive).
//! - [`route`]: GET_ROUTEINFO_BY_TOPIC lookups, publish/subscribe queue lists, per-address connections.
//! - [`batch`]: SEND_BATCH_MESSAGE body encoder (message-format.md §4).
//! - [`record`]: just-enough decoding of pulled commitlog records (message-format.md §1).
//! - [`rate`]: fixed-rate schedule (intended send times, no coordinated omission).
//! - [`stats`]: latency histograms, live lines, the summary table and the JSON line.
//! - [`producer`], [`consumer`]: the two broker sub-commands.
//! - [`disk`]: the machine's own write + fdatasync latency (no broker), a yardstick for the rest.
//!
//! TODO(issue 4): `benchmark failover` sub-command (kill the leader mid-run, measure the
//! unavailability window and message loss). Not built yet.

pub mod batch;
pub mod cli;
pub mod consumer;
pub mod disk;
pub mod error;
pub mod producer;
pub mod rate;
pub mod record;
pub mod route;
pub mod stats;
pub mod uniq;

pub use error::BenchError;
