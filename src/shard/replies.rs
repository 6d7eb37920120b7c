//! The replies every part of a shard builds: acks, errors, refusals, and the frame around a
//! message. A leaf: it knows messages, not the shard.

use crate::protocol::message::{
    event_action as ea, presence_action, record_action as ra, rpc_action, topic, Message,
};
use crate::protocol::ws;
use bytes::{Bytes, BytesMut};

/// One WebSocket binary frame holding `msg`, built in a single buffer.
pub fn ws_frame(msg: &Message) -> Bytes {
    let len = msg.encoded_len();
    let mut out = BytesMut::with_capacity(ws::frame_header_len(len) + len);
    ws::put_frame_header(&mut out, ws::OP_BINARY, len);
    msg.encode_into(&mut out);
    out.freeze()
}

/// The ack of `msg`: same topic and action, its correlation id.
/// What a record's subscribers get when they must take it whole: UPDATE with its version and
/// data, or DELETED when it is gone.
pub fn whole_record_frame(name: &Bytes, record: Option<&crate::store::StoredRecord>) -> Bytes {
    use crate::protocol::message::{record_action, topic};
    match record {
        Some(record) => ws_frame(&Message {
            name: Some(name.clone()),
            version: Some(record.version),
            data: Some(record.data.clone()),
            ..Message::new(topic::RECORD, record_action::UPDATE)
        }),
        None => ws_frame(&Message {
            name: Some(name.clone()),
            ..Message::new(topic::RECORD, record_action::DELETED)
        }),
    }
}

pub fn ack(msg: &Message) -> Message {
    Message {
        correlation_id: msg.correlation_id.clone(),
        is_ack: Some(true),
        ..Message::new(msg.topic, msg.action)
    }
}

/// An error `action` answering `msg`.
pub fn error_reply(msg: &Message, action: i32) -> Message {
    Message {
        name: msg.name.clone(),
        correlation_id: msg.correlation_id.clone(),
        original_action: Some(msg.action),
        is_error: Some(true),
        // The client matches errors of acknowledged writes by this flag.
        is_write_ack: msg.is_write_ack,
        ..Message::new(msg.topic, action)
    }
}

/// INVALID_MESSAGE_DATA with the reason as a JSON string.
pub fn invalid_data(msg: &Message, reason: &str) -> Message {
    Message {
        data: serde_json::to_string(reason).ok().map(Bytes::from),
        ..error_reply(msg, invalid_data_action(msg.topic))
    }
}

/// The topic's INVALID_MESSAGE_DATA.
pub fn invalid_data_action(topic: i32) -> i32 {
    match topic {
        topic::EVENT => ea::INVALID_MESSAGE_DATA,
        topic::RECORD => ra::INVALID_MESSAGE_DATA,
        _ => rpc_action::INVALID_MESSAGE_DATA,
    }
}

/// Why a message is refused: its rule denied it, or failed (the reference answers a rule
/// that throws with MESSAGE_PERMISSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Denied,
    Failed,
}

fn refusal_action(topic: i32, why: Refused) -> i32 {
    use presence_action as pa;
    match (topic, why) {
        (topic::EVENT, Refused::Denied) => ea::MESSAGE_DENIED,
        (topic::EVENT, Refused::Failed) => ea::MESSAGE_PERMISSION_ERROR,
        (topic::RECORD, Refused::Denied) => ra::MESSAGE_DENIED,
        (topic::RECORD, Refused::Failed) => ra::MESSAGE_PERMISSION_ERROR,
        (topic::RPC, Refused::Denied) => rpc_action::MESSAGE_DENIED,
        (topic::RPC, Refused::Failed) => rpc_action::MESSAGE_PERMISSION_ERROR,
        (_, Refused::Denied) => pa::MESSAGE_DENIED,
        (_, Refused::Failed) => pa::MESSAGE_PERMISSION_ERROR,
    }
}

/// MESSAGE_DENIED or MESSAGE_PERMISSION_ERROR for `name`, in the reference's shape.
pub fn refused(msg: &Message, name: Option<Bytes>, why: Refused) -> Message {
    Message {
        name,
        correlation_id: msg.correlation_id.clone(),
        original_action: Some(msg.action),
        is_error: Some(true),
        is_write_ack: msg.is_write_ack.filter(|w| *w),
        ..Message::new(msg.topic, refusal_action(msg.topic, why))
    }
}

/// MESSAGE_DENIED for `name`.
pub fn denied(msg: &Message, name: Option<Bytes>) -> Message {
    refused(msg, name, Refused::Denied)
}
