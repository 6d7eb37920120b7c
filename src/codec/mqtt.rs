//! MQTT 3.1.1 (`mqtt` endpoint) as deepstream maps it (src/connection-endpoint/mqtt): CONNECT
//! logs in with its username and password through the same auth strategies; SUBSCRIBE
//! subscribes to the event and the record of each topic; PUBLISH emits the event (its payload
//! as a JSON string), and a retained PUBLISH also writes the record (`version -1`, acknowledged
//! with PUBACK once stored when QoS > 0). Events reach MQTT subscribers with their JSON text as
//! the payload, record updates with the record's JSON, and a subscriber gets a record's current
//! data as a retained message when it subscribes. Topics are names: `+` and `#` are not
//! wildcards. Delivery to MQTT clients is QoS 0; sessions are not kept (clean sessions).
//! Sans-I/O: `net::mqtt` runs it.

use crate::protocol::message::{
    auth_action as aa, connection_action as ca, event_action as ea, record_action as ra, topic,
    Message,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// CONNACK return codes.
const REFUSED_PROTOCOL_VERSION: u8 = 1;
const REFUSED_NOT_AUTHORIZED: u8 = 5;
/// SUBSCRIBEs waiting for their SUBACK; a client with more outstanding is cut off.
const MAX_PENDING_SUBSCRIBES: usize = 64;
/// Topics in one SUBSCRIBE or UNSUBSCRIBE.
const MAX_TOPICS: usize = 256;
/// Correlation ids carry the packet id behind a tag: `s` for (un)subscriptions, `w` for record
/// writes, so an answer to one is never taken for the other.
const SUBSCRIBE_TAG: u8 = b's';
const WRITE_TAG: u8 = b'w';

fn tagged(tag: u8, id: u16) -> Bytes {
    Bytes::from(format!("{}{id}", tag as char))
}

/// What the connection does with a packet.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// A message for the shard.
    ToShard(Box<Message>),
    /// Bytes for the client.
    Send(Bytes),
    /// Close the connection (after what is queued), for this reason.
    Close(&'static str),
}

/// Why the byte stream is not MQTT.
#[derive(Debug, PartialEq, Eq)]
pub struct MqttError(pub &'static str);

/// One client's protocol state.
#[derive(Debug, Default)]
pub struct Session {
    connected: bool,
    logged_in: bool,
    /// The keep-alive the client asked for, in seconds (0: none).
    pub keep_alive: u16,
    /// SUBSCRIBE packet ids and their return codes, until the shard acks them.
    pending: Vec<(u16, Vec<Bytes>, Vec<u8>)>,
}

fn read_u16(buf: &mut &[u8]) -> Result<u16, MqttError> {
    if buf.len() < 2 {
        return Err(MqttError("packet too short"));
    }
    Ok(buf.get_u16())
}

fn read_bytes(buf: &mut &[u8]) -> Result<Bytes, MqttError> {
    let len = usize::from(read_u16(buf)?);
    if buf.len() < len {
        return Err(MqttError("string longer than its packet"));
    }
    let bytes = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(bytes)
}

fn read_text(buf: &mut &[u8]) -> Result<Bytes, MqttError> {
    let bytes = read_bytes(buf)?;
    std::str::from_utf8(&bytes).map_err(|_| MqttError("a string is not UTF-8"))?;
    Ok(bytes)
}

fn packet(kind: u8, flags: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(kind << 4 | flags);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
    out.put_slice(body);
    out.freeze()
}

fn with_id(kind: u8, id: u16) -> Bytes {
    packet(kind, 0, &id.to_be_bytes())
}

/// A PUBLISH at QoS 0.
pub fn publish(topic_name: &[u8], payload: &[u8], retain: bool) -> Bytes {
    let mut body = Vec::with_capacity(topic_name.len() + payload.len() + 2);
    body.put_u16(topic_name.len().min(u16::MAX as usize) as u16);
    body.put_slice(&topic_name[..topic_name.len().min(u16::MAX as usize)]);
    body.put_slice(payload);
    packet(PUBLISH, u8::from(retain), &body)
}

impl Session {
    /// Takes every complete packet off the front of `buf`. A packet past `max_packet` bytes or
    /// one that breaks the protocol is an error: MQTT has no way to answer it but closing.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_packet: usize,
        out: &mut Vec<Action>,
    ) -> Result<(), MqttError> {
        loop {
            // A server that refuses a CONNECT must process nothing sent after it
            // [MQTT-3.1.4-5]: what follows the CONNECT waits in `buf` for the login's answer.
            if self.awaiting_login() {
                return Ok(());
            }
            let Some(&first) = buf.first() else {
                return Ok(());
            };
            let mut len = 0usize;
            let mut header = 1;
            loop {
                let Some(&byte) = buf.get(header) else {
                    return Ok(());
                };
                len |= usize::from(byte & 0x7f) << (7 * (header - 1));
                header += 1;
                if byte & 0x80 == 0 {
                    break;
                }
                if header > 4 {
                    return Err(MqttError("malformed remaining length"));
                }
            }
            if len > max_packet {
                return Err(MqttError("packet larger than maxMessageSize"));
            }
            if buf.len() < header + len {
                return Ok(());
            }
            buf.advance(header);
            let body = buf.split_to(len).freeze();
            self.on_packet(first >> 4, first & 0x0f, &body, out)?;
        }
    }

    fn on_packet(
        &mut self,
        kind: u8,
        flags: u8,
        body: &Bytes,
        out: &mut Vec<Action>,
    ) -> Result<(), MqttError> {
        let mut b: &[u8] = body;
        if !self.connected && kind != CONNECT {
            return Err(MqttError("the first packet must be CONNECT"));
        }
        match kind {
            CONNECT => self.on_connect(&mut b, out),
            PUBLISH => self.on_publish(flags, &mut b, out),
            // Acks of our QoS 0 publishes cannot come; ignore strays.
            PUBACK | PUBREC | PUBCOMP => Ok(()),
            PUBREL => {
                out.push(Action::Send(with_id(PUBCOMP, read_u16(&mut b)?)));
                Ok(())
            }
            SUBSCRIBE | UNSUBSCRIBE => {
                if flags != 0x2 {
                    return Err(MqttError("bad SUBSCRIBE flags"));
                }
                self.on_subscribe(kind == SUBSCRIBE, &mut b, out)
            }
            PINGREQ => {
                out.push(Action::Send(packet(PINGRESP, 0, &[])));
                Ok(())
            }
            DISCONNECT => {
                out.push(Action::Close("client disconnected"));
                Ok(())
            }
            _ => Err(MqttError("unknown packet type")),
        }
    }

    fn on_connect(&mut self, b: &mut &[u8], out: &mut Vec<Action>) -> Result<(), MqttError> {
        if self.connected {
            return Err(MqttError("a second CONNECT"));
        }
        let name = read_bytes(b)?;
        if name.as_ref() != b"MQTT" && name.as_ref() != b"MQIsdp" {
            return Err(MqttError("not MQTT"));
        }
        if b.len() < 4 {
            return Err(MqttError("CONNECT too short"));
        }
        let level = b.get_u8();
        let flags = b.get_u8();
        self.keep_alive = b.get_u16();
        self.connected = true;
        if level != 4 && level != 3 {
            out.push(Action::Send(packet(
                CONNACK,
                0,
                &[0, REFUSED_PROTOCOL_VERSION],
            )));
            out.push(Action::Close("unsupported MQTT version"));
            return Ok(());
        }
        let _client_id = read_text(b)?;
        if flags & 0x04 != 0 {
            let _will_topic = read_text(b)?;
            let _will_message = read_bytes(b)?;
        }
        let username = if flags & 0x80 != 0 {
            Some(read_text(b)?)
        } else {
            None
        };
        let password = if flags & 0x40 != 0 {
            Some(read_bytes(b)?)
        } else {
            None
        };
        let mut auth = serde_json::Map::new();
        let text = |b: &Bytes| serde_json::Value::String(String::from_utf8_lossy(b).into_owned());
        if let Some(user) = &username {
            auth.insert("username".into(), text(user));
        }
        if let Some(password) = &password {
            auth.insert("password".into(), text(password));
        }
        let auth = serde_json::to_vec(&auth).map_err(|_| MqttError("auth data"))?;
        out.push(Action::ToShard(Box::new(Message::new(
            topic::CONNECTION,
            ca::CHALLENGE,
        ))));
        out.push(Action::ToShard(Box::new(Message {
            data: Some(Bytes::from(auth)),
            ..Message::new(topic::AUTH, aa::REQUEST)
        })));
        Ok(())
    }

    fn on_publish(
        &mut self,
        flags: u8,
        b: &mut &[u8],
        out: &mut Vec<Action>,
    ) -> Result<(), MqttError> {
        let qos = (flags >> 1) & 0x3;
        let retain = flags & 1 == 1;
        if qos == 3 {
            return Err(MqttError("QoS 3"));
        }
        let name = read_text(b)?;
        let id = if qos > 0 { Some(read_u16(b)?) } else { None };
        let payload = Bytes::copy_from_slice(b);
        let text = String::from_utf8_lossy(&payload);
        let as_string = serde_json::to_vec(&*text).map_err(|_| MqttError("payload"))?;
        let emit = Message {
            name: Some(name.clone()),
            data: Some(Bytes::from(as_string)),
            ..Message::new(topic::EVENT, ea::EMIT)
        };
        // A retained publish whose payload is JSON writes the record; its PUBACK (QoS 1)
        // waits for the store. Anything else is acknowledged once handed on.
        let writes = retain && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_ok();
        if writes {
            out.push(Action::ToShard(Box::new(Message {
                name: Some(name),
                version: Some(-1),
                data: Some(payload),
                is_write_ack: (qos == 1).then_some(true),
                correlation_id: id.filter(|_| qos == 1).map(|id| tagged(WRITE_TAG, id)),
                ..Message::new(topic::RECORD, ra::CREATEANDUPDATE)
            })));
        }
        out.push(Action::ToShard(Box::new(emit)));
        match (qos, id) {
            (1, Some(id)) if !writes => out.push(Action::Send(with_id(PUBACK, id))),
            (2, Some(id)) => out.push(Action::Send(with_id(PUBREC, id))),
            _ => {}
        }
        Ok(())
    }

    fn on_subscribe(
        &mut self,
        subscribe: bool,
        b: &mut &[u8],
        out: &mut Vec<Action>,
    ) -> Result<(), MqttError> {
        let id = read_u16(b)?;
        let mut names = Vec::new();
        while !b.is_empty() {
            if names.len() == MAX_TOPICS {
                return Err(MqttError("too many topics in one packet"));
            }
            names.push(read_text(b)?);
            if subscribe {
                if b.is_empty() {
                    return Err(MqttError("SUBSCRIBE without a QoS"));
                }
                b.advance(1);
            }
        }
        if names.is_empty() {
            return Err(MqttError("SUBSCRIBE without topics"));
        }
        let correlation_id = Some(tagged(SUBSCRIBE_TAG, id));
        let (event_action, record_action) = if subscribe {
            if self.pending.len() >= MAX_PENDING_SUBSCRIBES {
                return Err(MqttError("too many SUBSCRIBEs waiting"));
            }
            self.pending.push((id, names.clone(), vec![0; names.len()]));
            (ea::SUBSCRIBE, ra::SUBSCRIBEANDREAD)
        } else {
            (ea::UNSUBSCRIBE, ra::UNSUBSCRIBE)
        };
        out.push(Action::ToShard(Box::new(Message {
            names: names.clone(),
            correlation_id: correlation_id.clone(),
            ..Message::new(topic::EVENT, event_action)
        })));
        out.push(Action::ToShard(Box::new(Message {
            names,
            correlation_id,
            ..Message::new(topic::RECORD, record_action)
        })));
        Ok(())
    }

    /// What a message from the shard becomes for the client (nothing for most).
    pub fn encode(&mut self, msg: &Message, out: &mut Vec<Action>) {
        let packet_id = |tag: u8| {
            let c = msg.correlation_id.as_ref()?;
            let (&first, rest) = c.split_first()?;
            (first == tag).then_some(())?;
            std::str::from_utf8(rest).ok()?.parse::<u16>().ok()
        };
        let name = msg.name.as_deref().unwrap_or_default();
        let data = msg.data.as_deref().unwrap_or_default();
        match (msg.topic, msg.action) {
            (topic::AUTH, aa::AUTH_SUCCESSFUL) => {
                self.logged_in = true;
                out.push(Action::Send(packet(CONNACK, 0, &[0, 0])));
            }
            (topic::AUTH, aa::AUTH_UNSUCCESSFUL | aa::INVALID_MESSAGE_DATA) => {
                out.push(Action::Send(packet(
                    CONNACK,
                    0,
                    &[0, REFUSED_NOT_AUTHORIZED],
                )));
                out.push(Action::Close("not authorized"));
            }
            (topic::EVENT, ea::EMIT) => out.push(Action::Send(publish(name, data, false))),
            (topic::RECORD, ra::UPDATE) => out.push(Action::Send(publish(name, data, false))),
            (topic::RECORD, ra::READ_RESPONSE) => out.push(Action::Send(publish(name, data, true))),
            (topic::EVENT, ea::SUBSCRIBE) if msg.is_ack == Some(true) => {
                let Some(id) = packet_id(SUBSCRIBE_TAG) else {
                    return;
                };
                let Some(at) = self.pending.iter().position(|(p, _, _)| *p == id) else {
                    return;
                };
                let (_, _, codes) = self.pending.remove(at);
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&codes);
                out.push(Action::Send(packet(SUBACK, 0, &body)));
            }
            (topic::EVENT, ea::UNSUBSCRIBE) if msg.is_ack == Some(true) => {
                if let Some(id) = packet_id(SUBSCRIBE_TAG) {
                    out.push(Action::Send(with_id(UNSUBACK, id)));
                }
            }
            (topic::EVENT, ea::MESSAGE_DENIED | ea::MESSAGE_PERMISSION_ERROR)
                if msg.original_action == Some(ea::SUBSCRIBE) =>
            {
                // The topic's return code in the SUBACK to come: failure.
                for (_, names, codes) in &mut self.pending {
                    for (n, code) in names.iter().zip(codes.iter_mut()) {
                        if n.as_ref() == name {
                            *code = 0x80;
                        }
                    }
                }
            }
            // A retained publish's record write: PUBACK once stored. MQTT 3.1.1 has no negative
            // PUBACK; a server that does not do a PUBLISH either acknowledges it anyway or closes
            // the connection [MQTT-3.3.5-2]. Acknowledging would say a refused or failed write
            // was kept, so the connection is closed and the device sends it again (QoS 1).
            (topic::RECORD, ra::WRITE_ACKNOWLEDGEMENT) => {
                if let Some(id) = packet_id(WRITE_TAG) {
                    out.push(Action::Send(with_id(PUBACK, id)));
                }
            }
            (topic::RECORD, _) if msg.is_error == Some(true) && packet_id(WRITE_TAG).is_some() => {
                out.push(Action::Close(
                    "a retained publish was refused or not stored",
                ));
            }
            _ => {}
        }
    }

    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// CONNECT seen, its answer not yet given: what the client sends meanwhile waits.
    pub fn awaiting_login(&self) -> bool {
        self.connected && !self.logged_in
    }
}

#[cfg(test)]
mod tests;
