//! deepstream's JSON paths (`a.b`, `a[2].c`): setting and erasing a value inside a document
//! exactly as the client library applies a patch it receives (its json-path `setValue`), so the
//! server's copy and every subscriber's copy stay the same. Bracket pieces are read with
//! JavaScript's `Number()`; a path a client could not apply safely is refused before any work:
//! a piece that is no array index (`[-1]`, `[1e-1]`, `[NaN]`, `[Infinity]`: the client throws
//! a RangeError), an index past `MAX_ARRAY_INDEX`, `__proto__` (it would reach
//! `Object.prototype` in every client), a named key on an array (`length` would resize it), more
//! segments than a document may be deep, and a patch that would add more than `MAX_NEW_SLOTS`
//! array slots in all.

use super::json;
use simd_json::OwnedValue as Value;
use simd_json::StaticNode;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Key(String),
    Index(usize),
}

/// A path read and checked; apply it with `set_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<Token>);

/// Largest array index a path may name.
pub const MAX_ARRAY_INDEX: usize = 1 << 16;
/// Array slots one patch may add, over all its levels together (a path of nested large
/// indices would otherwise multiply them).
pub const MAX_NEW_SLOTS: usize = MAX_ARRAY_INDEX + 1;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotUtf8,
    /// No segment at all (`""`, `"."`): clients would write a key named `undefined`.
    Empty,
    /// More segments than `json::MAX_DEPTH`, or a value that would nest the record deeper.
    TooDeep,
    /// A bracket piece that is not an array index from 0 to `MAX_ARRAY_INDEX`.
    BadIndex(String),
    /// `__proto__`.
    Forbidden,
    /// A named key on an array.
    KeyOnArray(String),
    /// More than `MAX_NEW_SLOTS` new array slots.
    TooLarge,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotUtf8 => f.write_str("path is not UTF-8"),
            PathError::Empty => f.write_str("path names nothing"),
            PathError::TooDeep => write!(
                f,
                "path would nest the record deeper than {}",
                json::MAX_DEPTH
            ),
            PathError::BadIndex(piece) => write!(
                f,
                "[{piece}] is not an array index from 0 to {MAX_ARRAY_INDEX}"
            ),
            PathError::Forbidden => f.write_str("__proto__ is not allowed in a path"),
            PathError::KeyOnArray(key) => write!(f, "{key:?} names a key on an array"),
            PathError::TooLarge => {
                write!(f, "patch would add more than {MAX_NEW_SLOTS} array slots")
            }
        }
    }
}

impl std::error::Error for PathError {}

/// JavaScript's whitespace for `String.prototype.trim` and `Number()`.
pub fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
            | '\u{feff}'
    )
}

fn js_trim(s: &str) -> &str {
    s.trim_matches(is_js_space)
}

/// JavaScript's `Number(text)` (StringToNumber).
pub fn js_number(text: &str) -> f64 {
    let t = js_trim(text);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return radix_number(digits, radix);
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return if t.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    if !is_decimal_literal(unsigned) {
        return f64::NAN;
    }
    t.parse().unwrap_or(f64::NAN)
}

fn radix_number(digits: &str, radix: u32) -> f64 {
    if digits.is_empty() {
        return f64::NAN;
    }
    let mut value = 0.0f64;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else {
            return f64::NAN;
        };
        value = value * f64::from(radix) + f64::from(d);
    }
    value
}

/// StrUnsignedDecimalLiteral: `1`, `1.`, `.5`, `1.5e-3`; at least one digit before the
/// exponent.
fn is_decimal_literal(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) || (int.is_empty() && frac.is_empty()) {
        return false;
    }
    match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
    }
}

fn index_of(piece: &str) -> Result<usize, PathError> {
    let n = js_number(piece);
    if n.fract() == 0.0 && (0.0..=MAX_ARRAY_INDEX as f64).contains(&n) {
        Ok(n as usize)
    } else {
        Err(PathError::BadIndex(piece.to_string()))
    }
}

impl Path {
    /// Reads a path as the client library tokenizes it: split on dots, trim each part, skip
    /// empty parts, then split on brackets; the first piece is a key, the others `Number()`s.
    pub fn parse(path: &[u8]) -> Result<Path, PathError> {
        let path = std::str::from_utf8(path).map_err(|_| PathError::NotUtf8)?;
        let mut tokens = Vec::new();
        let mut push = |token: Token| {
            if token == Token::Key("__proto__".into()) {
                return Err(PathError::Forbidden);
            }
            if tokens.len() >= json::MAX_DEPTH {
                return Err(PathError::TooDeep);
            }
            tokens.push(token);
            Ok(())
        };
        for part in path.split('.') {
            let part = js_trim(part);
            if part.is_empty() {
                continue;
            }
            let mut pieces = part.split(['[', ']']);
            if let Some(first) = pieces.next() {
                push(Token::Key(first.to_string()))?;
            }
            for piece in pieces.filter(|p| !p.is_empty()) {
                push(Token::Index(index_of(piece)?))?;
            }
        }
        if tokens.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(Path(tokens))
    }

    pub fn tokens(&self) -> &[Token] {
        &self.0
    }
}

/// Array index a token names, as JavaScript reads `array[token]`.
fn as_index(token: &Token) -> Option<usize> {
    match token {
        Token::Index(i) => Some(*i),
        Token::Key(k) => k.parse::<usize>().ok().filter(|i| i.to_string() == *k),
    }
}

fn key_of(token: &Token) -> String {
    match token {
        Token::Key(k) => k.clone(),
        Token::Index(i) => i.to_string(),
    }
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Array(_))
}

fn empty_for(next: &Token) -> Value {
    match next {
        Token::Index(_) => Value::Array(Box::default()),
        Token::Key(_) => Value::Object(Box::default()),
    }
}

/// The slot `token` names in `node`, created (as `fill`) when missing; `added` counts the
/// array slots created so far.
fn child<'a>(
    node: &'a mut Value,
    token: &Token,
    fill: Value,
    added: &mut usize,
) -> Result<Option<&'a mut Value>, PathError> {
    match node {
        Value::Object(map) => Ok(Some(map.entry(key_of(token)).or_insert(fill))),
        Value::Array(items) => {
            let Some(index) = as_index(token) else {
                return Err(PathError::KeyOnArray(key_of(token)));
            };
            if index > MAX_ARRAY_INDEX {
                return Err(PathError::BadIndex(index.to_string()));
            }
            if index >= items.len() {
                *added += index + 1 - items.len();
                if *added > MAX_NEW_SLOTS {
                    return Err(PathError::TooLarge);
                }
                items.resize(index + 1, Value::Static(StaticNode::Null));
                items[index] = fill;
            }
            Ok(items.get_mut(index))
        }
        _ => Ok(None),
    }
}

/// Sets `value` at `path`; `None` erases it (an array slot becomes null, like JS `delete`).
/// Missing or non-container intermediates become an array (next piece an index) or an object,
/// as in the client. On error the document may be partly changed: apply to a copy.
pub fn set_path(root: &mut Value, path: &Path, value: Option<Value>) -> Result<(), PathError> {
    let tokens = path.tokens();
    let Some((last, parents)) = tokens.split_last() else {
        return Err(PathError::Empty);
    };
    if tokens.len() + value.as_ref().map_or(0, json::depth) > json::MAX_DEPTH {
        return Err(PathError::TooDeep);
    }
    if !is_container(root) {
        *root = Value::Object(Box::default());
    }
    let mut added = 0;
    let mut node = root;
    for (i, token) in parents.iter().enumerate() {
        let next = &tokens[i + 1];
        let Some(slot) = child(node, token, empty_for(next), &mut added)? else {
            return Ok(());
        };
        if !is_container(slot) {
            *slot = empty_for(next);
        }
        node = slot;
    }
    match value {
        Some(value) => {
            if let Some(slot) = child(node, last, Value::Static(StaticNode::Null), &mut added)? {
                *slot = value;
            }
        }
        None => match node {
            Value::Object(map) => {
                map.remove(&key_of(last));
            }
            Value::Array(items) => {
                let index = as_index(last).ok_or_else(|| PathError::KeyOnArray(key_of(last)))?;
                if let Some(slot) = items.get_mut(index) {
                    *slot = Value::Static(StaticNode::Null);
                }
            }
            _ => {}
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::prelude::*;

    fn json(text: &str) -> Value {
        json::parse(text.as_bytes()).unwrap()
    }

    fn set(doc: &str, path: &str, value: Option<&str>) -> Value {
        let mut root = json(doc);
        let path = Path::parse(path.as_bytes()).unwrap();
        set_path(&mut root, &path, value.map(json)).unwrap();
        root
    }

    fn refused(doc: &str, path: &str, value: &str) -> PathError {
        let mut root = json(doc);
        Path::parse(path.as_bytes())
            .and_then(|p| set_path(&mut root, &p, Some(json(value))))
            .unwrap_err()
    }

    #[test]
    fn tokenizes_like_the_client() {
        use Token::*;
        let tokens = |p: &str| Path::parse(p.as_bytes()).map(|p| p.0);
        assert_eq!(tokens("a.b"), Ok(vec![Key("a".into()), Key("b".into())]));
        assert_eq!(
            tokens("a[2].c"),
            Ok(vec![Key("a".into()), Index(2), Key("c".into())])
        );
        assert_eq!(
            tokens(" a . [1][3]"),
            Ok(vec![Key("a".into()), Key("".into()), Index(1), Index(3)])
        );
        // Number(): hex, exponents, surrounding whitespace, -0, a blank piece is 0.
        assert_eq!(tokens("a[0x10]"), Ok(vec![Key("a".into()), Index(16)]));
        assert_eq!(tokens("a[1e1]"), Ok(vec![Key("a".into()), Index(10)]));
        assert_eq!(tokens("a[ 3 ]"), Ok(vec![Key("a".into()), Index(3)]));
        assert_eq!(tokens("a[-0]"), Ok(vec![Key("a".into()), Index(0)]));
        assert_eq!(tokens("a[ ]"), Ok(vec![Key("a".into()), Index(0)]));
        assert_eq!(tokens("a[0b11]"), Ok(vec![Key("a".into()), Index(3)]));
        assert_eq!(tokens(""), Err(PathError::Empty));
        assert_eq!(tokens(" . "), Err(PathError::Empty));
    }

    #[test]
    fn js_number_follows_string_to_number() {
        for (text, n) in [
            ("12", 12.0),
            (" +1.5e1 ", 15.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("0x1F", 31.0),
            ("0o17", 15.0),
            ("", 0.0),
            ("\u{feff}7\u{a0}", 7.0),
        ] {
            assert_eq!(js_number(text), n, "{text:?}");
        }
        assert_eq!(js_number("-Infinity"), f64::NEG_INFINITY);
        for nan in [
            "abc", "1e", "-0x10", "0x", "inf", "nan", "1_000", "1.2.3", "e5", "\u{85}1",
        ] {
            assert!(js_number(nan).is_nan(), "{nan:?}");
        }
    }

    #[test]
    fn refuses_paths_no_client_can_apply_safely() {
        let bad = |p: &str| Path::parse(p.as_bytes()).unwrap_err();
        assert!(matches!(bad("a[-1]"), PathError::BadIndex(_)));
        assert!(matches!(bad("a[1e-1]"), PathError::BadIndex(_)));
        assert!(matches!(bad("a.b[Infinity]"), PathError::BadIndex(_)));
        assert!(matches!(bad("a[NaN]"), PathError::BadIndex(_)));
        assert!(matches!(bad("a[x]"), PathError::BadIndex(_)));
        assert!(matches!(bad("a[1e7]"), PathError::BadIndex(_)));
        assert_eq!(bad("__proto__.polluted"), PathError::Forbidden);
        assert_eq!(bad("a.__proto__"), PathError::Forbidden);
        assert_eq!(bad(&"a.".repeat(17_000)), PathError::TooDeep);
        assert_eq!(
            Path::parse(b"\xff").unwrap_err(),
            PathError::NotUtf8,
            "bytes that are not text"
        );
        assert_eq!(
            refused(r#"{"a":[1,2]}"#, "a.length", "0"),
            PathError::KeyOnArray("length".into())
        );
        assert_eq!(
            refused("{}", &"[65536]".repeat(2), "1"),
            PathError::TooLarge,
            "nested large indices multiply"
        );
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(refused("{}", "a.b", &nest(99)), PathError::TooDeep);
        assert!(
            set("{}", "a", Some(&nest(99))).is_object(),
            "exactly MAX_DEPTH is fine"
        );
    }

    #[test]
    fn sets_nested_values_creating_objects_and_arrays() {
        assert_eq!(set("{}", "a.b", Some("1")), json(r#"{"a":{"b":1}}"#));
        assert_eq!(
            set("{}", "a[1].c", Some("\"x\"")),
            json(r#"{"a":[null,{"c":"x"}]}"#)
        );
        assert_eq!(
            set(r#"{"a":{"b":1}}"#, "a.c", Some("2")),
            json(r#"{"a":{"b":1,"c":2}}"#)
        );
        assert_eq!(
            set(r#"{"a":5}"#, "a.b", Some("true")),
            json(r#"{"a":{"b":true}}"#)
        );
        assert_eq!(
            set(r#"{"a":null}"#, "a[0]", Some("true")),
            json(r#"{"a":[true]}"#),
            "null is replaced, as the client replaces it"
        );
        assert_eq!(
            set(r#"{"a":[1,2,3]}"#, "a[1]", Some("9")),
            json(r#"{"a":[1,9,3]}"#)
        );
        assert_eq!(
            set(r#"{"a":[1,2,3]}"#, "a.1", Some("9")),
            json(r#"{"a":[1,9,3]}"#)
        );
        assert_eq!(set("null", "k", Some("1")), json(r#"{"k":1}"#));
        assert_eq!(
            set(r#"{"a":{}}"#, "a[0x10]", Some("1")),
            json(r#"{"a":{"16":1}}"#),
            "an index on an object is the key Number() prints"
        );
        assert_eq!(
            set("{}", "a[65536]", Some("1")).encode().len(),
            r#"{"a":[]}"#.len() + 65536 * 5 + 1
        );
    }

    #[test]
    fn erases_keys_and_nulls_array_slots() {
        assert_eq!(
            set(r#"{"keep":1,"drop":2}"#, "drop", None),
            json(r#"{"keep":1}"#)
        );
        assert_eq!(
            set(r#"{"a":[1,2]}"#, "a[0]", None),
            json(r#"{"a":[null,2]}"#)
        );
        assert_eq!(
            set(r#"{"a":1}"#, "missing.deep", None),
            json(r#"{"a":1,"missing":{}}"#)
        );
    }
}
