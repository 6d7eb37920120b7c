//! RFC 6455 framing without I/O: decodes client frames from a read buffer (unmasking in place,
//! payloads handed out as `Bytes` slices of that buffer) and builds server frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// One complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    Binary(Bytes),
    Text(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<u16>, Bytes),
}

/// A violation that ends the connection with the given close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    pub code: u16,
    pub reason: &'static str,
}

const fn violation(code: u16, reason: &'static str) -> WsError {
    WsError { code, reason }
}

/// Reassembles client frames into messages, bounded by `max_message` bytes.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message: usize,
    /// Opcode and collected payload of a fragmented message in progress (boxed: rare, and a
    /// decoder lives as long as its connection).
    partial: Option<Box<(u8, BytesMut)>>,
}

impl FrameDecoder {
    pub fn new(max_message: usize) -> Self {
        FrameDecoder {
            max_message,
            partial: None,
        }
    }

    /// Changes the largest message accepted from here on (a connection gets its full size
    /// once it has logged in).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    /// True while a fragmented message is half received.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Takes the next complete event out of `buf`, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<WsEvent>, WsError> {
        loop {
            let Some(frame) = self.next_frame(buf)? else {
                return Ok(None);
            };
            if let Some(event) = self.assemble(frame)? {
                return Ok(Some(event));
            }
        }
    }

    /// How many more bytes are needed before `decode` can make progress (at least 1).
    pub fn bytes_wanted(buf: &[u8]) -> usize {
        match header_len(buf) {
            Some((header, payload)) => (header + payload).saturating_sub(buf.len()).max(1),
            None => 1,
        }
    }

    fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(violation(CLOSE_PROTOCOL_ERROR, "reserved bits set"));
        }
        if b1 & 0x80 == 0 {
            return Err(violation(CLOSE_PROTOCOL_ERROR, "client frame not masked"));
        }
        let opcode = b0 & 0x0f;
        let fin = b0 & 0x80 != 0;
        let Some((header, payload_len)) = header_len(buf) else {
            return Ok(None);
        };
        let is_control = opcode & 0x08 != 0;
        if is_control && (payload_len > 125 || !fin) {
            return Err(violation(CLOSE_PROTOCOL_ERROR, "bad control frame"));
        }
        let collected = self.partial.as_ref().map_or(0, |p| p.1.len());
        if !is_control && collected.saturating_add(payload_len) > self.max_message {
            return Err(violation(CLOSE_TOO_BIG, "message too big"));
        }
        if buf.len() < header + payload_len {
            return Ok(None);
        }
        let mask = [
            buf[header - 4],
            buf[header - 3],
            buf[header - 2],
            buf[header - 1],
        ];
        buf.advance(header);
        let mut payload = buf.split_to(payload_len);
        unmask(&mut payload, mask);
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }

    fn assemble(&mut self, frame: Frame) -> Result<Option<WsEvent>, WsError> {
        let Frame {
            fin,
            opcode,
            payload,
        } = frame;
        match opcode {
            OP_PING => Ok(Some(WsEvent::Ping(payload.freeze()))),
            OP_PONG => Ok(Some(WsEvent::Pong(payload.freeze()))),
            OP_CLOSE => Ok(Some(parse_close(payload.freeze())?)),
            OP_TEXT | OP_BINARY => {
                if self.partial.is_some() {
                    return Err(violation(
                        CLOSE_PROTOCOL_ERROR,
                        "new message inside a fragmented one",
                    ));
                }
                if fin {
                    return Ok(Some(data_event(opcode, payload.freeze())?));
                }
                self.partial = Some(Box::new((opcode, payload)));
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some((first_opcode, mut collected)) = self.partial.take().map(|p| *p) else {
                    return Err(violation(
                        CLOSE_PROTOCOL_ERROR,
                        "continuation without a start",
                    ));
                };
                collected.extend_from_slice(&payload);
                if fin {
                    return Ok(Some(data_event(first_opcode, collected.freeze())?));
                }
                self.partial = Some(Box::new((first_opcode, collected)));
                Ok(None)
            }
            _ => Err(violation(CLOSE_PROTOCOL_ERROR, "unknown opcode")),
        }
    }
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

/// Header size (with mask) and payload length, once enough bytes are there to know them.
fn header_len(buf: &[u8]) -> Option<(usize, usize)> {
    let b1 = *buf.get(1)?;
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    match b1 & 0x7f {
        126 => {
            let len = u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]);
            Some((4 + mask, usize::from(len)))
        }
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            let len = usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX);
            Some((10 + mask, len))
        }
        len => Some((2 + mask, usize::from(len))),
    }
}

fn data_event(opcode: u8, payload: Bytes) -> Result<WsEvent, WsError> {
    if opcode == OP_TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(violation(CLOSE_INVALID_DATA, "text frame is not UTF-8"));
        }
        return Ok(WsEvent::Text(payload));
    }
    Ok(WsEvent::Binary(payload))
}

fn parse_close(payload: Bytes) -> Result<WsEvent, WsError> {
    match payload.len() {
        0 => Ok(WsEvent::Close(None, Bytes::new())),
        1 => Err(violation(CLOSE_PROTOCOL_ERROR, "close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !valid_close_code(code) {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "invalid close code"));
            }
            let reason = payload.slice(2..);
            if std::str::from_utf8(&reason).is_err() {
                return Err(violation(CLOSE_INVALID_DATA, "close reason is not UTF-8"));
            }
            Ok(WsEvent::Close(Some(code), reason))
        }
    }
}

/// Codes a peer may send (RFC 6455 7.4): the defined ones that are not reserved for local
/// use (1005, 1006, 1015), and the registered and private ranges.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// Length of a server frame header for a payload of `len` bytes (servers never mask).
pub fn frame_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

pub fn put_frame_header(out: &mut impl BufMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | opcode);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xffff => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

/// The opcode and payload of a complete unmasked frame as the server builds it (`frame`);
/// `None` for anything else. Used where the server reads its own frames back (HTTP API).
pub fn server_frame_payload(frame: &Bytes) -> Option<(u8, Bytes)> {
    let first = *frame.first()?;
    let second = *frame.get(1)?;
    if second & 0x80 != 0 {
        return None;
    }
    let (start, len): (usize, usize) = match second {
        0..=125 => (2, usize::from(second)),
        126 => (
            4,
            usize::from(u16::from_be_bytes([*frame.get(2)?, *frame.get(3)?])),
        ),
        _ => {
            let bytes: [u8; 8] = frame.get(2..10)?.try_into().ok()?;
            (10, usize::try_from(u64::from_be_bytes(bytes)).ok()?)
        }
    };
    (frame.len() == start.checked_add(len)?).then(|| (first & 0x0f, frame.slice(start..)))
}

/// A complete unfragmented server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(frame_header_len(payload.len()) + payload.len());
    put_frame_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    frame(OP_CLOSE, &payload)
}

/// Builds a masked client frame, as a browser would send it (for tests and the load generator).
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    let mut header = BytesMut::new();
    put_frame_header(&mut header, opcode, payload.len());
    header[0] = if fin { header[0] } else { header[0] & 0x7f };
    header[1] |= 0x80;
    out.extend_from_slice(&header);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod server_frame_tests {
    use super::*;

    #[test]
    fn server_frames_read_back() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let payload = vec![7u8; len];
            let f = frame(OP_BINARY, &payload);
            let (op, back) = server_frame_payload(&f).unwrap();
            assert_eq!((op, back.len()), (OP_BINARY, len));
            assert_eq!(server_frame_payload(&f.slice(..f.len() - 1)), None);
        }
        assert_eq!(server_frame_payload(&Bytes::from_static(&[0x82])), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn decode_all(decoder: &mut FrameDecoder, bytes: &[u8]) -> Result<Vec<WsEvent>, WsError> {
        let mut buf = BytesMut::from(bytes);
        let mut events = Vec::new();
        while let Some(event) = decoder.decode(&mut buf)? {
            events.push(event);
        }
        assert!(buf.is_empty(), "undecoded bytes left");
        Ok(events)
    }

    #[test]
    fn rfc_example_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let events = decode_all(&mut FrameDecoder::new(1024), &bytes).unwrap();
        assert_eq!(events, vec![WsEvent::Text(Bytes::from_static(b"Hello"))]);
    }

    #[test]
    fn close_codes_a_peer_may_not_send_are_protocol_errors() {
        for (code, expected) in [
            (1000, None),
            (1001, None),
            (1011, None),
            (3000, None),
            (4999, None),
            (999, Some(CLOSE_PROTOCOL_ERROR)),
            (1004, Some(CLOSE_PROTOCOL_ERROR)),
            (1005, Some(CLOSE_PROTOCOL_ERROR)),
            (1006, Some(CLOSE_PROTOCOL_ERROR)),
            (1015, Some(CLOSE_PROTOCOL_ERROR)),
            (2999, Some(CLOSE_PROTOCOL_ERROR)),
            (5000, Some(CLOSE_PROTOCOL_ERROR)),
        ] {
            let payload = u16::to_be_bytes(code);
            let result = decode_all(
                &mut FrameDecoder::new(1024),
                &client_frame(OP_CLOSE, true, &payload, MASK),
            );
            assert_eq!(result.err().map(|e| e.code), expected, "{code}");
        }
        let mut bad_reason = u16::to_be_bytes(1000).to_vec();
        bad_reason.extend_from_slice(&[0xff, 0xfe]);
        let result = decode_all(
            &mut FrameDecoder::new(1024),
            &client_frame(OP_CLOSE, true, &bad_reason, MASK),
        );
        assert_eq!(result.err().map(|e| e.code), Some(CLOSE_INVALID_DATA));
    }

    #[test]
    fn lengths_of_7_16_and_64_bits() {
        for len in [0, 125, 126, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let events = decode_all(
                &mut FrameDecoder::new(1 << 20),
                &client_frame(OP_BINARY, true, &payload, MASK),
            )
            .unwrap();
            assert_eq!(events, vec![WsEvent::Binary(Bytes::from(payload))]);
        }
    }

    #[test]
    fn byte_by_byte_arrival() {
        let bytes = client_frame(OP_BINARY, true, b"split across reads", MASK);
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for b in bytes {
            buf.put_u8(b);
            if let Some(e) = decoder.decode(&mut buf).unwrap() {
                events.push(e);
            }
        }
        assert_eq!(
            events,
            vec![WsEvent::Binary(Bytes::from_static(b"split across reads"))]
        );
    }

    #[test]
    fn fragments_with_an_interleaved_ping() {
        let mut bytes = client_frame(OP_BINARY, false, b"abc", MASK);
        bytes.extend(client_frame(OP_PING, true, b"p", MASK));
        bytes.extend(client_frame(OP_CONTINUATION, false, b"def", MASK));
        bytes.extend(client_frame(OP_CONTINUATION, true, b"g", MASK));
        let events = decode_all(&mut FrameDecoder::new(1024), &bytes).unwrap();
        assert_eq!(
            events,
            vec![
                WsEvent::Ping(Bytes::from_static(b"p")),
                WsEvent::Binary(Bytes::from_static(b"abcdefg"))
            ]
        );
    }

    #[test]
    fn control_frames_and_close_codes() {
        let mut bytes = client_frame(OP_PONG, true, b"", MASK);
        bytes.extend(client_frame(
            OP_CLOSE,
            true,
            &[0x03, 0xe8, b'b', b'y', b'e'],
            MASK,
        ));
        let events = decode_all(&mut FrameDecoder::new(1024), &bytes).unwrap();
        assert_eq!(
            events,
            vec![
                WsEvent::Pong(Bytes::new()),
                WsEvent::Close(Some(1000), Bytes::from_static(b"bye"))
            ]
        );
        let err = decode_all(
            &mut FrameDecoder::new(1024),
            &client_frame(OP_CLOSE, true, &[3], MASK),
        );
        assert_eq!(err.unwrap_err().code, CLOSE_PROTOCOL_ERROR);
        let long_ping = client_frame(OP_PING, true, &[0; 126], MASK);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &long_ping)
                .unwrap_err()
                .code,
            CLOSE_PROTOCOL_ERROR
        );
        let fragmented_ping = client_frame(OP_PING, false, b"x", MASK);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &fragmented_ping)
                .unwrap_err()
                .code,
            CLOSE_PROTOCOL_ERROR
        );
    }

    #[test]
    fn oversize_is_refused_before_the_payload_arrives() {
        let bytes = client_frame(OP_BINARY, true, &vec![0; 2048], MASK);
        let mut buf = BytesMut::from(&bytes[..20]);
        let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
        assert_eq!(err.code, CLOSE_TOO_BIG);
        // and across fragments
        let mut bytes = client_frame(OP_BINARY, false, &[0; 600], MASK);
        bytes.extend(client_frame(OP_CONTINUATION, true, &[0; 600], MASK));
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &bytes)
                .unwrap_err()
                .code,
            CLOSE_TOO_BIG
        );
    }

    #[test]
    fn protocol_violations() {
        let unmasked = [0x82, 0x01, 0x00];
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &unmasked)
                .unwrap_err()
                .code,
            CLOSE_PROTOCOL_ERROR
        );
        let mut reserved = client_frame(OP_BINARY, true, b"x", MASK);
        reserved[0] |= 0x40;
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &reserved)
                .unwrap_err()
                .code,
            CLOSE_PROTOCOL_ERROR
        );
        for opcode in [0x3, 0x7, 0xB, 0xF] {
            let bad = client_frame(opcode, true, b"x", MASK);
            assert_eq!(
                decode_all(&mut FrameDecoder::new(1024), &bad)
                    .unwrap_err()
                    .code,
                CLOSE_PROTOCOL_ERROR
            );
        }
        let orphan = client_frame(OP_CONTINUATION, true, b"x", MASK);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &orphan)
                .unwrap_err()
                .code,
            CLOSE_PROTOCOL_ERROR
        );
        let bad_text = client_frame(OP_TEXT, true, &[0xff, 0xfe], MASK);
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &bad_text)
                .unwrap_err()
                .code,
            CLOSE_INVALID_DATA
        );
        let huge_len = [0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_all(&mut FrameDecoder::new(1024), &huge_len)
                .unwrap_err()
                .code,
            CLOSE_TOO_BIG
        );
    }

    #[test]
    fn server_frames() {
        assert_eq!(&frame(OP_BINARY, b"hi")[..], &[0x82, 2, b'h', b'i']);
        assert_eq!(&frame(OP_BINARY, &[0; 300])[..4], &[0x82, 126, 1, 44]);
        assert_eq!(frame(OP_BINARY, &[0; 70000]).len(), 70010);
        assert_eq!(
            &close_frame(1009, "big")[..],
            &[0x88, 5, 0x03, 0xf1, b'b', b'i', b'g']
        );
    }
}
