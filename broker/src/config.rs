//! Broker configuration: a RocketMQ `broker.conf` (Java properties syntax) plus `--key=value`
//! command-line overrides.
//!
//! Keys and defaults follow Apache RocketMQ's `BrokerConfig`, `MessageStoreConfig` and
//! `NettyServerConfig` (the Java broker copies every property onto those beans by setter name,
//! `MixAll.properties2Object`). Exceptions, all on purpose: `brokerIP1` defaults to 127.0.0.1
//! (we only bind locally), `brokerName` defaults to `broker-a` (Java uses the host name),
//! `storePathRootDir` defaults to `./run/store` (Java: `~/store`).
//!
//! Unknown keys are reported (the caller logs them with `tracing::warn`); a value that does not
//! parse stops start-up with an error naming the key.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Largest config file we read; a broker.conf is a few KiB.
pub const CONFIG_FILE_MAX_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is larger than {limit_bytes} bytes")]
    TooLarge { path: PathBuf, limit_bytes: u64 },
    #[error("bad value for `{key}`: `{value}` ({reason})")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("bad command line: {0}")]
    BadArgument(String),
}

/// `flushDiskType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushDiskType {
    #[default]
    AsyncFlush,
    SyncFlush,
}

/// `brokerRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerRole {
    #[default]
    AsyncMaster,
    SyncMaster,
    Slave,
}

/// How one config value is parsed from its properties string.
pub trait ConfigValue: Sized {
    fn parse_config(raw: &str) -> Result<Self, String>;
    fn render_config(&self) -> String;
}

macro_rules! int_config_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            fn parse_config(raw: &str) -> Result<Self, String> {
                raw.parse::<$t>().map_err(|e| e.to_string())
            }
            fn render_config(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
int_config_value!(i32, i64, u16, u32, u64, usize);

impl ConfigValue for String {
    fn parse_config(raw: &str) -> Result<Self, String> {
        Ok(raw.to_string())
    }
    fn render_config(&self) -> String {
        self.clone()
    }
}

impl ConfigValue for Option<String> {
    fn parse_config(raw: &str) -> Result<Self, String> {
        Ok(if raw.is_empty() {
            None
        } else {
            Some(raw.to_string())
        })
    }
    fn render_config(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

impl ConfigValue for bool {
    fn parse_config(raw: &str) -> Result<Self, String> {
        // Java's Boolean.parseBoolean maps every non-"true" to false; a typo there would
        // silently flip a switch, so anything but true/false is an error here.
        match raw.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected true or false".to_string()),
        }
    }
    fn render_config(&self) -> String {
        self.to_string()
    }
}

impl ConfigValue for FlushDiskType {
    fn parse_config(raw: &str) -> Result<Self, String> {
        match raw {
            "ASYNC_FLUSH" => Ok(FlushDiskType::AsyncFlush),
            "SYNC_FLUSH" => Ok(FlushDiskType::SyncFlush),
            _ => Err("expected ASYNC_FLUSH or SYNC_FLUSH".to_string()),
        }
    }
    fn render_config(&self) -> String {
        match self {
            FlushDiskType::AsyncFlush => "ASYNC_FLUSH",
            FlushDiskType::SyncFlush => "SYNC_FLUSH",
        }
        .to_string()
    }
}

impl ConfigValue for BrokerRole {
    fn parse_config(raw: &str) -> Result<Self, String> {
        match raw {
            "ASYNC_MASTER" => Ok(BrokerRole::AsyncMaster),
            "SYNC_MASTER" => Ok(BrokerRole::SyncMaster),
            "SLAVE" => Ok(BrokerRole::Slave),
            _ => Err("expected ASYNC_MASTER, SYNC_MASTER or SLAVE".to_string()),
        }
    }
    fn render_config(&self) -> String {
        match self {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        }
        .to_string()
    }
}

/// Java default of `messageDelayLevel` (`MessageStoreConfig`).
pub const DEFAULT_MESSAGE_DELAY_LEVEL: &str =
    "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

macro_rules! broker_config {
    ($( $(#[$m:meta])* $field:ident : $ty:ty = $default:expr => $key:literal ),* $(,)?) => {
        /// Every broker.conf key we support, typed. Field docs name the Java key.
        #[derive(Debug, Clone, PartialEq)]
        pub struct BrokerConfig {
            $( $(#[$m])* #[doc = concat!("`", $key, "`")] pub $field: $ty, )*
        }

        impl Default for BrokerConfig {
            fn default() -> Self {
                BrokerConfig { $( $field: $default, )* }
            }
        }

        impl BrokerConfig {
            /// The Java key of every supported field.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// Set one key; `Ok(false)` when the key is not a supported one.
            pub fn set(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
                match key {
                    $( $key => {
                        self.$field = <$ty as ConfigValue>::parse_config(value).map_err(|reason| {
                            ConfigError::BadValue {
                                key: key.to_string(),
                                value: value.to_string(),
                                reason,
                            }
                        })?;
                        Ok(true)
                    } )*
                    _ => Ok(false),
                }
            }

            /// Every supported key with its current value (runtime info, GET_BROKER_CONFIG).
            pub fn to_properties(&self) -> Vec<(&'static str, String)> {
                vec![ $( ($key, ConfigValue::render_config(&self.$field)), )* ]
            }
        }
    };
}

broker_config! {
    broker_cluster_name: String = "DefaultCluster".to_string() => "brokerClusterName",
    broker_name: String = "broker-a".to_string() => "brokerName",
    /// 0 = master, >= 1 = slave.
    broker_id: i64 = 0 => "brokerId",
    broker_ip1: String = "127.0.0.1".to_string() => "brokerIP1",
    broker_ip2: Option<String> = None => "brokerIP2",
    listen_port: u16 = 10911 => "listenPort",
    ha_listen_port: u16 = 10912 => "haListenPort",
    /// ';'-separated NameServer addresses; none = do not register.
    namesrv_addr: Option<String> = None => "namesrvAddr",
    store_path_root_dir: String = "./run/store".to_string() => "storePathRootDir",
    store_path_commit_log: Option<String> = None => "storePathCommitLog",
    broker_role: BrokerRole = BrokerRole::AsyncMaster => "brokerRole",
    flush_disk_type: FlushDiskType = FlushDiskType::AsyncFlush => "flushDiskType",
    mapped_file_size_commit_log: u64 = 1024 * 1024 * 1024 => "mappedFileSizeCommitLog",
    mapped_file_size_consume_queue: u64 = 300_000 * 20 => "mappedFileSizeConsumeQueue",
    delete_when: String = "04".to_string() => "deleteWhen",
    /// Hours.
    file_reserved_time: u64 = 72 => "fileReservedTime",
    max_message_size: usize = 1024 * 1024 * 4 => "maxMessageSize",
    flush_interval_commit_log: u64 = 500 => "flushIntervalCommitLog",
    flush_interval_consume_queue: u64 = 1000 => "flushIntervalConsumeQueue",
    sync_flush_timeout: u64 = 5000 => "syncFlushTimeout",
    disk_max_used_space_ratio: u32 = 75 => "diskMaxUsedSpaceRatio",
    max_hash_slot_num: u32 = 5_000_000 => "maxHashSlotNum",
    max_index_num: u32 = 5_000_000 * 4 => "maxIndexNum",
    message_index_enable: bool = true => "messageIndexEnable",
    message_delay_level: String = DEFAULT_MESSAGE_DELAY_LEVEL.to_string() => "messageDelayLevel",
    auto_create_topic_enable: bool = true => "autoCreateTopicEnable",
    default_topic_queue_nums: i32 = 8 => "defaultTopicQueueNums",
    cluster_topic_enable: bool = true => "clusterTopicEnable",
    broker_topic_enable: bool = true => "brokerTopicEnable",
    trace_topic_enable: bool = false => "traceTopicEnable",
    msg_trace_topic_name: String = "RMQ_SYS_TRACE_TOPIC".to_string() => "msgTraceTopicName",
    auto_create_subscription_group: bool = true => "autoCreateSubscriptionGroup",
    long_polling_enable: bool = true => "longPollingEnable",
    short_polling_time_mills: u64 = 1000 => "shortPollingTimeMills",
    notify_consumer_ids_changed_enable: bool = true => "notifyConsumerIdsChangedEnable",
    /// Interval of the periodic consumerOffset.json persist (Java `flushConsumerOffsetInterval`).
    flush_consumer_offset_interval: u64 = 5000 => "flushConsumerOffsetInterval",
    flush_delay_offset_interval: u64 = 10_000 => "flushDelayOffsetInterval",
    register_broker_timeout_mills: u64 = 6000 => "registerBrokerTimeoutMills",
    register_name_server_period: u64 = 30_000 => "registerNameServerPeriod",
    /// PermName bits; 6 = read + write.
    broker_permission: i32 = 6 => "brokerPermission",
    slave_read_enable: bool = false => "slaveReadEnable",
    region_id: String = "DefaultRegion".to_string() => "regionId",
    trace_on: bool = true => "traceOn",
    reject_transaction_message: bool = false => "rejectTransactionMessage",
    transaction_timeout: u64 = 6000 => "transactionTimeOut",
    transaction_check_max: i32 = 15 => "transactionCheckMax",
    transaction_check_interval: u64 = 60_000 => "transactionCheckInterval",
    max_transfer_bytes_on_message_in_memory: usize = 256 * 1024 => "maxTransferBytesOnMessageInMemory",
    max_transfer_count_on_message_in_memory: usize = 32 => "maxTransferCountOnMessageInMemory",
    max_transfer_bytes_on_message_in_disk: usize = 64 * 1024 => "maxTransferBytesOnMessageInDisk",
    max_transfer_count_on_message_in_disk: usize = 8 => "maxTransferCountOnMessageInDisk",
    default_query_max_num: usize = 32 => "defaultQueryMaxNum",
    max_msgs_num_batch: usize = 64 => "maxMsgsNumBatch",
    enable_dleger_commit_log: bool = false => "enableDLegerCommitLog",
    dleger_group: Option<String> = None => "dLegerGroup",
    dleger_peers: Option<String> = None => "dLegerPeers",
    dleger_self_id: Option<String> = None => "dLegerSelfId",
    /// Our extension (group mode): the client-facing broker address of every DLedger peer,
    /// `n0-127.0.0.1:30911;n1-...`, so a follower can forward requests to the leader.
    /// Peers not listed default to their DLedger host with the port of this broker's
    /// `listenPort` offset like this node's (see `group::Peers`).
    dleger_peer_broker_addrs: Option<String> = None => "dLegerPeerBrokerAddrs",
    /// Our extension: how often the leader batches changed consumer offsets (and other
    /// dirty metadata) into one replicated metadata entry.
    dleger_metadata_batch_interval_ms: u64 = 200 => "dLegerMetadataBatchIntervalMs",
    /// Our extension: how often the leader re-proposes the whole metadata state (a full
    /// round ending in a checkpoint entry); retention never deletes log segments after the
    /// latest checkpoint's round start, so this bounds how long metadata pins old segments.
    dleger_metadata_checkpoint_interval_ms: u64 = 600_000 => "dLegerMetadataCheckpointIntervalMs",
    /// Our extension: how long a leader stopping gracefully waits for the leadership
    /// transfer before it unregisters anyway.
    dleger_transfer_leader_timeout_ms: u64 = 5000 => "dLegerTransferLeaderTimeoutMs",
    /// Our extension: DLedger timing; 0 = the dledger crate's default.
    dleger_tick_ms: u64 = 0 => "dLegerTickMs",
    dleger_heartbeat_ticks: u32 = 0 => "dLegerHeartbeatTicks",
    dleger_election_timeout_ticks: u32 = 0 => "dLegerElectionTimeoutTicks",
    /// Our extension: 0 (default) = the DLedger node runs on the broker's runtime, so a
    /// send and its answer cross no thread between request processing and the node loop;
    /// 1..=8 = a runtime of its own with that many workers.
    dleger_runtime_threads: usize = 0 => "dLegerRuntimeThreads",
    /// Our extension: DLedger group-commit delay in µs. While sends arrive fast, each
    /// replica's log write waits up to this long for more entries so one fsync covers them
    /// all; a lone sender never waits. 0 = fsync every batch at once.
    dleger_fsync_linger_us: u64 = dledger::storage::thread::DEFAULT_FSYNC_LINGER_US => "dLegerFsyncLingerUs",
    /// Our extension: shortest time in µs between two consume-queue dispatch passes while
    /// messages keep arriving (Java's reput service pauses 1 ms); 0 = on every commit.
    dispatch_interval_us: u64 = 1_000 => "dispatchIntervalUs",
    /// Our extension: drop commitlog pages more than `logPageCacheKeepBytes` behind the
    /// dispatcher from the page cache (`store::StoreConfig::log_page_cache_keep_bytes`).
    log_drop_behind_enable: bool = true => "logDropBehindEnable",
    log_page_cache_keep_bytes: u64 = store::DEFAULT_LOG_PAGE_CACHE_KEEP_BYTES => "logPageCacheKeepBytes",
    /// Our extension: time-out of a request forwarded from a follower to the leader.
    dleger_forward_timeout_ms: u64 = 3000 => "dLegerForwardTimeoutMs",
    /// Our extension: start an embedded NameServer listening on this address in-process.
    with_namesrv: Option<String> = None => "withNamesrv",
    /// Our extension: worker threads of the broker's tokio runtime (request processing);
    /// 0 = half the CPUs, at least one (see `runtime_worker_threads`).
    runtime_worker_threads: usize = 0 => "runtimeWorkerThreads",
}

/// Upper bound of `runtimeWorkerThreads`.
pub const MAX_RUNTIME_WORKER_THREADS: usize = 256;

/// Keys of real broker.conf files that tune Java internals (thread pools, queues, netty):
/// accepted without a warning and ignored.
const IGNORED_JAVA_KEYS: &[&str] = &[
    "sendMessageThreadPoolNums",
    "pullMessageThreadPoolNums",
    "queryMessageThreadPoolNums",
    "adminBrokerThreadPoolNums",
    "clientManageThreadPoolNums",
    "consumerManageThreadPoolNums",
    "useReentrantLockWhenPutMessage",
    "waitTimeMillsInSendQueue",
    "waitTimeMillsInPullQueue",
    "sendThreadPoolQueueCapacity",
    "pullThreadPoolQueueCapacity",
    "osPageCacheBusyTimeOutMills",
    "transientStorePoolEnable",
    "warmMapedFileEnable",
    "serverWorkerThreads",
    "serverSelectorThreads",
    "clientWorkerThreads",
    "fetchNamesrvAddrByAddressServer",
    "aclEnable",
    "enablePropertyFilter",
    "filterSupportRetry",
    "brokerFastFailureEnable",
    "maxErrorRateOfBloomFilter",
    "flushCommitLogLeastPages",
    "flushConsumeQueueLeastPages",
    "flushCommitLogThoroughInterval",
    "flushConsumeQueueThoroughInterval",
    "cleanFileForciblyEnable",
    "destroyMapedFileIntervalForcibly",
    "redeleteHangedFileInterval",
    "deleteCommitLogFilesInterval",
    "deleteConsumeQueueFilesInterval",
    "compressedRegister",
    "forceRegister",
    "haSendHeartbeatInterval",
    "haHousekeepingInterval",
    "haTransferBatchSize",
    "haSlaveFallbehindMax",
    "duplicationEnable",
    "storePathIndex",
    "storeCheckpoint",
    "abortFile",
    "storePathConsumeQueue",
];

/// Parse Java `.properties` text into ordered (key, value) pairs. Follows
/// `java.util.Properties.load`: `#`/`!` comments, `key=value`, `key: value` and `key value`,
/// backslash line continuation and escapes (`\t \n \r \f \uXXXX`, `\x` = `x`). Values are
/// trimmed (RocketMQ users often leave trailing blanks; none of our values may end in one).
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut logical = first.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        // A line ending in an odd number of backslashes continues on the next line.
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.next() {
                Some(next) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key_raw, value_raw) = split_key_value(&logical);
        let key = unescape(key_raw);
        let value = unescape(value_raw).trim().to_string();
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Split a logical line at the first unescaped `=`, `:` or whitespace.
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (&line[..i], &line[i + 1..]),
            b' ' | b'\t' | b'\x0c' => {
                let key = &line[..i];
                let rest = line[i..].trim_start_matches([' ', '\t', '\x0c']);
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                return (key, rest);
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Command line: `broker -c FILE [-n NAMESRV_ADDR] [--key=value ...]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandLine {
    pub config_file: Option<PathBuf>,
    /// `--key=value` (or `--key value`) pairs in order; `-n X` becomes `namesrvAddr=X`.
    pub overrides: Vec<(String, String)>,
    pub help: bool,
    /// `-p`: print the effective configuration and exit (like Java `mqbroker -p`).
    pub print_config: bool,
}

pub const USAGE: &str = "usage: broker -c FILE [-n NAMESRV_ADDR] [--key=value ...]\n\
  -c, --configFile FILE   RocketMQ broker.conf (Java properties)\n\
  -n, --namesrvAddr ADDR  NameServer address(es), ';'-separated\n\
  --withNamesrv=ADDR      also start an embedded NameServer on ADDR (e.g. 127.0.0.1:9876)\n\
  --KEY=VALUE             override any broker.conf key\n\
  -p, --printConfigItem   print the effective configuration and exit\n";

/// Most command-line arguments we accept; a guard against runaway scripts.
const ARGS_MAX: usize = 1024;

impl CommandLine {
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<CommandLine, ConfigError> {
        let args: Vec<String> = args.into_iter().take(ARGS_MAX + 1).collect();
        if args.len() > ARGS_MAX {
            return Err(ConfigError::BadArgument(format!(
                "more than {ARGS_MAX} arguments"
            )));
        }
        let mut cl = CommandLine::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let mut value_of = |name: &str| {
                it.next()
                    .ok_or_else(|| ConfigError::BadArgument(format!("{name} needs a value")))
            };
            match arg.as_str() {
                "-h" | "--help" => cl.help = true,
                "-p" | "--printConfigItem" => cl.print_config = true,
                "-c" | "--configFile" => cl.config_file = Some(PathBuf::from(value_of(&arg)?)),
                "-n" | "--namesrvAddr" => cl
                    .overrides
                    .push(("namesrvAddr".to_string(), value_of(&arg)?)),
                _ => {
                    if let Some(kv) = arg.strip_prefix("--") {
                        match kv.split_once('=') {
                            Some(("configFile", v)) => cl.config_file = Some(PathBuf::from(v)),
                            Some((k, v)) => {
                                cl.overrides.push((k.to_string(), v.trim().to_string()))
                            }
                            None => {
                                let v = value_of(&arg)?;
                                cl.overrides.push((kv.to_string(), v));
                            }
                        }
                    } else {
                        return Err(ConfigError::BadArgument(format!(
                            "unexpected argument `{arg}`"
                        )));
                    }
                }
            }
        }
        Ok(cl)
    }
}

/// A loaded configuration plus the keys we did not recognise.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: BrokerConfig,
    pub unknown_keys: Vec<String>,
}

impl BrokerConfig {
    /// Read `file` (if any), then apply `overrides` in order, then validate. Unknown keys are
    /// logged with `tracing::warn` and returned.
    pub fn load(
        file: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<LoadedConfig, ConfigError> {
        let mut pairs = Vec::new();
        if let Some(path) = file {
            let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if meta.len() > CONFIG_FILE_MAX_BYTES {
                return Err(ConfigError::TooLarge {
                    path: path.to_path_buf(),
                    limit_bytes: CONFIG_FILE_MAX_BYTES,
                });
            }
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            pairs = parse_properties(&text);
        }
        pairs.extend(overrides.iter().cloned());
        Self::from_pairs(&pairs)
    }

    /// Apply (key, value) pairs over the defaults, then validate.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<LoadedConfig, ConfigError> {
        let mut config = BrokerConfig::default();
        let mut unknown_keys = Vec::new();
        for (key, value) in pairs {
            if config.set(key, value)? {
                continue;
            }
            if IGNORED_JAVA_KEYS.contains(&key.as_str()) {
                tracing::debug!(key = %key, "ignoring Java-only broker.conf key");
                continue;
            }
            tracing::warn!(key = %key, "unknown broker config key, ignored");
            if !unknown_keys.contains(key) {
                unknown_keys.push(key.clone());
            }
        }
        config.validate()?;
        Ok(LoadedConfig {
            config,
            unknown_keys,
        })
    }

    pub(crate) fn bad(key: &str, value: impl fmt::Display, reason: &str) -> ConfigError {
        ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Range checks that the types alone do not express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // listenPort 0 = pick a free port at start (tests).
        if !(1..=1024).contains(&self.default_topic_queue_nums) {
            return Err(Self::bad(
                "defaultTopicQueueNums",
                self.default_topic_queue_nums,
                "must be 1..=1024",
            ));
        }
        if !(0..=15).contains(&self.broker_permission) {
            return Err(Self::bad(
                "brokerPermission",
                self.broker_permission,
                "must be a PermName bit set 0..=15",
            ));
        }
        if self.broker_id < 0 {
            return Err(Self::bad("brokerId", self.broker_id, "must be >= 0"));
        }
        if self.mapped_file_size_commit_log < 4096 {
            return Err(Self::bad(
                "mappedFileSizeCommitLog",
                self.mapped_file_size_commit_log,
                "must be >= 4096",
            ));
        }
        if !(1..=100).contains(&self.disk_max_used_space_ratio) {
            return Err(Self::bad(
                "diskMaxUsedSpaceRatio",
                self.disk_max_used_space_ratio,
                "must be 1..=100",
            ));
        }
        if self.max_message_size == 0 || self.max_message_size > 1024 * 1024 * 1024 {
            return Err(Self::bad(
                "maxMessageSize",
                self.max_message_size,
                "must be 1..=1 GiB",
            ));
        }
        // The store needs a maximal record (body limit + 64 KiB of headers, + an 8-byte
        // end-of-file blank) to fit into one commitlog segment.
        let max_record = self.max_message_size as u64 + 64 * 1024 + 8;
        if self.mapped_file_size_commit_log < max_record {
            return Err(Self::bad(
                "mappedFileSizeCommitLog",
                self.mapped_file_size_commit_log,
                &format!("must hold a maximal record of {max_record} bytes (maxMessageSize + 64 KiB + 8)"),
            ));
        }
        if self.flush_consumer_offset_interval < 100 {
            return Err(Self::bad(
                "flushConsumerOffsetInterval",
                self.flush_consumer_offset_interval,
                "must be >= 100 ms",
            ));
        }
        if self.dleger_runtime_threads > 8 {
            return Err(Self::bad(
                "dLegerRuntimeThreads",
                self.dleger_runtime_threads,
                "must be 0 (the broker's runtime) ..= 8",
            ));
        }
        if self.dleger_fsync_linger_us > dledger::storage::thread::MAX_FSYNC_LINGER_US {
            return Err(Self::bad(
                "dLegerFsyncLingerUs",
                self.dleger_fsync_linger_us,
                "must be 0 ..= 10000",
            ));
        }
        if self.dispatch_interval_us > store::MAX_DISPATCH_INTERVAL_US {
            return Err(Self::bad(
                "dispatchIntervalUs",
                self.dispatch_interval_us,
                "must be 0 ..= 100000",
            ));
        }
        if self.runtime_worker_threads > MAX_RUNTIME_WORKER_THREADS {
            return Err(Self::bad(
                "runtimeWorkerThreads",
                self.runtime_worker_threads,
                &format!("must be 0 (auto) ..= {MAX_RUNTIME_WORKER_THREADS}"),
            ));
        }
        if self.broker_name.is_empty() || self.broker_cluster_name.is_empty() {
            return Err(Self::bad(
                "brokerName",
                &self.broker_name,
                "brokerName and brokerClusterName must not be empty",
            ));
        }
        parse_delay_levels(&self.message_delay_level)
            .map_err(|reason| Self::bad("messageDelayLevel", &self.message_delay_level, &reason))?;
        for (key, addr) in [
            ("namesrvAddr", &self.namesrv_addr),
            ("withNamesrv", &self.with_namesrv),
        ] {
            if let Some(addr) = addr {
                for a in addr.split(';').filter(|a| !a.trim().is_empty()) {
                    if !a.trim().contains(':') {
                        return Err(Self::bad(key, addr, "expected host:port[;host:port]"));
                    }
                }
            }
        }
        if self.enable_dleger_commit_log
            && (self.dleger_group.is_none()
                || self.dleger_peers.is_none()
                || self.dleger_self_id.is_none())
        {
            return Err(Self::bad(
                "enableDLegerCommitLog",
                true,
                "needs dLegerGroup, dLegerPeers and dLegerSelfId",
            ));
        }
        if self.enable_dleger_commit_log {
            crate::group::Peers::from_config(self)?;
            for (key, value, range) in [
                (
                    "dLegerMetadataBatchIntervalMs",
                    self.dleger_metadata_batch_interval_ms,
                    10..=10_000,
                ),
                (
                    "dLegerMetadataCheckpointIntervalMs",
                    self.dleger_metadata_checkpoint_interval_ms,
                    100..=86_400_000,
                ),
                (
                    "dLegerTransferLeaderTimeoutMs",
                    self.dleger_transfer_leader_timeout_ms,
                    100..=600_000,
                ),
                (
                    "dLegerForwardTimeoutMs",
                    self.dleger_forward_timeout_ms,
                    100..=600_000,
                ),
            ] {
                if !range.contains(&value) {
                    let reason = format!("must be {}..={} ms", range.start(), range.end());
                    return Err(Self::bad(key, value, &reason));
                }
            }
        }
        Ok(())
    }

    /// Worker threads for the broker runtime. Auto = half the CPUs (at least one): the
    /// store's own threads (DLedger node loop and storage thread, dispatcher, flusher) need
    /// the other half, and every extra idle worker adds cross-CPU wake-ups (tokio wakes a
    /// parked worker to steal new tasks). Measured on the 2-CPU VM (BENCHMARKS.md), one
    /// worker instead of two: three-replica group 17-21k -> 26-27k sends/s, leader CPU
    /// 31-36 -> 23-24 µs/msg.
    pub fn runtime_worker_threads(&self) -> usize {
        if self.runtime_worker_threads > 0 {
            return self.runtime_worker_threads;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus / 2).max(1)
    }

    /// NameServer addresses from `namesrvAddr` (';'-separated), plus the embedded one
    /// (`withNamesrv`) when it is not already listed.
    pub fn namesrv_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .namesrv_addr
            .as_deref()
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(embedded) = &self.with_namesrv {
            let embedded = embedded.trim().to_string();
            if !addrs.contains(&embedded) {
                addrs.push(embedded);
            }
        }
        addrs
    }

    /// A throwaway local broker for tests: data under `dir`, a free port, small commitlog
    /// segments, no NameServer.
    pub fn for_test(dir: &Path) -> BrokerConfig {
        BrokerConfig {
            store_path_root_dir: dir.display().to_string(),
            listen_port: 0,
            mapped_file_size_commit_log: 8 * 1024 * 1024,
            mapped_file_size_consume_queue: 10_000 * 20,
            ..BrokerConfig::default()
        }
    }

    /// `brokerIP1:listenPort`, the address clients connect to.
    pub fn broker_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.listen_port)
    }

    /// `brokerIP2:haListenPort` (brokerIP2 defaults to brokerIP1).
    pub fn ha_server_addr(&self) -> String {
        let ip = self.broker_ip2.as_deref().unwrap_or(&self.broker_ip1);
        format!("{}:{}", ip, self.ha_listen_port)
    }

    /// Delay of every level in ms (level n = index n-1).
    pub fn delay_levels_ms(&self) -> Vec<u64> {
        // validate() checked it; an unparsable value cannot reach here through load().
        parse_delay_levels(&self.message_delay_level).unwrap_or_default()
    }

    /// `storePathRootDir/config`, where topics.json and friends live.
    pub fn config_dir(&self) -> PathBuf {
        Path::new(&self.store_path_root_dir).join("config")
    }
}

/// Most delay levels we accept (Java uses 18).
pub const DELAY_LEVELS_MAX: usize = 64;

/// Parse `"1s 5s 1m 2h 1d"` into milliseconds.
pub fn parse_delay_levels(text: &str) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        let (num, unit) = token.split_at(token.len().saturating_sub(1));
        let unit_ms: u64 = match unit {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("level `{token}` has no unit s/m/h/d")),
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("level `{token}` is not a number"))?;
        out.push(n.saturating_mul(unit_ms));
    }
    if out.is_empty() || out.len() > DELAY_LEVELS_MAX {
        return Err(format!("expected 1..={DELAY_LEVELS_MAX} levels"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn properties_syntax() {
        let text = "# comment\n! also comment\n\n  brokerName = broker-x  \nlistenPort:10920\n\
                    brokerClusterName  MyCluster\nmessageDelayLevel=1s 5s \\\n   10s\n\
                    path=C\\:\\\\dir\\tx\nuni=\\u0041b\nempty=\n";
        let p = parse_properties(text);
        assert_eq!(
            p,
            pairs(&[
                ("brokerName", "broker-x"),
                ("listenPort", "10920"),
                ("brokerClusterName", "MyCluster"),
                ("messageDelayLevel", "1s 5s 10s"),
                ("path", "C:\\dir\tx"),
                ("uni", "Ab"),
                ("empty", ""),
            ])
        );
    }

    #[test]
    fn load_file_with_overrides_and_unknown_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.conf");
        std::fs::write(
            &path,
            "brokerName=b1\n# listenPort=1\nlistenPort=10950\nflushDiskType=SYNC_FLUSH\n\
             autoCreateTopicEnable=false\nsomeFutureKey=1\nsendMessageThreadPoolNums=4\n",
        )
        .unwrap();
        let loaded = BrokerConfig::load(
            Some(&path),
            &pairs(&[
                ("listenPort", "10960"),
                ("namesrvAddr", "127.0.0.1:9876;127.0.0.1:9877"),
            ]),
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.broker_name, "b1");
        assert_eq!(c.listen_port, 10960, "command line wins over the file");
        assert_eq!(c.flush_disk_type, FlushDiskType::SyncFlush);
        assert!(!c.auto_create_topic_enable);
        assert_eq!(c.namesrv_addrs(), vec!["127.0.0.1:9876", "127.0.0.1:9877"]);
        assert_eq!(loaded.unknown_keys, vec!["someFutureKey".to_string()]);
        assert_eq!(c.broker_addr(), "127.0.0.1:10960");
    }

    #[test]
    fn bad_value_names_the_key() {
        for (k, v) in [
            ("listenPort", "abc"),
            ("listenPort", "70000"),
            ("flushDiskType", "SOMETIMES"),
            ("autoCreateTopicEnable", "yes"),
            ("defaultTopicQueueNums", "0"),
            ("messageDelayLevel", "1s 5x"),
            ("runtimeWorkerThreads", "257"),
            ("runtimeWorkerThreads", "-1"),
            ("dLegerRuntimeThreads", "9"),
            ("dLegerFsyncLingerUs", "10001"),
            ("dispatchIntervalUs", "100001"),
        ] {
            let err = BrokerConfig::from_pairs(&pairs(&[(k, v)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(k), "{text} should name {k}");
        }
    }

    #[test]
    fn defaults_are_java_defaults() {
        let c = BrokerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.default_topic_queue_nums, 8);
        assert_eq!(c.delay_levels_ms().len(), 18);
        assert_eq!(c.delay_levels_ms()[17], 7_200_000);
        assert_eq!(c.broker_permission, 6);
        assert_eq!(c.max_message_size, 4 * 1024 * 1024);
        assert!(c.namesrv_addrs().is_empty());
        let c = BrokerConfig {
            namesrv_addr: Some("127.0.0.1:9876".into()),
            with_namesrv: Some("127.0.0.1:9877".into()),
            ..BrokerConfig::default()
        };
        assert_eq!(c.namesrv_addrs(), vec!["127.0.0.1:9876", "127.0.0.1:9877"]);
    }

    #[test]
    fn runtime_worker_threads_auto_is_half_the_cpus_and_a_value_wins() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let auto = BrokerConfig::default().runtime_worker_threads();
        assert_eq!(auto, (cpus / 2).max(1));
        let c = BrokerConfig::from_pairs(&pairs(&[("runtimeWorkerThreads", "3")])).unwrap();
        assert_eq!(c.config.runtime_worker_threads(), 3);
    }

    #[test]
    fn command_line() {
        let cl = CommandLine::parse(
            [
                "-c",
                "conf/broker.conf",
                "-n",
                "127.0.0.1:9876",
                "--listenPort=10999",
                "--brokerName",
                "bx",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap();
        assert_eq!(cl.config_file, Some(PathBuf::from("conf/broker.conf")));
        assert_eq!(
            cl.overrides,
            pairs(&[
                ("namesrvAddr", "127.0.0.1:9876"),
                ("listenPort", "10999"),
                ("brokerName", "bx")
            ])
        );
        assert!(CommandLine::parse(["stray".to_string()]).is_err());
        assert!(CommandLine::parse(["-c".to_string()]).is_err());
    }
}
