//! A small blocking remoting client for admin and verification requests.
//!
//! It uses the `remoting` crate's frame and header codecs over a std `TcpStream`, so tests need
//! no async runtime and can check the broker independently of the clients under test.
//! Request headers follow docs/protocol/codes.md (§3.7, §3.11, §3.12, §3.15) and namesrv.md §4.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use remoting::codes::{request, response};
use remoting::frame::{decode_frame_payload, encode_frame, DEFAULT_MAX_FRAME_SIZE_BYTES};
use remoting::RemotingCommand;

use crate::error::{HarnessError, Result};
use crate::record::{decode_records, Record};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Frames that are not our response (e.g. server→client requests) we skip before giving up.
const MAX_SKIPPED_FRAMES: usize = 64;

pub struct AdminClient {
    addr: String,
    stream: TcpStream,
    next_opaque: i32,
    timeout_ms: u64,
}

impl AdminClient {
    pub fn connect(addr: &str, timeout_ms: u64) -> Result<AdminClient> {
        let sock: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| HarnessError::Unexpected(format!("bad address {addr}: {e}")))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_millis(timeout_ms))?;
        stream.set_nodelay(true)?;
        Ok(AdminClient {
            addr: addr.to_string(),
            stream,
            next_opaque: 1,
            timeout_ms,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Send a request and wait for the response with the same opaque.
    pub fn invoke(&mut self, mut cmd: RemotingCommand) -> Result<RemotingCommand> {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        cmd.opaque = opaque;
        let frame = encode_frame(&cmd)?;
        self.stream
            .set_write_timeout(Some(Duration::from_millis(self.timeout_ms)))?;
        self.stream.write_all(&frame)?;
        let deadline = Instant::now() + Duration::from_millis(self.timeout_ms);
        for _ in 0..MAX_SKIPPED_FRAMES {
            let reply = self.read_frame(deadline)?;
            if reply.is_response() && reply.opaque == opaque {
                return Ok(reply);
            }
        }
        Err(HarnessError::Unexpected(format!(
            "no response to opaque {opaque} within {MAX_SKIPPED_FRAMES} frames"
        )))
    }

    fn read_frame(&mut self, deadline: Instant) -> Result<RemotingCommand> {
        let mut len_buf = [0u8; 4];
        self.read_exact_until(&mut len_buf, deadline)?;
        let len = i32::from_be_bytes(len_buf);
        let len = usize::try_from(len)
            .map_err(|_| HarnessError::Unexpected(format!("negative frame length {len}")))?;
        if len + 4 > DEFAULT_MAX_FRAME_SIZE_BYTES || len < 4 {
            return Err(HarnessError::Unexpected(format!("bad frame length {len}")));
        }
        let mut payload = vec![0u8; len];
        self.read_exact_until(&mut payload, deadline)?;
        Ok(decode_frame_payload(Bytes::from(payload))?)
    }

    fn read_exact_until(&mut self, buf: &mut [u8], deadline: Instant) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HarnessError::Timeout {
                    what: format!("a response from {}", self.addr),
                    timeout_ms: self.timeout_ms,
                });
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(HarnessError::Unexpected(format!(
                        "{} closed the connection",
                        self.addr
                    )))
                }
                Ok(n) => filled += n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn request(code: i32, fields: &[(&str, String)]) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(code);
        for (k, v) in fields {
            cmd.ext_fields.insert((*k).to_string(), v.clone());
        }
        cmd
    }

    fn expect_success(what: &str, resp: &RemotingCommand) -> Result<()> {
        if resp.code != response::SUCCESS {
            return Err(HarnessError::Unexpected(format!(
                "{what}: code {} remark {:?}",
                resp.code, resp.remark
            )));
        }
        Ok(())
    }

    fn ext_i64(what: &str, resp: &RemotingCommand, key: &str) -> Result<i64> {
        resp.ext(key)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                HarnessError::Unexpected(format!(
                    "{what}: response has no numeric `{key}`: {:?}",
                    resp.ext_fields
                ))
            })
    }

    /// UPDATE_AND_CREATE_TOPIC (17) on a broker: read/write queues = `queues`, perm RW.
    pub fn create_topic(&mut self, topic: &str, queues: i32) -> Result<()> {
        let cmd = Self::request(
            request::UPDATE_AND_CREATE_TOPIC,
            &[
                ("topic", topic.to_string()),
                ("defaultTopic", "TBW102".to_string()),
                ("readQueueNums", queues.to_string()),
                ("writeQueueNums", queues.to_string()),
                ("perm", "6".to_string()),
                ("topicFilterType", "SINGLE_TAG".to_string()),
                ("topicSysFlag", "0".to_string()),
                ("order", "false".to_string()),
            ],
        );
        let resp = self.invoke(cmd)?;
        Self::expect_success(&format!("create topic {topic}"), &resp)
    }

    /// GET_MAX_OFFSET (30): the next consume-queue offset to be written.
    pub fn max_offset(&mut self, topic: &str, queue_id: i32) -> Result<i64> {
        let cmd = Self::request(
            request::GET_MAX_OFFSET,
            &[
                ("topic", topic.to_string()),
                ("queueId", queue_id.to_string()),
            ],
        );
        let resp = self.invoke(cmd)?;
        Self::expect_success(&format!("max offset {topic}/{queue_id}"), &resp)?;
        Self::ext_i64("max offset", &resp, "offset")
    }

    /// GET_BROKER_RUNTIME_INFO (28): the `table` of string values.
    pub fn runtime_info(&mut self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let resp = self.invoke(Self::request(request::GET_BROKER_RUNTIME_INFO, &[]))?;
        Self::expect_success("runtime info", &resp)?;
        let v: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|e| HarnessError::Unexpected(format!("runtime info body: {e}")))?;
        match v.get("table") {
            Some(serde_json::Value::Object(t)) => Ok(t.clone()),
            _ => Err(HarnessError::Unexpected(
                "runtime info without a table".into(),
            )),
        }
    }

    /// (DLedger term, leader id) this node reports in its runtime info.
    pub fn dledger_view(&mut self) -> Result<(u64, String)> {
        let t = self.runtime_info()?;
        let term = t
            .get("dLegerTerm")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| HarnessError::Unexpected("no dLegerTerm in runtime info".into()))?;
        let leader = t
            .get("dLegerLeaderId")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        Ok((term, leader))
    }

    /// Sum of GET_MAX_OFFSET over queues `0..queues`.
    pub fn total_messages(&mut self, topic: &str, queues: i32) -> Result<i64> {
        let mut total = 0;
        for q in 0..queues {
            total += self.max_offset(topic, q)?;
        }
        Ok(total)
    }

    /// QUERY_CONSUMER_OFFSET (14): `None` for QUERY_NOT_FOUND.
    pub fn consumer_offset(
        &mut self,
        group: &str,
        topic: &str,
        queue_id: i32,
    ) -> Result<Option<i64>> {
        let cmd = Self::request(
            request::QUERY_CONSUMER_OFFSET,
            &[
                ("consumerGroup", group.to_string()),
                ("topic", topic.to_string()),
                ("queueId", queue_id.to_string()),
            ],
        );
        let resp = self.invoke(cmd)?;
        if resp.code == response::QUERY_NOT_FOUND {
            return Ok(None);
        }
        Self::expect_success(
            &format!("consumer offset {group} {topic}/{queue_id}"),
            &resp,
        )?;
        Self::ext_i64("consumer offset", &resp, "offset").map(Some)
    }

    /// GET_CONSUMER_LIST_BY_GROUP (38): client ids of the group's live consumers (empty when
    /// the broker answers with an error, as Java's does for an unknown group).
    pub fn consumer_ids(&mut self, group: &str) -> Result<Vec<String>> {
        let cmd = Self::request(
            request::GET_CONSUMER_LIST_BY_GROUP,
            &[("consumerGroup", group.to_string())],
        );
        let resp = self.invoke(cmd)?;
        if resp.code != response::SUCCESS {
            return Ok(Vec::new());
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
            HarnessError::Unexpected(format!("consumer list body is not JSON: {e}"))
        })?;
        Ok(v.get("consumerIdList")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// QUERY_MESSAGE (12) by key (or by UNIQ_KEY when `unique_key`); empty on QUERY_NOT_FOUND.
    pub fn query_message(
        &mut self,
        topic: &str,
        key: &str,
        max_num: i32,
        unique_key: bool,
    ) -> Result<Vec<Record>> {
        let mut cmd = Self::request(
            request::QUERY_MESSAGE,
            &[
                ("topic", topic.to_string()),
                ("key", key.to_string()),
                ("maxNum", max_num.to_string()),
                ("beginTimestamp", "0".to_string()),
                ("endTimestamp", i64::MAX.to_string()),
            ],
        );
        if unique_key {
            cmd.ext_fields
                .insert("_UNIQUE_KEY_QUERY".to_string(), "true".to_string());
        }
        let resp = self.invoke(cmd)?;
        if resp.code == response::QUERY_NOT_FOUND {
            return Ok(Vec::new());
        }
        Self::expect_success(&format!("query message {topic} key {key}"), &resp)?;
        decode_records(&resp.body)
    }

    /// VIEW_MESSAGE_BY_ID (33) by commitlog offset.
    pub fn view_message(&mut self, commit_log_offset: i64) -> Result<Record> {
        let cmd = Self::request(
            request::VIEW_MESSAGE_BY_ID,
            &[("offset", commit_log_offset.to_string())],
        );
        let resp = self.invoke(cmd)?;
        Self::expect_success(&format!("view message at {commit_log_offset}"), &resp)?;
        let mut records = decode_records(&resp.body)?;
        if records.len() != 1 {
            return Err(HarnessError::Unexpected(format!(
                "view message returned {} records, expected exactly 1",
                records.len()
            )));
        }
        Ok(records.remove(0))
    }

    /// GET_ROUTEINFO_BY_TOPIC (105) on a namesrv: the raw route JSON, `None` if TOPIC_NOT_EXIST.
    pub fn route(&mut self, topic: &str) -> Result<Option<String>> {
        let cmd = Self::request(
            request::GET_ROUTEINFO_BY_TOPIC,
            &[("topic", topic.to_string())],
        );
        let resp = self.invoke(cmd)?;
        if resp.code == response::TOPIC_NOT_EXIST {
            return Ok(None);
        }
        Self::expect_success(&format!("route of {topic}"), &resp)?;
        Ok(Some(String::from_utf8_lossy(&resp.body).into_owned()))
    }

    /// GET_BROKER_CLUSTER_INFO (106) on a namesrv: raw body (fastjson, not always strict JSON).
    pub fn cluster_info(&mut self) -> Result<String> {
        let resp = self.invoke(Self::request(request::GET_BROKER_CLUSTER_INFO, &[]))?;
        Self::expect_success("cluster info", &resp)?;
        Ok(String::from_utf8_lossy(&resp.body).into_owned())
    }
}
