//! Multi-process test harness: runs our `namesrv` and `broker` binaries as real child
//! processes on 127.0.0.1, drives them with real RocketMQ clients (the C++ client bundled in
//! PyPI `rocketmq==0.4.4`, and npm `ali-ons@3.12.0`) and verifies results with a small
//! blocking remoting admin client.
//!
//! Module map:
//! - [`paths`]: where binaries, the Python venv and node_modules live (env overrides).
//! - [`process`]: one child process with its log file; kill/wait; log dump on failure.
//! - [`cluster`]: a namesrv + single-replica broker pair with temp store dirs, readiness waits,
//!   restart on the same store dir.
//! - [`admin`]: blocking remoting client for admin/verification requests.
//! - [`record`]: decoder for commitlog records (QUERY_MESSAGE / VIEW_MESSAGE_BY_ID bodies).
//! - [`script`]: runs a client scenario script with a deadline and parses its JSON lines.

pub mod admin;
pub mod check;
pub mod cluster;
pub mod error;
pub mod group;
pub mod paths;
pub mod process;
pub mod proxy;
pub mod record;
pub mod scenario;
pub mod script;

pub use admin::AdminClient;
pub use cluster::{BrokerOptions, Cluster};
pub use error::HarnessError;
pub use script::{ClientKind, Event, ScriptRun};
