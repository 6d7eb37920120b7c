//! Property access as JavaScript resolves it: own properties, then the built-in prototype
//! chain of the value's kind (`data.toString` is a function, `'length' in []` is true).

use super::parse::Ctor;
use super::value::{Func, Proto, Val};
use super::Fault;
use simd_json::prelude::*;
use std::borrow::Cow;

const OBJECT_PROTO: &[&str] = &[
    "constructor",
    "__defineGetter__",
    "__defineSetter__",
    "hasOwnProperty",
    "__lookupGetter__",
    "__lookupSetter__",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toString",
    "valueOf",
    "__proto__",
    "toLocaleString",
];

const ARRAY_PROTO: &[&str] = &[
    "constructor",
    "at",
    "concat",
    "copyWithin",
    "fill",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "lastIndexOf",
    "pop",
    "push",
    "reverse",
    "shift",
    "unshift",
    "slice",
    "sort",
    "splice",
    "includes",
    "indexOf",
    "join",
    "keys",
    "entries",
    "values",
    "forEach",
    "filter",
    "flat",
    "flatMap",
    "map",
    "every",
    "some",
    "reduce",
    "reduceRight",
    "toLocaleString",
    "toString",
    "toReversed",
    "toSorted",
    "toSpliced",
    "with",
];

const STRING_PROTO: &[&str] = &[
    "constructor",
    "anchor",
    "at",
    "big",
    "blink",
    "bold",
    "charAt",
    "charCodeAt",
    "codePointAt",
    "concat",
    "endsWith",
    "fontcolor",
    "fontsize",
    "fixed",
    "includes",
    "indexOf",
    "isWellFormed",
    "italics",
    "lastIndexOf",
    "link",
    "localeCompare",
    "match",
    "matchAll",
    "normalize",
    "padEnd",
    "padStart",
    "repeat",
    "replace",
    "replaceAll",
    "search",
    "slice",
    "small",
    "split",
    "strike",
    "sub",
    "substr",
    "substring",
    "sup",
    "startsWith",
    "toString",
    "toWellFormed",
    "trim",
    "trimStart",
    "trimLeft",
    "trimEnd",
    "trimRight",
    "toLocaleLowerCase",
    "toLocaleUpperCase",
    "toLowerCase",
    "toUpperCase",
    "valueOf",
];

const NUMBER_PROTO: &[&str] = &[
    "constructor",
    "toExponential",
    "toFixed",
    "toPrecision",
    "toString",
    "valueOf",
    "toLocaleString",
];

const BOOLEAN_PROTO: &[&str] = &["constructor", "toString", "valueOf"];

const FUNCTION_PROTO: &[&str] = &["constructor", "apply", "bind", "call", "toString"];

const REGEXP_PROTO: &[&str] = &["constructor", "exec", "compile", "toString", "test"];

const MATH_FUNCTIONS: &[&str] = &[
    "abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "atan2", "ceil", "cbrt", "expm1",
    "clz32", "cos", "cosh", "exp", "floor", "fround", "hypot", "imul", "log", "log1p", "log2",
    "log10", "max", "min", "pow", "random", "round", "sign", "sin", "sinh", "sqrt", "tan", "tanh",
    "trunc",
];

const NUMBER_FUNCTIONS: &[&str] = &[
    "isFinite",
    "isInteger",
    "isNaN",
    "isSafeInteger",
    "parseFloat",
    "parseInt",
];

fn members(proto: Proto) -> &'static [&'static str] {
    match proto {
        Proto::Object => OBJECT_PROTO,
        Proto::Array => ARRAY_PROTO,
        Proto::String => STRING_PROTO,
        Proto::Number => NUMBER_PROTO,
        Proto::Boolean => BOOLEAN_PROTO,
        Proto::Function => FUNCTION_PROTO,
        Proto::RegExp => REGEXP_PROTO,
    }
}

fn ctor_of(proto: Proto) -> Ctor {
    match proto {
        Proto::Object => Ctor::Object,
        Proto::Array => Ctor::Array,
        Proto::String => Ctor::String,
        Proto::Number => Ctor::Number,
        Proto::Boolean => Ctor::Boolean,
        Proto::Function => Ctor::Function,
        Proto::RegExp => Ctor::RegExp,
    }
}

/// The prototype chain of a value, nearest first.
fn chain(v: &Val) -> &'static [Proto] {
    match v {
        Val::Str(_) => &[Proto::String, Proto::Object],
        Val::Num(_) => &[Proto::Number, Proto::Object],
        Val::Bool(_) => &[Proto::Boolean, Proto::Object],
        Val::Regex(_) => &[Proto::RegExp, Proto::Object],
        Val::Func(_) => &[Proto::Function, Proto::Object],
        _ if v.is_array() => &[Proto::Array, Proto::Object],
        _ => &[Proto::Object],
    }
}

/// A canonical array index (`"0"`, `"12"`; not `"01"` or `"1.0"`).
pub fn array_index(key: &str) -> Option<usize> {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u32>()
        .ok()
        .filter(|i| *i < u32::MAX)
        .map(|i| i as usize)
}

fn inexact(what: String) -> Fault {
    Fault::Inexact(what)
}

/// An own property of `v`, if it has one by that name. `user` is passed for `user.*`.
fn own<'a>(v: &Val<'a>, key: &str, user: &UserView<'a>) -> Result<Option<Val<'a>>, Fault> {
    Ok(match v {
        Val::Str(s) => {
            if key == "length" {
                return Ok(Some(Val::Num(s.encode_utf16().count() as f64)));
            }
            let Some(i) = array_index(key) else {
                return Ok(None);
            };
            match s.encode_utf16().nth(i) {
                None => None,
                Some(unit) => match char::from_u32(u32::from(unit)) {
                    Some(c) => Some(Val::Str(Cow::Owned(c.to_string()))),
                    None => {
                        return Err(inexact(
                            "one half of a surrogate pair of a string".to_string(),
                        ))
                    }
                },
            }
        }
        Val::Json(json) => match <&'a simd_json::OwnedValue>::clone(json).as_array() {
            Some(items) => {
                if key == "length" {
                    Some(Val::Num(items.len() as f64))
                } else {
                    array_index(key)
                        .and_then(|i| items.get(i))
                        .map(Val::from_json)
                }
            }
            None => v.own_of_object(key),
        },
        Val::Array(array) => {
            if key == "length" {
                Some(Val::Num(array.items.len() as f64))
            } else if let Some(i) = array_index(key) {
                array.items.get(i).and_then(Option::clone)
            } else {
                array
                    .extra
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone())
            }
        }
        Val::Object(_) => v.own_of_object(key),
        Val::User => match key {
            "id" => Some(Val::Str(Cow::Borrowed(user.id))),
            "isAuthenticated" => Some(Val::Bool(user.authenticated)),
            "data" => Some(user.data.map_or(Val::Null, Val::from_json)),
            _ => None,
        },
        Val::Regex(lit) => {
            let flag = |f: char| Some(Val::Bool(lit.has_flag(f)));
            match key {
                "lastIndex" => Some(Val::Num(0.0)),
                "source" | "flags" => {
                    let text = Val::Regex(lit.clone()).to_text()?;
                    let (source, flags) = text[1..].rsplit_once('/').unwrap_or(("", ""));
                    let part = if key == "source" { source } else { flags };
                    Some(Val::Str(Cow::Owned(part.to_string())))
                }
                "global" => flag('g'),
                "ignoreCase" => flag('i'),
                "multiline" => flag('m'),
                "dotAll" => flag('s'),
                "unicode" => flag('u'),
                "sticky" => flag('y'),
                "hasIndices" => flag('d'),
                "unicodeSets" => flag('v'),
                _ => None,
            }
        }
        Val::Func(func) => match key {
            "name" => Some(Val::Str(Cow::Borrowed(match func {
                Func::Method(_, name) | Func::Static(_, name) => name,
                Func::Ctor(ctor) => ctor.name(),
                Func::CrossRef => "bound crossReference",
            }))),
            "length" | "prototype" | "arguments" | "caller" => {
                return Err(inexact(format!("the {key} of a function")))
            }
            _ => match func {
                Func::Ctor(Ctor::Number) => number_static(key),
                Func::Ctor(ctor) => ctor_static(*ctor, key)?,
                _ => None,
            },
        },
        Val::Math => math_member(key),
        Val::JsonNamespace => match key {
            "parse" => Some(Val::Func(Func::Static("JSON", "parse"))),
            "stringify" => Some(Val::Func(Func::Static("JSON", "stringify"))),
            _ => None,
        },
        Val::This => None,
        Val::Undefined | Val::Null | Val::Bool(_) | Val::Num(_) => None,
    })
}

/// The functions a constructor holds (`Array.isArray`); the legacy and symbol statics of
/// `RegExp`, `Symbol` and `Error` are not modelled.
fn ctor_static(ctor: Ctor, key: &str) -> Result<Option<Val<'static>>, Fault> {
    let functions: &[&'static str] = match ctor {
        Ctor::Object => &[
            "assign",
            "getOwnPropertyDescriptor",
            "getOwnPropertyDescriptors",
            "getOwnPropertyNames",
            "getOwnPropertySymbols",
            "hasOwn",
            "is",
            "preventExtensions",
            "seal",
            "create",
            "defineProperties",
            "defineProperty",
            "freeze",
            "getPrototypeOf",
            "setPrototypeOf",
            "isExtensible",
            "isFrozen",
            "isSealed",
            "keys",
            "entries",
            "fromEntries",
            "values",
        ],
        Ctor::Array => &["isArray", "from", "of"],
        Ctor::String => &["fromCharCode", "fromCodePoint", "raw"],
        Ctor::Date => &["now", "parse", "UTC"],
        Ctor::Boolean | Ctor::Function | Ctor::Number => &[],
        Ctor::RegExp | Ctor::Error | Ctor::Symbol => {
            let unmodelled: &[&str] = match ctor {
                Ctor::RegExp => &[
                    "input",
                    "$_",
                    "lastMatch",
                    "$&",
                    "lastParen",
                    "$+",
                    "leftContext",
                    "$`",
                    "rightContext",
                    "$'",
                    "$1",
                    "$2",
                    "$3",
                    "$4",
                    "$5",
                    "$6",
                    "$7",
                    "$8",
                    "$9",
                ],
                Ctor::Error => &["captureStackTrace", "prepareStackTrace", "stackTraceLimit"],
                _ => &[
                    "for",
                    "keyFor",
                    "asyncIterator",
                    "hasInstance",
                    "isConcatSpreadable",
                    "iterator",
                    "match",
                    "matchAll",
                    "replace",
                    "search",
                    "species",
                    "split",
                    "toPrimitive",
                    "toStringTag",
                    "unscopables",
                    "dispose",
                    "asyncDispose",
                ],
            };
            if unmodelled.contains(&key) {
                return Err(inexact(format!("{}.{key}", ctor.name())));
            }
            &[]
        }
    };
    Ok(functions
        .iter()
        .find(|f| **f == key)
        .map(|f| Val::Func(Func::Static(ctor.name(), f))))
}

fn number_static(key: &str) -> Option<Val<'static>> {
    let n = match key {
        "MAX_SAFE_INTEGER" => 9_007_199_254_740_991.0,
        "MIN_SAFE_INTEGER" => -9_007_199_254_740_991.0,
        "EPSILON" => f64::EPSILON,
        "MAX_VALUE" => f64::MAX,
        "MIN_VALUE" => 5e-324,
        "POSITIVE_INFINITY" => f64::INFINITY,
        "NEGATIVE_INFINITY" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => {
            return NUMBER_FUNCTIONS
                .iter()
                .find(|f| **f == key)
                .map(|f| Val::Func(Func::Static("Number", f)))
        }
    };
    Some(Val::Num(n))
}

fn math_member(key: &str) -> Option<Val<'static>> {
    use std::f64::consts;
    let n = match key {
        "E" => consts::E,
        "LN10" => consts::LN_10,
        "LN2" => consts::LN_2,
        "LOG10E" => consts::LOG10_E,
        "LOG2E" => consts::LOG2_E,
        "PI" => consts::PI,
        "SQRT1_2" => consts::FRAC_1_SQRT_2,
        "SQRT2" => consts::SQRT_2,
        _ => {
            return MATH_FUNCTIONS
                .iter()
                .find(|f| **f == key)
                .map(|f| Val::Func(Func::Static("Math", f)))
        }
    };
    Some(Val::Num(n))
}

/// What `user` is made of for this evaluation.
pub struct UserView<'a> {
    pub id: &'a str,
    pub authenticated: bool,
    pub data: Option<&'a simd_json::OwnedValue>,
}

/// `v[key]`: reading from `undefined` or `null` is a TypeError.
pub fn get<'a>(v: &Val<'a>, key: &str, user: &UserView<'a>) -> Result<Val<'a>, Fault> {
    // The common reads first: a key of a JSON object, a field of `user`.
    match v {
        Val::Json(json) => {
            if let Some(found) = <&'a simd_json::OwnedValue>::clone(json)
                .as_object()
                .and_then(|o| o.get(key))
            {
                return Ok(Val::from_json(found));
            }
        }
        Val::User => match key {
            "id" => return Ok(Val::Str(Cow::Borrowed(user.id))),
            "data" => return Ok(user.data.map_or(Val::Null, Val::from_json)),
            _ => {}
        },
        Val::Undefined | Val::Null => return Err(read_of_nothing(v, key)),
        _ => {}
    }
    if let Some(found) = own(v, key, user)? {
        return Ok(found);
    }
    if key == "__proto__" {
        return Err(inexact("__proto__".into()));
    }
    for proto in chain(v) {
        if members(*proto).contains(&key) {
            return Ok(Val::Func(if key == "constructor" {
                Func::Ctor(ctor_of(*proto))
            } else {
                Func::Method(*proto, static_name(*proto, key))
            }));
        }
    }
    Ok(Val::Undefined)
}

#[cold]
fn read_of_nothing(v: &Val, key: &str) -> Fault {
    let what = if matches!(v, Val::Null) {
        "null"
    } else {
        "undefined"
    };
    Fault::Type(format!(
        "Cannot read properties of {what} (reading '{key}')"
    ))
}

fn static_name(proto: Proto, key: &str) -> &'static str {
    members(proto)
        .iter()
        .find(|m| **m == key)
        .copied()
        .unwrap_or("")
}

/// `key in v`: the right side must be an object.
pub fn has<'a>(v: &Val<'a>, key: &str, user: &UserView<'a>) -> Result<bool, Fault> {
    if !v.is_object() {
        return Err(Fault::Type(format!(
            "Cannot use 'in' operator to search for '{key}' in {}",
            v.to_text()?
        )));
    }
    // A hole is no property, though reading it gives undefined.
    if let (Val::Array(array), Some(i)) = (v, array_index(key)) {
        return Ok(matches!(array.items.get(i), Some(Some(_))));
    }
    if own(v, key, user)?.is_some() || key == "__proto__" {
        return Ok(true);
    }
    Ok(chain(v).iter().any(|p| members(*p).contains(&key)))
}

/// `v instanceof target`.
pub fn instance_of(v: &Val, target: &Val) -> Result<bool, Fault> {
    let ctor = match target {
        Val::Func(Func::Ctor(ctor)) => *ctor,
        Val::Func(_) => {
            return Err(inexact(
                "instanceof with a function that is no constructor".into(),
            ))
        }
        _ => {
            return Err(Fault::Type(
                "Right-hand side of 'instanceof' is not callable".into(),
            ))
        }
    };
    if !v.is_object() {
        return Ok(false);
    }
    Ok(match ctor {
        Ctor::Object => true,
        Ctor::Array => v.is_array(),
        Ctor::RegExp => matches!(v, Val::Regex(_)),
        Ctor::Function => matches!(v, Val::Func(_)),
        _ => false,
    })
}
