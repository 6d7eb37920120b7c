//! The names deepstream gives topics and actions (its `TOPIC` and `ACTIONS` maps), for
//! monitoring output and error texts.

use super::message::topic;

/// A topic's name, e.g. `RECORD`.
pub fn topic_name(topic: i32) -> Option<&'static str> {
    Some(match topic {
        topic::PARSER => "PARSER",
        topic::CONNECTION => "CONNECTION",
        topic::AUTH => "AUTH",
        topic::EVENT => "EVENT",
        topic::RECORD => "RECORD",
        topic::RPC => "RPC",
        topic::PRESENCE => "PRESENCE",
        topic::MONITORING => "MONITORING",
        topic::CLUSTER => "CLUSTER",
        topic::LOCK => "LOCK",
        _ => return None,
    })
}

/// An action's name within its topic, e.g. `CREATEANDUPDATE`.
pub fn action_name(topic: i32, action: i32) -> Option<&'static str> {
    use super::message::*;
    Some(match topic {
        topic::PARSER => match action {
            parser_action::UNKNOWN_TOPIC => "UNKNOWN_TOPIC",
            parser_action::UNKNOWN_ACTION => "UNKNOWN_ACTION",
            parser_action::INVALID_MESSAGE => "INVALID_MESSAGE",
            parser_action::MESSAGE_PARSE_ERROR => "MESSAGE_PARSE_ERROR",
            parser_action::MAXIMUM_MESSAGE_SIZE_EXCEEDED => "MAXIMUM_MESSAGE_SIZE_EXCEEDED",
            parser_action::ERROR => "ERROR",
            _ => return None,
        },
        topic::CONNECTION => match action {
            connection_action::ERROR => "ERROR",
            connection_action::PING => "PING",
            connection_action::PONG => "PONG",
            connection_action::ACCEPT => "ACCEPT",
            connection_action::CHALLENGE => "CHALLENGE",
            connection_action::REJECT => "REJECT",
            connection_action::CLOSING => "CLOSING",
            connection_action::CLOSED => "CLOSED",
            connection_action::AUTHENTICATION_TIMEOUT => "AUTHENTICATION_TIMEOUT",
            connection_action::INVALID_MESSAGE => "INVALID_MESSAGE",
            _ => return None,
        },
        topic::AUTH => match action {
            auth_action::ERROR => "ERROR",
            auth_action::REQUEST => "REQUEST",
            auth_action::AUTH_SUCCESSFUL => "AUTH_SUCCESSFUL",
            auth_action::AUTH_UNSUCCESSFUL => "AUTH_UNSUCCESSFUL",
            auth_action::TOO_MANY_AUTH_ATTEMPTS => "TOO_MANY_AUTH_ATTEMPTS",
            auth_action::INVALID_MESSAGE => "INVALID_MESSAGE",
            auth_action::INVALID_MESSAGE_DATA => "INVALID_MESSAGE_DATA",
            _ => return None,
        },
        topic::EVENT => match action {
            event_action::ERROR => "ERROR",
            event_action::EMIT => "EMIT",
            event_action::SUBSCRIBE => "SUBSCRIBE",
            event_action::UNSUBSCRIBE => "UNSUBSCRIBE",
            event_action::LISTEN => "LISTEN",
            event_action::UNLISTEN => "UNLISTEN",
            event_action::LISTEN_ACCEPT => "LISTEN_ACCEPT",
            event_action::LISTEN_REJECT => "LISTEN_REJECT",
            event_action::SUBSCRIPTION_HAS_PROVIDER => "SUBSCRIPTION_HAS_PROVIDER",
            event_action::SUBSCRIPTION_HAS_NO_PROVIDER => "SUBSCRIPTION_HAS_NO_PROVIDER",
            event_action::SUBSCRIPTION_FOR_PATTERN_FOUND => "SUBSCRIPTION_FOR_PATTERN_FOUND",
            event_action::SUBSCRIPTION_FOR_PATTERN_REMOVED => "SUBSCRIPTION_FOR_PATTERN_REMOVED",
            event_action::INVALID_LISTEN_REGEX => "INVALID_LISTEN_REGEX",
            event_action::LISTEN_RESPONSE_TIMEOUT => "LISTEN_RESPONSE_TIMEOUT",
            event_action::MESSAGE_PERMISSION_ERROR => "MESSAGE_PERMISSION_ERROR",
            event_action::MESSAGE_DENIED => "MESSAGE_DENIED",
            event_action::INVALID_MESSAGE_DATA => "INVALID_MESSAGE_DATA",
            event_action::MULTIPLE_SUBSCRIPTIONS => "MULTIPLE_SUBSCRIPTIONS",
            event_action::NOT_SUBSCRIBED => "NOT_SUBSCRIBED",
            _ => return None,
        },
        topic::RECORD => match action {
            record_action::ERROR => "ERROR",
            record_action::NOTIFY => "NOTIFY",
            record_action::READ => "READ",
            record_action::READ_RESPONSE => "READ_RESPONSE",
            record_action::HEAD => "HEAD",
            record_action::HEAD_RESPONSE => "HEAD_RESPONSE",
            record_action::HEAD_BULK => "HEAD_BULK",
            record_action::HEAD_RESPONSE_BULK => "HEAD_RESPONSE_BULK",
            record_action::DELETE => "DELETE",
            record_action::DELETE_SUCCESS => "DELETE_SUCCESS",
            record_action::DELETE_BULK => "DELETE_BULK",
            record_action::DELETE_BULK_SUCCESS => "DELETE_BULK_SUCCESS",
            record_action::DELETED => "DELETED",
            record_action::WRITE_ACKNOWLEDGEMENT => "WRITE_ACKNOWLEDGEMENT",
            record_action::CREATE => "CREATE",
            record_action::CREATEANDUPDATE => "CREATEANDUPDATE",
            record_action::CREATEANDPATCH => "CREATEANDPATCH",
            record_action::UPDATE => "UPDATE",
            record_action::PATCH => "PATCH",
            record_action::ERASE => "ERASE",
            record_action::SUBSCRIBEANDHEAD => "SUBSCRIBEANDHEAD",
            record_action::SUBSCRIBEANDREAD => "SUBSCRIBEANDREAD",
            record_action::SUBSCRIBECREATEANDREAD => "SUBSCRIBECREATEANDREAD",
            record_action::SUBSCRIBECREATEANDUPDATE => "SUBSCRIBECREATEANDUPDATE",
            record_action::SUBSCRIBE => "SUBSCRIBE",
            record_action::UNSUBSCRIBE => "UNSUBSCRIBE",
            record_action::LISTEN => "LISTEN",
            record_action::UNLISTEN => "UNLISTEN",
            record_action::LISTEN_ACCEPT => "LISTEN_ACCEPT",
            record_action::LISTEN_REJECT => "LISTEN_REJECT",
            record_action::SUBSCRIPTION_HAS_PROVIDER => "SUBSCRIPTION_HAS_PROVIDER",
            record_action::SUBSCRIPTION_HAS_NO_PROVIDER => "SUBSCRIPTION_HAS_NO_PROVIDER",
            record_action::SUBSCRIPTION_FOR_PATTERN_FOUND => "SUBSCRIPTION_FOR_PATTERN_FOUND",
            record_action::SUBSCRIPTION_FOR_PATTERN_REMOVED => "SUBSCRIPTION_FOR_PATTERN_REMOVED",
            record_action::CACHE_RETRIEVAL_TIMEOUT => "CACHE_RETRIEVAL_TIMEOUT",
            record_action::STORAGE_RETRIEVAL_TIMEOUT => "STORAGE_RETRIEVAL_TIMEOUT",
            record_action::VERSION_EXISTS => "VERSION_EXISTS",
            record_action::RECORD_LOAD_ERROR => "RECORD_LOAD_ERROR",
            record_action::RECORD_CREATE_ERROR => "RECORD_CREATE_ERROR",
            record_action::RECORD_UPDATE_ERROR => "RECORD_UPDATE_ERROR",
            record_action::RECORD_DELETE_ERROR => "RECORD_DELETE_ERROR",
            record_action::RECORD_NOT_FOUND => "RECORD_NOT_FOUND",
            record_action::INVALID_VERSION => "INVALID_VERSION",
            record_action::INVALID_PATCH_ON_HOTPATH => "INVALID_PATCH_ON_HOTPATH",
            record_action::INVALID_LISTEN_REGEX => "INVALID_LISTEN_REGEX",
            record_action::LISTEN_RESPONSE_TIMEOUT => "LISTEN_RESPONSE_TIMEOUT",
            record_action::RECORD_NOTIFY_ERROR => "RECORD_NOTIFY_ERROR",
            record_action::MESSAGE_PERMISSION_ERROR => "MESSAGE_PERMISSION_ERROR",
            record_action::MESSAGE_DENIED => "MESSAGE_DENIED",
            record_action::INVALID_MESSAGE_DATA => "INVALID_MESSAGE_DATA",
            record_action::MULTIPLE_SUBSCRIPTIONS => "MULTIPLE_SUBSCRIPTIONS",
            record_action::NOT_SUBSCRIBED => "NOT_SUBSCRIBED",
            _ => return None,
        },
        topic::RPC => match action {
            rpc_action::ERROR => "ERROR",
            rpc_action::REQUEST => "REQUEST",
            rpc_action::ACCEPT => "ACCEPT",
            rpc_action::RESPONSE => "RESPONSE",
            rpc_action::REJECT => "REJECT",
            rpc_action::REQUEST_ERROR => "REQUEST_ERROR",
            rpc_action::PROVIDE => "PROVIDE",
            rpc_action::UNPROVIDE => "UNPROVIDE",
            rpc_action::NO_RPC_PROVIDER => "NO_RPC_PROVIDER",
            rpc_action::ACCEPT_TIMEOUT => "ACCEPT_TIMEOUT",
            rpc_action::MULTIPLE_ACCEPT => "MULTIPLE_ACCEPT",
            rpc_action::INVALID_RPC_CORRELATION_ID => "INVALID_RPC_CORRELATION_ID",
            rpc_action::RESPONSE_TIMEOUT => "RESPONSE_TIMEOUT",
            rpc_action::MULTIPLE_RESPONSE => "MULTIPLE_RESPONSE",
            rpc_action::MESSAGE_PERMISSION_ERROR => "MESSAGE_PERMISSION_ERROR",
            rpc_action::MESSAGE_DENIED => "MESSAGE_DENIED",
            rpc_action::INVALID_MESSAGE_DATA => "INVALID_MESSAGE_DATA",
            rpc_action::MULTIPLE_PROVIDERS => "MULTIPLE_PROVIDERS",
            rpc_action::NOT_PROVIDED => "NOT_PROVIDED",
            _ => return None,
        },
        topic::PRESENCE => match action {
            presence_action::ERROR => "ERROR",
            presence_action::QUERY_ALL => "QUERY_ALL",
            presence_action::QUERY_ALL_RESPONSE => "QUERY_ALL_RESPONSE",
            presence_action::QUERY => "QUERY",
            presence_action::QUERY_RESPONSE => "QUERY_RESPONSE",
            presence_action::PRESENCE_JOIN => "PRESENCE_JOIN",
            presence_action::PRESENCE_JOIN_ALL => "PRESENCE_JOIN_ALL",
            presence_action::PRESENCE_LEAVE => "PRESENCE_LEAVE",
            presence_action::PRESENCE_LEAVE_ALL => "PRESENCE_LEAVE_ALL",
            presence_action::SUBSCRIBE => "SUBSCRIBE",
            presence_action::UNSUBSCRIBE => "UNSUBSCRIBE",
            presence_action::SUBSCRIBE_ALL => "SUBSCRIBE_ALL",
            presence_action::UNSUBSCRIBE_ALL => "UNSUBSCRIBE_ALL",
            presence_action::INVALID_PRESENCE_USERS => "INVALID_PRESENCE_USERS",
            presence_action::MESSAGE_PERMISSION_ERROR => "MESSAGE_PERMISSION_ERROR",
            presence_action::MESSAGE_DENIED => "MESSAGE_DENIED",
            presence_action::MULTIPLE_SUBSCRIPTIONS => "MULTIPLE_SUBSCRIPTIONS",
            presence_action::NOT_SUBSCRIBED => "NOT_SUBSCRIBED",
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{record_action, topic};

    #[test]
    fn names() {
        assert_eq!(topic_name(topic::RECORD), Some("RECORD"));
        assert_eq!(
            action_name(topic::RECORD, record_action::CREATEANDUPDATE),
            Some("CREATEANDUPDATE")
        );
        assert_eq!(action_name(topic::RECORD, 999), None);
        assert_eq!(topic_name(99), None);
    }
}
