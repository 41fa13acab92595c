//! Broker-side NameServer client: one kept-open connection per configured NameServer,
//! REGISTER_BROKER sent to all of them concurrently, and a periodic registration task.
//!
//! Why kept-open connections: the NameServer drops a broker from every route as soon as
//! the connection it registered on closes (namesrv.md §1), so a connect-register-close
//! pattern would make the broker flap out of the routes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use remoting::client::{ClientConfig, RemotingClient};
use remoting::codes::{request, response};
use remoting::shutdown::Shutdown;
use remoting::{RemotingCommand, RemotingError};
use tokio::sync::{watch, Mutex, Notify};
use tokio::task::JoinHandle;

use crate::body::{
    ClusterInfo, DataVersion, KvTable, RegisterBrokerBody, RegisterBrokerResult,
    TopicConfigSerializeWrapper, TopicRouteData,
};
use crate::error::NamesrvClientError;
use crate::headers::{
    GetRouteInfoRequestHeader, QueryDataVersionRequestHeader, QueryDataVersionResponseHeader,
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, UnRegisterBrokerRequestHeader,
};

/// Most NameServers one client talks to (bounds the fan-out).
pub const MAX_NAMESRV_ADDRS: usize = 64;
/// Default period of the registration task (Java `registerNameServerPeriod`).
pub const DEFAULT_REGISTER_INTERVAL_MS: u64 = 30_000;
/// Bounds accepted for the registration period (Java clamps to 10–60 s; we allow shorter
/// periods for tests but never a busy loop).
pub const MIN_REGISTER_INTERVAL_MS: u64 = 10;
pub const MAX_REGISTER_INTERVAL_MS: u64 = 60_000;
/// First retry delay after a round some NameServer rejected or missed (doubles per failure).
pub const RETRY_BASE_MS: u64 = 1_000;

/// Timeouts of the NameServer calls.
#[derive(Debug, Clone)]
pub struct NamesrvClientConfig {
    pub connect_timeout_ms: u64,
    /// REGISTER_BROKER (Java 4.9.7 `registerBrokerTimeoutMills` = 6000).
    pub register_timeout_ms: u64,
    /// UNREGISTER_BROKER (Java: 3000).
    pub unregister_timeout_ms: u64,
    /// Route/cluster/data-version queries.
    pub query_timeout_ms: u64,
    pub client: ClientConfig,
}

impl Default for NamesrvClientConfig {
    fn default() -> Self {
        NamesrvClientConfig {
            connect_timeout_ms: 3_000,
            register_timeout_ms: 6_000,
            unregister_timeout_ms: 3_000,
            query_timeout_ms: 3_000,
            client: ClientConfig::default(),
        }
    }
}

/// Everything one REGISTER_BROKER carries.
#[derive(Debug, Clone, Default)]
pub struct BrokerRegistration {
    pub cluster_name: String,
    pub broker_name: String,
    /// `ip:port` clients connect to.
    pub broker_addr: String,
    /// 0 = master, >= 1 = slave.
    pub broker_id: i64,
    /// `ip:haPort`.
    pub ha_server_addr: String,
    /// Full topic table + its DataVersion (bump the version on every topic change).
    pub topic_config_wrapper: TopicConfigSerializeWrapper,
    pub filter_server_list: Vec<String>,
    /// Send the compressed body form (Java `compressedRegister`, default false).
    pub compressed: bool,
}

impl BrokerRegistration {
    /// The request, built once and cloned per NameServer (the body is shared `Bytes`).
    pub fn to_command(&self) -> RemotingCommand {
        let body = RegisterBrokerBody {
            filter_server_list: self.filter_server_list.clone(),
            topic_config_serialize_wrapper: self.topic_config_wrapper.clone(),
        }
        .encode(self.compressed);
        let header = RegisterBrokerRequestHeader {
            broker_name: self.broker_name.clone(),
            broker_addr: self.broker_addr.clone(),
            cluster_name: self.cluster_name.clone(),
            ha_server_addr: self.ha_server_addr.clone(),
            broker_id: self.broker_id,
            heartbeat_timeout_millis: None,
            enable_acting_master: None,
            compressed: Some(self.compressed),
            body_crc32: Some(crc32_positive(&body)),
        };
        // RemotingCommand::request carries OUR_VERSION (>= 37, so the body is read as
        // RegisterBrokerBody; namesrv.md §2).
        RemotingCommand::request(request::REGISTER_BROKER)
            .with_header(&header)
            .with_body(Bytes::from(body))
    }
}

/// `UtilAll.crc32(body) & 0x7FFFFFFF` (Java sends it; 0 would disable the check).
pub fn crc32_positive(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

struct Slot {
    addr: String,
    conn: Mutex<Option<RemotingClient>>,
}

/// Talks to every configured NameServer. Cheap to share behind an `Arc`.
pub struct NamesrvClient {
    slots: Vec<Slot>,
    config: NamesrvClientConfig,
}

impl NamesrvClient {
    /// Addresses beyond [`MAX_NAMESRV_ADDRS`] are ignored (with a warning). No connection
    /// is opened until the first call.
    pub fn new(namesrv_addrs: Vec<String>, config: NamesrvClientConfig) -> NamesrvClient {
        if namesrv_addrs.len() > MAX_NAMESRV_ADDRS {
            tracing::warn!(
                configured = namesrv_addrs.len(),
                limit = MAX_NAMESRV_ADDRS,
                "too many NameServer addresses; using the first ones"
            );
        }
        let slots = namesrv_addrs
            .into_iter()
            .take(MAX_NAMESRV_ADDRS)
            .map(|addr| Slot {
                addr,
                conn: Mutex::new(None),
            })
            .collect();
        NamesrvClient { slots, config }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.addr.clone()).collect()
    }

    /// A live connection to `slot`, reconnecting if there is none or it closed. The flag
    /// tells whether the connection was just opened.
    async fn connection(&self, slot: &Slot) -> Result<(RemotingClient, bool), NamesrvClientError> {
        let mut guard = slot.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok((c.clone(), false));
            }
            tracing::info!(namesrv = %slot.addr, "connection to NameServer closed; reconnecting");
        }
        *guard = None;
        let timeout_ms = self.config.connect_timeout_ms;
        let connect = RemotingClient::connect(&slot.addr, self.config.client.clone());
        let client = match tokio::time::timeout(Duration::from_millis(timeout_ms), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(source)) => {
                return Err(NamesrvClientError::Remoting {
                    addr: slot.addr.clone(),
                    source,
                })
            }
            Err(_) => {
                return Err(NamesrvClientError::ConnectTimeout {
                    addr: slot.addr.clone(),
                    timeout_ms,
                })
            }
        };
        *guard = Some(client.clone());
        Ok((client, true))
    }

    /// Forget `client` if it is still the cached connection of `slot`.
    async fn drop_connection(&self, slot: &Slot, client: &RemotingClient) {
        let mut guard = slot.conn.lock().await;
        if guard
            .as_ref()
            .is_some_and(|c| c.connection().id() == client.connection().id())
        {
            *guard = None;
        }
        client.close();
    }

    /// One request/response with one NameServer. A connection-level failure on a reused
    /// connection (the NameServer restarted since) is retried once on a fresh connection;
    /// every NameServer request we send is idempotent.
    async fn invoke(
        &self,
        slot: &Slot,
        cmd: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, NamesrvClientError> {
        const MAX_ATTEMPTS: usize = 2;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (client, fresh) = self.connection(slot).await?;
            match client.invoke(cmd.clone(), timeout_ms).await {
                Ok(resp) => return Ok(resp),
                Err(source) => {
                    let connection_broken =
                        !matches!(source, RemotingError::Timeout { .. }) || client.is_closed();
                    if connection_broken {
                        self.drop_connection(slot, &client).await;
                    }
                    if connection_broken && !fresh && attempt < MAX_ATTEMPTS {
                        continue;
                    }
                    return Err(NamesrvClientError::Remoting {
                        addr: slot.addr.clone(),
                        source,
                    });
                }
            }
        }
    }

    fn check_success(slot: &Slot, resp: &RemotingCommand) -> Result<(), NamesrvClientError> {
        if resp.code == response::SUCCESS {
            Ok(())
        } else {
            Err(NamesrvClientError::Response {
                addr: slot.addr.clone(),
                code: resp.code,
                remark: resp.remark.clone().unwrap_or_default(),
            })
        }
    }

    async fn register_one(
        &self,
        slot: &Slot,
        cmd: RemotingCommand,
    ) -> Result<RegisterBrokerResult, NamesrvClientError> {
        let resp = self
            .invoke(slot, cmd, self.config.register_timeout_ms)
            .await?;
        Self::check_success(slot, &resp)?;
        let header: RegisterBrokerResponseHeader =
            resp.decode_header()
                .map_err(|source| NamesrvClientError::Remoting {
                    addr: slot.addr.clone(),
                    source,
                })?;
        let kv_table = if resp.body.is_empty() {
            KvTable::default()
        } else {
            KvTable::decode(&resp.body).map_err(|source| NamesrvClientError::Body {
                addr: slot.addr.clone(),
                source,
            })?
        };
        Ok(RegisterBrokerResult {
            ha_server_addr: header.ha_server_addr.filter(|s| !s.is_empty()),
            master_addr: header.master_addr.filter(|s| !s.is_empty()),
            kv_table,
        })
    }

    /// REGISTER_BROKER to every NameServer concurrently; one result per configured address
    /// (same order as `addrs()`).
    pub async fn register_broker_each(
        &self,
        info: &BrokerRegistration,
    ) -> Vec<(String, Result<RegisterBrokerResult, NamesrvClientError>)> {
        let cmd = info.to_command();
        let calls = self.slots.iter().map(|slot| async {
            (
                slot.addr.clone(),
                self.register_one(slot, cmd.clone()).await,
            )
        });
        join_all(calls).await
    }

    /// REGISTER_BROKER to every NameServer concurrently. `Ok` with the successful answers
    /// if at least one NameServer accepted; `Err(AllFailed)` otherwise.
    pub async fn register_broker(
        &self,
        info: &BrokerRegistration,
    ) -> Result<Vec<RegisterBrokerResult>, NamesrvClientError> {
        if self.slots.is_empty() {
            return Err(NamesrvClientError::NoNameServers);
        }
        collect_any(self.register_broker_each(info).await)
    }

    /// UNREGISTER_BROKER to every NameServer concurrently (at shutdown). Returns how many
    /// NameServers accepted; `Err` only if none did.
    pub async fn unregister_broker(
        &self,
        info: &BrokerRegistration,
    ) -> Result<usize, NamesrvClientError> {
        if self.slots.is_empty() {
            return Err(NamesrvClientError::NoNameServers);
        }
        let header = UnRegisterBrokerRequestHeader {
            broker_name: info.broker_name.clone(),
            broker_addr: info.broker_addr.clone(),
            cluster_name: info.cluster_name.clone(),
            broker_id: info.broker_id,
        };
        let cmd = RemotingCommand::request(request::UNREGISTER_BROKER).with_header(&header);
        let calls = self.slots.iter().map(|slot| {
            let cmd = cmd.clone();
            async move {
                let result = async {
                    let resp = self
                        .invoke(slot, cmd, self.config.unregister_timeout_ms)
                        .await?;
                    Self::check_success(slot, &resp)
                }
                .await;
                (slot.addr.clone(), result)
            }
        });
        collect_any(join_all(calls).await).map(|ok| ok.len())
    }

    /// QUERY_DATA_VERSION to every NameServer: `true` = that NameServer holds a different
    /// DataVersion for this broker (a re-register is needed).
    pub async fn query_data_version_each(
        &self,
        info: &BrokerRegistration,
    ) -> Vec<(String, Result<bool, NamesrvClientError>)> {
        let header = QueryDataVersionRequestHeader {
            broker_name: info.broker_name.clone(),
            broker_addr: info.broker_addr.clone(),
            cluster_name: info.cluster_name.clone(),
            broker_id: info.broker_id,
        };
        let cmd = RemotingCommand::request(request::QUERY_DATA_VERSION)
            .with_header(&header)
            .with_body(Bytes::from(info.topic_config_wrapper.data_version.encode()));
        let calls = self.slots.iter().map(|slot| {
            let cmd = cmd.clone();
            async move {
                let result = async {
                    let resp = self.invoke(slot, cmd, self.config.query_timeout_ms).await?;
                    Self::check_success(slot, &resp)?;
                    let h: QueryDataVersionResponseHeader =
                        resp.decode_header()
                            .map_err(|source| NamesrvClientError::Remoting {
                                addr: slot.addr.clone(),
                                source,
                            })?;
                    Ok(h.changed.unwrap_or(true))
                }
                .await;
                (slot.addr.clone(), result)
            }
        });
        join_all(calls).await
    }

    /// GET_ROUTEINFO_BY_TOPIC, asking NameServers in order until one answers.
    /// `Ok(None)` = TOPIC_NOT_EXIST.
    pub async fn get_route_info(
        &self,
        topic: &str,
    ) -> Result<Option<TopicRouteData>, NamesrvClientError> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_string(),
            accept_standard_json_only: None,
        };
        let cmd = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
        let mut errors = Vec::new();
        for slot in &self.slots {
            let result = async {
                let resp = self
                    .invoke(slot, cmd.clone(), self.config.query_timeout_ms)
                    .await?;
                if resp.code == response::TOPIC_NOT_EXIST {
                    return Ok(None);
                }
                Self::check_success(slot, &resp)?;
                TopicRouteData::decode(&resp.body)
                    .map(Some)
                    .map_err(|source| NamesrvClientError::Body {
                        addr: slot.addr.clone(),
                        source,
                    })
            }
            .await;
            match result {
                Ok(route) => return Ok(route),
                Err(e) => errors.push(e),
            }
        }
        Err(all_failed(errors))
    }

    /// GET_BROKER_CLUSTER_INFO from the first NameServer that answers.
    pub async fn get_cluster_info(&self) -> Result<ClusterInfo, NamesrvClientError> {
        let cmd = RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO);
        let mut errors = Vec::new();
        for slot in &self.slots {
            let result = async {
                let resp = self
                    .invoke(slot, cmd.clone(), self.config.query_timeout_ms)
                    .await?;
                Self::check_success(slot, &resp)?;
                ClusterInfo::decode(&resp.body).map_err(|source| NamesrvClientError::Body {
                    addr: slot.addr.clone(),
                    source,
                })
            }
            .await;
            match result {
                Ok(info) => return Ok(info),
                Err(e) => errors.push(e),
            }
        }
        Err(all_failed(errors))
    }

    /// Start the registration task: registers at once, then every `interval_ms` and
    /// whenever [`RegisterHandle::register_now`] is called (bursts coalesce into one
    /// extra round). Each round calls `source` for the current registration, so a role
    /// change (new brokerId) or a topic change (new DataVersion) is picked up. Stops
    /// when `shutdown` fires; UNREGISTER is left to the caller. Must be called inside a
    /// tokio runtime.
    pub fn start_periodic(
        self: Arc<Self>,
        interval_ms: u64,
        source: RegistrationSource,
        shutdown: Shutdown,
    ) -> RegisterHandle {
        let interval_ms = interval_ms.clamp(MIN_REGISTER_INTERVAL_MS, MAX_REGISTER_INTERVAL_MS);
        let (rounds_tx, _) = watch::channel(0u64);
        let inner = Arc::new(HandleInner {
            trigger: Notify::new(),
            pending: AtomicBool::new(false),
            rounds: rounds_tx,
            last_ok: AtomicU64::new(0),
            last_errors: StdMutex::new(Vec::new()),
            last_results: StdMutex::new(Vec::new()),
            task: StdMutex::new(None),
        });
        let task_inner = inner.clone();
        let task = tokio::spawn(async move {
            let client = self;
            let mut failed_rounds: u32 = 0;
            loop {
                if shutdown.is_triggered() {
                    break;
                }
                // Triggers up to here are served by this round (source() is read after).
                task_inner.pending.store(false, Ordering::SeqCst);
                let registration = source();
                let results = tokio::select! {
                    r = client.register_broker_each(&registration) => r,
                    _ = shutdown.wait() => break,
                };
                let all_ok = task_inner.finish_round(results);
                // After a failed round retry sooner (1 s, 2 s, 4 s … up to the interval) so a
                // NameServer that starts late or restarts learns about us quickly.
                failed_rounds = if all_ok {
                    0
                } else {
                    failed_rounds.saturating_add(1)
                };
                let wait_ms = if failed_rounds == 0 {
                    interval_ms
                } else {
                    let backoff = RETRY_BASE_MS.saturating_mul(1 << (failed_rounds - 1).min(16));
                    backoff.min(interval_ms)
                };
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                    _ = task_inner.trigger.notified() => {}
                }
            }
        });
        if let Ok(mut slot) = inner.task.lock() {
            *slot = Some(task);
        }
        RegisterHandle { inner }
    }
}

fn all_failed(mut errors: Vec<NamesrvClientError>) -> NamesrvClientError {
    if errors.is_empty() {
        NamesrvClientError::NoNameServers
    } else if errors.len() == 1 {
        errors.remove(0)
    } else {
        NamesrvClientError::AllFailed(errors)
    }
}

fn collect_any<T>(
    results: Vec<(String, Result<T, NamesrvClientError>)>,
) -> Result<Vec<T>, NamesrvClientError> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (addr, r) in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => {
                tracing::warn!(namesrv = %addr, error = %e, "NameServer call failed");
                errors.push(e);
            }
        }
    }
    if ok.is_empty() {
        Err(all_failed(errors))
    } else {
        Ok(ok)
    }
}

/// Produces the current registration (called once per round).
pub type RegistrationSource = Arc<dyn Fn() -> BrokerRegistration + Send + Sync>;

struct HandleInner {
    trigger: Notify,
    /// Set by `register_now`, cleared when a round starts: while set, further triggers
    /// add nothing (bursts coalesce into one round).
    pending: AtomicBool,
    rounds: watch::Sender<u64>,
    last_ok: AtomicU64,
    last_errors: StdMutex<Vec<String>>,
    last_results: StdMutex<Vec<RegisterBrokerResult>>,
    task: StdMutex<Option<JoinHandle<()>>>,
}

impl HandleInner {
    /// Record a round; returns whether every NameServer accepted it.
    fn finish_round(
        &self,
        results: Vec<(String, Result<RegisterBrokerResult, NamesrvClientError>)>,
    ) -> bool {
        let mut ok = 0u64;
        let mut errors = Vec::new();
        let mut answers = Vec::new();
        for (addr, r) in results {
            match r {
                Ok(answer) => {
                    ok += 1;
                    answers.push(answer);
                }
                Err(e) => {
                    tracing::warn!(namesrv = %addr, error = %e, "register broker failed");
                    errors.push(e.to_string());
                }
            }
        }
        self.last_ok.store(ok, Ordering::Relaxed);
        let all_ok = errors.is_empty();
        if let Ok(mut last) = self.last_errors.lock() {
            *last = errors;
        }
        if let Ok(mut last) = self.last_results.lock() {
            *last = answers;
        }
        self.rounds.send_modify(|n| *n += 1);
        all_ok
    }
}

/// Control of the registration task started by [`NamesrvClient::start_periodic`].
#[derive(Clone)]
pub struct RegisterHandle {
    inner: Arc<HandleInner>,
}

impl RegisterHandle {
    /// Ask for a registration round as soon as possible (topic or role change). Calls
    /// made while a round is pending or running coalesce into one further round.
    pub fn register_now(&self) {
        if !self.inner.pending.swap(true, Ordering::SeqCst) {
            self.inner.trigger.notify_one();
        }
    }

    /// Rounds completed so far (successful or not).
    pub fn rounds(&self) -> u64 {
        *self.inner.rounds.borrow()
    }

    /// Wait until at least `n` rounds completed.
    pub async fn wait_rounds(&self, n: u64) {
        let mut rx = self.inner.rounds.subscribe();
        // The sender lives in `inner`, which we hold, so the channel cannot close.
        let _ = rx.wait_for(|r| *r >= n).await;
    }

    /// How many NameServers accepted the last round.
    pub fn last_ok_count(&self) -> u64 {
        self.inner.last_ok.load(Ordering::Relaxed)
    }

    /// Errors of the last round (one string per failed NameServer).
    pub fn last_errors(&self) -> Vec<String> {
        self.inner
            .last_errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Answers of the last round from the NameServers that accepted it (a slave finds its
    /// master's address and HA address here).
    pub fn last_results(&self) -> Vec<RegisterBrokerResult> {
        self.inner
            .last_results
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Wait for the task to end (after its shutdown fired).
    pub async fn join(&self) {
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Bump helper for brokers: the DataVersion after a topic change.
pub fn next_data_version(current: &DataVersion) -> DataVersion {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    current.next(now_ms)
}
