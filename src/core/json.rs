//! JSON as JavaScript's `JSON.parse` reads it, for everything the server judges or changes:
//! permission rules, record validation and path patches. Clients are JavaScript, so a rule must
//! see what they will see: the last of duplicate keys wins, every number is a double (integers
//! beyond 2^53 round as they do in JavaScript, `-0` stays negative). What cannot be represented
//! exactly (nesting deeper than `MAX_DEPTH`, a number beyond the double range, which JavaScript
//! reads as Infinity, a lone surrogate escape) is refused: a caller denies or rejects it rather
//! than guess.

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use simd_json::{OwnedValue, StaticNode};
use std::fmt;

/// Deepest nesting of arrays and objects accepted (the top-level container is depth 1). Kept
/// below serde_json's own recursion limit (128) so this one is the one that applies.
pub const MAX_DEPTH: usize = 100;

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreadable {}

/// Integers up to this magnitude are exact doubles; they stay integers so that re-encoded
/// documents keep `1` as `1` rather than `1.0`.
const EXACT_INTEGER: u64 = 1 << 53;

/// Parses `bytes` into a value as `JSON.parse` would, or refuses it.
pub fn parse(bytes: &[u8]) -> Result<OwnedValue, Unreadable> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| Unreadable(e.to_string()))?;
    de.end().map_err(|e| Unreadable(e.to_string()))?;
    Ok(value)
}

/// Checks that `bytes` is JSON that `parse` accepts, without building anything.
pub fn validate(bytes: &[u8]) -> Result<(), Unreadable> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    CheckSeed { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| Unreadable(e.to_string()))?;
    de.end().map_err(|e| Unreadable(e.to_string()))
}

/// Record data must be an object or an array (what the client library can hold as a record).
pub fn validate_record(bytes: &[u8]) -> Result<(), Unreadable> {
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if !matches!(first, Some(b'{' | b'[')) {
        return Err(Unreadable(
            "record data must be a JSON object or array".into(),
        ));
    }
    validate(bytes)
}

/// Nesting depth of a value: 0 for a scalar, 1 for a flat array or object.
pub fn depth(value: &OwnedValue) -> usize {
    // Values come from `parse`, so this recursion is bounded by MAX_DEPTH.
    match value {
        OwnedValue::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        OwnedValue::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn number(n: f64) -> OwnedValue {
    if n.fract() == 0.0 && n.abs() < EXACT_INTEGER as f64 && !(n == 0.0 && n.is_sign_negative()) {
        OwnedValue::Static(StaticNode::I64(n as i64))
    } else {
        OwnedValue::Static(StaticNode::F64(n))
    }
}

fn too_deep<E: serde::de::Error>() -> E {
    E::custom(format!("nested deeper than {MAX_DEPTH}"))
}

struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = OwnedValue;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<OwnedValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = OwnedValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<OwnedValue, E> {
        Ok(OwnedValue::Static(StaticNode::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<OwnedValue, E> {
        Ok(number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<OwnedValue, E> {
        Ok(number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<OwnedValue, E> {
        Ok(number(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<OwnedValue, E> {
        Ok(OwnedValue::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<OwnedValue, E> {
        Ok(OwnedValue::String(v))
    }
    fn visit_unit<E>(self) -> Result<OwnedValue, E> {
        Ok(OwnedValue::Static(StaticNode::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OwnedValue, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed { depth })? {
            items.push(item);
        }
        Ok(OwnedValue::Array(Box::new(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OwnedValue, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        let mut object = simd_json::owned::Object::default();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed { depth })?;
            // JSON.parse: a later duplicate replaces the earlier one.
            object.insert(key, value);
        }
        Ok(OwnedValue::Object(Box::new(object)))
    }
}

/// `ValueSeed` without the building: every string is decoded (so a lone surrogate is caught),
/// every number read, the depth counted.
struct CheckSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for CheckSeed {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CheckSeed {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(E::custom("number out of range"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        while seq.next_element_seed(CheckSeed { depth })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(A::Error::custom(format!("nested deeper than {MAX_DEPTH}")));
        }
        while map.next_key_seed(CheckSeed { depth })?.is_some() {
            map.next_value_seed(CheckSeed { depth })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::prelude::*;

    fn get<'a>(v: &'a OwnedValue, key: &str) -> Option<&'a OwnedValue> {
        v.get(key)
    }

    #[test]
    fn the_last_duplicate_key_wins_as_in_json_parse() {
        let v = parse(br#"{"secret":false,"secret":true}"#).unwrap();
        assert_eq!(get(&v, "secret").and_then(|s| s.as_bool()), Some(true));
        let v = parse(br#"{"a":{"x":1},"a":2}"#).unwrap();
        assert_eq!(get(&v, "a").and_then(|s| s.cast_f64()), Some(2.0));
    }

    #[test]
    fn numbers_are_doubles() {
        let v = parse(b"[9007199254740993, -0, 1e2, 0.1, 18446744073709551617]").unwrap();
        let n: Vec<f64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.cast_f64().unwrap())
            .collect();
        assert_eq!(n[0], 9007199254740992.0, "rounded as JavaScript rounds");
        assert!(n[1] == 0.0 && n[1].is_sign_negative(), "-0 keeps its sign");
        assert_eq!(&n[2..4], &[100.0, 0.1]);
        assert_eq!(n[4], 18446744073709551616.0);
        assert_eq!(parse(b"[1,2.5]").unwrap().encode(), "[1,2.5]");
    }

    #[test]
    fn refuses_what_it_cannot_represent_exactly() {
        for bad in [
            &br#"{"secret":true,"pad":1e400}"#[..],
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\udc00x"}"#,
            b"{\"a\":",
            b"not json",
            b"[1,]",
            b"{} x",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            assert!(validate(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(
            parse(br#"{"a":"\ud83d\ude00"}"#).is_ok(),
            "a surrogate pair is fine"
        );
    }

    #[test]
    fn depth_is_bounded_and_counted_the_same_way_everywhere() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nest(MAX_DEPTH).as_bytes()).is_ok());
        assert!(validate(nest(MAX_DEPTH).as_bytes()).is_ok());
        assert!(parse(nest(MAX_DEPTH + 1).as_bytes()).is_err());
        assert!(validate(nest(MAX_DEPTH + 1).as_bytes()).is_err());
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(validate(objects.as_bytes()).is_err());
        assert!(parse(objects.as_bytes()).is_err());
        assert!(
            validate(nest(100_000).as_bytes()).is_err(),
            "no stack overflow"
        );
        assert_eq!(depth(&parse(nest(7).as_bytes()).unwrap()), 7);
        assert_eq!(depth(&parse(b"5").unwrap()), 0);
    }

    #[test]
    fn records_are_objects_or_arrays() {
        assert!(validate_record(b" {\"a\":1}").is_ok());
        assert!(validate_record(b"[]").is_ok());
        for bad in [&b"5"[..], b"null", b"\"x\"", b"true", b"", b"{\"a\":"] {
            assert!(validate_record(bad).is_err());
        }
    }

    #[test]
    fn proto_is_an_ordinary_key() {
        let v = parse(br#"{"__proto__":{"admin":true}}"#).unwrap();
        assert!(get(&v, "__proto__").is_some());
    }
}
