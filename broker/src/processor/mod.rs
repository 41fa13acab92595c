//! Request processors, one file per request family (mini-redis style). Each exposes a
//! struct implementing `remoting::server::RequestProcessor` and `pub const CODES`.
//!
//! | File | Codes |
//! |---|---|
//! | `heartbeat` | HEART_BEAT 34, UNREGISTER_CLIENT 35, CHECK_CLIENT_CONFIG 46 |
//! | `consumer` | GET_CONSUMER_LIST_BY_GROUP 38 (+ NOTIFY_CONSUMER_IDS_CHANGED 40 out) |
//! | `offset` | QUERY_CONSUMER_OFFSET 14, UPDATE_CONSUMER_OFFSET 15 |
//! | `lock` | LOCK_BATCH_MQ 41, UNLOCK_BATCH_MQ 42 |
//! | `admin` | topic / subscription-group admin, runtime info, connection lists |
//! | `send` (B) | SEND_MESSAGE 10/310, SEND_BATCH_MESSAGE 320, CONSUMER_SEND_MSG_BACK 36 |
//! | `pull` (B) | PULL_MESSAGE 11, LITE_PULL_MESSAGE 361 |
//! | `query` (B) | 12, 29–33 |
//! | `stats` (B) | GET_TOPIC_STATS_INFO 202, GET_CONSUME_STATS 208 |

pub mod admin;
pub mod consumer;
pub mod heartbeat;
pub mod lock;
pub mod offset;
// Engineer B's processors.
pub mod pull;
pub mod query;
pub mod send;
pub mod stats;

use remoting::codes::response;
use remoting::server::ProcessFuture;
use remoting::RemotingCommand;

/// A response future that is already complete.
pub(crate) fn ready(resp: RemotingCommand) -> ProcessFuture {
    Box::pin(async move { Ok(Some(resp)) })
}

/// SYSTEM_ERROR naming what was wrong with the request (bad header or body); Java's
/// broker answers undecodable requests the same way.
pub(crate) fn bad_request(req: &RemotingCommand, what: impl std::fmt::Display) -> RemotingCommand {
    tracing::debug!(code = req.code, ext = ?req.ext_fields, error = %what, "bad request");
    RemotingCommand::error_response(req, response::SYSTEM_ERROR, what.to_string())
}

pub(crate) fn success(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response::SUCCESS)
}
