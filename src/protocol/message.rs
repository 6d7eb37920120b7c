//! deepstream messages: one unified `Message` for every topic, parsed from and encoded to the
//! protobuf layout of @deepstream/protobuf 1.0.9. Strings and data are `Bytes` slices of the
//! received frame; every scalar is optional because presence is meaningful on the wire.

use super::pb::{self, FieldReader, FieldValue, PbError};
use bytes::{BufMut, Bytes, BytesMut};

pub mod topic {
    pub const PARSER: i32 = 1;
    pub const CONNECTION: i32 = 2;
    pub const AUTH: i32 = 3;
    pub const EVENT: i32 = 4;
    pub const RECORD: i32 = 5;
    pub const RPC: i32 = 6;
    pub const PRESENCE: i32 = 7;
    pub const MONITORING: i32 = 8;
    pub const CLUSTER: i32 = 9;
    pub const LOCK: i32 = 10;
}

pub mod parser_action {
    pub const UNKNOWN_TOPIC: i32 = 1;
    pub const UNKNOWN_ACTION: i32 = 2;
    pub const INVALID_MESSAGE: i32 = 3;
    pub const MESSAGE_PARSE_ERROR: i32 = 4;
    pub const MAXIMUM_MESSAGE_SIZE_EXCEEDED: i32 = 5;
    pub const ERROR: i32 = 6;
}

pub mod connection_action {
    pub const ERROR: i32 = 1;
    pub const PING: i32 = 2;
    pub const PONG: i32 = 3;
    pub const ACCEPT: i32 = 4;
    pub const CHALLENGE: i32 = 5;
    pub const REJECT: i32 = 6;
    pub const CLOSING: i32 = 8;
    pub const CLOSED: i32 = 9;
    pub const AUTHENTICATION_TIMEOUT: i32 = 100;
    pub const INVALID_MESSAGE: i32 = 101;
}

pub mod auth_action {
    pub const ERROR: i32 = 1;
    pub const REQUEST: i32 = 2;
    pub const AUTH_SUCCESSFUL: i32 = 3;
    pub const AUTH_UNSUCCESSFUL: i32 = 4;
    pub const TOO_MANY_AUTH_ATTEMPTS: i32 = 100;
    pub const INVALID_MESSAGE: i32 = 101;
    pub const INVALID_MESSAGE_DATA: i32 = 102;
}

pub mod event_action {
    pub const ERROR: i32 = 1;
    pub const EMIT: i32 = 2;
    pub const SUBSCRIBE: i32 = 3;
    pub const UNSUBSCRIBE: i32 = 4;
    pub const LISTEN: i32 = 5;
    pub const UNLISTEN: i32 = 6;
    pub const LISTEN_ACCEPT: i32 = 7;
    pub const LISTEN_REJECT: i32 = 8;
    pub const SUBSCRIPTION_HAS_PROVIDER: i32 = 9;
    pub const SUBSCRIPTION_HAS_NO_PROVIDER: i32 = 10;
    pub const SUBSCRIPTION_FOR_PATTERN_FOUND: i32 = 11;
    pub const SUBSCRIPTION_FOR_PATTERN_REMOVED: i32 = 12;
    pub const INVALID_LISTEN_REGEX: i32 = 100;
    pub const LISTEN_RESPONSE_TIMEOUT: i32 = 101;
    pub const MESSAGE_PERMISSION_ERROR: i32 = 103;
    pub const MESSAGE_DENIED: i32 = 104;
    pub const INVALID_MESSAGE_DATA: i32 = 105;
    pub const MULTIPLE_SUBSCRIPTIONS: i32 = 106;
    pub const NOT_SUBSCRIBED: i32 = 107;
}

pub mod record_action {
    pub const ERROR: i32 = 1;
    pub const NOTIFY: i32 = 2;
    pub const READ: i32 = 3;
    pub const READ_RESPONSE: i32 = 4;
    pub const HEAD: i32 = 5;
    pub const HEAD_RESPONSE: i32 = 6;
    pub const HEAD_BULK: i32 = 7;
    pub const HEAD_RESPONSE_BULK: i32 = 8;
    pub const DELETE: i32 = 9;
    pub const DELETE_SUCCESS: i32 = 10;
    pub const DELETE_BULK: i32 = 11;
    pub const DELETE_BULK_SUCCESS: i32 = 12;
    pub const DELETED: i32 = 13;
    pub const WRITE_ACKNOWLEDGEMENT: i32 = 14;
    pub const CREATE: i32 = 15;
    pub const CREATEANDUPDATE: i32 = 16;
    pub const CREATEANDPATCH: i32 = 17;
    pub const UPDATE: i32 = 18;
    pub const PATCH: i32 = 19;
    pub const ERASE: i32 = 20;
    pub const SUBSCRIBEANDHEAD: i32 = 21;
    pub const SUBSCRIBEANDREAD: i32 = 22;
    pub const SUBSCRIBECREATEANDREAD: i32 = 23;
    pub const SUBSCRIBECREATEANDUPDATE: i32 = 24;
    pub const SUBSCRIBE: i32 = 25;
    pub const UNSUBSCRIBE: i32 = 26;
    pub const LISTEN: i32 = 27;
    pub const UNLISTEN: i32 = 28;
    pub const LISTEN_ACCEPT: i32 = 29;
    pub const LISTEN_REJECT: i32 = 30;
    pub const SUBSCRIPTION_HAS_PROVIDER: i32 = 31;
    pub const SUBSCRIPTION_HAS_NO_PROVIDER: i32 = 32;
    pub const SUBSCRIPTION_FOR_PATTERN_FOUND: i32 = 33;
    pub const SUBSCRIPTION_FOR_PATTERN_REMOVED: i32 = 34;
    pub const CACHE_RETRIEVAL_TIMEOUT: i32 = 100;
    pub const STORAGE_RETRIEVAL_TIMEOUT: i32 = 101;
    pub const VERSION_EXISTS: i32 = 102;
    pub const RECORD_LOAD_ERROR: i32 = 103;
    pub const RECORD_CREATE_ERROR: i32 = 104;
    pub const RECORD_UPDATE_ERROR: i32 = 105;
    pub const RECORD_DELETE_ERROR: i32 = 106;
    pub const RECORD_NOT_FOUND: i32 = 107;
    pub const INVALID_VERSION: i32 = 108;
    pub const INVALID_PATCH_ON_HOTPATH: i32 = 109;
    pub const INVALID_LISTEN_REGEX: i32 = 110;
    pub const LISTEN_RESPONSE_TIMEOUT: i32 = 111;
    pub const RECORD_NOTIFY_ERROR: i32 = 113;
    pub const MESSAGE_PERMISSION_ERROR: i32 = 114;
    pub const MESSAGE_DENIED: i32 = 115;
    pub const INVALID_MESSAGE_DATA: i32 = 116;
    pub const MULTIPLE_SUBSCRIPTIONS: i32 = 117;
    pub const NOT_SUBSCRIBED: i32 = 118;
}

pub mod rpc_action {
    pub const ERROR: i32 = 1;
    pub const REQUEST: i32 = 2;
    pub const ACCEPT: i32 = 4;
    pub const RESPONSE: i32 = 5;
    pub const REJECT: i32 = 6;
    pub const REQUEST_ERROR: i32 = 7;
    pub const PROVIDE: i32 = 8;
    pub const UNPROVIDE: i32 = 9;
    pub const NO_RPC_PROVIDER: i32 = 100;
    pub const ACCEPT_TIMEOUT: i32 = 101;
    pub const MULTIPLE_ACCEPT: i32 = 102;
    pub const INVALID_RPC_CORRELATION_ID: i32 = 103;
    pub const RESPONSE_TIMEOUT: i32 = 104;
    pub const MULTIPLE_RESPONSE: i32 = 105;
    pub const MESSAGE_PERMISSION_ERROR: i32 = 106;
    pub const MESSAGE_DENIED: i32 = 107;
    pub const INVALID_MESSAGE_DATA: i32 = 108;
    pub const MULTIPLE_PROVIDERS: i32 = 109;
    pub const NOT_PROVIDED: i32 = 110;
}

pub mod presence_action {
    pub const ERROR: i32 = 1;
    pub const QUERY_ALL: i32 = 2;
    pub const QUERY_ALL_RESPONSE: i32 = 3;
    pub const QUERY: i32 = 4;
    pub const QUERY_RESPONSE: i32 = 5;
    pub const PRESENCE_JOIN: i32 = 6;
    pub const PRESENCE_JOIN_ALL: i32 = 7;
    pub const PRESENCE_LEAVE: i32 = 8;
    pub const PRESENCE_LEAVE_ALL: i32 = 9;
    pub const SUBSCRIBE: i32 = 10;
    pub const UNSUBSCRIBE: i32 = 11;
    pub const SUBSCRIBE_ALL: i32 = 12;
    pub const UNSUBSCRIBE_ALL: i32 = 13;
    pub const INVALID_PRESENCE_USERS: i32 = 100;
    pub const MESSAGE_PERMISSION_ERROR: i32 = 101;
    pub const MESSAGE_DENIED: i32 = 102;
    pub const MULTIPLE_SUBSCRIPTIONS: i32 = 103;
    pub const NOT_SUBSCRIBED: i32 = 104;
}

/// Every field any client-facing topic carries; which wire number each has depends on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Action,
    Data,
    CorrelationId,
    IsError,
    IsAck,
    Name,
    Names,
    Pattern,
    Subscription,
    OriginalTopic,
    OriginalAction,
    IsWriteAck,
    Path,
    Version,
    Versions,
    Url,
    ProtocolVersion,
    SdkVersion,
    SdkType,
    RequestorName,
    RequestorData,
}

use Field::*;

/// Whether the protobuf schema has this topic (others cannot be encoded or parsed).
pub fn known_topic(topic: i32) -> bool {
    layout(topic).is_some()
}

/// (wire number, field) per topic, in ascending wire order so encoding is canonical.
fn layout(topic: i32) -> Option<&'static [(u32, Field)]> {
    Some(match topic {
        topic::CONNECTION => &[
            (1, Action),
            (2, Data),
            (3, IsError),
            (4, IsAck),
            (5, Url),
            (6, ProtocolVersion),
            (7, SdkVersion),
            (8, SdkType),
        ],
        topic::AUTH => &[(1, Action), (2, Data), (3, IsError), (4, IsAck)],
        topic::EVENT => &[
            (1, Action),
            (2, Data),
            (3, CorrelationId),
            (4, IsError),
            (5, IsAck),
            (6, Name),
            (7, Names),
            (8, Subscription),
            (10, OriginalTopic),
            (11, OriginalAction),
        ],
        topic::RECORD => &[
            (1, Action),
            (2, Data),
            (3, CorrelationId),
            (4, IsError),
            (5, IsAck),
            (6, Name),
            (7, Names),
            (8, Pattern),
            (9, Subscription),
            (10, OriginalAction),
            (11, IsWriteAck),
            (12, Path),
            (13, Version),
            (14, Versions),
        ],
        topic::RPC => &[
            (1, Action),
            (2, Data),
            (3, CorrelationId),
            (4, IsError),
            (5, IsAck),
            (6, Names),
            (7, Name),
            (9, OriginalAction),
            (10, RequestorName),
            (11, RequestorData),
        ],
        topic::PRESENCE => &[
            (1, Action),
            (2, OriginalTopic),
            (3, OriginalAction),
            (4, Data),
            (5, CorrelationId),
            (6, IsError),
            (7, IsAck),
            (8, Name),
            (9, Names),
        ],
        topic::PARSER => &[
            (1, Action),
            (2, Data),
            (8, OriginalTopic),
            (9, OriginalAction),
        ],
        topic::MONITORING => &[
            (1, Action),
            (2, Data),
            (3, CorrelationId),
            (4, IsError),
            (5, IsAck),
        ],
        _ => return None,
    })
}

/// One deepstream message of any topic. Unset fields are `None`; a set zero is `Some(0)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub topic: i32,
    pub action: i32,
    pub data: Option<Bytes>,
    pub correlation_id: Option<Bytes>,
    pub is_error: Option<bool>,
    pub is_ack: Option<bool>,
    pub name: Option<Bytes>,
    pub names: Vec<Bytes>,
    pub pattern: Option<Bytes>,
    pub subscription: Option<Bytes>,
    pub original_topic: Option<i32>,
    pub original_action: Option<i32>,
    pub is_write_ack: Option<bool>,
    pub path: Option<Bytes>,
    pub version: Option<i32>,
    pub versions: Vec<(Bytes, i32)>,
    pub url: Option<Bytes>,
    pub protocol_version: Option<Bytes>,
    pub sdk_version: Option<Bytes>,
    pub sdk_type: Option<Bytes>,
    pub requestor_name: Option<Bytes>,
    pub requestor_data: Option<Bytes>,
}

/// Why a frame is not a deepstream message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Malformed(PbError),
    /// The length prefix does not match the frame.
    BadLength,
    MissingTopic,
    UnknownTopic(i32),
    /// A known field arrived with the wrong wire type.
    BadField(u32),
}

impl From<PbError> for ParseError {
    fn from(e: PbError) -> Self {
        ParseError::Malformed(e)
    }
}

impl Message {
    pub fn new(topic: i32, action: i32) -> Self {
        Message {
            topic,
            action,
            ..Default::default()
        }
    }

    /// Parses one WebSocket frame payload: a varint length, then `Message{topic, message}`.
    pub fn parse(frame: &Bytes) -> Result<Message, ParseError> {
        let (topic, inner) = Self::envelope(frame)?;
        let mut msg = Message::new(topic, 0);
        msg.fill(&inner)?;
        Ok(msg)
    }

    /// `parse` straight onto the heap, for messages that travel on (a message is ~500 bytes;
    /// building it in place saves moving it at every step).
    pub fn parse_boxed(frame: &Bytes) -> Result<Box<Message>, ParseError> {
        let (topic, inner) = Self::envelope(frame)?;
        let mut msg = Box::new(Message::new(topic, 0));
        msg.fill(&inner)?;
        Ok(msg)
    }

    /// The topic and the topic's own message bytes from a length-prefixed envelope.
    fn envelope(frame: &Bytes) -> Result<(i32, Bytes), ParseError> {
        let mut pos = 0;
        let len = pb::read_varint(frame, &mut pos)?;
        let end = pos
            .checked_add(usize::try_from(len).map_err(|_| ParseError::BadLength)?)
            .filter(|end| *end <= frame.len())
            .ok_or(ParseError::BadLength)?;
        let envelope = frame.slice(pos..end);
        let mut topic = None;
        let mut inner = Bytes::new();
        let mut reader = FieldReader::new(&envelope);
        while let Some(field) = reader.next_field() {
            match field? {
                (2, FieldValue::Varint(v)) => topic = Some(v as i32),
                (3, FieldValue::Bytes(b)) => inner = b,
                (2 | 3, _) => return Err(ParseError::BadField(2)),
                _ => {}
            }
        }
        Ok((topic.ok_or(ParseError::MissingTopic)?, inner))
    }

    /// Sets the fields of this message's topic from its own message bytes.
    fn fill(&mut self, inner: &Bytes) -> Result<(), ParseError> {
        let fields = layout(self.topic).ok_or(ParseError::UnknownTopic(self.topic))?;
        let mut reader = FieldReader::new(inner);
        while let Some(field) = reader.next_field() {
            let (number, value) = field?;
            let Some(&(_, kind)) = fields.iter().find(|(n, _)| *n == number) else {
                continue;
            };
            self.set(kind, value)
                .map_err(|()| ParseError::BadField(number))?;
        }
        Ok(())
    }

    fn set(&mut self, kind: Field, value: FieldValue) -> Result<(), ()> {
        match (kind, value) {
            (Action, FieldValue::Varint(v)) => self.action = v as i32,
            (OriginalTopic, FieldValue::Varint(v)) => self.original_topic = Some(v as i32),
            (OriginalAction, FieldValue::Varint(v)) => self.original_action = Some(v as i32),
            (Version, FieldValue::Varint(v)) => self.version = Some(v as i32),
            (IsError, FieldValue::Varint(v)) => self.is_error = Some(v != 0),
            (IsAck, FieldValue::Varint(v)) => self.is_ack = Some(v != 0),
            (IsWriteAck, FieldValue::Varint(v)) => self.is_write_ack = Some(v != 0),
            (Names, FieldValue::Bytes(b)) => self.names.push(b),
            (Versions, FieldValue::Bytes(b)) => self.versions.push(parse_map_entry(&b)?),
            (kind, FieldValue::Bytes(b)) => *self.string_slot(kind).ok_or(())? = Some(b),
            _ => return Err(()),
        }
        Ok(())
    }

    fn string_slot(&mut self, kind: Field) -> Option<&mut Option<Bytes>> {
        Some(match kind {
            Data => &mut self.data,
            CorrelationId => &mut self.correlation_id,
            Name => &mut self.name,
            Pattern => &mut self.pattern,
            Subscription => &mut self.subscription,
            Path => &mut self.path,
            Url => &mut self.url,
            ProtocolVersion => &mut self.protocol_version,
            SdkVersion => &mut self.sdk_version,
            SdkType => &mut self.sdk_type,
            RequestorName => &mut self.requestor_name,
            RequestorData => &mut self.requestor_data,
            _ => return None,
        })
    }

    fn string_field(&self, kind: Field) -> Option<&Bytes> {
        match kind {
            Data => self.data.as_ref(),
            CorrelationId => self.correlation_id.as_ref(),
            Name => self.name.as_ref(),
            Pattern => self.pattern.as_ref(),
            Subscription => self.subscription.as_ref(),
            Path => self.path.as_ref(),
            Url => self.url.as_ref(),
            ProtocolVersion => self.protocol_version.as_ref(),
            SdkVersion => self.sdk_version.as_ref(),
            SdkType => self.sdk_type.as_ref(),
            RequestorName => self.requestor_name.as_ref(),
            RequestorData => self.requestor_data.as_ref(),
            _ => None,
        }
    }

    fn varint_field(&self, kind: Field) -> Option<u64> {
        let int = |v: Option<i32>| v.map(pb::int32_as_varint);
        match kind {
            Action => Some(pb::int32_as_varint(self.action)),
            OriginalTopic => int(self.original_topic),
            OriginalAction => int(self.original_action),
            Version => int(self.version),
            IsError => self.is_error.map(u64::from),
            IsAck => self.is_ack.map(u64::from),
            IsWriteAck => self.is_write_ack.map(u64::from),
            _ => None,
        }
    }

    /// Calls `visit` for every field present, in wire order; shared by sizing and writing.
    fn for_each_field(&self, mut visit: impl FnMut(u32, WireValue<'_>)) {
        let Some(fields) = layout(self.topic) else {
            return;
        };
        for &(number, kind) in fields {
            match kind {
                Names => self
                    .names
                    .iter()
                    .for_each(|n| visit(number, WireValue::Bytes(n))),
                Versions => self
                    .versions
                    .iter()
                    .for_each(|(k, v)| visit(number, WireValue::MapEntry(k, *v))),
                _ => {
                    if let Some(v) = self.varint_field(kind) {
                        visit(number, WireValue::Varint(v));
                    } else if let Some(b) = self.string_field(kind) {
                        visit(number, WireValue::Bytes(b));
                    }
                }
            }
        }
    }

    /// Size of the topic message (without envelope).
    pub fn inner_len(&self) -> usize {
        let mut len = 0;
        self.for_each_field(|number, value| len += value.size(number));
        len
    }

    fn put_inner(&self, out: &mut impl BufMut) {
        self.for_each_field(|number, value| value.put(number, out));
    }

    /// Size of the envelope `Message{topic, message}` without its length prefix.
    fn envelope_len(&self, inner: usize) -> usize {
        pb::tag_len(2)
            + pb::varint_len(pb::int32_as_varint(self.topic))
            + pb::len_field_size(3, inner)
    }

    /// Bytes of one WebSocket payload: length prefix, envelope, topic message.
    pub fn encoded_len(&self) -> usize {
        let envelope = self.envelope_len(self.inner_len());
        pb::varint_len(envelope as u64) + envelope
    }

    /// Writes the WebSocket payload of this message.
    pub fn encode_into(&self, out: &mut impl BufMut) {
        let inner = self.inner_len();
        let envelope = self.envelope_len(inner);
        pb::put_varint(out, envelope as u64);
        pb::put_tag(out, 2, pb::WIRE_VARINT);
        pb::put_varint(out, pb::int32_as_varint(self.topic));
        pb::put_tag(out, 3, pb::WIRE_LEN);
        pb::put_varint(out, inner as u64);
        self.put_inner(out);
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// A name as text, for logs and JSON; invalid UTF-8 is replaced, never trusted.
    pub fn name_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.name.as_deref().unwrap_or_default())
    }
}

enum WireValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    MapEntry(&'a [u8], i32),
}

impl WireValue<'_> {
    fn map_entry_len(key: &[u8], value: i32) -> usize {
        pb::len_field_size(1, key.len())
            + pb::tag_len(2)
            + pb::varint_len(pb::int32_as_varint(value))
    }

    fn size(&self, number: u32) -> usize {
        match self {
            WireValue::Varint(v) => pb::tag_len(number) + pb::varint_len(*v),
            WireValue::Bytes(b) => pb::len_field_size(number, b.len()),
            WireValue::MapEntry(k, v) => pb::len_field_size(number, Self::map_entry_len(k, *v)),
        }
    }

    fn put(&self, number: u32, out: &mut impl BufMut) {
        match self {
            WireValue::Varint(v) => {
                pb::put_tag(out, number, pb::WIRE_VARINT);
                pb::put_varint(out, *v);
            }
            WireValue::Bytes(b) => pb::put_len_field(out, number, b),
            WireValue::MapEntry(k, v) => {
                pb::put_tag(out, number, pb::WIRE_LEN);
                pb::put_varint(out, Self::map_entry_len(k, *v) as u64);
                pb::put_len_field(out, 1, k);
                pb::put_tag(out, 2, pb::WIRE_VARINT);
                pb::put_varint(out, pb::int32_as_varint(*v));
            }
        }
    }
}

fn parse_map_entry(entry: &Bytes) -> Result<(Bytes, i32), ()> {
    let mut key = Bytes::new();
    let mut value = 0;
    let mut reader = FieldReader::new(entry);
    while let Some(field) = reader.next_field() {
        match field.map_err(|_| ())? {
            (1, FieldValue::Bytes(b)) => key = b,
            (2, FieldValue::Varint(v)) => value = v as i32,
            _ => return Err(()),
        }
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Bytes {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        Bytes::from(bytes)
    }

    fn b(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Frames captured between the reference server and client (design/frames.md).
    #[test]
    fn parses_captured_client_frames() {
        let challenge = Message::parse(&hex("3f10021a3b08052a1e77733a2f2f3132372e302e302e313a363039392f6465657073747265616d3204302e31613a05372e302e35420a6a617661736372697074")).unwrap();
        assert_eq!(
            (challenge.topic, challenge.action),
            (topic::CONNECTION, connection_action::CHALLENGE)
        );
        assert_eq!(challenge.url, b("ws://127.0.0.1:6099/deepstream"));
        assert_eq!(challenge.protocol_version, b("0.1a"));
        assert_eq!(challenge.sdk_type, b("javascript"));

        let auth = Message::parse(&hex(
            "1a10031a16080212127b22757365726e616d65223a22636170227d",
        ))
        .unwrap();
        assert_eq!(
            (auth.topic, auth.action),
            (topic::AUTH, auth_action::REQUEST)
        );
        assert_eq!(auth.data, b(r#"{"username":"cap"}"#));

        let patch = Message::parse(&hex(
            "1a10051a1608131201311a013132056361702f7258016201786801",
        ))
        .unwrap();
        assert_eq!(patch.action, record_action::PATCH);
        assert_eq!(patch.data, b("1"));
        assert_eq!(patch.correlation_id, b("1"));
        assert_eq!(patch.name, b("cap/r"));
        assert_eq!(patch.is_write_ack, Some(true));
        assert_eq!(patch.path, b("x"));
        assert_eq!(patch.version, Some(1));

        let provide = Message::parse(&hex("1210061a0e08081a013032076361702f727063")).unwrap();
        assert_eq!(provide.names, vec![Bytes::from_static(b"cap/rpc")]);
        let request = Message::parse(&hex(
            "2910061a250802120234311a146d777478323377752d313964727a6236357233393a076361702f727063",
        ))
        .unwrap();
        assert_eq!(request.name, b("cap/rpc"));
        assert_eq!(request.data, b("41"));
    }

    /// What the reference server sends must come out byte for byte the same.
    #[test]
    fn parse_boxed_agrees_with_parse() {
        for frame in [
            "3f10021a3b08052a1e77733a2f2f3132372e302e302e313a363039392f6465657073747265616d3204302e31613a05372e302e35420a6a617661736372697074",
            "1210061a0e08081a013032076361702f727063",
            // Unknown topic, bad length, empty.
            "0410631a00",
            "0510061a",
            "",
        ] {
            let frame = hex(frame);
            assert_eq!(
                Message::parse_boxed(&frame).map(|m| *m),
                Message::parse(&frame)
            );
        }
    }

    #[test]
    fn encodes_like_the_reference_server() {
        let cases: Vec<(Message, &str)> = vec![
            (
                Message::new(topic::CONNECTION, connection_action::ACCEPT),
                "0610021a020804",
            ),
            (
                Message::new(topic::AUTH, auth_action::AUTH_SUCCESSFUL),
                "0610031a020803",
            ),
            (
                Message {
                    correlation_id: b("0"),
                    is_ack: Some(true),
                    ..Message::new(topic::EVENT, event_action::SUBSCRIBE)
                },
                "0b10041a0708031a01302801",
            ),
            (
                Message {
                    correlation_id: b("0"),
                    is_ack: Some(true),
                    names: vec![Bytes::from_static(b"cap/r")],
                    ..Message::new(topic::RECORD, record_action::SUBSCRIBECREATEANDREAD)
                },
                "1210051a0e08171a013028013a056361702f72",
            ),
            (
                Message {
                    data: b("{}"),
                    name: b("cap/r"),
                    version: Some(0),
                    ..Message::new(topic::RECORD, record_action::READ_RESPONSE)
                },
                "1310051a0f080412027b7d32056361702f726800",
            ),
            (
                Message {
                    correlation_id: b("1"),
                    name: b("cap/r"),
                    is_write_ack: Some(true),
                    ..Message::new(topic::RECORD, record_action::WRITE_ACKNOWLEDGEMENT)
                },
                "1210051a0e080e1a013132056361702f725801",
            ),
        ];
        for (msg, expected) in cases {
            assert_eq!(msg.encode(), hex(expected), "{msg:?}");
            assert_eq!(msg.encoded_len(), expected.len() / 2);
        }
    }

    #[test]
    fn every_topic_round_trips_with_zero_values_kept() {
        for t in [
            topic::CONNECTION,
            topic::AUTH,
            topic::EVENT,
            topic::RECORD,
            topic::RPC,
            topic::PRESENCE,
            topic::PARSER,
        ] {
            let mut msg = Message::new(t, 3);
            msg.data = b("");
            msg.is_ack = (t != topic::PARSER).then_some(false);
            if t == topic::RECORD {
                msg.version = Some(-1);
                msg.path = b("a.b");
                msg.versions = vec![(Bytes::from_static(b"r"), 0)];
            }
            if matches!(
                t,
                topic::EVENT | topic::RECORD | topic::RPC | topic::PRESENCE
            ) {
                msg.names = vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")];
                msg.name = b("n");
                msg.correlation_id = b("c");
            }
            let parsed = Message::parse(&msg.encode()).unwrap();
            assert_eq!(parsed, msg);
        }
    }

    #[test]
    fn truncated_and_corrupt_input_is_an_error() {
        let good = hex("1a10051a1608131201311a013132056361702f7258016201786801");
        for cut in 0..good.len() {
            assert!(
                Message::parse(&good.slice(..cut)).is_err(),
                "prefix {cut} parsed"
            );
        }
        assert_eq!(
            Message::parse(&hex("0410631a00")),
            Err(ParseError::UnknownTopic(99))
        );
        assert_eq!(
            Message::parse(&hex("021a00")),
            Err(ParseError::MissingTopic)
        );
        // the record name sent as a varint instead of a string
        assert_eq!(
            Message::parse(&hex("0810051a0408013001")),
            Err(ParseError::BadField(6))
        );
        for seed in 0u32..2000 {
            let noise: Vec<u8> = (0..(seed % 40))
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 97) >> 3) as u8)
                .collect();
            let _ = Message::parse(&Bytes::from(noise));
        }
    }
}
