//! How the cluster addresses NATS: subjects for names, and what a published message carries.
//!
//! A name becomes one subject token: ASCII letters, digits and `-` stay as they are, every
//! other byte is `_` and two upper-case hex digits (`a/b.c` → `a_2Fb_2Ec`), and the empty name
//! is `_`. A token longer than `MAX_TOKEN` is `=` and the SHA-256 of the name in hex instead.
//! The token is also a valid JetStream key-value key. Payloads carry the name itself, so a
//! hashed subject never needs reversing.

use super::{ListenOp, RecordChange};
use crate::core::ids::{ConnId, NodeId};
use crate::core::Kind;
use crate::store::StoredRecord;
use bytes::{BufMut, Bytes, BytesMut};
use sha2::Digest;

/// Escaped names longer than this are hashed (NATS reads subjects on a 4 KiB control line).
pub const MAX_TOKEN: usize = 1024;

/// Appends `name`'s subject token to `out`.
pub fn push_token(out: &mut String, name: &[u8]) {
    if name.is_empty() {
        out.push('_');
        return;
    }
    let escaped: usize = name.iter().map(|&b| if plain(b) { 1 } else { 3 }).sum();
    if escaped > MAX_TOKEN {
        out.push('=');
        for byte in sha2::Sha256::digest(name) {
            push_hex(out, byte);
        }
        return;
    }
    out.reserve(escaped);
    for &byte in name {
        if plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push('_');
            push_hex(out, byte);
        }
    }
}

fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-'
}

fn push_hex(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 15)]));
}

/// The subject other nodes publish `name` on: `<prefix>.e.<token>` for events,
/// `<prefix>.r.<token>` for records.
pub fn name_subject(prefix: &str, kind: Kind, name: &[u8]) -> String {
    let mut subject = String::with_capacity(prefix.len() + 3 + name.len());
    subject.push_str(prefix);
    subject.push_str(match kind {
        Kind::Event => ".e.",
        Kind::Record => ".r.",
    });
    push_token(&mut subject, name);
    subject
}

/// A published message: the name's length (u32, little-endian), the name, then the frames
/// published to it in order, each with its length (u32). A node's burst of emits to one
/// name crosses as one message, so the nodes that want it wake once for all of them.
pub fn encode_published(name: &[u8], frames: &[Bytes]) -> Bytes {
    let size: usize = frames.iter().map(|f| 4 + f.len()).sum();
    let mut out = BytesMut::with_capacity(4 + name.len() + size);
    out.put_u32_le(u32::try_from(name.len()).unwrap_or(u32::MAX));
    out.put_slice(name);
    put_frames(&mut out, frames);
    out.freeze()
}

/// Frames one after another, each with its length (u32).
fn put_frames(out: &mut BytesMut, frames: &[Bytes]) {
    for frame in frames {
        out.put_u32_le(u32::try_from(frame.len()).unwrap_or(u32::MAX));
        out.put_slice(frame);
    }
}

/// The frames of a published message's rest (slices, not copies); `None` if it is not one.
pub fn decode_frames(mut rest: Bytes) -> Option<Vec<Bytes>> {
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let len = usize::try_from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
        let end = len.checked_add(4)?;
        if end > rest.len() {
            return None;
        }
        frames.push(rest.slice(4..end));
        rest = rest.slice(end..);
    }
    Some(frames)
}

/// The name and the rest of a published message (slices of `payload`, not copies); `None` if
/// it is not one.
pub fn decode_published(payload: &Bytes) -> Option<(Bytes, Bytes)> {
    let len = payload.get(..4)?;
    let len = usize::try_from(u32::from_le_bytes(len.try_into().ok()?)).ok()?;
    let end = len.checked_add(4)?;
    if end > payload.len() {
        return None;
    }
    Some((payload.slice(4..end), payload.slice(end..)))
}

/// The subject every node hears for the cluster's own business: `<prefix>.node.<what>`
/// (`presence`, `heartbeat`, `sync`).
pub fn node_subject(prefix: &str, what: &str) -> String {
    format!("{prefix}.node.{what}")
}

/// A presence change: the node (u32, little-endian), 1 or 0 for online, the user name.
pub fn encode_presence(node: NodeId, user: &[u8], online: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + user.len());
    out.put_u32_le(node);
    out.put_u8(u8::from(online));
    out.put_slice(user);
    out.freeze()
}

pub fn decode_presence(payload: &Bytes) -> Option<(NodeId, Bytes, bool)> {
    let node = decode_node(payload)?;
    let online = match payload.get(4)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some((node, payload.slice(5..), online))
}

/// A heartbeat or sync request: the node's id.
pub fn encode_node(node: NodeId) -> Bytes {
    Bytes::copy_from_slice(&node.to_le_bytes())
}

pub fn decode_node(payload: &[u8]) -> Option<NodeId> {
    Some(u32::from_le_bytes(payload.get(..4)?.try_into().ok()?))
}

/// A node's own subject, for what is addressed to it: `<prefix>.to.<node in hex>`.
pub fn direct_subject(prefix: &str, node: NodeId) -> String {
    format!("{prefix}.to.{node:08x}")
}

/// A provider change: node, 1 or 0 for on, the connection's shard (u16) and number (u32),
/// then the RPC name.
pub fn encode_provider(node: NodeId, on: bool, shard: u16, local: u32, name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(11 + name.len());
    out.put_u32_le(node);
    out.put_u8(u8::from(on));
    out.put_u16_le(shard);
    out.put_u32_le(local);
    out.put_slice(name);
    out.freeze()
}

pub fn decode_provider(payload: &Bytes) -> Option<(ConnId, bool, Bytes)> {
    let node = decode_node(payload)?;
    let on = match payload.get(4)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let shard = u16::from_le_bytes(payload.get(5..7)?.try_into().ok()?);
    let local = u32::from_le_bytes(payload.get(7..11)?.try_into().ok()?);
    let conn = ConnId { node, shard, local };
    Some((conn, on, payload.slice(11..)))
}

/// A barrier on the providers' subject for `name`: the node, 2 (a provider change has 0 or
/// 1 there), the name.
pub fn encode_barrier(node: NodeId, name: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + name.len());
    out.put_u32_le(node);
    out.put_u8(2);
    out.put_slice(name);
    out.freeze()
}

/// The name of a barrier; `None` if the payload is not one.
pub fn decode_barrier(payload: &Bytes) -> Option<Bytes> {
    (payload.get(4) == Some(&2)).then(|| payload.slice(5..))
}

/// A listener change: as a provider change, with the kind (0 events, 1 records) before the
/// pattern.
pub fn encode_listener(node: NodeId, on: bool, conn: ConnId, kind: Kind, pattern: &[u8]) -> Bytes {
    let mut named = BytesMut::with_capacity(1 + pattern.len());
    named.put_u8(kind as u8);
    named.put_slice(pattern);
    encode_provider(node, on, conn.shard, conn.local, &named)
}

pub fn decode_listener(payload: &Bytes) -> Option<(ConnId, bool, Kind, Bytes)> {
    let (conn, on, named) = decode_provider(payload)?;
    let kind = kind_of(*named.first()?)?;
    Some((conn, on, kind, named.slice(1..)))
}

fn kind_of(byte: u8) -> Option<Kind> {
    match byte {
        0 => Some(Kind::Event),
        1 => Some(Kind::Record),
        _ => None,
    }
}

/// What one node sends another.
#[derive(Debug, Clone, PartialEq)]
pub enum Direct {
    /// A frame for connection `local` of `shard`; an RPC request's correlation id.
    ToConn {
        shard: u16,
        local: u32,
        frame: Bytes,
        rpc_call: Option<Bytes>,
    },
    /// A provider's answer from connection (`shard`, `local`) of the sending node.
    RpcAnswer { shard: u16, local: u32, msg: Bytes },
    /// Listening business about a name; its connections are read as the sender's.
    Listen {
        kind: Kind,
        name: Bytes,
        op: ListenOp,
    },
}

/// A listening op as (code, connection, pattern).
fn listen_op_parts(op: &ListenOp) -> (u8, Option<ConnId>, &[u8]) {
    match op {
        ListenOp::Interest(on) => (1 + u8::from(*on), None, &[]),
        ListenOp::Response {
            conn,
            pattern,
            accept,
        } => (3 + u8::from(*accept), Some(*conn), pattern),
        ListenOp::Claim { conn, pattern } => (5, Some(*conn), pattern),
        ListenOp::Removed { conn, pattern } => (6, Some(*conn), pattern),
        ListenOp::HasProvider(has) => (7 + u8::from(*has), None, &[]),
    }
}

fn listen_op(code: u8, conn: ConnId, pattern: Bytes) -> Option<ListenOp> {
    Some(match code {
        1 | 2 => ListenOp::Interest(code == 2),
        3 | 4 => ListenOp::Response {
            conn,
            pattern,
            accept: code == 4,
        },
        5 => ListenOp::Claim { conn, pattern },
        6 => ListenOp::Removed { conn, pattern },
        7 | 8 => ListenOp::HasProvider(code == 8),
        _ => return None,
    })
}

/// A direct message: the sender (u32), a tag, then the tag's fields.
pub fn encode_direct(from: NodeId, direct: &Direct) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32_le(from);
    match direct {
        Direct::ToConn {
            shard,
            local,
            frame,
            rpc_call,
        } => {
            out.put_u8(1);
            out.put_u16_le(*shard);
            out.put_u32_le(*local);
            let call = rpc_call.as_deref().unwrap_or_default();
            out.put_u8(u8::from(rpc_call.is_some()));
            out.put_u32_le(u32::try_from(call.len()).unwrap_or(u32::MAX));
            out.put_slice(call);
            out.put_slice(frame);
        }
        Direct::RpcAnswer { shard, local, msg } => {
            out.put_u8(2);
            out.put_u16_le(*shard);
            out.put_u32_le(*local);
            out.put_slice(msg);
        }
        Direct::Listen { kind, name, op } => {
            let (code, conn, pattern) = listen_op_parts(op);
            out.put_u8(3);
            out.put_u16_le(conn.map_or(0, |c| c.shard));
            out.put_u32_le(conn.map_or(0, |c| c.local));
            out.put_u8(*kind as u8);
            out.put_u8(code);
            out.put_u32_le(u32::try_from(name.len()).unwrap_or(u32::MAX));
            out.put_slice(name);
            out.put_slice(pattern);
        }
    }
    out.freeze()
}

pub fn decode_direct(payload: &Bytes) -> Option<(NodeId, Direct)> {
    let from = decode_node(payload)?;
    let tag = *payload.get(4)?;
    let shard = u16::from_le_bytes(payload.get(5..7)?.try_into().ok()?);
    let local = u32::from_le_bytes(payload.get(7..11)?.try_into().ok()?);
    let direct = match tag {
        1 => {
            let has_call = *payload.get(11)? == 1;
            let len =
                usize::try_from(u32::from_le_bytes(payload.get(12..16)?.try_into().ok()?)).ok()?;
            let end = len.checked_add(16)?;
            payload.get(16..end)?;
            Direct::ToConn {
                shard,
                local,
                rpc_call: has_call.then(|| payload.slice(16..end)),
                frame: payload.slice(end..),
            }
        }
        2 => Direct::RpcAnswer {
            shard,
            local,
            msg: payload.slice(11..),
        },
        3 => {
            let kind = kind_of(*payload.get(11)?)?;
            let code = *payload.get(12)?;
            let len =
                usize::try_from(u32::from_le_bytes(payload.get(13..17)?.try_into().ok()?)).ok()?;
            let end = len.checked_add(17)?;
            payload.get(17..end)?;
            let conn = ConnId {
                node: from,
                shard,
                local,
            };
            Direct::Listen {
                kind,
                name: payload.slice(17..end),
                op: listen_op(code, conn, payload.slice(end..))?,
            }
        }
        _ => return None,
    };
    Some((from, direct))
}

/// A record as a bucket value: its version (i32, little-endian) and its data; the empty
/// value is a deleted record (a delete is a write, so it has a revision to compare).
pub fn encode_value(record: Option<&StoredRecord>) -> Bytes {
    let Some(record) = record else {
        return Bytes::new();
    };
    let mut out = BytesMut::with_capacity(4 + record.data.len());
    out.put_i32_le(record.version);
    out.put_slice(&record.data);
    out.freeze()
}

/// A bucket value corestream did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotARecord;

/// The record a bucket value holds (`Ok(None)`: deleted).
pub fn decode_value(value: &Bytes) -> Result<Option<StoredRecord>, NotARecord> {
    if value.is_empty() {
        return Ok(None);
    }
    let version = value.get(..4).ok_or(NotARecord)?;
    let version = i32::from_le_bytes(version.try_into().map_err(|_| NotARecord)?);
    Ok(Some(StoredRecord {
        version,
        data: value.slice(4..),
    }))
}

/// A record change on the bus: the name (u32 length, bytes), revision and previous revision
/// (u64 each), the record as a bucket value (u32 length, bytes), then the frames (each with
/// its u32 length).
pub fn encode_change(name: &[u8], change: &RecordChange) -> Bytes {
    let value = encode_value(change.record.as_ref());
    let frames: usize = change.frames.iter().map(|f| 4 + f.len()).sum();
    let mut out = BytesMut::with_capacity(24 + name.len() + value.len() + frames);
    out.put_u32_le(u32::try_from(name.len()).unwrap_or(u32::MAX));
    out.put_slice(name);
    out.put_u64_le(change.revision);
    out.put_u64_le(change.previous);
    out.put_u32_le(u32::try_from(value.len()).unwrap_or(u32::MAX));
    out.put_slice(&value);
    put_frames(&mut out, &change.frames);
    out.freeze()
}

/// The name and change of a record change message; `None` if it is not one.
pub fn decode_change(payload: &Bytes) -> Option<(Bytes, RecordChange)> {
    let (name, rest) = decode_published(payload)?;
    let revision = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let previous = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    let len = usize::try_from(u32::from_le_bytes(rest.get(16..20)?.try_into().ok()?)).ok()?;
    let end = len.checked_add(20)?;
    let value = rest.get(20..end).map(|_| rest.slice(20..end))?;
    let record = decode_value(&value).ok()?;
    Some((
        name,
        RecordChange {
            revision,
            previous,
            record,
            frames: decode_frames(rest.slice(end..))?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &[u8]) -> String {
        let mut out = String::new();
        push_token(&mut out, name);
        out
    }

    #[test]
    fn names_become_tokens_nats_and_key_value_keys_accept() {
        assert_eq!(token(b"chat-1"), "chat-1");
        assert_eq!(token(b"a/b.c"), "a_2Fb_2Ec");
        assert_eq!(token(b"x y*>_"), "x_20y_2A_3E_5F");
        assert_eq!(token("é".as_bytes()), "_C3_A9");
        assert_eq!(token(b""), "_");
        // Distinct names, distinct tokens: `_` itself is escaped.
        assert_ne!(token(b"_41"), token(b"A"));
        let long = vec![b'/'; MAX_TOKEN];
        let hashed = token(&long);
        assert!(hashed.starts_with('=') && hashed.len() == 65, "{hashed}");
        assert_ne!(hashed, token(&vec![b'/'; MAX_TOKEN + 1]));
        assert_eq!(token(&vec![b'a'; MAX_TOKEN]).len(), MAX_TOKEN);
        for name in [&b"a/b.c"[..], b"", b"\x00\xff", &long] {
            let t = token(name);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{t}"
            );
        }
        assert_eq!(name_subject("cs", Kind::Event, b"a.b"), "cs.e.a_2Eb");
        assert_eq!(name_subject("cs", Kind::Record, b"r"), "cs.r.r");
    }

    #[test]
    fn published_messages_read_back_and_garbage_is_refused() {
        let frames = [
            Bytes::from_static(b"frame"),
            Bytes::new(),
            Bytes::from_static(b"2"),
        ];
        let payload = encode_published(b"news", &frames);
        let (name, rest) = decode_published(&payload).expect("published");
        assert_eq!(name, Bytes::from_static(b"news"));
        assert_eq!(decode_frames(rest.clone()), Some(frames.to_vec()));
        for cut in 1..4 {
            assert_eq!(decode_frames(rest.slice(..rest.len() - cut)), None);
        }
        assert_eq!(
            decode_published(&encode_published(b"", &[])),
            Some((Bytes::new(), Bytes::new()))
        );
        assert_eq!(decode_frames(Bytes::new()), Some(Vec::new()));
        for bad in [
            &b""[..],
            b"\x01\x00",
            b"\x05\x00\x00\x00abc",
            b"\xff\xff\xff\xff",
        ] {
            assert_eq!(decode_published(&Bytes::copy_from_slice(bad)), None);
        }
    }

    #[test]
    fn records_and_changes_read_back_and_garbage_is_refused() {
        let record = StoredRecord {
            version: 7,
            data: Bytes::from_static(b"{\"a\":1}"),
        };
        assert_eq!(
            decode_value(&encode_value(Some(&record))),
            Ok(Some(record.clone()))
        );
        assert_eq!(decode_value(&encode_value(None)), Ok(None));
        assert_eq!(decode_value(&Bytes::from_static(b"\x01")), Err(NotARecord));
        for record in [Some(record), None] {
            let change = RecordChange {
                revision: 9,
                previous: 4,
                record,
                frames: vec![Bytes::from_static(b"frame"), Bytes::from_static(b"2")],
            };
            let payload = encode_change(b"r/1", &change);
            assert_eq!(
                decode_change(&payload),
                Some((Bytes::from_static(b"r/1"), change))
            );
            // Cut anywhere but between frames, it does not read.
            let frames_at = payload.len() - (4 + 5) - (4 + 1);
            for cut in (0..payload.len()).filter(|c| ![frames_at, frames_at + 9].contains(c)) {
                assert_eq!(decode_change(&payload.slice(..cut)), None, "{cut}");
            }
        }
    }

    #[test]
    fn presence_and_node_messages_read_back() {
        let payload = encode_presence(7, b"alice", true);
        assert_eq!(
            decode_presence(&payload),
            Some((7, Bytes::from_static(b"alice"), true))
        );
        assert_eq!(
            decode_presence(&encode_presence(1, b"", false)),
            Some((1, Bytes::new(), false))
        );
        assert_eq!(
            decode_presence(&Bytes::from_static(b"\x01\x00\x00\x00\x02x")),
            None
        );
        assert_eq!(decode_presence(&Bytes::from_static(b"\x01")), None);
        assert_eq!(decode_node(&encode_node(0xdead_beef)), Some(0xdead_beef));
        assert_eq!(node_subject("cs", "presence"), "cs.node.presence");
    }

    #[test]
    fn providers_and_direct_messages_read_back() {
        let payload = encode_provider(9, true, 3, 77, b"add");
        assert_eq!(
            decode_provider(&payload),
            Some((
                ConnId {
                    node: 9,
                    shard: 3,
                    local: 77
                },
                true,
                Bytes::from_static(b"add")
            ))
        );
        assert_eq!(decode_provider(&payload.slice(..10)), None);
        assert_eq!(
            decode_barrier(&encode_barrier(9, b"add")),
            Some(Bytes::from_static(b"add"))
        );
        assert_eq!(decode_barrier(&payload), None);
        assert_eq!(decode_provider(&encode_barrier(9, b"add")), None);
        for direct in [
            Direct::ToConn {
                shard: 1,
                local: 2,
                frame: Bytes::from_static(b"frame"),
                rpc_call: Some(Bytes::from_static(b"cid")),
            },
            Direct::ToConn {
                shard: 1,
                local: 2,
                frame: Bytes::new(),
                rpc_call: None,
            },
            Direct::RpcAnswer {
                shard: 0,
                local: 5,
                msg: Bytes::from_static(b"msg"),
            },
            Direct::Listen {
                kind: Kind::Record,
                name: Bytes::from_static(b"news/a"),
                op: ListenOp::Response {
                    conn: ConnId {
                        node: 4,
                        shard: 1,
                        local: 9,
                    },
                    pattern: Bytes::from_static(b"news/.*"),
                    accept: true,
                },
            },
            Direct::Listen {
                kind: Kind::Event,
                name: Bytes::new(),
                op: ListenOp::HasProvider(true),
            },
            Direct::Listen {
                kind: Kind::Event,
                name: Bytes::from_static(b"x"),
                op: ListenOp::Interest(false),
            },
        ] {
            let payload = encode_direct(4, &direct);
            assert_eq!(decode_direct(&payload), Some((4, direct)));
            for cut in 0..11 {
                assert_eq!(decode_direct(&payload.slice(..cut)), None);
            }
        }
        assert_eq!(direct_subject("cs", 0xab), "cs.to.000000ab");
        let conn = ConnId {
            node: 2,
            shard: 1,
            local: 3,
        };
        let payload = encode_listener(2, false, conn, Kind::Record, b"a/.*");
        assert_eq!(
            decode_listener(&payload),
            Some((conn, false, Kind::Record, Bytes::from_static(b"a/.*")))
        );
        assert_eq!(decode_listener(&payload.slice(..11)), None);
    }
}
