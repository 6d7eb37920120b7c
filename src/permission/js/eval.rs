//! Evaluation of a rule tree, operator by operator as JavaScript evaluates it (left before
//! right, short-circuits, optional chains), with a bound on steps and on bytes built.

use super::parse::{BinOp, Expr, Key, LogicOp, UnOp, Var};
use super::props::{self, UserView};
use super::value::{self, Func, JsArray, Val};
use super::{methods, Fault, MAX_EVAL_BYTES};
use simd_json::OwnedValue;
use std::borrow::Cow;
use std::rc::Rc;

/// What a rule sees: the reference's function arguments.
pub struct Context<'a> {
    pub user_id: &'a str,
    pub authenticated: bool,
    pub user_data: Option<&'a OwnedValue>,
    pub data: Option<&'a OwnedValue>,
    pub old_data: Option<&'a OwnedValue>,
    pub now: f64,
    pub action: i32,
    pub name: &'a str,
    pub variables: &'a [(String, String)],
    /// Records read with `_()`, by name; `None` for a record that does not exist.
    pub refs: &'a [(String, Option<OwnedValue>)],
}

/// The result of one run: the value, or why it failed, and the records `_()` asked for that
/// `refs` did not hold (the reference runs the rule again once they are loaded).
pub struct Outcome<'a> {
    pub value: Result<Val<'a>, Fault>,
    pub missing: Vec<String>,
}

/// Runs `expr`, taking at most `max_steps` steps.
pub fn run<'a>(expr: &'a Expr, cx: &Context<'a>, max_steps: u32) -> Outcome<'a> {
    let mut eval = Eval {
        cx,
        user: UserView {
            id: cx.user_id,
            authenticated: cx.authenticated,
            data: cx.user_data,
        },
        steps: max_steps,
        bytes: 0,
        missing: Vec::new(),
    };
    let value = match eval.eval(expr) {
        Ok(v) => Ok(v),
        Err(Stop::Fault(f)) => Err(*f),
        // A short-circuit always ends at its chain; none reaches the top.
        Err(Stop::Short) => Ok(Val::Undefined),
    };
    Outcome {
        value,
        missing: eval.missing,
    }
}

enum Stop {
    /// Boxed, so that the `Result` every step returns stays small.
    Fault(Box<Fault>),
    /// An optional link met `undefined` or `null`: the chain yields `undefined`.
    Short,
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Stop {
        Stop::Fault(Box::new(f))
    }
}

type Step<'a> = Result<Val<'a>, Stop>;

struct Eval<'a, 'c> {
    cx: &'c Context<'a>,
    user: UserView<'a>,
    steps: u32,
    bytes: usize,
    missing: Vec<String>,
}

impl<'a> Eval<'a, '_> {
    /// Counts the bytes of a string the rule built.
    fn built(&mut self, text: String) -> Step<'a> {
        self.bytes += text.len();
        if self.bytes > MAX_EVAL_BYTES {
            return Err(Fault::Budget.into());
        }
        Ok(Val::Str(Cow::Owned(text)))
    }

    fn var(&mut self, var: &'a Var) -> Step<'a> {
        let cx = self.cx;
        Ok(match var {
            Var::CrossRef => Val::Func(Func::CrossRef),
            Var::User => Val::User,
            Var::Data => cx.data.map_or(Val::Undefined, Val::from_json),
            Var::OldData => cx.old_data.map_or(Val::Null, Val::from_json),
            Var::Now => Val::Num(cx.now),
            Var::Action => Val::Num(f64::from(cx.action)),
            Var::Name => Val::Str(Cow::Borrowed(cx.name)),
            Var::This => Val::This,
            Var::Path(name) => match cx.variables.iter().find(|(k, _)| k == name) {
                Some((_, value)) => Val::Str(Cow::Borrowed(value.as_str())),
                None => return Err(Fault::Reference(format!("{name} is not defined")).into()),
            },
            Var::Ctor(ctor) => Val::Func(Func::Ctor(*ctor)),
            Var::Math => Val::Math,
            Var::Json => Val::JsonNamespace,
            Var::Unmodeled(name) => return Err(Fault::Inexact(format!("'{name}'")).into()),
            Var::Undeclared(name) => {
                return Err(Fault::Reference(format!("{name} is not defined")).into())
            }
        })
    }

    fn key(&mut self, key: &'a Key) -> Result<Cow<'a, str>, Stop> {
        match key {
            Key::Static(name) => Ok(Cow::Borrowed(name)),
            Key::Computed(expr) => Ok(self.eval(expr)?.to_key()?),
        }
    }

    /// `_(name)`: the record's data, `null` if it does not exist, `undefined` while unknown.
    fn cross_ref(&mut self, args: &'a [Expr]) -> Step<'a> {
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg)?);
        }
        let name = match values.first() {
            None | Some(Val::Undefined) => return Ok(Val::Undefined),
            Some(Val::Str(name)) => name.clone(),
            Some(other) => {
                return Err(Fault::CrossRef(format!(
                    "crossreference got unsupported type {}",
                    other.type_of()
                ))
                .into())
            }
        };
        if name.contains("undefined") {
            return Ok(Val::Undefined);
        }
        match self.cx.refs.iter().find(|(n, _)| *n == *name) {
            Some((_, Some(data))) => Ok(Val::from_json(data)),
            Some((_, None)) => Ok(Val::Null),
            None => {
                if !self.missing.iter().any(|m| *m == *name) {
                    self.missing.push(name.into_owned());
                }
                Ok(Val::Undefined)
            }
        }
    }

    fn eval(&mut self, expr: &'a Expr) -> Step<'a> {
        if self.steps == 0 {
            return Err(Fault::Budget.into());
        }
        self.steps -= 1;
        Ok(match expr {
            Expr::Undefined => Val::Undefined,
            Expr::Null => Val::Null,
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Num(n) => Val::Num(*n),
            Expr::Str(s) => Val::Str(Cow::Borrowed(s)),
            Expr::Regex(lit) => Val::Regex(lit.clone()),
            Expr::Template(strings, exprs) => {
                let mut out = String::new();
                for (i, text) in strings.iter().enumerate() {
                    out.push_str(text);
                    if let Some(e) = exprs.get(i) {
                        let v = self.eval(e)?;
                        out.push_str(&v.to_text()?);
                    }
                }
                return self.built(out);
            }
            Expr::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(match item {
                        Some(e) => Some(self.eval(e)?),
                        None => None,
                    });
                }
                Val::Array(Rc::new(JsArray {
                    items: out,
                    extra: Vec::new(),
                }))
            }
            Expr::Object(props) => {
                let mut out: Vec<(String, Val<'a>)> = Vec::with_capacity(props.len());
                for (key, value) in props {
                    let key = self.key(key)?.into_owned();
                    let value = self.eval(value)?;
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => out.push((key, value)),
                    }
                }
                Val::Object(Rc::new(out))
            }
            Expr::Var(var) => return self.var(var),
            Expr::Member(target, key, optional) => {
                let target = self.eval(target)?;
                if *optional && target.is_nullish() {
                    return Err(Stop::Short);
                }
                let key = self.key(key)?;
                props::get(&target, &key, &self.user)?
            }
            Expr::Call(target, method, args, optional) => {
                let target = self.eval(target)?;
                if *optional && target.is_nullish() {
                    return Err(Stop::Short);
                }
                // Reading the method of `undefined` or `null` throws before the arguments are
                // evaluated; reading it from anything else cannot throw.
                if target.is_nullish() {
                    props::get(&target, method, &self.user)?;
                }
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.eval(arg)?);
                }
                methods::call(&target, method, &values)?
            }
            Expr::Ref(args) => return self.cross_ref(args),
            Expr::Chain(inner) => match self.eval(inner) {
                Err(Stop::Short) => Val::Undefined,
                other => return other,
            },
            Expr::Unary(op, operand) => self.unary(*op, operand)?,
            Expr::Binary(op, left, right) => {
                let a = self.eval(left)?;
                let b = self.eval(right)?;
                return self.binary(*op, a, b);
            }
            Expr::Logical(op, left, right) => {
                let l = self.eval(left)?;
                let take_left = match op {
                    LogicOp::And => !l.truthy(),
                    LogicOp::Or => l.truthy(),
                    LogicOp::Nullish => !l.is_nullish(),
                };
                if take_left {
                    l
                } else {
                    return self.eval(right);
                }
            }
            Expr::Cond(cond, yes, no) => {
                let branch = if self.eval(cond)?.truthy() { yes } else { no };
                return self.eval(branch);
            }
            Expr::Comma(first, second) => {
                self.eval(first)?;
                return self.eval(second);
            }
            Expr::Throw(message) => return Err(Fault::Reference(message.clone()).into()),
        })
    }

    fn unary(&mut self, op: UnOp, operand: &'a Expr) -> Step<'a> {
        if op == UnOp::Typeof {
            // `typeof` of an undeclared name is "undefined", not a ReferenceError.
            if let Expr::Var(Var::Undeclared(_)) = operand {
                return Ok(Val::str("undefined"));
            }
            return Ok(Val::str(self.eval(operand)?.type_of()));
        }
        let v = self.eval(operand)?;
        Ok(match op {
            UnOp::Not => Val::Bool(!v.truthy()),
            UnOp::Neg => Val::Num(-v.to_number()?),
            UnOp::Plus => Val::Num(v.to_number()?),
            UnOp::BitNot => Val::Num(f64::from(!value::to_int32(v.to_number()?))),
            UnOp::Void | UnOp::Typeof => Val::Undefined,
        })
    }

    fn binary(&mut self, op: BinOp, a: Val<'a>, b: Val<'a>) -> Step<'a> {
        use value::{less_than, loose_eq, power, strict_eq, to_int32, to_uint32};
        let num = |a: &Val, b: &Val| -> Result<(f64, f64), Fault> {
            let x = a.to_number()?;
            Ok((x, b.to_number()?))
        };
        Ok(match op {
            BinOp::StrictEq => Val::Bool(strict_eq(&a, &b)),
            BinOp::StrictNe => Val::Bool(!strict_eq(&a, &b)),
            BinOp::LooseEq => Val::Bool(loose_eq(&a, &b)?),
            BinOp::LooseNe => Val::Bool(!loose_eq(&a, &b)?),
            BinOp::Lt => Val::Bool(less_than(&a, &b, true)? == Some(true)),
            BinOp::Gt => Val::Bool(less_than(&b, &a, false)? == Some(true)),
            BinOp::Le => Val::Bool(less_than(&b, &a, false)? == Some(false)),
            BinOp::Ge => Val::Bool(less_than(&a, &b, true)? == Some(false)),
            BinOp::In => {
                if !b.is_object() {
                    return Err(Fault::Type(format!(
                        "Cannot use 'in' operator to search for '{}' in {}",
                        a.to_key()?,
                        b.to_text()?
                    ))
                    .into());
                }
                Val::Bool(props::has(&b, &a.to_key()?, &self.user)?)
            }
            BinOp::InstanceOf => Val::Bool(props::instance_of(&a, &b)?),
            BinOp::Add => {
                let pa = a.to_primitive()?;
                let pb = b.to_primitive()?;
                if matches!(pa, Val::Str(_)) || matches!(pb, Val::Str(_)) {
                    let mut out = pa.to_text()?.into_owned();
                    out.push_str(&pb.to_text()?);
                    return self.built(out);
                }
                Val::Num(pa.to_number()? + pb.to_number()?)
            }
            BinOp::Sub => {
                let (x, y) = num(&a, &b)?;
                Val::Num(x - y)
            }
            BinOp::Mul => {
                let (x, y) = num(&a, &b)?;
                Val::Num(x * y)
            }
            BinOp::Div => {
                let (x, y) = num(&a, &b)?;
                Val::Num(x / y)
            }
            BinOp::Rem => {
                let (x, y) = num(&a, &b)?;
                Val::Num(x % y)
            }
            BinOp::Pow => {
                let (x, y) = num(&a, &b)?;
                Val::Num(power(x, y)?)
            }
            BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor | BinOp::Shl | BinOp::Shr => {
                let (x, y) = num(&a, &b)?;
                let (x, y) = (to_int32(x), to_int32(y));
                let shift = (y as u32) & 31;
                Val::Num(f64::from(match op {
                    BinOp::BitAnd => x & y,
                    BinOp::BitOr => x | y,
                    BinOp::BitXor => x ^ y,
                    BinOp::Shl => x.wrapping_shl(shift),
                    _ => x >> shift,
                }))
            }
            BinOp::UShr => {
                let (x, y) = num(&a, &b)?;
                Val::Num(f64::from(to_uint32(x) >> (to_uint32(y) & 31)))
            }
        })
    }
}

/// A value as text that tells apart everything a rule could observe: its type, `-0`, the
/// items of arrays and the keys of objects (sorted). The differential test compares this
/// with the same description made in Node.js.
#[doc(hidden)]
pub fn describe(v: &Val, user: &Context<'_>) -> String {
    let view = UserView {
        id: user.user_id,
        authenticated: user.authenticated,
        data: user.user_data,
    };
    let mut out = String::new();
    describe_into(v, &view, &mut out, 0);
    out
}

fn describe_into(v: &Val, user: &UserView<'_>, out: &mut String, depth: usize) {
    use simd_json::prelude::*;
    if depth > 20 {
        out.push_str("...");
        return;
    }
    match v {
        Val::Undefined => out.push_str("undefined"),
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) if *n == 0.0 && n.is_sign_negative() => out.push_str("-0"),
        Val::Num(n) => out.push_str(&value::number_text(*n)),
        Val::Str(s) => out.push_str(&serde_json::to_string(s.as_ref()).unwrap_or_default()),
        Val::Func(_) => {
            out.push_str("function ");
            if let Ok(Val::Str(name)) = props::get(v, "name", user) {
                out.push_str(&name);
            }
        }
        Val::Regex(_) => out.push_str(&v.to_text().unwrap_or_default()),
        _ if v.is_array() => {
            let len = match props::get(v, "length", user) {
                Ok(Val::Num(n)) => n as usize,
                _ => 0,
            };
            out.push('[');
            for i in 0..len {
                if i > 0 {
                    out.push(',');
                }
                let item = props::get(v, &i.to_string(), user).unwrap_or(Val::Undefined);
                describe_into(&item, user, out, depth + 1);
            }
            out.push(']');
        }
        _ => {
            let mut keys: Vec<String> = match v {
                Val::Json(json) => json
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default(),
                Val::Object(props) => props.iter().map(|(k, _)| k.clone()).collect(),
                Val::User => vec!["data".into(), "id".into(), "isAuthenticated".into()],
                _ => Vec::new(),
            };
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).unwrap_or_default());
                out.push(':');
                let item = props::get(v, key, user).unwrap_or(Val::Undefined);
                describe_into(&item, user, out, depth + 1);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> OwnedValue {
        crate::core::json::parse(text.as_bytes()).unwrap()
    }

    /// The value of `rule` printed, or the fault, with fixed user, refs and variables.
    fn eval_rule(rule: &str, data: Option<&OwnedValue>) -> std::result::Result<String, Fault> {
        let (expr, _) = super::super::parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        let user_data = json(r#"{"role":"admin","level":3,"teams":["a","b"]}"#);
        let variables = vec![("$userId".to_string(), "alice".to_string())];
        let refs = vec![
            (
                "settings".to_string(),
                Some(json(r#"{"open":true,"admins":["alice"],"next":"limits"}"#)),
            ),
            ("limits".to_string(), Some(json(r#"{"max":5}"#))),
            ("gone".to_string(), None),
        ];
        let cx = Context {
            user_id: "alice",
            authenticated: true,
            user_data: Some(&user_data),
            data,
            old_data: None,
            now: 1000.0,
            action: 18,
            name: "profile/alice",
            variables: &variables,
            refs: &refs,
        };
        let outcome = run(&expr, &cx, 10_000);
        outcome.value.map(|v| describe(&v, &cx))
    }

    /// A context with nothing in it but `$variables`.
    fn bare_context(variables: &[(String, String)]) -> Context<'_> {
        Context {
            user_id: "bob",
            authenticated: true,
            user_data: None,
            data: None,
            old_data: None,
            now: 0.0,
            action: 0,
            name: "",
            variables,
            refs: &[],
        }
    }

    fn is(rule: &str, expected: &str) {
        assert_eq!(eval_rule(rule, None).as_deref(), Ok(expected), "{rule}");
    }

    #[test]
    fn operators_and_conversions_as_javascript() {
        is("1 + 2 * 3", "7");
        is("2 ** 3 ** 2", "512");
        is("'a' + 1 + 2", "\"a12\"");
        is("1 + 2 + 'a'", "\"3a\"");
        is("[1, [2, 3]] + ''", "\"1,2,3\"");
        is("({}) + 1", "\"[object Object]1\"");
        is("'10' < '9'", "true");
        is("'10' < 9", "false");
        is("[] == false", "true");
        is("null == 0", "false");
        is("null >= 0", "true");
        is("undefined == null", "true");
        is("NaN !== NaN", "true");
        is("-0", "-0");
        is("0 * -1", "-0");
        is("1 / 3", "0.3333333333333333");
        is("1e21 + ''", "\"1e+21\"");
        is("-1 >>> 28", "15");
        is("~5 | 0", "-6");
        is("1 << 33", "2");
        is(
            "typeof null + typeof [] + typeof _ + typeof nothing",
            "\"objectobjectfunctionundefined\"",
        );
        is("void 0 ?? 'x'", "\"x\"");
        is("0 || null && 1", "null");
        is("(1, 2)", "2");
        is("`${user.id}/${1 + 1}`", "\"alice/2\"");
    }

    #[test]
    fn properties_prototypes_and_optional_chains() {
        let data = json(r#"{"a":null,"n":5,"list":[1,"x"],"toString":1,"__proto__":{"p":1}}"#);
        let d = |rule: &str| eval_rule(rule, Some(&data));
        assert_eq!(d("data.list.length").as_deref(), Ok("2"));
        assert_eq!(
            d("'length' in data.list && 1 in data.list && !(2 in data.list)").as_deref(),
            Ok("true")
        );
        assert_eq!(d("data.list.constructor === Array").as_deref(), Ok("true"));
        assert_eq!(
            d("typeof data.hasOwnProperty").as_deref(),
            Ok("\"function\"")
        );
        assert_eq!(
            d("data.__proto__.p").as_deref(),
            Ok("1"),
            "an own key, as JSON.parse makes it"
        );
        assert_eq!(d("data.a?.b.c").as_deref(), Ok("undefined"));
        assert!(
            matches!(d("(data.a?.b).c"), Err(Fault::Type(_))),
            "parentheses end the chain"
        );
        assert!(matches!(d("data.a.b"), Err(Fault::Type(_))));
        assert!(
            matches!(d("data + ''"), Err(Fault::Type(_))),
            "its own toString is no function"
        );
        assert!(matches!(d("'x' in data.n"), Err(Fault::Type(_))));
        assert!(matches!(d("data.n.startsWith('5')"), Err(Fault::Type(_))));
        assert!(matches!(d("usr.id"), Err(Fault::Reference(_))));
        assert!(
            matches!(d("'😀'[0]"), Err(Fault::Inexact(_))),
            "half a surrogate pair"
        );
        assert_eq!(d("'😀'.length").as_deref(), Ok("2"), "UTF-16 units");
    }

    #[test]
    fn methods_and_regexes() {
        is("'abc'.indexOf('c', 1)", "2");
        // Positions count UTF-16 units, also in the middle of a surrogate pair.
        is("[ '😀a😀'.indexOf('a', 1), '😀a'.indexOf('', 1), '😀a😀'.indexOf('😀', 1), 'x😀'.indexOf('😀', 2) ]", "[2,1,3,-1]");
        is(
            "[ '😀a'.startsWith('a', 2), '😀a'.startsWith('a', 1), '😀a'.includes('', 1) ]",
            "[true,false,true]",
        );
        is(
            "[ 'a😀'.endsWith('a', 1), 'a😀'.endsWith('😀', 2) ]",
            "[true,false]",
        );
        is("'abc'.startsWith('b', 1)", "true");
        is("'abc'.endsWith('b', 2)", "true");
        is(
            "[1, NaN].includes(NaN) && [1, NaN].indexOf(NaN) === -1",
            "true",
        );
        is(
            "[1, , 3].indexOf(undefined) === -1 && [1, , 3].includes(undefined)",
            "true",
        );
        is("' \\u00a0x\\ufeff'.trim()", "\"x\"");
        is("'ß'.toUpperCase()", "\"SS\"");
        is("'a1b22'.match(/\\d+/g)", "[\"1\",\"22\"]");
        is("'a1b22'.match(/(\\d)(x)?/)", "[\"1\",\"1\",undefined]");
        is("'a1b22'.match(/(\\d)/).index", "1");
        is("'abc'.match('^a') !== null", "true");
        is("'Abc'.match(/^a/i)[0]", "\"A\"");
        assert!(matches!(
            eval_rule("'a'.match('(')", None),
            Err(Fault::Syntax(_))
        ));
        assert!(matches!(
            eval_rule("'a'.includes(/a/)", None),
            Err(Fault::Type(_))
        ));
    }

    #[test]
    fn cross_references_report_what_they_miss() {
        is(
            "_('settings').open && _('settings').admins.includes(user.id)",
            "true",
        );
        is("_(_('settings').next).max", "5");
        is("_('gone')", "null");
        is("_(undefined)", "undefined");
        is("_('an undefined name')", "undefined");
        assert!(matches!(eval_rule("_(1)", None), Err(Fault::CrossRef(_))));
        let (expr, _) = super::super::parse("_('p/' + $userId).x || _('q').y").unwrap();
        let variables = vec![("$userId".to_string(), "bob".to_string())];
        let cx = bare_context(&variables);
        // `undefined.x` throws, and the reference runs the rule again once `p/bob` is loaded.
        let outcome = run(&expr, &cx, 1000);
        assert_eq!(outcome.missing, vec!["p/bob".to_string()]);
    }

    #[test]
    fn work_and_bytes_are_bounded() {
        let (expr, _) = super::super::parse("1 + 1 + 1 + 1 + 1 === 5").unwrap();
        let cx = bare_context(&[]);
        assert_eq!(run(&expr, &cx, 3).value.err(), Some(Fault::Budget));
        let big = json(&format!("{{\"s\":\"{}\"}}", "x".repeat(1 << 20)));
        let doubling = "`${data.s}${data.s}${data.s}${data.s}${data.s}`";
        assert_eq!(
            eval_rule(&format!("{doubling} + {doubling}"), Some(&big)).err(),
            Some(Fault::Budget)
        );
    }
}
