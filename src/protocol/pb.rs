//! Protobuf wire primitives: varints, tags and length-delimited fields. No allocation on read.

use bytes::{BufMut, Bytes};

/// Why a protobuf buffer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbError {
    Truncated,
    VarintTooLong,
    BadWireType(u8),
}

pub const WIRE_VARINT: u8 = 0;
pub const WIRE_FIXED64: u8 = 1;
pub const WIRE_LEN: u8 = 2;
pub const WIRE_FIXED32: u8 = 5;

/// Reads a varint at `*pos`, advancing it.
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, PbError> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*pos).ok_or(PbError::Truncated)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift.min(63);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(PbError::VarintTooLong)
}

#[inline]
pub fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

#[inline]
pub fn put_varint(out: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// One field of a message as read from the wire: its number and its raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Varint(u64),
    /// A length-delimited value, sliced from the source without copying.
    Bytes(Bytes),
    Fixed,
}

/// Iterates the fields of one protobuf message held in `buf`.
pub struct FieldReader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> FieldReader<'a> {
    pub fn new(buf: &'a Bytes) -> Self {
        FieldReader { buf, pos: 0 }
    }

    /// The next field, `None` at the end, an error on malformed input.
    pub fn next_field(&mut self) -> Option<Result<(u32, FieldValue), PbError>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<(u32, FieldValue), PbError> {
        let key = read_varint(self.buf, &mut self.pos)?;
        let number = (key >> 3) as u32;
        let value = match (key & 7) as u8 {
            WIRE_VARINT => FieldValue::Varint(read_varint(self.buf, &mut self.pos)?),
            WIRE_LEN => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let end = self
                    .pos
                    .checked_add(usize::try_from(len).map_err(|_| PbError::Truncated)?)
                    .filter(|end| *end <= self.buf.len())
                    .ok_or(PbError::Truncated)?;
                let slice = self.buf.slice(self.pos..end);
                self.pos = end;
                FieldValue::Bytes(slice)
            }
            WIRE_FIXED64 => {
                self.skip(8)?;
                FieldValue::Fixed
            }
            WIRE_FIXED32 => {
                self.skip(4)?;
                FieldValue::Fixed
            }
            other => return Err(PbError::BadWireType(other)),
        };
        Ok((number, value))
    }

    fn skip(&mut self, n: usize) -> Result<(), PbError> {
        if self.pos + n > self.buf.len() {
            return Err(PbError::Truncated);
        }
        self.pos += n;
        Ok(())
    }
}

#[inline]
pub fn tag_len(field: u32) -> usize {
    varint_len(u64::from(field) << 3)
}

#[inline]
pub fn put_tag(out: &mut impl BufMut, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// Size of a length-delimited field with `len` bytes of content.
#[inline]
pub fn len_field_size(field: u32, len: usize) -> usize {
    tag_len(field) + varint_len(len as u64) + len
}

#[inline]
pub fn put_len_field(out: &mut impl BufMut, field: u32, bytes: &[u8]) {
    put_tag(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

/// int32 and enums go out sign-extended to 64 bits, so -1 takes ten bytes, as protobufjs writes it.
#[inline]
pub fn int32_as_varint(value: i32) -> u64 {
    i64::from(value) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn negative_int32_is_ten_bytes() {
        let mut out = Vec::new();
        put_varint(&mut out, int32_as_varint(-1));
        assert_eq!(out.len(), 10);
        let mut pos = 0;
        assert_eq!(read_varint(&out, &mut pos).map(|v| v as i32), Ok(-1));
    }

    #[test]
    fn truncated_and_overlong_input_is_an_error() {
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80], &mut pos),
            Err(PbError::Truncated)
        );
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0xff; 11], &mut pos),
            Err(PbError::VarintTooLong)
        );
        let buf = Bytes::from_static(&[0x12, 0x05, b'a']);
        let mut reader = FieldReader::new(&buf);
        assert_eq!(reader.next_field(), Some(Err(PbError::Truncated)));
        let buf = Bytes::from_static(&[0x0b]);
        let mut reader = FieldReader::new(&buf);
        assert_eq!(reader.next_field(), Some(Err(PbError::BadWireType(3))));
    }
}
