//! Codecs of the endpoints besides `ws-binary`: each turns what its clients send into the same
//! `Message`s the shard handles from binary frames, and the shard's outgoing frames back into
//! its own protocol. Sans-I/O; the connection (`net::conn`, `net::mqtt`) runs them.

pub mod frame;
pub mod json;
pub mod mqtt;
pub mod text;
pub mod typed;

use crate::protocol::message::Message;
use bytes::Bytes;

/// What one client frame turns into.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// A message for the shard.
    Message(Box<Message>),
    /// An answer the codec gives itself (the protocol's error for input it cannot read).
    Reply(Bytes),
}

/// The message in a frame the shard queued (a WebSocket binary frame carrying protobuf);
/// `None` for anything else (a close, a pong).
pub fn shard_message(frame: &Bytes) -> Option<Message> {
    let (opcode, payload) = crate::protocol::ws::server_frame_payload(frame)?;
    if opcode != crate::protocol::ws::OP_BINARY {
        return None;
    }
    Message::parse(&payload).ok()
}

/// A WebSocket endpoint's protocol: `ws-text` or `ws-json` (`ws-binary` needs no codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsCodec {
    Text,
    Json,
    Frame,
    /// `Protocol::Echo`: messages go back to their sender, never to the shard.
    Echo,
}

impl WsCodec {
    pub fn of(protocol: crate::config::endpoints::Protocol) -> Option<WsCodec> {
        use crate::config::endpoints::Protocol;
        match protocol {
            Protocol::Text => Some(WsCodec::Text),
            Protocol::Json => Some(WsCodec::Json),
            Protocol::Frame => Some(WsCodec::Frame),
            Protocol::Echo => Some(WsCodec::Echo),
            Protocol::Binary | Protocol::Mqtt => None,
        }
    }

    /// What the shard must hear before the client says anything.
    pub fn opening(self) -> Option<Box<Message>> {
        match self {
            WsCodec::Text => Some(text::opening_message()),
            WsCodec::Json | WsCodec::Frame | WsCodec::Echo => None,
        }
    }

    /// Whether its clients send binary WebSocket frames (else text frames).
    pub fn reads_binary(self) -> bool {
        self == WsCodec::Frame
    }

    /// The WebSocket opcode of its frames.
    pub fn opcode(self) -> u8 {
        if self.reads_binary() {
            crate::protocol::ws::OP_BINARY
        } else {
            crate::protocol::ws::OP_TEXT
        }
    }

    /// The answer to a frame of the other kind (text for `ws-frame`, binary for the others).
    pub fn wrong_frame_refused(self) -> Bytes {
        match self {
            WsCodec::Frame => {
                let mut out = Vec::new();
                frame::encode(
                    &Message {
                        data: Some(Bytes::from_static(b"\"text frames are not read here\"")),
                        ..Message::new(
                            crate::protocol::message::topic::PARSER,
                            crate::protocol::message::parser_action::MESSAGE_PARSE_ERROR,
                        )
                    },
                    &mut out,
                );
                Bytes::from(out)
            }
            WsCodec::Text => Bytes::from_static(
                b"X\x1fE\x1fMESSAGE_PARSE_ERROR\x1fbinary frames are not read here\x1e",
            ),
            WsCodec::Json => Bytes::from_static(
                br#"{"topic":1,"action":4,"data":"\"binary frames are not read here\""}"#,
            ),
            WsCodec::Echo => Bytes::new(),
        }
    }
}

/// A shard's recent transcodings: a fan-out hands the same frame (one `Bytes`) to every
/// subscriber, so each endpoint's form of it is made once per shard, not once per subscriber.
/// A slot keeps its source frame alive, so an address seen again is the same frame; only
/// frames up to `CACHED_MAX` bytes are kept, so the memory held is bounded (4,096 slots of at
/// most 2 KiB and its transcoding: under 16 MiB per shard, far less for usual messages). The
/// slots must outnumber the frames a burst puts in flight: subscribers drain their outboxes
/// at their own pace.
pub struct Transcoded {
    slots: Vec<Option<(WsCodec, Bytes, Bytes)>>,
}

const CACHE_SLOTS: usize = 4096;
const CACHED_MAX: usize = 2048;

impl Default for Transcoded {
    fn default() -> Self {
        Transcoded {
            slots: vec![None; CACHE_SLOTS],
        }
    }
}

impl Transcoded {
    fn slot(frame: &Bytes) -> usize {
        (frame.as_ptr() as usize >> 4) % CACHE_SLOTS
    }

    fn get(&self, kind: WsCodec, frame: &Bytes) -> Option<&Bytes> {
        match self.slots.get(Self::slot(frame))? {
            Some((k, source, out))
                if *k == kind
                    && source.as_ptr() == frame.as_ptr()
                    && source.len() == frame.len() =>
            {
                Some(out)
            }
            _ => None,
        }
    }

    fn put(&mut self, kind: WsCodec, frame: &Bytes, out: Bytes) {
        if frame.len() <= CACHED_MAX {
            if let Some(slot) = self.slots.get_mut(Self::slot(frame)) {
                *slot = Some((kind, frame.clone(), out));
            }
        }
    }
}

/// One connection's codec and what it keeps between frames.
#[derive(Debug)]
pub struct Codec {
    kind: WsCodec,
    reads: text::ReadsInFlight,
    partial: frame::Partial,
    max_message: usize,
}

impl Codec {
    pub fn new(kind: WsCodec, max_message: usize) -> Box<Codec> {
        Box::new(Codec {
            kind,
            reads: text::ReadsInFlight::default(),
            partial: frame::Partial::default(),
            max_message,
        })
    }

    pub fn kind(&self) -> WsCodec {
        self.kind
    }

    /// Reads one text frame.
    pub fn decode(&mut self, frame: &Bytes, out: &mut Vec<Inbound>) {
        match self.kind {
            WsCodec::Text => {
                let from = out.len();
                text::decode(frame, out);
                for item in out.get(from..).unwrap_or_default() {
                    if let Inbound::Message(msg) = item {
                        self.reads.on_request(msg);
                    }
                }
            }
            WsCodec::Json => json::decode(frame, out),
            WsCodec::Frame => frame::decode(frame, &mut self.partial, self.max_message, out),
            // Answered by the connection itself, in the frame's own opcode.
            WsCodec::Echo => {}
        }
    }

    /// Rewrites the frames the shard queued (protobuf in binary frames) as this protocol's
    /// frames, in order; other frames (a close) pass as they are. V3 messages that follow
    /// one another share one frame, as the reference's buffered writes do.
    pub fn rewrite(&mut self, frames: &mut Vec<Bytes>, cache: &mut Transcoded) {
        let mut rewritten = Vec::with_capacity(frames.len());
        let mut text = Vec::with_capacity(frames.iter().map(|f| f.len() * 2).sum());
        let opcode = self.kind.opcode();
        let flush = |text: &mut Vec<u8>, rewritten: &mut Vec<Bytes>| {
            if !text.is_empty() {
                rewritten.push(crate::protocol::ws::frame(opcode, text));
                text.clear();
            }
        };
        for frame in frames.drain(..) {
            // A V3 client waiting for a read needs the message itself (`ReadsInFlight`).
            let needs_message = self.kind == WsCodec::Text && !self.reads.is_empty();
            match cache.get(self.kind, &frame).filter(|_| !needs_message) {
                Some(encoded) => text.extend_from_slice(encoded),
                None => {
                    let Some(msg) = shard_message(&frame) else {
                        flush(&mut text, &mut rewritten);
                        rewritten.push(frame);
                        continue;
                    };
                    if self.kind == WsCodec::Text && !self.reads.passes(&msg) {
                        continue;
                    }
                    let mut out = Vec::new();
                    match self.kind {
                        WsCodec::Text => text::encode(&msg, &mut out),
                        WsCodec::Json => json::encode(&msg, &mut out),
                        WsCodec::Frame => frame::encode(&msg, &mut out),
                        // An echo connection hears only its own messages.
                        WsCodec::Echo => continue,
                    }
                    text.extend_from_slice(&out);
                    cache.put(self.kind, &frame, Bytes::from(out));
                }
            }
            // JSON has one message per frame; V3 and 4.0 messages that follow one another
            // share one frame.
            if self.kind == WsCodec::Json {
                flush(&mut text, &mut rewritten);
            }
        }
        flush(&mut text, &mut rewritten);
        *frames = rewritten;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::{event_action, topic};
    use crate::protocol::ws;

    /// A shard's frame of an emit of `name`.
    fn emit(name: &'static [u8]) -> Bytes {
        let msg = Message {
            name: Some(Bytes::from_static(name)),
            data: Some(Bytes::from_static(b"1")),
            ..Message::new(topic::EVENT, event_action::EMIT)
        };
        ws::frame(ws::OP_BINARY, &msg.encode())
    }

    #[test]
    fn shard_frames_become_text_frames_in_order() {
        let close = ws::close_frame(1000, "");
        let mut frames = vec![emit(b"a"), emit(b"b"), close.clone(), emit(b"c")];
        Codec::new(WsCodec::Text, 1 << 20).rewrite(&mut frames, &mut Transcoded::default());
        assert_eq!(frames.len(), 3);
        let payload = |f: &Bytes| ws::server_frame_payload(f).expect("frame");
        assert_eq!(
            payload(&frames[0]),
            (
                ws::OP_TEXT,
                Bytes::from_static(b"E\x1fEVT\x1fa\x1fN1\x1eE\x1fEVT\x1fb\x1fN1\x1e")
            )
        );
        assert_eq!(frames[1], close);
        let mut frames = vec![emit(b"a"), emit(b"b")];
        Codec::new(WsCodec::Json, 1 << 20).rewrite(&mut frames, &mut Transcoded::default());
        assert_eq!(frames.len(), 2);
        assert_eq!(
            payload(&frames[1]).1,
            Bytes::from_static(br#"{"topic":4,"action":2,"name":"b","data":"1","parsedData":1}"#)
        );
    }

    #[test]
    fn a_shared_frame_is_transcoded_once_per_shard_and_kind() {
        let (a, b) = (emit(b"a"), emit(b"b"));
        let mut cache = Transcoded::default();
        let mut first = vec![a.clone(), b.clone()];
        Codec::new(WsCodec::Text, 1 << 20).rewrite(&mut first, &mut cache);
        assert!(cache.get(WsCodec::Text, &a).is_some());
        assert!(cache.get(WsCodec::Json, &a).is_none(), "per kind");
        // Another subscriber's connection gets the same bytes from the cache.
        let mut second = vec![a.clone(), b.clone()];
        Codec::new(WsCodec::Text, 1 << 20).rewrite(&mut second, &mut cache);
        assert_eq!(first, second);
        // An equal frame in another allocation is transcoded on its own.
        let copy = Bytes::copy_from_slice(&a);
        assert!(cache.get(WsCodec::Text, &copy).is_none());
    }
}
