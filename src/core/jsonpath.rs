//! deepstream's JSON paths (`a.b`, `a[2].c`): setting and erasing a value inside a document,
//! creating intermediate objects and arrays exactly as the reference server's json-path does.

use simd_json::OwnedValue as Value;
use simd_json::StaticNode;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Key(String),
    Index(usize),
}

/// Splits on dots, then on brackets: `a[2].c` → `a`, 2, `c`. Empty parts are skipped.
fn tokenize(path: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    for part in path.split('.') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let mut pieces = part.split(['[', ']']);
        if let Some(first) = pieces.next() {
            tokens.push(Token::Key(first.to_string()));
        }
        for piece in pieces.filter(|p| !p.is_empty()) {
            // JavaScript's Number(): anything but a plain index becomes a (strange) object key.
            match piece.trim().parse::<usize>() {
                Ok(index) => tokens.push(Token::Index(index)),
                Err(_) => tokens.push(Token::Key("NaN".to_string())),
            }
        }
    }
    tokens
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

/// Largest array index a path may create; beyond it a write is refused rather than
/// filling memory with nulls.
pub const MAX_ARRAY_INDEX: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathTooLarge;

/// Child slot for `token` in `node`, created (as `fill`) when missing. `None` where JavaScript
/// would write a property that JSON drops (a named key on an array).
fn child<'a>(
    node: &'a mut Value,
    token: &Token,
    fill: Value,
) -> Result<Option<&'a mut Value>, PathTooLarge> {
    match node {
        Value::Object(map) => Ok(Some(map.entry(key_of(token)).or_insert(fill))),
        Value::Array(items) => {
            let Some(index) = as_index(token) else {
                return Ok(None);
            };
            if index > MAX_ARRAY_INDEX {
                return Err(PathTooLarge);
            }
            if index >= items.len() {
                items.resize(index + 1, Value::Static(StaticNode::Null));
                items[index] = fill;
            }
            Ok(items.get_mut(index))
        }
        _ => Ok(None),
    }
}

/// Sets `value` at `path`; `None` erases it (an array slot becomes null, like JS `delete`).
pub fn set_path(root: &mut Value, path: &str, value: Option<Value>) -> Result<(), PathTooLarge> {
    let tokens = tokenize(path);
    let Some((last, parents)) = tokens.split_last() else {
        return Ok(());
    };
    if !is_container(root) {
        *root = Value::Object(Box::default());
    }
    let mut node = root;
    for (i, token) in parents.iter().enumerate() {
        let next = &tokens[i + 1];
        let Some(slot) = child(node, token, empty_for(next))? else {
            return Ok(());
        };
        if !is_container(slot) {
            *slot = empty_for(next);
        }
        node = slot;
    }
    match value {
        Some(value) => {
            if let Some(slot) = child(node, last, Value::Static(StaticNode::Null))? {
                *slot = value;
            }
        }
        None => match node {
            Value::Object(map) => {
                map.remove(&key_of(last));
            }
            Value::Array(items) => {
                if let Some(slot) = as_index(last).and_then(|i| items.get_mut(i)) {
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
        simd_json::to_owned_value(&mut text.as_bytes().to_vec()).unwrap()
    }

    fn set(doc: &str, path: &str, value: Option<&str>) -> Value {
        let mut root = json(doc);
        set_path(&mut root, path, value.map(json)).unwrap();
        root
    }

    #[test]
    fn tokenizes_like_the_reference() {
        use Token::*;
        assert_eq!(tokenize("a.b"), vec![Key("a".into()), Key("b".into())]);
        assert_eq!(
            tokenize("a[2].c"),
            vec![Key("a".into()), Index(2), Key("c".into())]
        );
        assert_eq!(
            tokenize(" a . [1][3]"),
            vec![Key("a".into()), Key("".into()), Index(1), Index(3)]
        );
        assert_eq!(tokenize(""), vec![]);
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
            set(r#"{"a":[1,2,3]}"#, "a[1]", Some("9")),
            json(r#"{"a":[1,9,3]}"#)
        );
        assert_eq!(
            set(r#"{"a":[1,2,3]}"#, "a.1", Some("9")),
            json(r#"{"a":[1,9,3]}"#)
        );
        assert_eq!(set(r#"{"a":[1]}"#, "a.x", Some("9")), json(r#"{"a":[1]}"#));
        assert_eq!(set("null", "k", Some("1")), json(r#"{"k":1}"#));
        assert_eq!(
            set(r#"{"a":{}}"#, "a[0]", Some("1")),
            json(r#"{"a":{"0":1}}"#)
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

    #[test]
    fn refuses_huge_indices() {
        let mut root = json("{}");
        assert_eq!(
            set_path(&mut root, "a[99999999]", Some(json("1"))),
            Err(PathTooLarge)
        );
        assert_eq!(root.encode(), r#"{"a":[]}"#);
    }
}
