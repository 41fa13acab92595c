//! LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42) carry no header fields (4.9.7); 5.x sends
//! `LockBatchMqRequestHeader`/`UnlockBatchMqRequestHeader` with only the optional RPC key
//! `bname`. The payload is a JSON body: see `crate::body::{LockBatchRequestBody,
//! LockBatchResponseBody, UnlockBatchRequestBody}` (codes.md §3.9).

command_header! {
    pub struct LockBatchMqRequestHeader {
        bname: Option<String> => "bname",
    }
}

command_header! {
    pub struct UnlockBatchMqRequestHeader {
        bname: Option<String> => "bname",
    }
}
