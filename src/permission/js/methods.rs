//! The functions a rule may call, with JavaScript's argument handling and UTF-16 positions:
//! the string methods and `Array.prototype.includes` / `indexOf`.

use super::regex::{MatchResult, RegexLit};
use super::value::{same_value_zero, strict_eq, to_integer, JsArray, Val};
use super::Fault;
use simd_json::prelude::*;
use simd_json::OwnedValue;
use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

fn not_a_function(target: &Val, method: &str) -> Fault {
    let what = match target {
        Val::Json(_) | Val::Object(_) | Val::User | Val::This => "object".to_string(),
        other => other.type_of().to_string(),
    };
    Fault::Type(format!("{what}.{method} is not a function"))
}

/// `target.method(args)`, where `target` is not nullish.
pub fn call<'a>(target: &Val<'a>, method: &str, args: &[Val<'a>]) -> Result<Val<'a>, Fault> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Val::Undefined);
    if target.is_array() {
        return match method {
            "includes" | "indexOf" => array_search(target, method, &arg(0), &arg(1)),
            _ => Err(not_a_function(target, method)),
        };
    }
    let Val::Str(s) = target else {
        return Err(not_a_function(target, method));
    };
    let no_regex = |v: &Val| {
        if matches!(v, Val::Regex(_)) {
            return Err(Fault::Type(format!(
                "First argument to String.prototype.{method} must not be a regular expression"
            )));
        }
        Ok(())
    };
    // Positions are in UTF-16 units; the searches run on the UTF-8 text (linear, not
    // O(n·m)). A match can only start on a character, as no needle starts with a low surrogate.
    // A position, clamped to the string's UTF-16 length (counted only when one is given).
    let position = |v: Val| -> Result<Option<usize>, Fault> {
        if matches!(v, Val::Undefined) {
            return Ok(None);
        }
        let len = s.encode_utf16().count() as f64;
        Ok(Some(to_integer(v.to_number()?).clamp(0.0, len) as usize))
    };
    Ok(match method {
        "startsWith" | "endsWith" | "includes" | "indexOf" => {
            if method != "indexOf" {
                no_regex(&arg(0))?;
            }
            let search = arg(0).to_text()?;
            let (at, byte, on_char) = match position(arg(1))? {
                Some(at) => {
                    let (byte, on_char) = utf16_offset(s, at);
                    (at, byte, on_char)
                }
                None if method == "endsWith" => (0, s.len(), true),
                None => (0, 0, true),
            };
            match method {
                "startsWith" => Val::Bool(
                    search.is_empty() || (on_char && s[byte..].starts_with(search.as_ref())),
                ),
                "endsWith" => Val::Bool(
                    search.is_empty() || (on_char && s[..byte].ends_with(search.as_ref())),
                ),
                _ => {
                    let found = if search.is_empty() {
                        Some(at)
                    } else {
                        s[byte..].find(search.as_ref()).map(|i| {
                            at + usize::from(!on_char) + s[byte..byte + i].encode_utf16().count()
                        })
                    };
                    if method == "includes" {
                        Val::Bool(found.is_some())
                    } else {
                        Val::Num(found.map_or(-1.0, |i| i as f64))
                    }
                }
            }
        }
        "toUpperCase" => Val::Str(Cow::Owned(s.to_uppercase())),
        "toLowerCase" => Val::Str(Cow::Owned(s.to_lowercase())),
        "trim" => Val::Str(Cow::Owned(
            s.trim_matches(crate::core::jsonpath::is_js_space)
                .to_string(),
        )),
        "match" => string_match(s, &arg(0))?,
        _ => return Err(not_a_function(target, method)),
    })
}

/// The byte offset of UTF-16 unit `units` of `s`, and whether it falls between characters
/// (inside a surrogate pair it is rounded up to the next character).
fn utf16_offset(s: &str, units: usize) -> (usize, bool) {
    let mut count = 0;
    for (byte, c) in s.char_indices() {
        if count >= units {
            return (byte, count == units);
        }
        count += c.len_utf16();
    }
    (s.len(), count == units)
}

fn array_search<'a>(
    target: &Val<'a>,
    method: &str,
    needle: &Val<'a>,
    from: &Val<'a>,
) -> Result<Val<'a>, Fault> {
    let includes = method == "includes";
    // Holes read as undefined for `includes` and are skipped by `indexOf`.
    let matches = |item: Option<&Val<'a>>| match item {
        Some(item) if includes => same_value_zero(item, needle),
        Some(item) => strict_eq(item, needle),
        None => includes && matches!(needle, Val::Undefined),
    };
    let start = |len: usize| -> Result<usize, Fault> {
        let len = len as f64;
        let mut start = to_integer(from.to_number()?);
        if start < 0.0 {
            start = (len + start).max(0.0);
        }
        Ok(start.min(len) as usize)
    };
    let (position, start) = match target {
        Val::Json(v) => {
            let items = <&'a OwnedValue>::clone(v)
                .as_array()
                .map_or(&[][..], |a| a.as_slice());
            let start = start(items.len())?;
            let found = items
                .iter()
                .skip(start)
                .position(|i| matches(Some(&Val::from_json(i))));
            (found, start)
        }
        Val::Array(array) => {
            let start = start(array.items.len())?;
            let found = array
                .items
                .iter()
                .skip(start)
                .position(|i| matches(i.as_ref()));
            (found, start)
        }
        _ => (None, 0),
    };
    Ok(if includes {
        Val::Bool(position.is_some())
    } else {
        Val::Num(position.map_or(-1.0, |p| (p + start) as f64))
    })
}

/// Patterns built from strings at run time, compiled once per thread (a shard) and dropped
/// all at once when full, so patterns from message data cannot fill memory.
fn pattern_from_text(source: &str) -> Result<Arc<RegexLit>, Fault> {
    const CACHED: usize = 256;
    thread_local! {
        static PATTERNS: std::cell::RefCell<ahash::AHashMap<String, Result<Arc<RegexLit>, Fault>>> =
            std::cell::RefCell::default();
    }
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache.get(source) {
            return found.clone();
        }
        if cache.len() >= CACHED {
            cache.clear();
        }
        let compiled = RegexLit::compile(source, "")
            .map(Arc::new)
            .map_err(|e| match e {
                super::regex::RegexError::Syntax(m) => {
                    Fault::Syntax(format!("Invalid regular expression: /{source}/: {m}"))
                }
                super::regex::RegexError::Unsupported(m) => {
                    Fault::Inexact(format!("regular expression /{source}/: {m}"))
                }
            });
        cache.insert(source.to_string(), compiled.clone());
        compiled
    })
}

/// `s.match(pattern)`: a regex, or anything else as the source of `new RegExp(...)`.
fn string_match<'a>(s: &str, pattern: &Val<'a>) -> Result<Val<'a>, Fault> {
    let lit = match pattern {
        Val::Regex(lit) => lit.clone(),
        Val::Undefined => pattern_from_text("")?,
        other => pattern_from_text(&other.to_text()?)?,
    };
    Ok(match lit.match_in(s).map_err(Fault::Inexact)? {
        MatchResult::None => Val::Null,
        MatchResult::All(all) => Val::Array(Rc::new(JsArray {
            items: all
                .into_iter()
                .map(|m| Some(Val::Str(Cow::Owned(m))))
                .collect(),
            extra: Vec::new(),
        })),
        MatchResult::One {
            groups,
            index,
            named,
            has_named,
        } => {
            let text = |g: Option<String>| g.map_or(Val::Undefined, |t| Val::Str(Cow::Owned(t)));
            let groups_value = if has_named {
                Val::Object(Rc::new(
                    named.into_iter().map(|(k, v)| (k, text(v))).collect(),
                ))
            } else {
                Val::Undefined
            };
            Val::Array(Rc::new(JsArray {
                items: groups.into_iter().map(|g| Some(text(g))).collect(),
                extra: vec![
                    ("index", Val::Num(index as f64)),
                    ("input", Val::Str(Cow::Owned(s.to_string()))),
                    ("groups", groups_value),
                ],
            }))
        }
    })
}
