//! Values while a rule runs, and JavaScript's conversions between them (ToNumber, ToString,
//! ToPrimitive, truthiness, `typeof`, `==`, `===`, `<`). JSON from messages stays borrowed.

pub use super::number::number_text;
use super::parse::Ctor;
use super::regex::RegexLit;
use super::Fault;
use simd_json::prelude::*;
use simd_json::OwnedValue;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::Arc;

/// The built-in prototypes whose members a rule can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Object,
    Array,
    String,
    Number,
    Boolean,
    Function,
    RegExp,
}

/// A function value; a rule can compare and print these but call none of them but `_`
/// and the supported methods.
#[derive(Debug, Clone, PartialEq)]
pub enum Func {
    /// A member of a built-in prototype (`data.toString` is `Object.prototype.toString`).
    Method(Proto, &'static str),
    Ctor(Ctor),
    /// A function of `Math`, `JSON` or `Number` (`Math.max`).
    Static(&'static str, &'static str),
    /// `_`.
    CrossRef,
}

#[derive(Debug, Clone)]
pub enum Val<'a> {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    /// An object or array of the message's JSON (scalars become the values above).
    Json(&'a OwnedValue),
    /// An array the rule made (a literal, a match): `None` is a hole.
    Array(Rc<JsArray<'a>>),
    /// An object literal of the rule, in key order.
    Object(Rc<Vec<(String, Val<'a>)>>),
    Regex(Arc<RegexLit>),
    User,
    This,
    Math,
    JsonNamespace,
    Func(Func),
}

#[derive(Debug, Default)]
pub struct JsArray<'a> {
    pub items: Vec<Option<Val<'a>>>,
    /// Named properties beside the items (`index`, `input` and `groups` of a match).
    pub extra: Vec<(&'static str, Val<'a>)>,
}

impl<'a> Val<'a> {
    pub fn from_json(v: &'a OwnedValue) -> Val<'a> {
        use simd_json::StaticNode;
        match v {
            OwnedValue::String(s) => Val::Str(Cow::Borrowed(s)),
            OwnedValue::Static(StaticNode::Bool(b)) => Val::Bool(*b),
            OwnedValue::Static(StaticNode::Null) => Val::Null,
            OwnedValue::Static(StaticNode::F64(n)) => Val::Num(*n),
            OwnedValue::Static(StaticNode::I64(n)) => Val::Num(*n as f64),
            OwnedValue::Static(StaticNode::U64(n)) => Val::Num(*n as f64),
            OwnedValue::Array(_) | OwnedValue::Object(_) => Val::Json(v),
        }
    }

    pub fn str(text: impl Into<Cow<'a, str>>) -> Val<'a> {
        Val::Str(text.into())
    }

    pub fn is_nullish(&self) -> bool {
        matches!(self, Val::Undefined | Val::Null)
    }

    pub fn is_object(&self) -> bool {
        !matches!(
            self,
            Val::Undefined | Val::Null | Val::Bool(_) | Val::Num(_) | Val::Str(_)
        )
    }

    pub fn is_array(&self) -> bool {
        match self {
            Val::Json(v) => v.is_array(),
            Val::Array(_) => true,
            _ => false,
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            Val::Undefined | Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Str(s) => !s.is_empty(),
            _ => true,
        }
    }

    pub fn type_of(&self) -> &'static str {
        match self {
            Val::Undefined => "undefined",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Func(_) => "function",
            _ => "object",
        }
    }

    /// ToPrimitive (OrdinaryToPrimitive, `valueOf` then `toString`): the built-in `valueOf`
    /// of every object here returns the object, so its `toString` decides, unless an own
    /// property shadows one of them (`{"toString": 1}` cannot be converted at all).
    pub fn to_primitive(&self) -> Result<Val<'a>, Fault> {
        if !self.is_object() {
            return Ok(self.clone());
        }
        let own = |key: &str| self.own_of_object(key);
        match own("valueOf") {
            Some(Val::Func(Func::Method(Proto::Object, "valueOf"))) | None => {}
            Some(Val::Func(_)) => {
                return Err(Fault::Inexact("an object with its own valueOf".into()))
            }
            // Not callable: skipped.
            Some(_) => {}
        }
        match own("toString") {
            None => Ok(Val::Str(self.builtin_text()?)),
            Some(Val::Func(Func::Method(Proto::Object, "toString"))) => {
                Ok(Val::str(if self.is_array() {
                    "[object Array]"
                } else {
                    "[object Object]"
                }))
            }
            Some(Val::Func(_)) => Err(Fault::Inexact("an object with its own toString".into())),
            Some(_) => Err(Fault::Type(
                "Cannot convert object to primitive value".into(),
            )),
        }
    }

    /// An own property of a JSON object or an object literal.
    pub fn own_of_object(&self, key: &str) -> Option<Val<'a>> {
        match self {
            Val::Json(v) if v.is_object() => {
                <&'a OwnedValue>::clone(v).get(key).map(Val::from_json)
            }
            Val::Object(props) => props
                .as_slice()
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    /// ToNumber.
    pub fn to_number(&self) -> Result<f64, Fault> {
        Ok(match self {
            Val::Undefined => f64::NAN,
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(*b)),
            Val::Num(n) => *n,
            Val::Str(s) => crate::core::jsonpath::js_number(s),
            _ => crate::core::jsonpath::js_number(&self.to_text()?),
        })
    }

    /// ToString.
    pub fn to_text(&self) -> Result<Cow<'a, str>, Fault> {
        if matches!(self, Val::Json(_) | Val::Object(_)) {
            return match self.to_primitive()? {
                Val::Str(s) => Ok(s),
                other => other.to_text(),
            };
        }
        self.builtin_text()
    }

    /// ToString through the built-in `toString` of the value's kind.
    fn builtin_text(&self) -> Result<Cow<'a, str>, Fault> {
        Ok(match self {
            Val::Undefined => "undefined".into(),
            Val::Null => "null".into(),
            Val::Bool(b) => if *b { "true" } else { "false" }.into(),
            Val::Num(n) => number_text(*n).into(),
            Val::Str(s) => s.clone(),
            Val::Json(v) => match v.as_array() {
                Some(items) => {
                    let mut out = String::new();
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let item = Val::from_json(item);
                        if !item.is_nullish() {
                            out.push_str(&item.to_text()?);
                        }
                    }
                    out.into()
                }
                None => "[object Object]".into(),
            },
            Val::Array(array) => {
                let mut out = String::new();
                for (i, item) in array.items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if let Some(item) = item.as_ref().filter(|v| !v.is_nullish()) {
                        out.push_str(&item.to_text()?);
                    }
                }
                out.into()
            }
            Val::Object(_) | Val::User | Val::This => "[object Object]".into(),
            Val::Math => "[object Math]".into(),
            Val::JsonNamespace => "[object JSON]".into(),
            Val::Regex(lit) => {
                let source = if lit.source.is_empty() {
                    "(?:)"
                } else {
                    &lit.source
                };
                let flags: String = "dgimsuvy".chars().filter(|f| lit.has_flag(*f)).collect();
                format!("/{source}/{flags}").into()
            }
            Val::Func(Func::Method(_, name) | Func::Static(_, name)) => {
                format!("function {name}() {{ [native code] }}").into()
            }
            Val::Func(Func::Ctor(ctor)) => {
                format!("function {}() {{ [native code] }}", ctor.name()).into()
            }
            Val::Func(Func::CrossRef) => "function () { [native code] }".into(),
        })
    }

    /// ToPropertyKey.
    pub fn to_key(&self) -> Result<Cow<'a, str>, Fault> {
        self.to_primitive()?.to_text()
    }
}

/// Identity of two objects: the same JSON node, or the same built-in.
fn same_object(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Json(x), Val::Json(y)) => std::ptr::eq(*x, *y),
        (Val::Array(x), Val::Array(y)) => Rc::ptr_eq(x, y),
        (Val::Object(x), Val::Object(y)) => Rc::ptr_eq(x, y),
        (Val::Regex(x), Val::Regex(y)) => Arc::ptr_eq(x, y),
        (Val::User, Val::User)
        | (Val::This, Val::This)
        | (Val::Math, Val::Math)
        | (Val::JsonNamespace, Val::JsonNamespace) => true,
        (Val::Func(x), Val::Func(y)) => x == y,
        _ => false,
    }
}

/// `===`.
pub fn strict_eq(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Undefined, Val::Undefined) | (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        _ => a.is_object() && b.is_object() && same_object(a, b),
    }
}

/// SameValueZero, for `Array.prototype.includes`: NaN equals itself.
pub fn same_value_zero(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) if x.is_nan() && y.is_nan() => true,
        _ => strict_eq(a, b),
    }
}

/// `==`, the Abstract Equality Comparison.
pub fn loose_eq(a: &Val, b: &Val) -> Result<bool, Fault> {
    Ok(match (a, b) {
        (Val::Undefined | Val::Null, Val::Undefined | Val::Null) => true,
        (Val::Undefined | Val::Null, _) | (_, Val::Undefined | Val::Null) => false,
        (Val::Num(_), Val::Str(_)) | (Val::Str(_), Val::Num(_)) => {
            a.to_number()? == b.to_number()?
        }
        (Val::Bool(_), _) => loose_eq(&Val::Num(a.to_number()?), b)?,
        (_, Val::Bool(_)) => loose_eq(a, &Val::Num(b.to_number()?))?,
        _ if a.is_object() && b.is_object() => same_object(a, b),
        _ if a.is_object() => loose_eq(&a.to_primitive()?, b)?,
        _ if b.is_object() => loose_eq(a, &b.to_primitive()?)?,
        _ => strict_eq(a, b),
    })
}

/// Strings compare by UTF-16 units in JavaScript, not by code points.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The Abstract Relational Comparison of `a < b`; `None` when either side is NaN.
pub fn less_than(a: &Val, b: &Val, left_first: bool) -> Result<Option<bool>, Fault> {
    // Numbers and strings, the common cases, need no conversion.
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => return Ok((!x.is_nan() && !y.is_nan()).then_some(x < y)),
        (Val::Str(x), Val::Str(y)) => return Ok(Some(utf16_cmp(x, y) == Ordering::Less)),
        _ => {}
    }
    let (pa, pb) = if left_first {
        let pa = a.to_primitive()?;
        (pa, b.to_primitive()?)
    } else {
        let pb = b.to_primitive()?;
        (a.to_primitive()?, pb)
    };
    if let (Val::Str(x), Val::Str(y)) = (&pa, &pb) {
        return Ok(Some(utf16_cmp(x, y) == Ordering::Less));
    }
    let (x, y) = (pa.to_number()?, pb.to_number()?);
    if x.is_nan() || y.is_nan() {
        return Ok(None);
    }
    Ok(Some(x < y))
}

/// ToInt32.
pub fn to_int32(n: f64) -> i32 {
    to_uint32(n) as i32
}

/// ToUint32.
pub fn to_uint32(n: f64) -> u32 {
    if !n.is_finite() {
        return 0;
    }
    n.trunc().rem_euclid(4_294_967_296.0) as u32
}

/// ToIntegerOrInfinity.
pub fn to_integer(n: f64) -> f64 {
    if n.is_nan() {
        0.0
    } else {
        n.trunc() + 0.0
    }
}

/// `**`. V8 computes powers with fdlibm's `pow`, which can differ from this platform's in
/// the last bit: only the cases both get right are answered (the special values, and
/// integer powers of integers that stay exact).
pub fn power(base: f64, exponent: f64) -> Result<f64, Fault> {
    if exponent.is_nan() {
        return Ok(f64::NAN);
    }
    if exponent == 0.0 {
        return Ok(1.0);
    }
    if base.abs() == 1.0 && exponent.is_infinite() {
        return Ok(f64::NAN);
    }
    let result = base.powf(exponent);
    let special = !base.is_finite() || !exponent.is_finite() || base == 0.0 || base.is_nan();
    let exact_integer = base.fract() == 0.0
        && exponent.fract() == 0.0
        && exponent > 0.0
        && result.abs() < 9_007_199_254_740_992.0;
    // Overflow and underflow give infinity and zero in both.
    let out_of_range = result.is_infinite() || result == 0.0;
    if special || exact_integer || out_of_range || exponent == 1.0 || result.is_nan() {
        return Ok(result);
    }
    Err(Fault::Inexact(format!(
        "{} ** {}",
        number_text(base),
        number_text(exponent)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_in_javascript() {
        for (n, text) in [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123e-20, "1.23e-18"),
            (-0.0, "0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-7, "5e-7"),
            (0.000001, "0.000001"),
            (1.5, "1.5"),
            (-42.0, "-42"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
            (9007199254740994.0, "9007199254740994"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123456789012.5, "123456789012.5"),
        ] {
            assert_eq!(number_text(n), text);
        }
    }

    #[test]
    fn equality_and_order_as_in_javascript() {
        let s = |t: &'static str| Val::str(t);
        assert!(loose_eq(&s("1"), &Val::Num(1.0)).unwrap());
        assert!(loose_eq(&Val::Bool(true), &s("1")).unwrap());
        assert!(!loose_eq(&Val::Null, &Val::Num(0.0)).unwrap());
        assert!(loose_eq(&s(" \n"), &Val::Num(0.0)).unwrap());
        assert!(!strict_eq(&Val::Num(f64::NAN), &Val::Num(f64::NAN)));
        assert!(same_value_zero(&Val::Num(f64::NAN), &Val::Num(f64::NAN)));
        // U+FF5E sorts after an astral character in code points, before it in UTF-16 units.
        assert_eq!(
            less_than(&s("\u{ff5e}"), &s("😀"), true).unwrap(),
            Some(false)
        );
        assert_eq!(less_than(&s("10"), &s("9"), true).unwrap(), Some(true));
        assert_eq!(
            less_than(&s("10"), &Val::Num(9.0), true).unwrap(),
            Some(false)
        );
        assert_eq!(
            less_than(&Val::Undefined, &Val::Num(9.0), true).unwrap(),
            None
        );
        assert_eq!(to_int32(4_294_967_295.0), -1);
        assert_eq!(to_int32(-1.5), -1);
        assert!(power(1.0, f64::INFINITY).unwrap().is_nan());
        assert_eq!(power(f64::NAN, 0.0).unwrap(), 1.0);
        assert_eq!(power(2.0, 10.0).unwrap(), 1024.0);
        assert!(
            power(15.0, 2.5).is_err(),
            "the last bit may differ from V8's"
        );
    }
}
