//! END_TRANSACTION (37) / CHECK_TRANSACTION_STATE (39).
//!
//! Fields: `remoting/src/main/java/org/apache/rocketmq/remoting/protocol/header/`
//! `EndTransactionRequestHeader.java`, `CheckTransactionStateRequestHeader.java` (codes.md §3.13).

/// `commitOrRollback` values (MessageSysFlag transaction types).
pub const TRANSACTION_NOT_TYPE: i32 = 0;
pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;

command_header! {
    pub struct EndTransactionRequestHeader {
        producer_group: String => "producerGroup",
        /// Half message queue offset.
        tran_state_table_offset: i64 => "tranStateTableOffset",
        /// Half message commitlog offset.
        commit_log_offset: i64 => "commitLogOffset",
        commit_or_rollback: i32 => "commitOrRollback",
        from_transaction_check: Option<bool> => "fromTransactionCheck",
        msg_id: String => "msgId",
        transaction_id: Option<String> => "transactionId",
        /// 5.x only.
        topic: Option<String> => "topic",
    }
}

command_header! {
    /// Broker → producer, oneway.
    pub struct CheckTransactionStateRequestHeader {
        tran_state_table_offset: i64 => "tranStateTableOffset",
        commit_log_offset: i64 => "commitLogOffset",
        msg_id: Option<String> => "msgId",
        transaction_id: Option<String> => "transactionId",
        offset_msg_id: Option<String> => "offsetMsgId",
        /// 5.x only.
        topic: Option<String> => "topic",
    }
}
