//! A rule's tokens into an expression tree: JavaScript's expression grammar with its
//! precedence, refusing what the reference refuses (`new`, user functions, calls of functions
//! other than the supported ones) and marking what corestream does not evaluate.

use super::lex::{tokenize, Tok};
use super::regex::RegexLit;
use super::{CompileError, MAX_RULE_DEPTH, MAX_RULE_LEN};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Regex(Arc<RegexLit>),
    /// Cooked strings with one expression between each two.
    Template(Vec<String>, Vec<Expr>),
    /// `None` is a hole (`[1, , 2]`).
    Array(Vec<Option<Expr>>),
    Object(Vec<(Key, Expr)>),
    Var(Var),
    /// `target.key` or `target[key]`; `optional` for `?.`.
    Member(Box<Expr>, Key, bool),
    /// `target.method(args)`; `optional` for `target?.method(args)`.
    Call(Box<Expr>, String, Vec<Expr>, bool),
    /// `_(args)`: another record's data.
    Ref(Vec<Expr>),
    /// The end of an optional chain: a short-circuit inside it yields `undefined`.
    Chain(Box<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Logical(LogicOp, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    Comma(Box<Expr>, Box<Expr>),
    /// Valid JavaScript that throws when evaluated (`startsWith(x)` calls an undefined name).
    Throw(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Static(String),
    Computed(Box<Expr>),
}

/// The names a rule can read: the reference's function parameters, and globals.
#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    /// `_` as a value.
    CrossRef,
    User,
    Data,
    OldData,
    Now,
    Action,
    Name,
    This,
    /// A `$variable` of the path.
    Path(String),
    Ctor(Ctor),
    Math,
    Json,
    /// A global of Node.js corestream does not model: reading it cannot be exact.
    Unmodeled(String),
    /// Not defined anywhere: reading it throws a ReferenceError.
    Undeclared(String),
}

/// Global constructors a rule can name (`x instanceof Array`, `data.constructor === Object`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctor {
    Object,
    Array,
    String,
    Number,
    Boolean,
    RegExp,
    Function,
    Date,
    Error,
    Symbol,
}

impl Ctor {
    pub fn name(self) -> &'static str {
        match self {
            Ctor::Object => "Object",
            Ctor::Array => "Array",
            Ctor::String => "String",
            Ctor::Number => "Number",
            Ctor::Boolean => "Boolean",
            Ctor::RegExp => "RegExp",
            Ctor::Function => "Function",
            Ctor::Date => "Date",
            Ctor::Error => "Error",
            Ctor::Symbol => "Symbol",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
    Plus,
    BitNot,
    Typeof,
    Void,
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
    In,
    InstanceOf,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    BitAnd,
    BitOr,
    BitXor,
    Shl,
    Shr,
    UShr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicOp {
    And,
    Or,
    Nullish,
}

/// Functions the reference lets a rule call (`_` is the cross reference).
pub const METHODS: &[&str] = &[
    "_",
    "startsWith",
    "endsWith",
    "includes",
    "indexOf",
    "match",
    "toUpperCase",
    "toLowerCase",
    "trim",
];

/// Words that cannot name a value.
const RESERVED: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
];

/// Globals of Node.js a rule could read that corestream does not model.
const NODE_GLOBALS: &[&str] = &[
    "globalThis",
    "global",
    "process",
    "console",
    "Buffer",
    "arguments",
    "Promise",
    "Map",
    "Set",
    "WeakMap",
    "WeakSet",
    "Reflect",
    "Proxy",
    "Intl",
    "BigInt",
    "parseInt",
    "parseFloat",
    "isNaN",
    "isFinite",
    "encodeURI",
    "encodeURIComponent",
    "decodeURI",
    "decodeURIComponent",
    "escape",
    "unescape",
    "eval",
    "setTimeout",
    "setInterval",
    "setImmediate",
    "clearTimeout",
    "clearInterval",
    "clearImmediate",
    "queueMicrotask",
    "structuredClone",
    "URL",
    "URLSearchParams",
    "TextEncoder",
    "TextDecoder",
    "ArrayBuffer",
    "SharedArrayBuffer",
    "DataView",
    "Atomics",
    "WebAssembly",
    "performance",
    "fetch",
    "crypto",
    "atob",
    "btoa",
    "EvalError",
    "RangeError",
    "ReferenceError",
    "SyntaxError",
    "TypeError",
    "URIError",
    "AggregateError",
    "Uint8Array",
    "Int8Array",
    "Uint16Array",
    "Int16Array",
    "Uint32Array",
    "Int32Array",
    "Float32Array",
    "Float64Array",
    "Uint8ClampedArray",
    "BigInt64Array",
    "BigUint64Array",
    "FinalizationRegistry",
    "WeakRef",
    "AbortController",
    "AbortSignal",
    "Event",
    "EventTarget",
    "Blob",
    "File",
    "FormData",
    "Headers",
    "Request",
    "Response",
    "MessageChannel",
    "MessagePort",
    "MessageEvent",
    "BroadcastChannel",
    "DOMException",
];

fn syntax(msg: impl Into<String>) -> CompileError {
    CompileError::Syntax(msg.into())
}

struct Parser<'w> {
    tokens: Vec<Tok>,
    pos: usize,
    /// Sub-expressions open right now; bounded so parsing cannot overflow the stack.
    nesting: usize,
    warnings: &'w mut Vec<String>,
}

/// Parses a rule; warnings name what will make it fail each time it runs.
pub fn parse(src: &str, warnings: &mut Vec<String>) -> Result<Expr, CompileError> {
    if src.len() > MAX_RULE_LEN {
        return Err(syntax(format!("longer than {MAX_RULE_LEN} bytes")));
    }
    let tokens = tokenize(src)?;
    // The reference looks for these before it compiles anything, wherever they stand.
    if contains_token(&tokens, &|t| {
        *t == Tok::Punct("=>") || *t == Tok::Ident("function".into())
    }) {
        return Err(CompileError::Forbidden(
            "rule can't contain user functions".into(),
        ));
    }
    if contains_token(&tokens, &|t| *t == Tok::Ident("new".into())) {
        return Err(CompileError::Forbidden(
            "rule can't contain the new keyword".into(),
        ));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        nesting: 0,
        warnings,
    };
    if parser.tokens.is_empty() {
        return Err(syntax("rule can't be empty"));
    }
    let expr = parser.expression()?;
    // The reference compiles `return <rule>;`: what follows a `;` is never run.
    if parser.eat(";") {
        while parser.eat(";") {}
        if parser.peek().is_some() {
            return Err(CompileError::Unsupported("statements after ';'".into()));
        }
    }
    if let Some(token) = parser.peek() {
        return Err(syntax(format!("unexpected {}", describe(token))));
    }
    // Chains such as `a + b + c + ...` deepen the tree without nesting in the text.
    if expr.depth() > MAX_RULE_DEPTH {
        return Err(syntax(format!("nested deeper than {MAX_RULE_DEPTH}")));
    }
    Ok(expr)
}

fn contains_token(tokens: &[Tok], test: &impl Fn(&Tok) -> bool) -> bool {
    tokens.iter().any(|t| match t {
        Tok::Template(_, parts) => parts.iter().any(|p| contains_token(p, test)),
        t => test(t),
    })
}

fn describe(token: &Tok) -> String {
    match token {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(_) => "string".into(),
        Tok::Template(..) => "template".into(),
        Tok::Regex(..) => "regular expression".into(),
        Tok::Ident(name) => format!("'{name}'"),
        Tok::Punct(p) => format!("'{p}'"),
    }
}

const UNARY: &[&str] = &["!", "-", "+", "~", "typeof", "void", "delete", "++", "--"];

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + ahead)
    }

    fn is(&self, p: &str) -> bool {
        match self.peek() {
            Some(Tok::Punct(q)) => *q == p,
            Some(Tok::Ident(name)) => name == p,
            _ => false,
        }
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, p: &str) -> Result<(), CompileError> {
        if self.eat(p) {
            return Ok(());
        }
        match self.peek() {
            Some(token) => Err(syntax(format!("expected '{p}', found {}", describe(token)))),
            None => Err(syntax(format!("expected '{p}' at the end of the rule"))),
        }
    }

    /// One more level of nesting around `parse`, refused past `MAX_RULE_DEPTH`.
    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, CompileError>,
    ) -> Result<T, CompileError> {
        if self.nesting >= MAX_RULE_DEPTH {
            return Err(syntax(format!("nested deeper than {MAX_RULE_DEPTH}")));
        }
        self.nesting += 1;
        let result = parse(self);
        self.nesting -= 1;
        result
    }

    /// Expression: assignments separated by commas.
    fn expression(&mut self) -> Result<Expr, CompileError> {
        let mut expr = self.assignment()?;
        while self.eat(",") {
            let next = self.assignment()?;
            expr = Expr::Comma(Box::new(expr), Box::new(next));
        }
        Ok(expr)
    }

    fn assignment(&mut self) -> Result<Expr, CompileError> {
        self.nested(|p| {
            if matches!(p.peek(), Some(Tok::Ident(name)) if name == "async" || name == "yield")
                && matches!(p.peek_at(1), Some(Tok::Ident(_)))
            {
                return Err(CompileError::Forbidden(
                    "rule can't contain user functions".into(),
                ));
            }
            let expr = p.conditional()?;
            match p.peek() {
                Some(Tok::Punct("=>")) => Err(CompileError::Forbidden(
                    "rule can't contain user functions".into(),
                )),
                Some(Tok::Punct(
                    "=" | "+=" | "-=" | "*=" | "/=" | "%=" | "**=" | "<<=" | ">>=" | ">>>=" | "&="
                    | "|=" | "^=" | "&&=" | "||=" | "??=",
                )) => Err(CompileError::Unsupported("assignments".into())),
                _ => Ok(expr),
            }
        })
    }

    fn conditional(&mut self) -> Result<Expr, CompileError> {
        let cond = self.logical()?;
        if !self.eat("?") {
            return Ok(cond);
        }
        let yes = self.assignment()?;
        self.expect(":")?;
        let no = self.assignment()?;
        Ok(Expr::Cond(Box::new(cond), Box::new(yes), Box::new(no)))
    }

    /// `&&`, `||` and `??`; JavaScript refuses `??` mixed with the others without parentheses.
    fn logical(&mut self) -> Result<Expr, CompileError> {
        let first = self.binary(BIT_OR)?;
        if self.is("??") {
            let mut expr = first;
            while self.eat("??") {
                let right = self.binary(BIT_OR)?;
                expr = Expr::Logical(LogicOp::Nullish, Box::new(expr), Box::new(right));
            }
            if self.is("&&") || self.is("||") {
                return Err(syntax(
                    "'??' can't be mixed with '&&' or '||' without parentheses",
                ));
            }
            return Ok(expr);
        }
        let mut expr = self.and_chain(first)?;
        while self.eat("||") {
            let next = self.binary(BIT_OR)?;
            let right = self.and_chain(next)?;
            expr = Expr::Logical(LogicOp::Or, Box::new(expr), Box::new(right));
        }
        if self.is("??") {
            return Err(syntax(
                "'??' can't be mixed with '&&' or '||' without parentheses",
            ));
        }
        Ok(expr)
    }

    fn and_chain(&mut self, first: Expr) -> Result<Expr, CompileError> {
        let mut expr = first;
        while self.eat("&&") {
            let right = self.binary(BIT_OR)?;
            expr = Expr::Logical(LogicOp::And, Box::new(expr), Box::new(right));
        }
        Ok(expr)
    }

    fn binary_op(&self) -> Option<(u8, BinOp)> {
        let name = match self.peek()? {
            Tok::Punct(p) => *p,
            Tok::Ident(name) if name == "in" => "in",
            Tok::Ident(name) if name == "instanceof" => "instanceof",
            _ => return None,
        };
        Some(match name {
            "|" => (BIT_OR, BinOp::BitOr),
            "^" => (5, BinOp::BitXor),
            "&" => (6, BinOp::BitAnd),
            "==" => (7, BinOp::LooseEq),
            "!=" => (7, BinOp::LooseNe),
            "===" => (7, BinOp::StrictEq),
            "!==" => (7, BinOp::StrictNe),
            "<" => (8, BinOp::Lt),
            ">" => (8, BinOp::Gt),
            "<=" => (8, BinOp::Le),
            ">=" => (8, BinOp::Ge),
            "in" => (8, BinOp::In),
            "instanceof" => (8, BinOp::InstanceOf),
            "<<" => (9, BinOp::Shl),
            ">>" => (9, BinOp::Shr),
            ">>>" => (9, BinOp::UShr),
            "+" => (10, BinOp::Add),
            "-" => (10, BinOp::Sub),
            "*" => (11, BinOp::Mul),
            "/" => (11, BinOp::Div),
            "%" => (11, BinOp::Rem),
            _ => return None,
        })
    }

    /// Left-associative binary operators binding at least as tightly as `min`.
    fn binary(&mut self, min: u8) -> Result<Expr, CompileError> {
        let mut left = self.exponent()?;
        while let Some((prec, op)) = self.binary_op() {
            if prec < min {
                break;
            }
            self.pos += 1;
            let right = self.binary(prec + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `**` is right-associative, and a unary operator may not stand on its left.
    fn exponent(&mut self) -> Result<Expr, CompileError> {
        self.nested(|p| {
            if UNARY.iter().any(|op| p.is(op)) {
                let expr = p.unary()?;
                if p.is("**") {
                    return Err(syntax(
                        "a unary operator can't stand left of '**' without parentheses",
                    ));
                }
                return Ok(expr);
            }
            let base = p.postfix()?;
            if p.eat("**") {
                let power = p.exponent()?;
                return Ok(Expr::Binary(BinOp::Pow, Box::new(base), Box::new(power)));
            }
            Ok(base)
        })
    }

    fn unary(&mut self) -> Result<Expr, CompileError> {
        self.nested(|p| {
            let op = match p.peek() {
                Some(Tok::Punct("!")) => UnOp::Not,
                Some(Tok::Punct("-")) => UnOp::Neg,
                Some(Tok::Punct("+")) => UnOp::Plus,
                Some(Tok::Punct("~")) => UnOp::BitNot,
                Some(Tok::Ident(name)) if name == "typeof" => UnOp::Typeof,
                Some(Tok::Ident(name)) if name == "void" => UnOp::Void,
                Some(Tok::Ident(name)) if name == "delete" => {
                    return Err(CompileError::Unsupported("delete".into()))
                }
                Some(Tok::Punct("++" | "--")) => {
                    return Err(CompileError::Unsupported("++ and --".into()))
                }
                _ => return p.postfix(),
            };
            p.pos += 1;
            let operand = p.unary()?;
            Ok(Expr::Unary(op, Box::new(operand)))
        })
    }

    fn property_name(&mut self) -> Result<String, CompileError> {
        match self.peek().cloned() {
            Some(Tok::Ident(name)) => {
                self.pos += 1;
                Ok(name)
            }
            Some(Tok::Punct("#")) => Err(syntax("private names are not allowed here")),
            Some(token) => Err(syntax(format!(
                "expected a property name, found {}",
                describe(&token)
            ))),
            None => Err(syntax("expected a property name at the end of the rule")),
        }
    }

    /// A method call after `target.name`: only the supported functions may be called.
    fn method_call(
        &mut self,
        target: Expr,
        name: String,
        optional: bool,
    ) -> Result<Expr, CompileError> {
        if !METHODS.contains(&name.as_str()) {
            return Err(CompileError::Forbidden(format!(
                "function {name} is not supported"
            )));
        }
        self.expect("(")?;
        let args = self.arguments()?;
        Ok(Expr::Call(Box::new(target), name, args, optional))
    }

    /// Member accesses and calls after a primary expression; an optional chain ends here.
    fn postfix(&mut self) -> Result<Expr, CompileError> {
        let mut expr = self.primary()?;
        let mut optional_chain = false;
        loop {
            if self.eat(".") {
                let name = self.property_name()?;
                if self.is("(") {
                    expr = self.method_call(expr, name, false)?;
                } else {
                    expr = Expr::Member(Box::new(expr), Key::Static(name), false);
                }
            } else if self.eat("?.") {
                optional_chain = true;
                if self.is("(") {
                    return Err(CompileError::Unsupported("optional calls".into()));
                }
                if self.eat("[") {
                    let key = self.expression()?;
                    self.expect("]")?;
                    self.refuse_computed_call()?;
                    expr = Expr::Member(Box::new(expr), Key::Computed(Box::new(key)), true);
                    continue;
                }
                let name = self.property_name()?;
                if self.is("(") {
                    expr = self.method_call(expr, name, true)?;
                } else {
                    expr = Expr::Member(Box::new(expr), Key::Static(name), true);
                }
            } else if self.eat("[") {
                let key = self.expression()?;
                self.expect("]")?;
                self.refuse_computed_call()?;
                expr = Expr::Member(Box::new(expr), Key::Computed(Box::new(key)), false);
            } else if self.is("(") {
                expr = self.bare_call(expr)?;
            } else if matches!(self.peek(), Some(Tok::Template(..))) {
                return Err(CompileError::Forbidden(
                    "tagged templates call a function, which rules can't".into(),
                ));
            } else if self.is("++") || self.is("--") {
                return Err(CompileError::Unsupported("++ and --".into()));
            } else {
                break;
            }
        }
        Ok(if optional_chain {
            Expr::Chain(Box::new(expr))
        } else {
            expr
        })
    }

    fn refuse_computed_call(&self) -> Result<(), CompileError> {
        if self.is("(") {
            return Err(CompileError::Forbidden(
                "only the supported functions may be called, by name".into(),
            ));
        }
        Ok(())
    }

    /// `f(...)` without a receiver: `_` reads a record; nothing else can be called.
    fn bare_call(&mut self, callee: Expr) -> Result<Expr, CompileError> {
        let name = match &callee {
            Expr::Var(Var::CrossRef) => {
                self.expect("(")?;
                return Ok(Expr::Ref(self.arguments()?));
            }
            Expr::Var(Var::Undeclared(name)) if METHODS.contains(&name.as_str()) => {
                // Allowed by name in the reference, and a ReferenceError when it runs.
                let name = name.clone();
                self.expect("(")?;
                self.arguments()?;
                return Ok(Expr::Throw(format!("{name} is not defined")));
            }
            Expr::Var(Var::Undeclared(name) | Var::Unmodeled(name) | Var::Path(name)) => {
                name.clone()
            }
            Expr::Var(Var::Ctor(ctor)) => ctor.name().to_string(),
            Expr::Var(var) => format!("{var:?}").to_lowercase(),
            _ => {
                return Err(CompileError::Forbidden(
                    "only the supported functions may be called, by name".into(),
                ))
            }
        };
        Err(CompileError::Forbidden(format!(
            "function {name} is not supported"
        )))
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, CompileError> {
        let mut args = Vec::new();
        loop {
            if self.eat(")") {
                return Ok(args);
            }
            if self.is("...") {
                return Err(CompileError::Unsupported("spread arguments".into()));
            }
            args.push(self.assignment()?);
            if !self.eat(",") {
                self.expect(")")?;
                return Ok(args);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, CompileError> {
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| syntax("unexpected end of rule"))?;
        self.pos += 1;
        Ok(match token {
            Tok::Num(n) => Expr::Num(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Regex(body, flags) => {
                let lit = RegexLit::compile(&body, &flags).map_err(|e| match e {
                    super::regex::RegexError::Syntax(m) => {
                        syntax(format!("invalid regular expression /{body}/: {m}"))
                    }
                    super::regex::RegexError::Unsupported(m) => {
                        CompileError::Unsupported(format!("regular expression /{body}/: {m}"))
                    }
                })?;
                Expr::Regex(Arc::new(lit))
            }
            Tok::Template(strings, parts) => {
                let mut exprs = Vec::with_capacity(parts.len());
                for tokens in parts {
                    exprs.push(self.sub_expression(tokens)?);
                }
                Expr::Template(strings, exprs)
            }
            Tok::Punct("(") => {
                let inner = self.expression()?;
                self.expect(")")?;
                inner
            }
            Tok::Punct("[") => self.array()?,
            Tok::Punct("{") => self.object()?,
            Tok::Ident(name) => self.name(name)?,
            Tok::Punct(p) => return Err(syntax(format!("unexpected '{p}'"))),
        })
    }

    /// An expression inside a template's `${...}`.
    fn sub_expression(&mut self, tokens: Vec<Tok>) -> Result<Expr, CompileError> {
        let mut inner = Parser {
            tokens,
            pos: 0,
            nesting: self.nesting,
            warnings: self.warnings,
        };
        let expr = inner.expression()?;
        if let Some(token) = inner.peek() {
            return Err(syntax(format!(
                "unexpected {} in a template",
                describe(token)
            )));
        }
        Ok(expr)
    }

    fn array(&mut self) -> Result<Expr, CompileError> {
        let mut items = Vec::new();
        loop {
            if self.eat("]") {
                return Ok(Expr::Array(items));
            }
            if self.eat(",") {
                items.push(None);
                continue;
            }
            if self.is("...") {
                return Err(CompileError::Unsupported("spread elements".into()));
            }
            items.push(Some(self.assignment()?));
            if !self.eat(",") {
                self.expect("]")?;
                return Ok(Expr::Array(items));
            }
        }
    }

    fn object(&mut self) -> Result<Expr, CompileError> {
        let mut props = Vec::new();
        loop {
            if self.eat("}") {
                return Ok(Expr::Object(props));
            }
            if self.is("...") {
                return Err(CompileError::Unsupported("spread properties".into()));
            }
            let key = match self.peek().cloned() {
                Some(Tok::Ident(name)) => {
                    self.pos += 1;
                    if matches!(name.as_str(), "get" | "set" | "async")
                        && !self.is(":")
                        && !self.is(",")
                        && !self.is("}")
                        && !self.is("(")
                    {
                        return Err(CompileError::Unsupported("accessors and methods".into()));
                    }
                    if !self.is(":") && !self.is("(") {
                        // Shorthand `{ user }`: the value of that name.
                        if RESERVED.contains(&name.as_str()) {
                            return Err(syntax(format!("unexpected '{name}'")));
                        }
                        let value = self.name(name.clone())?;
                        props.push((Key::Static(name), value));
                        if !self.eat(",") {
                            self.expect("}")?;
                            return Ok(Expr::Object(props));
                        }
                        continue;
                    }
                    Key::Static(name)
                }
                Some(Tok::Str(s)) => {
                    self.pos += 1;
                    Key::Static(s)
                }
                Some(Tok::Num(n)) => {
                    self.pos += 1;
                    Key::Static(super::number::number_text(n))
                }
                Some(Tok::Punct("[")) => {
                    self.pos += 1;
                    let key = self.assignment()?;
                    self.expect("]")?;
                    Key::Computed(Box::new(key))
                }
                Some(token) => {
                    return Err(syntax(format!(
                        "unexpected {} in an object literal",
                        describe(&token)
                    )))
                }
                None => return Err(syntax("unterminated object literal")),
            };
            if self.is("(") || self.is("*") {
                return Err(CompileError::Unsupported("accessors and methods".into()));
            }
            if key == Key::Static("__proto__".into()) {
                // Sets the prototype in a literal, unlike any other key.
                return Err(CompileError::Unsupported(
                    "__proto__ in object literals".into(),
                ));
            }
            self.expect(":")?;
            let value = self.assignment()?;
            props.push((key, value));
            if !self.eat(",") {
                self.expect("}")?;
                return Ok(Expr::Object(props));
            }
        }
    }

    /// What a name means in the reference's rule function.
    fn name(&mut self, name: String) -> Result<Expr, CompileError> {
        Ok(Expr::Var(match name.as_str() {
            "true" => return Ok(Expr::Bool(true)),
            "false" => return Ok(Expr::Bool(false)),
            "null" => return Ok(Expr::Null),
            "undefined" => return Ok(Expr::Undefined),
            "NaN" => return Ok(Expr::Num(f64::NAN)),
            "Infinity" => return Ok(Expr::Num(f64::INFINITY)),
            "new" => {
                return Err(CompileError::Forbidden(
                    "rule can't contain the new keyword".into(),
                ))
            }
            "function" => {
                return Err(CompileError::Forbidden(
                    "rule can't contain user functions".into(),
                ))
            }
            "this" => Var::This,
            "_" => Var::CrossRef,
            "user" => Var::User,
            "data" => Var::Data,
            "oldData" => Var::OldData,
            "now" => Var::Now,
            "action" => Var::Action,
            "name" => Var::Name,
            "Object" => Var::Ctor(Ctor::Object),
            "Array" => Var::Ctor(Ctor::Array),
            "String" => Var::Ctor(Ctor::String),
            "Number" => Var::Ctor(Ctor::Number),
            "Boolean" => Var::Ctor(Ctor::Boolean),
            "RegExp" => Var::Ctor(Ctor::RegExp),
            "Function" => Var::Ctor(Ctor::Function),
            "Date" => Var::Ctor(Ctor::Date),
            "Error" => Var::Ctor(Ctor::Error),
            "Symbol" => Var::Ctor(Ctor::Symbol),
            "Math" => Var::Math,
            "JSON" => Var::Json,
            v if v.starts_with('$') => Var::Path(name),
            v if RESERVED.contains(&v) => return Err(syntax(format!("unexpected '{v}'"))),
            v if NODE_GLOBALS.contains(&v) => {
                self.warnings.push(format!(
                    "'{v}' is not evaluated by corestream: the rule fails where it reads it"
                ));
                Var::Unmodeled(name)
            }
            v => {
                if !(self.is("(") && METHODS.contains(&v)) {
                    self.warnings.push(format!(
                        "unknown name '{v}': the rule fails where it reads it (a ReferenceError in deepstream too)"
                    ));
                }
                Var::Undeclared(name)
            }
        }))
    }
}

const BIT_OR: u8 = 4;

impl Expr {
    fn children(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        match self {
            Expr::Template(_, exprs) | Expr::Ref(exprs) => out.extend(exprs),
            Expr::Array(items) => out.extend(items.iter().flatten()),
            Expr::Object(props) => {
                for (key, value) in props {
                    if let Key::Computed(k) = key {
                        out.push(&**k);
                    }
                    out.push(value);
                }
            }
            Expr::Member(target, key, _) => {
                out.push(&**target);
                if let Key::Computed(k) = key {
                    out.push(&**k);
                }
            }
            Expr::Call(target, _, args, _) => {
                out.push(&**target);
                out.extend(args);
            }
            Expr::Chain(e) | Expr::Unary(_, e) => out.push(&**e),
            Expr::Binary(_, a, b) | Expr::Logical(_, a, b) | Expr::Comma(a, b) => {
                out.push(&**a);
                out.push(&**b);
            }
            Expr::Cond(a, b, c) => out.extend([&**a, &**b, &**c]),
            _ => {}
        }
        out
    }

    /// Levels of the tree, counted without recursion.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1)];
        while let Some((expr, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            stack.extend(expr.children().into_iter().map(|c| (c, depth + 1)));
        }
        deepest
    }

    /// Whether any part of the tree satisfies `test`.
    pub fn any(&self, test: &impl Fn(&Expr) -> bool) -> bool {
        let mut stack = vec![self];
        while let Some(expr) = stack.pop() {
            if test(expr) {
                return true;
            }
            stack.extend(expr.children());
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Expr {
        parse(src, &mut Vec::new()).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    fn err(src: &str) -> CompileError {
        parse(src, &mut Vec::new()).expect_err(src)
    }

    #[test]
    fn the_constructs_of_the_issue_parse() {
        for src in [
            "typeof data.x === 'number'",
            "data.name.match(/^[a-z]+$/)",
            "'x' in data",
            "data.a ?? data.b",
            "data?.a?.b",
            "[1,2,3].indexOf(data.x) > -1",
            "2 ** 10 === 1024",
            "void 0 === undefined",
            "data.list instanceof Array",
            "(1, 2) === 2",
            "(data.x | 0) === data.x && (1 << 3) === 8 && (-1 >>> 28) === 15 && (5 ^ 1) === 4 && ~0 === -1",
            "`${user.id}/x` === name",
            "({a: 1, 'b': 2, [data.k]: 3, user}).a === 1",
            "[1, , 3].length === 3",
            "data['a'].b?.[0]",
            "a; b",
        ] {
            if src == "a; b" {
                assert!(matches!(err(src), CompileError::Unsupported(_)));
            } else {
                ok(src);
            }
        }
    }

    #[test]
    fn precedence_as_javascript() {
        assert_eq!(
            ok("1 + 2 * 3"),
            Expr::Binary(
                BinOp::Add,
                Box::new(Expr::Num(1.0)),
                Box::new(Expr::Binary(
                    BinOp::Mul,
                    Box::new(Expr::Num(2.0)),
                    Box::new(Expr::Num(3.0))
                ))
            )
        );
        // Right-associative.
        assert_eq!(
            ok("2 ** 3 ** 2"),
            Expr::Binary(
                BinOp::Pow,
                Box::new(Expr::Num(2.0)),
                Box::new(Expr::Binary(
                    BinOp::Pow,
                    Box::new(Expr::Num(3.0)),
                    Box::new(Expr::Num(2.0))
                ))
            )
        );
        assert!(matches!(err("-2 ** 2"), CompileError::Syntax(_)));
        ok("(-2) ** 2");
        ok("2 ** -2");
        assert!(matches!(err("a ?? b || c"), CompileError::Syntax(_)));
        assert!(matches!(err("a && b ?? c"), CompileError::Syntax(_)));
        ok("(a && b) ?? c");
    }

    #[test]
    fn refusals_match_the_reference() {
        for (src, needle) in [
            ("new Date()", "new keyword"),
            ("(() => true)", "user functions"),
            ("x => true", "user functions"),
            ("function () {}", "user functions"),
            ("Math.max(1, 2)", "function max is not supported"),
            (
                "data.replace('a', 'b')",
                "function replace is not supported",
            ),
            ("eval('1')", "function eval is not supported"),
            ("data['startsWith']('a')", "by name"),
            ("(data.f)()", "by name"),
            ("String.raw`x`", "tagged"),
        ] {
            match err(src) {
                CompileError::Forbidden(msg) => assert!(msg.contains(needle), "{src}: {msg}"),
                other => panic!("{src}: {other:?}"),
            }
        }
        for src in [
            "user.id ===",
            "(1",
            "1 +* 2",
            "a b",
            "if (a) b",
            "{a: }",
            "'x",
        ] {
            assert!(matches!(err(src), CompileError::Syntax(_)), "{src}");
        }
        for src in ["data.x = 1", "data.x++", "delete data.x", "[...data.list]"] {
            assert!(matches!(err(src), CompileError::Unsupported(_)), "{src}");
        }
    }

    #[test]
    fn unknown_names_warn_and_throw_when_read() {
        let mut warnings = Vec::new();
        parse("usr.id === 'x'", &mut warnings).unwrap();
        assert!(warnings[0].contains("unknown name 'usr'"), "{warnings:?}");
        let mut warnings = Vec::new();
        assert!(matches!(
            parse("startsWith('x')", &mut warnings).unwrap(),
            Expr::Throw(_)
        ));
        let mut warnings = Vec::new();
        parse("process.env.X === '1'", &mut warnings).unwrap();
        assert!(warnings[0].contains("'process'"), "{warnings:?}");
    }

    #[test]
    fn deep_or_long_rules_are_refused_not_overflowed() {
        for rule in [
            "(".repeat(100_000),
            "!".repeat(3000) + "true",
            "-".repeat(3000) + "1",
            format!("{}1{}", "[".repeat(70), "]".repeat(70)),
            format!("{}1{}", "(".repeat(70), ")".repeat(70)),
            vec!["1"; 100].join(" + "),
            "`${".repeat(70) + "1" + &"}`".repeat(70),
            "a".repeat(MAX_RULE_LEN + 1),
        ] {
            assert!(
                parse(&rule, &mut Vec::new()).is_err(),
                "{}",
                &rule[..20.min(rule.len())]
            );
        }
        ok(&vec!["1"; 60].join(" + "));
    }
}
