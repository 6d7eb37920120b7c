//! `ShardMsg` as bytes, for messages that cross nodes. Every length is checked against what is
//! left of the input before anything is allocated, so any input decodes or fails cleanly.

use crate::core::ids::ConnId;
use crate::permission::rules::User;
use crate::protocol::message::Message;
use crate::shard::msg::{Kind, Refs, ShardMsg};
use bytes::Bytes;
use simd_json::prelude::*;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    Truncated,
    BadTag(u8),
    BadMessage,
    BadJson,
    BadPattern,
    /// Bytes left over after a whole message.
    Trailing,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster message unreadable: {self:?}")
    }
}

impl std::error::Error for WireError {}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
    }
    fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
            None => self.u8(0),
        }
    }
    fn conn(&mut self, c: ConnId) {
        self.u32(c.node);
        self.u16(c.shard);
        self.u32(c.local);
    }
    fn kind(&mut self, k: Kind) {
        self.u8(k as u8);
    }
    fn json(&mut self, v: &simd_json::OwnedValue) {
        self.bytes(v.encode().as_bytes());
    }
}

struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.input.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.take(N)?.try_into().map_err(|_| WireError::Truncated)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }
    fn bytes(&mut self) -> Result<Bytes, WireError> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
    fn string(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| WireError::BadJson)
    }
    fn opt<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        Ok(if self.bool()? { Some(get(self)?) } else { None })
    }
    /// A count of items each at least `min` bytes long: never more than the input can hold.
    fn count(&mut self, min: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min.max(1)) > self.input.len() {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }
    fn conn(&mut self) -> Result<ConnId, WireError> {
        Ok(ConnId {
            node: self.u32()?,
            shard: self.u16()?,
            local: self.u32()?,
        })
    }
    fn kind(&mut self) -> Result<Kind, WireError> {
        match self.u8()? {
            0 => Ok(Kind::Event),
            1 => Ok(Kind::Record),
            other => Err(WireError::BadTag(other)),
        }
    }
    fn json(&mut self) -> Result<simd_json::OwnedValue, WireError> {
        let text = self.bytes()?;
        crate::core::json::parse(&text).map_err(|_| WireError::BadJson)
    }
}

/// The bytes of `msg`; `None` for what never leaves a node (metrics replies, admin requests).
pub fn encode(msg: &ShardMsg) -> Option<Bytes> {
    let mut w = Writer(Vec::new());
    match msg {
        ShardMsg::Op {
            msg,
            from,
            user,
            refs,
        } => {
            w.u8(1);
            w.bytes(&msg.encode());
            w.conn(*from);
            w.opt(user.as_deref(), |w, u| {
                w.bytes(&u.id);
                w.bool(u.authenticated);
                w.opt(u.server_data.as_ref(), |w, d| w.json(d));
            });
            w.opt(refs.as_deref(), |w, refs| {
                w.u32(refs.len() as u32);
                for (name, data) in refs {
                    w.bytes(name.as_bytes());
                    w.opt(data.as_ref(), |w, d| w.json(d));
                }
            });
        }
        ShardMsg::RuleRead {
            names,
            token,
            reply_to,
        } => {
            w.u8(2);
            w.u32(names.len() as u32);
            for n in names {
                w.bytes(n.as_bytes());
            }
            w.u64(*token);
            w.u16(*reply_to);
        }
        ShardMsg::RuleData { token, records } => {
            w.u8(3);
            w.u64(*token);
            w.u32(records.len() as u32);
            for (name, data) in records {
                w.bytes(name.as_bytes());
                w.opt(data.as_ref(), |w, d| w.bytes(d));
            }
        }
        ShardMsg::Emit { name, data, from } => {
            w.u8(4);
            w.bytes(name);
            w.opt(data.as_ref(), |w, d| w.bytes(d));
            w.conn(*from);
        }
        ShardMsg::Interest {
            kind,
            name,
            shard,
            on,
            confirm,
        } => {
            w.u8(5);
            w.kind(*kind);
            w.bytes(name);
            w.u16(*shard);
            w.bool(*on);
            w.opt(*confirm, |w, t| w.u64(t));
        }
        ShardMsg::InterestApplied { token } => {
            w.u8(6);
            w.u64(*token);
        }
        ShardMsg::Deliver {
            kind,
            name,
            frame,
            exclude,
        } => {
            w.u8(7);
            w.kind(*kind);
            w.bytes(name);
            w.bytes(frame);
            w.opt(*exclude, |w, c| w.conn(c));
        }
        ShardMsg::ToConn { conn, frame } => {
            w.u8(8);
            w.conn(*conn);
            w.bytes(frame);
        }
        ShardMsg::Listen {
            kind,
            pattern,
            conn,
            ..
        } => {
            // The compiled pattern stays behind; the receiver compiles the text again.
            w.u8(9);
            w.kind(*kind);
            w.bytes(pattern);
            w.conn(*conn);
        }
        ShardMsg::Unlisten {
            kind,
            pattern,
            conn,
        } => {
            w.u8(10);
            w.kind(*kind);
            w.bytes(pattern);
            w.conn(*conn);
        }
        ShardMsg::PresenceLogin { user, login, reply } => {
            w.u8(11);
            w.bytes(user);
            w.bool(*login);
            w.opt(reply.as_ref(), |w, (c, frame)| {
                w.conn(*c);
                w.bytes(frame);
            });
        }
        ShardMsg::PresenceChanged {
            user,
            online,
            login,
        } => {
            w.u8(12);
            w.bytes(user);
            w.bool(*online);
            w.opt(*login, |w, c| w.conn(c));
        }
        ShardMsg::PresenceApplied { user, login } => {
            w.u8(13);
            w.bytes(user);
            w.conn(*login);
        }
        ShardMsg::ConnClosed { conn } => {
            w.u8(14);
            w.conn(*conn);
        }
        ShardMsg::MetricsRequest { token, reply_to } => {
            w.u8(15);
            w.u64(*token);
            w.u16(*reply_to);
        }
        ShardMsg::Refresh {
            names,
            token,
            reply_to,
        } => {
            w.u8(16);
            w.u32(names.len() as u32);
            for n in names {
                w.bytes(n);
            }
            w.u64(*token);
            w.u16(*reply_to);
        }
        ShardMsg::Refreshed { token, failed } => {
            w.u8(17);
            w.u64(*token);
            w.u32(failed.len() as u32);
            for (name, action) in failed {
                w.bytes(name);
                w.u32(*action as u32);
            }
        }
        ShardMsg::Barrier {
            shard,
            token,
            names,
        } => {
            w.u8(18);
            w.u16(*shard);
            w.u64(*token);
            w.u32(names.len() as u32);
            for n in names {
                w.bytes(n);
            }
        }
        // Node-local: gathered sums and admin requests carry process state (configs).
        ShardMsg::MetricsReply { .. }
        | ShardMsg::AdminRequest { .. }
        | ShardMsg::AdminReply { .. } => return None,
    }
    Some(Bytes::from(w.0))
}

/// A `ShardMsg` from bytes made by `encode`.
pub fn decode(input: &[u8]) -> Result<ShardMsg, WireError> {
    let mut r = Reader { input };
    let msg = match r.u8()? {
        1 => {
            let msg = Message::parse_boxed(&r.bytes()?).map_err(|_| WireError::BadMessage)?;
            let from = r.conn()?;
            let user = r.opt(|r| {
                Ok(Arc::new(User {
                    id: r.bytes()?,
                    authenticated: r.bool()?,
                    server_data: r.opt(Reader::json)?,
                }))
            })?;
            let refs = r.opt(|r| {
                let n = r.count(5)?;
                let mut refs: Refs = Vec::with_capacity(n);
                for _ in 0..n {
                    refs.push((r.string()?, r.opt(Reader::json)?));
                }
                Ok(Arc::new(refs))
            })?;
            ShardMsg::Op {
                msg,
                from,
                user,
                refs,
            }
        }
        2 => {
            let n = r.count(4)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string()?);
            }
            ShardMsg::RuleRead {
                names,
                token: r.u64()?,
                reply_to: r.u16()?,
            }
        }
        3 => {
            let token = r.u64()?;
            let n = r.count(5)?;
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                records.push((r.string()?, r.opt(Reader::bytes)?));
            }
            ShardMsg::RuleData { token, records }
        }
        4 => ShardMsg::Emit {
            name: r.bytes()?,
            data: r.opt(Reader::bytes)?,
            from: r.conn()?,
        },
        5 => ShardMsg::Interest {
            kind: r.kind()?,
            name: r.bytes()?,
            shard: r.u16()?,
            on: r.bool()?,
            confirm: r.opt(Reader::u64)?,
        },
        6 => ShardMsg::InterestApplied { token: r.u64()? },
        7 => ShardMsg::Deliver {
            kind: r.kind()?,
            name: r.bytes()?,
            frame: r.bytes()?,
            exclude: r.opt(Reader::conn)?,
        },
        8 => ShardMsg::ToConn {
            conn: r.conn()?,
            frame: r.bytes()?,
        },
        9 => {
            let kind = r.kind()?;
            let pattern = r.bytes()?;
            let text = std::str::from_utf8(&pattern).map_err(|_| WireError::BadPattern)?;
            let regex = crate::core::bounded_regex(text).map_err(|_| WireError::BadPattern)?;
            ShardMsg::Listen {
                kind,
                pattern,
                regex: Some(Arc::new(regex)),
                conn: r.conn()?,
            }
        }
        10 => ShardMsg::Unlisten {
            kind: r.kind()?,
            pattern: r.bytes()?,
            conn: r.conn()?,
        },
        11 => ShardMsg::PresenceLogin {
            user: r.bytes()?,
            login: r.bool()?,
            reply: r.opt(|r| Ok((r.conn()?, r.bytes()?)))?,
        },
        12 => ShardMsg::PresenceChanged {
            user: r.bytes()?,
            online: r.bool()?,
            login: r.opt(Reader::conn)?,
        },
        13 => ShardMsg::PresenceApplied {
            user: r.bytes()?,
            login: r.conn()?,
        },
        14 => ShardMsg::ConnClosed { conn: r.conn()? },
        15 => ShardMsg::MetricsRequest {
            token: r.u64()?,
            reply_to: r.u16()?,
        },
        16 => {
            let n = r.count(4)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.bytes()?);
            }
            ShardMsg::Refresh {
                names,
                token: r.u64()?,
                reply_to: r.u16()?,
            }
        }
        17 => {
            let token = r.u64()?;
            let n = r.count(8)?;
            let mut failed = Vec::with_capacity(n);
            for _ in 0..n {
                failed.push((r.bytes()?, r.u32()? as i32));
            }
            ShardMsg::Refreshed { token, failed }
        }
        18 => {
            let (shard, token) = (r.u16()?, r.u64()?);
            let n = r.count(4)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.bytes()?);
            }
            ShardMsg::Barrier {
                shard,
                token,
                names,
            }
        }
        tag => return Err(WireError::BadTag(tag)),
    };
    if !r.input.is_empty() {
        return Err(WireError::Trailing);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conn(n: u32) -> ConnId {
        ConnId {
            node: 7,
            shard: 2,
            local: n,
        }
    }

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn samples() -> Vec<ShardMsg> {
        let json = |t: &str| crate::core::json::parse(t.as_bytes()).ok();
        vec![
            ShardMsg::Op {
                msg: Box::new(Message {
                    name: Some(b("rec")),
                    data: Some(b("{\"a\":1}")),
                    version: Some(3),
                    ..Message::new(5, 1)
                }),
                from: conn(1),
                user: Some(Arc::new(User {
                    id: b("alice"),
                    authenticated: true,
                    server_data: json(r#"{"role":"admin"}"#),
                })),
                refs: Some(Arc::new(vec![
                    ("settings".into(), json(r#"{"open":true}"#)),
                    ("gone".into(), None),
                ])),
            },
            ShardMsg::Op {
                msg: Box::new(Message::new(6, 2)),
                from: conn(2),
                user: None,
                refs: None,
            },
            ShardMsg::RuleRead {
                names: vec!["a".into(), "b".into()],
                token: 9,
                reply_to: 1,
            },
            ShardMsg::RuleData {
                token: 9,
                records: vec![("a".into(), Some(b("{}"))), ("b".into(), None)],
            },
            ShardMsg::Emit {
                name: b("news"),
                data: Some(b("1")),
                from: conn(3),
            },
            ShardMsg::Interest {
                kind: Kind::Record,
                name: b("rec"),
                shard: 1,
                on: true,
                confirm: Some(4),
            },
            ShardMsg::InterestApplied { token: 4 },
            ShardMsg::Deliver {
                kind: Kind::Event,
                name: b("news"),
                frame: b("frame"),
                exclude: Some(conn(3)),
            },
            ShardMsg::ToConn {
                conn: conn(4),
                frame: b("f"),
            },
            ShardMsg::Unlisten {
                kind: Kind::Event,
                pattern: b("^a/.*"),
                conn: conn(5),
            },
            ShardMsg::PresenceLogin {
                user: b("alice"),
                login: true,
                reply: Some((conn(6), b("ok"))),
            },
            ShardMsg::PresenceChanged {
                user: b("alice"),
                online: false,
                login: None,
            },
            ShardMsg::PresenceApplied {
                user: b("alice"),
                login: conn(6),
            },
            ShardMsg::ConnClosed { conn: conn(6) },
            ShardMsg::MetricsRequest {
                token: 1,
                reply_to: 0,
            },
            ShardMsg::Refresh {
                names: vec![Bytes::from_static(b"a/1"), Bytes::from_static(b"b")],
                token: 9,
                reply_to: 1,
            },
            ShardMsg::Refreshed {
                token: 9,
                failed: vec![(Bytes::from_static(b"a/1"), 103)],
            },
        ]
    }

    #[test]
    fn every_message_bound_for_an_owner_round_trips() {
        for msg in samples() {
            let bytes = encode(&msg).expect("encodes");
            let back = decode(&bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
            // Messages hold JSON and regexes, which compare by their text.
            assert_eq!(format!("{back:?}"), format!("{msg:?}"));
            // Every truncation, and anything appended, fails cleanly.
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{msg:?} cut at {cut}");
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(decode(&longer).err(), Some(WireError::Trailing));
        }
        let listen = ShardMsg::Listen {
            kind: Kind::Record,
            pattern: b("^prices/.*"),
            regex: None,
            conn: conn(8),
        };
        match decode(&encode(&listen).expect("encodes")) {
            Ok(ShardMsg::Listen {
                regex: Some(regex),
                pattern,
                ..
            }) => {
                assert!(regex.is_match("prices/x"));
                assert_eq!(pattern, b("^prices/.*"));
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&input);
        }
    }
}
