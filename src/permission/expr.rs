//! Valve rule expressions: the JavaScript subset deepstream's permissions.yml rules use, parsed
//! once at start-up into a tree and evaluated against borrowed message data (no copies).

use simd_json::prelude::*;
use simd_json::OwnedValue;
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    /// `user`, `data`, `oldData`, `now`, `action`, `name` or a `$variable`.
    Ident(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, String, Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `_(name)`: the data of another record.
    Ref(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    StrictEq,
    StrictNe,
    LooseEq,
    LooseNe,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// Methods a rule may call, as the reference allows them (`_` is refused separately).
const METHODS: &[&str] = &[
    "startsWith",
    "endsWith",
    "includes",
    "indexOf",
    "match",
    "toUpperCase",
    "toLowerCase",
    "trim",
];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Num(f64),
    Str(String),
    Ident(String),
    Punct(&'static str),
}

const PUNCTS: &[&str] = &[
    "===", "!==", "==", "!=", "<=", ">=", "&&", "||", "(", ")", "[", "]", ".", ",", "?", ":", "!",
    "<", ">", "+", "-", "*", "/", "%",
];

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(Token::Num(
                text.parse().map_err(|_| format!("bad number {text}"))?,
            ));
        } else if c == '\'' || c == '"' || c == '`' {
            let quote = c;
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                match ch {
                    '\\' => {
                        let Some(&escaped) = chars.get(i) else {
                            return Err("unterminated string".into());
                        };
                        i += 1;
                        text.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                    ch if ch == quote => break,
                    ch => text.push(ch),
                }
            }
            tokens.push(Token::Str(text));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
            let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
                return Err(format!("unexpected character '{c}'"));
            };
            tokens.push(Token::Punct(p));
            i += p.len();
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Sub-expressions open right now (parentheses, prefix operators, arguments).
    nesting: usize,
}

/// Longest rule text accepted.
pub const MAX_RULE_LEN: usize = 4096;
/// Deepest rule tree accepted: parsing, evaluating and dropping a rule recurse this deep.
pub const MAX_RULE_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(q)) if *q == p) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(format!("expected '{p}'"))
        }
    }

    /// Counts one more level of nesting around `parse`, refusing past `MAX_RULE_DEPTH`.
    fn nested(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        if self.nesting >= MAX_RULE_DEPTH {
            return Err(format!("nested deeper than {MAX_RULE_DEPTH}"));
        }
        self.nesting += 1;
        let expr = parse(self);
        self.nesting -= 1;
        expr
    }

    fn ternary(&mut self) -> Result<Expr, String> {
        self.nested(Self::ternary_inner)
    }

    fn ternary_inner(&mut self) -> Result<Expr, String> {
        let cond = self.binary(0)?;
        if !self.eat("?") {
            return Ok(cond);
        }
        let yes = self.ternary()?;
        self.expect(":")?;
        let no = self.ternary()?;
        Ok(Expr::Cond(Box::new(cond), Box::new(yes), Box::new(no)))
    }

    fn binary(&mut self, min: u8) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while let Some(Token::Punct(p)) = self.peek() {
            let (prec, op) = match *p {
                "||" => (1, None),
                "&&" => (2, None),
                "===" => (3, Some(BinOp::StrictEq)),
                "!==" => (3, Some(BinOp::StrictNe)),
                "==" => (3, Some(BinOp::LooseEq)),
                "!=" => (3, Some(BinOp::LooseNe)),
                "<" => (4, Some(BinOp::Lt)),
                "<=" => (4, Some(BinOp::Le)),
                ">" => (4, Some(BinOp::Gt)),
                ">=" => (4, Some(BinOp::Ge)),
                "+" => (5, Some(BinOp::Add)),
                "-" => (5, Some(BinOp::Sub)),
                "*" => (6, Some(BinOp::Mul)),
                "/" => (6, Some(BinOp::Div)),
                "%" => (6, Some(BinOp::Rem)),
                _ => break,
            };
            if prec < min {
                break;
            }
            let token = *p;
            self.pos += 1;
            let right = self.binary(prec + 1)?;
            left = match (token, op) {
                ("||", _) => Expr::Or(Box::new(left), Box::new(right)),
                ("&&", _) => Expr::And(Box::new(left), Box::new(right)),
                (_, Some(op)) => Expr::Binary(op, Box::new(left), Box::new(right)),
                _ => return Err("bad operator".into()),
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.nested(Self::unary_inner)
    }

    fn unary_inner(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat("+") {
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Token::Ident(name)) = self.peek().cloned() else {
                    return Err("expected a property name after '.'".into());
                };
                self.pos += 1;
                if self.eat("(") {
                    if !METHODS.contains(&name.as_str()) {
                        return Err(format!("function {name} is not supported"));
                    }
                    let args = self.arguments()?;
                    expr = Expr::Call(Box::new(expr), name, args);
                } else {
                    expr = Expr::Member(Box::new(expr), name);
                }
            } else if self.eat("[") {
                let index = self.ternary()?;
                self.expect("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else if matches!(self.peek(), Some(Token::Punct("("))) {
                return Err("only the supported string methods may be called".into());
            } else {
                return Ok(expr);
            }
        }
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, String> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.ternary()?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let token = self.peek().cloned().ok_or("unexpected end of rule")?;
        self.pos += 1;
        Ok(match token {
            Token::Num(n) => Expr::Num(n),
            Token::Str(s) => Expr::Str(s),
            Token::Punct("(") => {
                let inner = self.ternary()?;
                self.expect(")")?;
                inner
            }
            Token::Ident(id) => match id.as_str() {
                "true" => Expr::Bool(true),
                "false" => Expr::Bool(false),
                "null" => Expr::Null,
                "undefined" => Expr::Undefined,
                "new" | "function" => return Err(format!("rule can't contain {id}")),
                "_" => {
                    self.expect("(")?;
                    let name = self.ternary()?;
                    self.expect(")")?;
                    Expr::Ref(Box::new(name))
                }
                "user" | "data" | "oldData" | "now" | "action" | "name" => Expr::Ident(id),
                v if v.starts_with('$') => Expr::Ident(id),
                other => return Err(format!("unknown name '{other}'")),
            },
            Token::Punct(p) => return Err(format!("unexpected '{p}'")),
        })
    }
}

/// Parses a rule expression; errors say what is wrong.
pub fn parse(src: &str) -> Result<Expr, String> {
    if src.len() > MAX_RULE_LEN {
        return Err(format!("longer than {MAX_RULE_LEN} bytes"));
    }
    let mut parser = Parser {
        tokens: tokenize(src)?,
        pos: 0,
        nesting: 0,
    };
    let expr = parser.ternary()?;
    if parser.pos != parser.tokens.len() {
        return Err(format!(
            "unexpected '{:?}' after the expression",
            parser.tokens[parser.pos]
        ));
    }
    // Chains such as `a + b + c + ...` deepen the tree without nesting in the text.
    if expr.depth() > MAX_RULE_DEPTH {
        return Err(format!("nested deeper than {MAX_RULE_DEPTH}"));
    }
    Ok(expr)
}

impl Expr {
    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Member(e, _) | Expr::Not(e) | Expr::Neg(e) | Expr::Ref(e) => vec![e],
            Expr::Index(a, b) | Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                vec![a, b]
            }
            Expr::Call(e, _, args) => std::iter::once(&**e).chain(args).collect(),
            Expr::Cond(a, b, c) => vec![a, b, c],
            _ => Vec::new(),
        }
    }

    /// Levels of the tree, counted without recursion.
    fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1)];
        while let Some((expr, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            stack.extend(expr.children().into_iter().map(|c| (c, depth + 1)));
        }
        deepest
    }

    /// Whether evaluating this reads an identifier (to know if a rule needs `data`/`oldData`).
    pub fn mentions(&self, ident: &str) -> bool {
        match self {
            Expr::Ident(i) => i == ident,
            Expr::Member(e, _) | Expr::Not(e) | Expr::Neg(e) => e.mentions(ident),
            Expr::Ref(e) => ident == "_" || e.mentions(ident),
            Expr::Index(a, b) | Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.mentions(ident) || b.mentions(ident)
            }
            Expr::Call(e, _, args) => e.mentions(ident) || args.iter().any(|a| a.mentions(ident)),
            Expr::Cond(a, b, c) => a.mentions(ident) || b.mentions(ident) || c.mentions(ident),
            _ => false,
        }
    }
}

/// What a rule sees.
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

/// The record names `expr` reads with `_()` that are not in `cx.refs` yet, as far as they can
/// be computed now (a name built from another reference is found once that one is known).
pub fn missing_refs(expr: &Expr, cx: &Context<'_>, out: &mut Vec<String>) {
    let mut visit = |e: &Expr| missing_refs(e, cx, out);
    match expr {
        Expr::Ref(arg) => {
            visit(arg);
            let mut budget = 10_000;
            let name = match eval(arg, cx, &mut budget) {
                v @ (Val::Str(_) | Val::Num(_)) => v.text().into_owned(),
                _ => return,
            };
            if !cx.refs.iter().any(|(n, _)| *n == name) && !out.contains(&name) {
                out.push(name);
            }
        }
        Expr::Member(e, _) | Expr::Not(e) | Expr::Neg(e) => visit(e),
        Expr::Index(a, b) | Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            visit(a);
            visit(b);
        }
        Expr::Call(e, _, args) => {
            visit(e);
            args.iter().for_each(visit);
        }
        Expr::Cond(a, b, c) => {
            visit(a);
            visit(b);
            visit(c);
        }
        _ => {}
    }
}

/// A value during evaluation: JSON stays borrowed.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    Json(&'a OwnedValue),
    User,
}

impl<'a> Val<'a> {
    fn from_json(v: &'a OwnedValue) -> Val<'a> {
        if let Some(s) = v.as_str() {
            return Val::Str(Cow::Borrowed(s));
        }
        if let Some(b) = v.as_bool() {
            return Val::Bool(b);
        }
        if let Some(n) = v.cast_f64() {
            return Val::Num(n);
        }
        if v.is_null() {
            return Val::Null;
        }
        Val::Json(v)
    }

    pub fn truthy(&self) -> bool {
        match self {
            Val::Undefined | Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Str(s) => !s.is_empty(),
            Val::Json(_) | Val::User => true,
        }
    }

    fn number(&self) -> f64 {
        match self {
            Val::Undefined => f64::NAN,
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(*b)),
            Val::Num(n) => *n,
            Val::Str(s) => {
                let t = s.trim();
                if t.is_empty() {
                    0.0
                } else {
                    t.parse().unwrap_or(f64::NAN)
                }
            }
            Val::Json(_) | Val::User => f64::NAN,
        }
    }

    fn text(&self) -> Cow<'a, str> {
        match self {
            Val::Undefined => "undefined".into(),
            Val::Null => "null".into(),
            Val::Bool(b) => b.to_string().into(),
            Val::Num(n) => format_number(*n).into(),
            Val::Str(s) => s.clone(),
            Val::Json(v) if v.is_array() => "[array]".into(),
            Val::Json(_) | Val::User => "[object Object]".into(),
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn strict_eq(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Undefined, Val::Undefined) | (Val::Null, Val::Null) | (Val::User, Val::User) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Json(x), Val::Json(y)) => std::ptr::eq(*x, *y),
        _ => false,
    }
}

fn loose_eq(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Undefined | Val::Null, Val::Undefined | Val::Null) => true,
        (Val::Undefined | Val::Null, _) | (_, Val::Undefined | Val::Null) => false,
        (Val::Num(_) | Val::Bool(_) | Val::Str(_), Val::Num(_) | Val::Bool(_))
        | (Val::Num(_) | Val::Bool(_), Val::Str(_)) => a.number() == b.number(),
        _ => strict_eq(a, b),
    }
}

fn compare(a: &Val, b: &Val, op: BinOp) -> bool {
    if let (Val::Str(x), Val::Str(y)) = (a, b) {
        return match op {
            BinOp::Lt => x < y,
            BinOp::Le => x <= y,
            BinOp::Gt => x > y,
            _ => x >= y,
        };
    }
    let (x, y) = (a.number(), b.number());
    match op {
        BinOp::Lt => x < y,
        BinOp::Le => x <= y,
        BinOp::Gt => x > y,
        _ => x >= y,
    }
}

/// Evaluates `expr`; `budget` bounds the work a rule may do.
pub fn eval<'a>(expr: &'a Expr, cx: &Context<'a>, budget: &mut u32) -> Val<'a> {
    if *budget == 0 {
        return Val::Undefined;
    }
    *budget -= 1;
    match expr {
        Expr::Undefined => Val::Undefined,
        Expr::Null => Val::Null,
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Num(n) => Val::Num(*n),
        Expr::Str(s) => Val::Str(Cow::Borrowed(s)),
        Expr::Ident(id) => match id.as_str() {
            "user" => Val::User,
            "data" => cx.data.map_or(Val::Undefined, Val::from_json),
            "oldData" => cx.old_data.map_or(Val::Null, Val::from_json),
            "now" => Val::Num(cx.now),
            "action" => Val::Num(f64::from(cx.action)),
            "name" => Val::Str(Cow::Borrowed(cx.name)),
            var => cx
                .variables
                .iter()
                .find(|(k, _)| k == var)
                .map_or(Val::Undefined, |(_, v)| Val::Str(Cow::Owned(v.clone()))),
        },
        Expr::Member(target, prop) => {
            let target = eval(target, cx, budget);
            if throws_on_access(&target, budget) {
                return Val::Undefined;
            }
            member(target, prop, cx)
        }
        Expr::Index(target, index) => {
            let target = eval(target, cx, budget);
            let index = eval(index, cx, budget);
            if throws_on_access(&target, budget) {
                return Val::Undefined;
            }
            if let (Val::Json(v), Val::Num(n)) = (&target, &index) {
                let v: &'a OwnedValue = v;
                if let Some(items) = v.as_array() {
                    return items
                        .get(*n as usize)
                        .map_or(Val::Undefined, Val::from_json);
                }
            }
            let key = index.text().into_owned();
            member(target, &key, cx)
        }
        Expr::Call(target, method, args) => {
            let target = eval(target, cx, budget);
            if throws_on_access(&target, budget) {
                return Val::Undefined;
            }
            let args: Vec<Val> = args.iter().map(|a| eval(a, cx, budget)).collect();
            // A call that throws in JavaScript (a bad regex) is an error, and errors deny:
            // an empty budget makes the rule fail.
            call(target, method, &args).unwrap_or_else(|| {
                *budget = 0;
                Val::Undefined
            })
        }
        Expr::Not(e) => Val::Bool(!eval(e, cx, budget).truthy()),
        Expr::Neg(e) => Val::Num(-eval(e, cx, budget).number()),
        Expr::And(a, b) => {
            let left = eval(a, cx, budget);
            if left.truthy() {
                eval(b, cx, budget)
            } else {
                left
            }
        }
        Expr::Or(a, b) => {
            let left = eval(a, cx, budget);
            if left.truthy() {
                left
            } else {
                eval(b, cx, budget)
            }
        }
        Expr::Ref(arg) => {
            let name = eval(arg, cx, budget).text().into_owned();
            match cx.refs.iter().find(|(n, _)| *n == name) {
                Some((_, Some(data))) => Val::from_json(data),
                Some((_, None)) => Val::Null,
                None => Val::Undefined,
            }
        }
        Expr::Cond(c, y, n) => {
            if eval(c, cx, budget).truthy() {
                eval(y, cx, budget)
            } else {
                eval(n, cx, budget)
            }
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, cx, budget), eval(b, cx, budget));
            match op {
                BinOp::StrictEq => Val::Bool(strict_eq(&a, &b)),
                BinOp::StrictNe => Val::Bool(!strict_eq(&a, &b)),
                BinOp::LooseEq => Val::Bool(loose_eq(&a, &b)),
                BinOp::LooseNe => Val::Bool(!loose_eq(&a, &b)),
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => Val::Bool(compare(&a, &b, *op)),
                BinOp::Add => match (&a, &b) {
                    (Val::Str(_), _) | (_, Val::Str(_)) => {
                        Val::Str(Cow::Owned(format!("{}{}", a.text(), b.text())))
                    }
                    _ => Val::Num(a.number() + b.number()),
                },
                BinOp::Sub => Val::Num(a.number() - b.number()),
                BinOp::Mul => Val::Num(a.number() * b.number()),
                BinOp::Div => Val::Num(a.number() / b.number()),
                BinOp::Rem => Val::Num(a.number() % b.number()),
            }
        }
    }
}

fn member<'a>(target: Val<'a>, prop: &str, cx: &Context<'a>) -> Val<'a> {
    match target {
        Val::User => match prop {
            "id" => Val::Str(Cow::Borrowed(cx.user_id)),
            "isAuthenticated" => Val::Bool(cx.authenticated),
            "data" => cx.user_data.map_or(Val::Null, Val::from_json),
            _ => Val::Undefined,
        },
        Val::Json(v) => {
            if prop == "length" {
                if let Some(a) = v.as_array() {
                    return Val::Num(a.len() as f64);
                }
            }
            if let Some(a) = v.as_array() {
                return prop
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| a.get(i))
                    .map_or(Val::Undefined, Val::from_json);
            }
            v.get(prop).map_or(Val::Undefined, Val::from_json)
        }
        Val::Str(s) if prop == "length" => Val::Num(s.chars().count() as f64),
        _ => Val::Undefined,
    }
}

/// Reading a property of `undefined` or `null` throws a TypeError in JavaScript, which makes
/// the reference deny: here it empties the budget, which fails the rule the same way.
fn throws_on_access(target: &Val, budget: &mut u32) -> bool {
    let throws = matches!(target, Val::Undefined | Val::Null);
    if throws {
        *budget = 0;
    }
    throws
}

/// Compiled `.match` patterns of this thread (a shard), so a rule does not compile its regex
/// per message; emptied when full, so patterns taken from message data cannot fill memory.
/// `None` remembers a pattern that does not compile.
fn cached_regex(pattern: &str) -> Option<regex::Regex> {
    const CACHED: usize = 256;
    thread_local! {
        static REGEXES: std::cell::RefCell<ahash::AHashMap<String, Option<regex::Regex>>> =
            std::cell::RefCell::default();
    }
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache.get(pattern) {
            return found.clone();
        }
        if cache.len() >= CACHED {
            cache.clear();
        }
        let compiled = crate::core::bounded_regex(pattern).ok();
        cache.insert(pattern.to_string(), compiled.clone());
        compiled
    })
}

/// A method call; `None` where JavaScript would throw.
fn call<'a>(target: Val<'a>, method: &str, args: &[Val<'a>]) -> Option<Val<'a>> {
    let arg = |i: usize| args.get(i).map_or(Cow::Borrowed("undefined"), |a| a.text());
    if let Val::Json(v) = &target {
        if let Some(items) = v.as_array() {
            let needle = args.first().cloned().unwrap_or(Val::Undefined);
            let position = items
                .iter()
                .position(|item| strict_eq(&Val::from_json(item), &needle));
            return match method {
                "includes" => Some(Val::Bool(position.is_some())),
                "indexOf" => Some(Val::Num(position.map_or(-1.0, |p| p as f64))),
                // Not a function on an array: calling it throws.
                _ => None,
            };
        }
    }
    // Numbers, booleans and objects have none of the string methods: calling one throws.
    let Val::Str(s) = &target else {
        return None;
    };
    Some(match method {
        "startsWith" => Val::Bool(s.starts_with(arg(0).as_ref())),
        "endsWith" => Val::Bool(s.ends_with(arg(0).as_ref())),
        "includes" => Val::Bool(s.contains(arg(0).as_ref())),
        "indexOf" => Val::Num(
            s.find(arg(0).as_ref())
                .map_or(-1.0, |byte| s[..byte].chars().count() as f64),
        ),
        "toUpperCase" => Val::Str(Cow::Owned(s.to_uppercase())),
        "toLowerCase" => Val::Str(Cow::Owned(s.to_lowercase())),
        "trim" => Val::Str(Cow::Owned(s.trim().to_string())),
        "match" => {
            // JavaScript regex literals are not in the grammar; a string pattern is. One that
            // does not compile throws in JavaScript.
            if cached_regex(&arg(0))?.is_match(s) {
                Val::Bool(true)
            } else {
                Val::Null
            }
        }
        _ => Val::Undefined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> OwnedValue {
        simd_json::to_owned_value(&mut text.as_bytes().to_vec()).unwrap()
    }

    fn check(rule: &str, data: Option<&OwnedValue>, old: Option<&OwnedValue>) -> bool {
        let expr = parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
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
            old_data: old,
            now: 1000.0,
            action: 18,
            name: "profile/alice",
            variables: &variables,
            refs: &refs,
        };
        let mut budget = 10_000;
        eval(&expr, &cx, &mut budget).truthy() && budget > 0
    }

    #[test]
    fn reading_a_property_of_undefined_or_null_fails_the_rule_as_it_throws_in_javascript() {
        let data = json(r#"{"a":null,"n":5,"list":[1]}"#);
        for rule in [
            "data.missing.x === undefined",
            "!data.missing.x",
            "!data.a.b",
            "data.a[0] !== 1",
            "!data.missing.startsWith('x')",
            "!data.n.startsWith('x')",
            "!data.list.startsWith('x')",
        ] {
            assert!(!check(rule, Some(&data), None), "{rule}");
        }
        // One level deep is a plain undefined, not an error.
        assert!(check("data.missing === undefined", Some(&data), None));
        assert!(check("!data.missing", Some(&data), None));
        assert!(check("data.a === null", Some(&data), None));
    }

    #[test]
    fn deep_or_long_rules_are_refused_not_overflowed() {
        for rule in [
            "(".repeat(100_000),
            "!".repeat(3000) + "true",
            format!("{}1{}", "(".repeat(70), ")".repeat(70)),
            vec!["1"; 100].join(" + "),
            "a".repeat(MAX_RULE_LEN + 1),
        ] {
            assert!(parse(&rule).is_err(), "{}", &rule[..20.min(rule.len())]);
        }
        assert!(parse(&vec!["1"; 60].join(" + ")).is_ok());
    }

    #[test]
    fn precedence_and_logic() {
        assert!(check("1 + 2 * 3 === 7", None, None));
        assert!(check("(1 + 2) * 3 === 9", None, None));
        assert!(check("true || false && false", None, None));
        assert!(!check("(true || false) && false", None, None));
        assert!(check("!false && !!1", None, None));
        assert!(check("10 % 4 === 2 && -3 < 0", None, None));
        assert!(check("1 < 2 === true", None, None));
        assert!(check("user.data.level > 2 ? true : false", None, None));
        assert!(check("false ? false : user.id === 'alice'", None, None));
    }

    #[test]
    fn types_like_javascript() {
        assert!(check("'1' == 1 && '1' !== 1", None, None));
        assert!(check("null == undefined && null !== undefined", None, None));
        assert!(check("'a' + 1 === 'a1' && 2 + 2 === 4", None, None));
        assert!(check("'abc' < 'abd'", None, None));
        assert!(check("data === undefined", None, None));
        assert!(!check("data.missing", Some(&json("{}")), None));
    }

    #[test]
    fn user_data_variables_and_methods() {
        assert!(check("user.id === $userId", None, None));
        assert!(check(
            "user.isAuthenticated && user.data.role === 'admin'",
            None,
            None
        ));
        assert!(check(
            "user.data.teams.includes('b') && user.data.teams.indexOf('a') === 0",
            None,
            None
        ));
        assert!(check(
            "name.startsWith('profile/') && name.endsWith('alice')",
            None,
            None
        ));
        assert!(check(
            "name.indexOf('alice') === 8 && name.length === 13",
            None,
            None
        ));
        assert!(check(
            "' X '.trim().toLowerCase() === 'x' && 'x'.toUpperCase() === 'X'",
            None,
            None
        ));
        assert!(check("name.match('^profile/[a-z]+$')", None, None));
        // A pattern that does not compile throws in JavaScript: the rule fails, negated or not.
        assert!(!check("!name.match('(')", None, None));
        assert!(!check("!name.match('(')", None, None), "also when cached");
        assert!(check("now > 0 && action === 18", None, None));
    }

    #[test]
    fn data_and_old_data() {
        let data = json(r#"{"price":12,"owner":"alice","tags":["x"]}"#);
        let old = json(r#"{"price":10,"owner":"alice"}"#);
        assert!(check(
            "data.price > oldData.price && data.owner === oldData.owner",
            Some(&data),
            Some(&old)
        ));
        assert!(check(
            "data.tags[0] === 'x' && data['owner'] === user.id",
            Some(&data),
            Some(&old)
        ));
        assert!(!check("data.price < 5", Some(&data), Some(&old)));
        assert!(check("oldData === null", Some(&data), None));
    }

    #[test]
    fn compile_errors() {
        for (rule, needle) in [
            ("user.id ===", "end of rule"),
            ("eval('x')", "unknown name"),
            ("name.replace('a','b')", "not supported"),
            ("_('other'", "expected ')'"),
            ("new Date()", "new"),
            ("'unterminated", "unterminated"),
            ("1 # 2", "unexpected character"),
            ("(1 + 2", "expected ')'"),
        ] {
            let err = parse(rule).unwrap_err();
            assert!(err.contains(needle), "{rule}: {err}");
        }
    }

    #[test]
    fn the_budget_bounds_evaluation() {
        let expr = parse("1 + 1 + 1 + 1 + 1 === 5").unwrap();
        let cx = Context {
            user_id: "",
            authenticated: false,
            user_data: None,
            data: None,
            old_data: None,
            now: 0.0,
            action: 0,
            name: "",
            variables: &[],
            refs: &[],
        };
        let mut budget = 3;
        assert!(!eval(&expr, &cx, &mut budget).truthy());
    }

    #[test]
    fn cross_record_references() {
        assert!(check(
            "_('settings').open && _('settings').admins.includes(user.id)",
            None,
            None
        ));
        assert!(check("_(_('settings').next).max === 5", None, None));
        assert!(check(
            "_('gone') === null && _('unknown') === undefined",
            None,
            None
        ));
        let expr = parse("_('settings').open && _('p/' + $userId).x && _(_('settings').next).max > 0 && _(_('p/x').y).z").unwrap();
        let variables = vec![("$userId".to_string(), "bob".to_string())];
        let refs = vec![("settings".to_string(), Some(json(r#"{"next":"limits"}"#)))];
        let cx = Context {
            user_id: "bob",
            authenticated: true,
            user_data: None,
            data: None,
            old_data: None,
            now: 0.0,
            action: 0,
            name: "",
            variables: &variables,
            refs: &refs,
        };
        let mut missing = Vec::new();
        missing_refs(&expr, &cx, &mut missing);
        assert_eq!(
            missing,
            vec!["p/bob".to_string(), "limits".to_string(), "p/x".to_string()]
        );
        assert!(expr.mentions("_"));
    }
}
