//! Tokens of a rule: JavaScript's lexical grammar for expressions (numbers in every notation,
//! strings and templates with all escapes, regex literals, punctuators, comments).

use super::CompileError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Num(f64),
    Str(String),
    /// The cooked strings of a template and the tokens of each `${...}` between them.
    Template(Vec<String>, Vec<Vec<Tok>>),
    Regex(String, String),
    Ident(String),
    Punct(&'static str),
}

/// Longest first, so that `>>>=` is not read as `>>` `>=`.
const PUNCTS: &[&str] = &[
    ">>>=", "...", "===", "!==", "**=", "<<=", ">>=", ">>>", "&&=", "||=", "??=", "=>", "==", "!=",
    "<=", ">=", "&&", "||", "??", "?.", "**", "<<", ">>", "++", "--", "+=", "-=", "*=", "/=", "%=",
    "&=", "|=", "^=", "{", "}", "(", ")", "[", "]", ";", ",", "<", ">", "+", "-", "*", "/", "%",
    "&", "|", "^", "!", "~", "?", ":", "=", ".", "@", "#",
];

/// Words after which an expression starts (so `/` opens a regex), though they are names.
const EXPRESSION_KEYWORDS: &[&str] = &[
    "typeof",
    "void",
    "delete",
    "in",
    "instanceof",
    "new",
    "return",
    "case",
    "do",
    "else",
    "throw",
    "await",
    "yield",
];

fn syntax(msg: impl Into<String>) -> CompileError {
    CompileError::Syntax(msg.into())
}

fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

pub fn is_id_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

pub fn is_id_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '\u{200c}' || c == '\u{200d}'
}

struct Lexer<'s> {
    chars: &'s [char],
    pos: usize,
    /// Templates open right now: each nests a call of `tokens`.
    templates: usize,
}

/// Reads the tokens of `src`.
pub fn tokenize(src: &str) -> Result<Vec<Tok>, CompileError> {
    let chars: Vec<char> = src.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
        templates: 0,
    };
    let tokens = lexer.tokens(false)?;
    Ok(tokens)
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Tokens up to the end, or (inside a template's `${`) up to the `}` that closes it.
    fn tokens(&mut self, in_template: bool) -> Result<Vec<Tok>, CompileError> {
        let mut tokens: Vec<Tok> = Vec::new();
        let mut braces = 0usize;
        loop {
            self.skip_space_and_comments()?;
            let Some(c) = self.peek(0) else {
                if in_template {
                    return Err(syntax("unterminated template literal"));
                }
                return Ok(tokens);
            };
            if c.is_ascii_digit() || (c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit()))
            {
                tokens.push(Tok::Num(self.number()?));
            } else if c == '\'' || c == '"' {
                tokens.push(Tok::Str(self.string(c)?));
            } else if c == '`' {
                tokens.push(self.template()?);
            } else if is_id_start(c) || c == '\\' {
                tokens.push(Tok::Ident(self.identifier()?));
            } else if c == '/' && regex_allowed(tokens.last()) {
                tokens.push(self.regex()?);
            } else {
                let punct = PUNCTS
                    .iter()
                    .find(|p| {
                        p.chars()
                            .enumerate()
                            .all(|(i, pc)| self.peek(i) == Some(pc))
                    })
                    .ok_or_else(|| syntax(format!("unexpected character '{c}'")))?;
                // `a?.5:b` is a conditional, not optional chaining.
                let punct = if *punct == "?." && self.peek(2).is_some_and(|d| d.is_ascii_digit()) {
                    "?"
                } else {
                    punct
                };
                if in_template {
                    match punct {
                        "{" => braces += 1,
                        "}" if braces == 0 => {
                            self.pos += 1;
                            return Ok(tokens);
                        }
                        "}" => braces -= 1,
                        _ => {}
                    }
                }
                self.pos += punct.chars().count();
                tokens.push(Tok::Punct(punct));
            }
        }
    }

    fn skip_space_and_comments(&mut self) -> Result<(), CompileError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(c), _) if c.is_whitespace() || c == '\u{feff}' => self.pos += 1,
                (Some('/'), Some('/')) => {
                    while self.peek(0).is_some_and(|c| !is_line_terminator(c)) {
                        self.pos += 1;
                    }
                }
                (Some('/'), Some('*')) => {
                    self.pos += 2;
                    loop {
                        match (self.peek(0), self.peek(1)) {
                            (Some('*'), Some('/')) => {
                                self.pos += 2;
                                break;
                            }
                            (Some(_), _) => self.pos += 1,
                            (None, _) => return Err(syntax("unterminated comment")),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn digits(&mut self, radix: u32, out: &mut String) -> Result<(), CompileError> {
        let start = out.len();
        while let Some(c) = self.peek(0) {
            if c.is_digit(radix) {
                out.push(c);
            } else if c == '_' {
                // A separator stands between two digits.
                let before = out.len() > start;
                let after = self.peek(1).is_some_and(|d| d.is_digit(radix));
                if !before || !after {
                    return Err(syntax("numeric separators are allowed only between digits"));
                }
            } else {
                break;
            }
            self.pos += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<f64, CompileError> {
        let radix = match (self.peek(0), self.peek(1).map(|c| c.to_ascii_lowercase())) {
            (Some('0'), Some('x')) => 16,
            (Some('0'), Some('o')) => 8,
            (Some('0'), Some('b')) => 2,
            _ => 10,
        };
        let value = if radix != 10 {
            self.pos += 2;
            let mut text = String::new();
            self.digits(radix, &mut text)?;
            if text.is_empty() {
                return Err(syntax("missing digits after the radix prefix"));
            }
            text.chars().fold(0.0, |acc, d| {
                acc * f64::from(radix) + f64::from(d.to_digit(radix).unwrap_or(0))
            })
        } else if self.peek(0) == Some('0') && self.peek(1).is_some_and(|d| d.is_ascii_digit()) {
            // Sloppy mode's legacy octal (`017`), or decimal when a digit is 8 or 9 (`019`).
            let mut text = String::new();
            while let Some(d) = self.peek(0).filter(|d| d.is_ascii_digit()) {
                text.push(d);
                self.pos += 1;
            }
            if text.chars().all(|d| d < '8') {
                text.chars().fold(0.0, |acc, d| {
                    acc * 8.0 + f64::from(d.to_digit(8).unwrap_or(0))
                })
            } else {
                text.parse().map_err(|_| syntax("bad number"))?
            }
        } else {
            let mut text = String::new();
            self.digits(10, &mut text)?;
            if self.peek(0) == Some('.') {
                text.push('.');
                self.pos += 1;
                self.digits(10, &mut text)?;
            }
            if matches!(self.peek(0), Some('e' | 'E')) {
                let signed = matches!(self.peek(1), Some('+' | '-'));
                let digit_at = if signed { 2 } else { 1 };
                if self.peek(digit_at).is_some_and(|d| d.is_ascii_digit()) {
                    text.push('e');
                    if signed {
                        text.push(self.peek(1).unwrap_or('+'));
                    }
                    self.pos += digit_at;
                    self.digits(10, &mut text)?;
                } else {
                    return Err(syntax("missing exponent"));
                }
            }
            let text = if text.starts_with('.') {
                format!("0{text}")
            } else {
                text
            };
            text.parse()
                .map_err(|_| syntax(format!("bad number {text}")))?
        };
        if self.peek(0) == Some('n') {
            return Err(CompileError::Unsupported("BigInt literals".into()));
        }
        if self
            .peek(0)
            .is_some_and(|c| is_id_start(c) || c.is_ascii_digit())
        {
            return Err(syntax("an identifier starts immediately after a number"));
        }
        Ok(value)
    }

    fn hex(&mut self, count: usize) -> Result<u32, CompileError> {
        let mut value = 0;
        for _ in 0..count {
            let d = self
                .peek(0)
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| syntax("invalid hexadecimal escape sequence"))?;
            value = value * 16 + d;
            self.pos += 1;
        }
        Ok(value)
    }

    /// One escape after a backslash, appended as UTF-16 units (nothing for a line continuation).
    fn escape(&mut self, in_template: bool, out: &mut Vec<u16>) -> Result<(), CompileError> {
        let Some(c) = self.peek(0) else {
            return Err(syntax("unterminated string"));
        };
        self.pos += 1;
        let unit = |c: char, out: &mut Vec<u16>| {
            let mut buf = [0u16; 2];
            out.extend_from_slice(c.encode_utf16(&mut buf));
        };
        match c {
            'n' => out.push(0x0a),
            't' => out.push(0x09),
            'r' => out.push(0x0d),
            'b' => out.push(0x08),
            'f' => out.push(0x0c),
            'v' => out.push(0x0b),
            '0' if !self.peek(0).is_some_and(|d| d.is_ascii_digit()) => out.push(0),
            '0'..='7' => {
                if in_template {
                    return Err(syntax(
                        "octal escape sequences are not allowed in templates",
                    ));
                }
                // Sloppy mode's legacy octal escape: up to three digits, at most 0o377.
                let mut value = c.to_digit(8).unwrap_or(0);
                let max_digits = if c <= '3' { 3 } else { 2 };
                for _ in 1..max_digits {
                    match self.peek(0).and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            self.pos += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u16);
            }
            '8' | '9' if in_template => {
                return Err(syntax("\\8 and \\9 are not allowed in templates"));
            }
            'x' => out.push(self.hex(2)? as u16),
            'u' => {
                if self.peek(0) == Some('{') {
                    let value = braced_code_point(self.chars, &mut self.pos)
                        .ok_or_else(|| syntax("invalid Unicode escape sequence"))?;
                    match char::from_u32(value) {
                        Some(ch) => unit(ch, out),
                        None => out.push(value as u16),
                    }
                } else {
                    out.push(self.hex(4)? as u16);
                }
            }
            '\r' => {
                if self.peek(0) == Some('\n') {
                    self.pos += 1;
                }
            }
            '\n' | '\u{2028}' | '\u{2029}' => {}
            other => unit(other, out),
        }
        Ok(())
    }

    fn string(&mut self, quote: char) -> Result<String, CompileError> {
        self.pos += 1;
        let mut units: Vec<u16> = Vec::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(syntax("unterminated string"));
            };
            self.pos += 1;
            match c {
                '\\' => self.escape(false, &mut units)?,
                c if c == quote => break,
                '\n' | '\r' => return Err(syntax("unterminated string")),
                c => {
                    let mut buf = [0u16; 2];
                    units.extend_from_slice(c.encode_utf16(&mut buf));
                }
            }
        }
        utf16_text(&units)
    }

    fn template(&mut self) -> Result<Tok, CompileError> {
        self.pos += 1;
        let mut strings = Vec::new();
        let mut exprs = Vec::new();
        let mut units: Vec<u16> = Vec::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(syntax("unterminated template literal"));
            };
            self.pos += 1;
            match c {
                '`' => {
                    strings.push(utf16_text(&units)?);
                    return Ok(Tok::Template(strings, exprs));
                }
                '\\' => self.escape(true, &mut units)?,
                '$' if self.peek(0) == Some('{') => {
                    self.pos += 1;
                    strings.push(utf16_text(&std::mem::take(&mut units))?);
                    if self.templates >= super::MAX_RULE_DEPTH {
                        return Err(syntax("templates nested too deep"));
                    }
                    self.templates += 1;
                    let inner = self.tokens(true);
                    self.templates -= 1;
                    let inner = inner?;
                    if inner.is_empty() {
                        return Err(syntax("empty ${} in a template literal"));
                    }
                    exprs.push(inner);
                }
                // Line ends inside a template read as `\n`.
                '\r' => {
                    if self.peek(0) == Some('\n') {
                        self.pos += 1;
                    }
                    units.push(0x0a);
                }
                c => {
                    let mut buf = [0u16; 2];
                    units.extend_from_slice(c.encode_utf16(&mut buf));
                }
            }
        }
    }

    fn identifier(&mut self) -> Result<String, CompileError> {
        let mut name = String::new();
        while let Some(c) = self.peek(0) {
            if c == '\\' {
                return Err(CompileError::Unsupported(
                    "Unicode escapes in identifiers".into(),
                ));
            }
            if !is_id_part(c) {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        Ok(name)
    }

    fn regex(&mut self) -> Result<Tok, CompileError> {
        self.pos += 1;
        let mut body = String::new();
        let mut in_class = false;
        loop {
            let Some(c) = self.peek(0) else {
                return Err(syntax("unterminated regular expression"));
            };
            if is_line_terminator(c) {
                return Err(syntax("unterminated regular expression"));
            }
            self.pos += 1;
            match c {
                '\\' => {
                    body.push('\\');
                    match self.peek(0) {
                        Some(n) if !is_line_terminator(n) => {
                            body.push(n);
                            self.pos += 1;
                        }
                        _ => return Err(syntax("unterminated regular expression")),
                    }
                }
                '[' => {
                    in_class = true;
                    body.push(c);
                }
                ']' => {
                    in_class = false;
                    body.push(c);
                }
                '/' if !in_class => break,
                c => body.push(c),
            }
        }
        let mut flags = String::new();
        while let Some(c) = self.peek(0).filter(|c| is_id_part(*c)) {
            if !"dgimsuyv".contains(c) || flags.contains(c) {
                return Err(syntax(format!(
                    "invalid regular expression flags '{flags}{c}'"
                )));
            }
            flags.push(c);
            self.pos += 1;
        }
        if flags.contains('u') && flags.contains('v') {
            return Err(syntax("invalid regular expression flags"));
        }
        Ok(Tok::Regex(body, flags))
    }
}

/// `{hex digits}` at `*pos`, as in `\u{1F600}`: the code point, with `*pos` after the `}`.
/// `None` (and `*pos` unspecified) when it is not one or is above U+10FFFF.
pub fn braced_code_point(chars: &[char], pos: &mut usize) -> Option<u32> {
    if chars.get(*pos) != Some(&'{') {
        return None;
    }
    *pos += 1;
    let mut value: u32 = 0;
    let mut digits = 0;
    while let Some(d) = chars.get(*pos).and_then(|c| c.to_digit(16)) {
        value = value.saturating_mul(16).saturating_add(d);
        digits += 1;
        *pos += 1;
    }
    if digits == 0 || chars.get(*pos) != Some(&'}') || value > 0x10ffff {
        return None;
    }
    *pos += 1;
    Some(value)
}

/// A string from UTF-16 units; one that holds a lone surrogate cannot be a Rust string.
fn utf16_text(units: &[u16]) -> Result<String, CompileError> {
    String::from_utf16(units)
        .map_err(|_| CompileError::Unsupported("strings with lone surrogates".into()))
}

/// After a value, `/` divides; anywhere else it starts a regex literal.
fn regex_allowed(last: Option<&Tok>) -> bool {
    match last {
        None => true,
        Some(Tok::Num(_) | Tok::Str(_) | Tok::Template(..) | Tok::Regex(..)) => false,
        Some(Tok::Ident(name)) => EXPRESSION_KEYWORDS.contains(&name.as_str()),
        Some(Tok::Punct(p)) => !matches!(*p, ")" | "]" | "}" | "++" | "--"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(src: &str) -> f64 {
        match tokenize(src).unwrap().as_slice() {
            [Tok::Num(n)] => *n,
            other => panic!("{src}: {other:?}"),
        }
    }

    fn text(src: &str) -> String {
        match tokenize(src).unwrap().as_slice() {
            [Tok::Str(s)] => s.clone(),
            other => panic!("{src}: {other:?}"),
        }
    }

    #[test]
    fn numbers_in_every_notation() {
        assert_eq!(num("0x1F"), 31.0);
        assert_eq!(num("0o17"), 15.0);
        assert_eq!(num("0b101"), 5.0);
        assert_eq!(num("017"), 15.0, "legacy octal");
        assert_eq!(num("019"), 19.0);
        assert_eq!(num("1_000.5e-1"), 100.05);
        assert_eq!(num(".5"), 0.5);
        assert_eq!(num("5."), 5.0);
        assert!(tokenize("1n").is_err());
        assert!(tokenize("3in").is_err());
        assert!(tokenize("1__0").is_err());
    }

    #[test]
    fn string_escapes() {
        assert_eq!(text(r"'\x41\u0042\u{43}\101\0'"), "ABCA\0");
        assert_eq!(text("'a\\\nb'"), "ab", "line continuation");
        assert_eq!(text(r#""\q\"""#), "q\"");
        assert_eq!(text(r"'\uD83D\uDE00'"), "😀");
        assert!(matches!(
            tokenize(r"'\uD83D'"),
            Err(CompileError::Unsupported(_))
        ));
        assert!(tokenize("'a\nb'").is_err());
    }

    #[test]
    fn regex_or_division_by_what_comes_before() {
        assert!(matches!(
            tokenize("a / b / c").unwrap().as_slice(),
            [_, Tok::Punct("/"), _, Tok::Punct("/"), _]
        ));
        assert_eq!(
            tokenize("x.match(/a[/]b/gi)").unwrap()[4],
            Tok::Regex("a[/]b".into(), "gi".into())
        );
        assert!(matches!(tokenize("typeof /x/").unwrap()[1], Tok::Regex(..)));
        assert!(tokenize("/a/gg").is_err());
    }

    #[test]
    fn templates_nest() {
        let tokens = tokenize("`a${ {x:1}.x + `b${c}` }d`").unwrap();
        let [Tok::Template(strings, exprs)] = tokens.as_slice() else {
            panic!("{tokens:?}")
        };
        assert_eq!(strings, &["a", "d"]);
        assert_eq!(exprs.len(), 1);
        assert!(tokenize("`a${b`").is_err());
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(
            tokenize("1 /* two */ // three").unwrap(),
            vec![Tok::Num(1.0)]
        );
        assert_eq!(tokenize("a?.5:1").unwrap()[1], Tok::Punct("?"));
    }
}
