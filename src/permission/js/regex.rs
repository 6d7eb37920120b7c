//! JavaScript regular expressions for `.match`: a JS pattern is translated into the `regex`
//! crate's syntax with JS meanings (`\d`, `\w`, `\s`, `.` and `\b` as JavaScript defines them).
//! What the crate cannot match the JavaScript way (lookaround, backreferences, strings whose
//! UTF-16 units a pattern would split) is refused, never guessed.

use std::fmt;

pub enum RegexError {
    /// JavaScript refuses the pattern too.
    Syntax(String),
    /// Valid JavaScript that corestream does not evaluate.
    Unsupported(String),
}

/// A compiled pattern with the flags that change how it is applied.
pub struct RegexLit {
    pub source: String,
    pub flags: String,
    regex: regex::Regex,
    global: bool,
    unicode: bool,
    multiline: bool,
    ignore_case: bool,
    /// Without the `u` flag JavaScript matches UTF-16 units: this pattern could tell one
    /// astral character from two units, so such subjects are refused.
    unit_sensitive: bool,
    named_groups: Vec<Option<String>>,
}

impl fmt::Debug for RegexLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/{}", self.source, self.flags)
    }
}

impl PartialEq for RegexLit {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.flags == other.flags
    }
}

/// JavaScript's `\s`: WhiteSpace and LineTerminator.
const JS_SPACE: &str = r"\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
const JS_WORD: &str = "0-9A-Za-z_";

/// Characters whose case-insensitive matching differs between JavaScript and the crate.
const CASE_EXOTIC: &[char] = &[
    '\u{17f}', '\u{212a}', '\u{212b}', '\u{1e9e}', '\u{df}', '\u{130}', '\u{131}', '\u{3c2}',
    '\u{1fbe}', '\u{345}',
];

/// What one `String.prototype.match` returns.
pub enum MatchResult {
    None,
    /// Without `g`: the match and its groups (`None` for a group that took no part), its
    /// index in UTF-16 units, and the named groups.
    One {
        groups: Vec<Option<String>>,
        index: usize,
        named: Vec<(String, Option<String>)>,
        has_named: bool,
    },
    /// With `g`: every match.
    All(Vec<String>),
}

fn syntax(msg: &str) -> RegexError {
    RegexError::Syntax(msg.into())
}

fn unsupported(msg: &str) -> RegexError {
    RegexError::Unsupported(msg.into())
}

impl RegexLit {
    pub fn compile(source: &str, flags: &str) -> Result<RegexLit, RegexError> {
        for flag in flags.chars() {
            match flag {
                'g' | 'i' | 'm' | 's' | 'u' => {}
                'd' | 'y' | 'v' => {
                    return Err(RegexError::Unsupported(format!("the '{flag}' flag")))
                }
                _ => return Err(syntax("invalid flags")),
            }
        }
        let unicode = flags.contains('u');
        let mut translated = Translation {
            chars: source.chars().collect(),
            pos: 0,
            out: String::new(),
            unicode,
            dot_all: flags.contains('s'),
            unit_sensitive: false,
            named_groups: Vec::new(),
        };
        translated.pattern()?;
        let mut pattern = String::new();
        if flags.contains('i') {
            pattern.push_str("(?i)");
        }
        if flags.contains('m') {
            pattern.push_str("(?m)");
        }
        pattern.push_str(&translated.out);
        let regex = crate::core::bounded_regex(&pattern)
            .map_err(|e| RegexError::Unsupported(format!("cannot be compiled here: {e}")))?;
        Ok(RegexLit {
            source: source.to_string(),
            flags: flags.to_string(),
            regex,
            global: flags.contains('g'),
            unicode,
            multiline: flags.contains('m'),
            ignore_case: flags.contains('i'),
            unit_sensitive: translated.unit_sensitive,
            named_groups: translated.named_groups,
        })
    }

    pub fn has_flag(&self, flag: char) -> bool {
        self.flags.contains(flag)
    }

    /// Whether matching `subject` here gives what JavaScript gives.
    fn exact_for(&self, subject: &str) -> bool {
        let astral = subject.chars().any(|c| c > '\u{ffff}');
        if astral && !self.unicode && (self.unit_sensitive || self.global) {
            return false;
        }
        if self.multiline && subject.contains(['\r', '\u{2028}', '\u{2029}']) {
            return false;
        }
        !(self.ignore_case && (subject.contains(CASE_EXOTIC) || self.source.contains(CASE_EXOTIC)))
    }

    /// `subject.match(this)`; `Err` where the answer could differ from JavaScript's.
    pub fn match_in(&self, subject: &str) -> Result<MatchResult, String> {
        if !self.exact_for(subject) {
            return Err(format!(
                "/{}/{} cannot be matched exactly against this string",
                self.source, self.flags
            ));
        }
        if self.global {
            let all: Vec<String> = self
                .regex
                .find_iter(subject)
                .map(|m| m.as_str().to_string())
                .collect();
            return Ok(if all.is_empty() {
                MatchResult::None
            } else {
                MatchResult::All(all)
            });
        }
        let Some(caps) = self.regex.captures(subject) else {
            return Ok(MatchResult::None);
        };
        let groups: Vec<Option<String>> = caps
            .iter()
            .map(|g| g.map(|m| m.as_str().to_string()))
            .collect();
        let start = caps.get(0).map_or(0, |m| m.start());
        let index = subject[..start].encode_utf16().count();
        let named = self
            .named_groups
            .iter()
            .zip(groups.iter().skip(1))
            .filter_map(|(name, value)| name.clone().map(|n| (n, value.clone())))
            .collect();
        Ok(MatchResult::One {
            groups,
            index,
            named,
            has_named: self.named_groups.iter().any(Option::is_some),
        })
    }
}

struct Translation {
    chars: Vec<char>,
    pos: usize,
    out: String,
    unicode: bool,
    dot_all: bool,
    unit_sensitive: bool,
    /// One entry per capture group, with its name if it has one.
    named_groups: Vec<Option<String>>,
}

fn literal(c: char, out: &mut String) {
    if c.is_ascii_punctuation() || c == ' ' {
        out.push('\\');
        out.push(c);
    } else if c.is_control() || c.is_whitespace() {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    } else {
        out.push(c);
    }
}

impl Translation {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn starts_with(&self, text: &str) -> bool {
        text.chars()
            .enumerate()
            .all(|(i, c)| self.peek(i) == Some(c))
    }

    fn push_literal(&mut self, c: char) {
        if c > '\u{ffff}' && !self.unicode {
            self.unit_sensitive = true;
        }
        literal(c, &mut self.out);
    }

    fn pattern(&mut self) -> Result<(), RegexError> {
        let mut depth = 0usize;
        // Whether the last thing written can take a quantifier.
        let mut atom = false;
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            match c {
                '\\' => atom = self.escape()?,
                '[' => {
                    self.class()?;
                    atom = true;
                }
                '.' => {
                    self.unit_sensitive |= !self.unicode;
                    if self.dot_all {
                        self.out.push_str(r"[\x{0}-\x{10FFFF}]");
                    } else {
                        self.out.push_str(r"[^\n\r\x{2028}\x{2029}]");
                    }
                    atom = true;
                }
                '(' => {
                    if self.starts_with("?:") {
                        self.pos += 2;
                        self.out.push_str("(?:");
                    } else if self.starts_with("?=")
                        || self.starts_with("?!")
                        || self.starts_with("?<=")
                        || self.starts_with("?<!")
                    {
                        return Err(unsupported("lookahead and lookbehind"));
                    } else if self.starts_with("?<") {
                        self.pos += 2;
                        let mut name = String::new();
                        while let Some(n) = self.peek(0).filter(|n| *n != '>') {
                            if !(super::lex::is_id_part(n)) {
                                return Err(syntax("invalid capture group name"));
                            }
                            name.push(n);
                            self.pos += 1;
                        }
                        if self.peek(0) != Some('>')
                            || name.is_empty()
                            || name.starts_with(|c: char| c.is_ascii_digit())
                        {
                            return Err(syntax("invalid capture group name"));
                        }
                        if self.named_groups.iter().flatten().any(|n| *n == name) {
                            return Err(syntax("duplicate capture group name"));
                        }
                        self.pos += 1;
                        self.out.push_str(&format!("(?<{name}>"));
                        self.named_groups.push(Some(name));
                    } else if self.peek(0) == Some('?') {
                        return Err(syntax("invalid group"));
                    } else {
                        self.out.push('(');
                        self.named_groups.push(None);
                    }
                    depth += 1;
                    atom = false;
                    continue;
                }
                ')' => {
                    if depth == 0 {
                        return Err(syntax("unmatched ')'"));
                    }
                    depth -= 1;
                    self.out.push(')');
                    atom = true;
                }
                '*' | '+' | '?' => {
                    if !atom {
                        return Err(syntax("nothing to repeat"));
                    }
                    self.out.push(c);
                    if self.peek(0) == Some('?') {
                        self.pos += 1;
                        self.out.push('?');
                    }
                    atom = false;
                }
                '{' => match self.quantifier()? {
                    Some(q) => {
                        if !atom {
                            return Err(syntax("nothing to repeat"));
                        }
                        self.out.push_str(&q);
                        if self.peek(0) == Some('?') {
                            self.pos += 1;
                            self.out.push('?');
                        }
                        atom = false;
                    }
                    None if self.unicode => return Err(syntax("lone quantifier brackets")),
                    None => {
                        self.out.push_str(r"\{");
                        atom = true;
                    }
                },
                '}' | ']' if self.unicode => return Err(syntax("lone quantifier brackets")),
                '^' | '$' => {
                    self.out.push(c);
                    atom = false;
                }
                '|' => {
                    self.out.push('|');
                    atom = false;
                }
                c => {
                    self.push_literal(c);
                    atom = true;
                }
            }
        }
        if depth != 0 {
            return Err(syntax("unterminated group"));
        }
        Ok(())
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor (after `{`), or `None` when the brace is literal.
    fn quantifier(&mut self) -> Result<Option<String>, RegexError> {
        let start = self.pos;
        let read = |t: &mut Self| {
            let mut n = String::new();
            while let Some(d) = t.peek(0).filter(char::is_ascii_digit) {
                n.push(d);
                t.pos += 1;
            }
            n
        };
        let min = read(self);
        let mut max = None;
        if self.peek(0) == Some(',') {
            self.pos += 1;
            max = Some(read(self));
        }
        if min.is_empty() || self.peek(0) != Some('}') {
            self.pos = start;
            return Ok(None);
        }
        self.pos += 1;
        let parse = |n: &str| n.parse::<u64>().unwrap_or(u64::MAX);
        if let Some(max) = max.as_deref().filter(|m| !m.is_empty()) {
            if parse(max) < parse(&min) {
                return Err(syntax("numbers out of order in {} quantifier"));
            }
        }
        if parse(&min) > 1000
            || max
                .as_deref()
                .is_some_and(|m| !m.is_empty() && parse(m) > 1000)
        {
            return Err(unsupported("repetition counts over 1000"));
        }
        Ok(Some(match max {
            None => format!("{{{min}}}"),
            Some(max) => format!("{{{min},{max}}}"),
        }))
    }

    fn hex(&mut self, count: usize) -> Option<u32> {
        let mut value = 0;
        for i in 0..count {
            value = value * 16 + self.peek(i)?.to_digit(16)?;
        }
        self.pos += count;
        Some(value)
    }

    /// `\u` escapes: a code point, pairing surrogates; `None` when the text is not one.
    fn unicode_escape(&mut self) -> Result<Option<char>, RegexError> {
        if self.unicode && self.peek(0) == Some('{') {
            let value = super::lex::braced_code_point(&self.chars, &mut self.pos)
                .ok_or_else(|| syntax("invalid Unicode escape"))?;
            return char::from_u32(value)
                .map(Some)
                .ok_or_else(|| unsupported("lone surrogates"));
        }
        let Some(unit) = self.hex(4) else {
            return if self.unicode {
                Err(syntax("invalid Unicode escape"))
            } else {
                Ok(None)
            };
        };
        if (0xd800..0xdc00).contains(&unit) && self.starts_with("\\u") {
            let save = self.pos;
            self.pos += 2;
            if let Some(low) = self.hex(4).filter(|l| (0xdc00..0xe000).contains(l)) {
                let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                return Ok(char::from_u32(code));
            }
            self.pos = save;
        }
        char::from_u32(unit)
            .map(Some)
            .ok_or_else(|| unsupported("lone surrogates"))
    }

    /// The class an escape such as `\d` stands for, as a bracketed class.
    fn class_escape(&mut self, c: char) -> Option<String> {
        let class = match c {
            'd' => "[0-9]".to_string(),
            'D' => "[^0-9]".to_string(),
            'w' => format!("[{JS_WORD}]"),
            'W' => format!("[^{JS_WORD}]"),
            's' => format!("[{JS_SPACE}]"),
            'S' => format!("[^{JS_SPACE}]"),
            _ => return None,
        };
        if c.is_ascii_uppercase() {
            self.unit_sensitive |= !self.unicode;
        }
        Some(class)
    }

    /// A character escape common to patterns and classes; `Ok(None)` if `c` is not one.
    fn char_escape(&mut self, c: char) -> Result<Option<char>, RegexError> {
        Ok(Some(match c {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            'f' => '\u{c}',
            '0' if !self.peek(0).is_some_and(|d| d.is_ascii_digit()) => '\0',
            'c' => match self.peek(0).filter(char::is_ascii_alphabetic) {
                Some(letter) => {
                    self.pos += 1;
                    char::from(letter as u8 % 32)
                }
                None => return Err(unsupported("\\c without a letter")),
            },
            'x' => match self.hex(2) {
                Some(v) => char::from_u32(v).unwrap_or('\0'),
                None if self.unicode => return Err(syntax("invalid escape")),
                None => 'x',
            },
            'u' => self.unicode_escape()?.unwrap_or('u'),
            '1'..='9' | '0' => return Err(unsupported("backreferences and octal escapes")),
            'k' => return Err(unsupported("named backreferences")),
            'p' | 'P' if self.unicode => return Ok(None),
            c if self.unicode && !"^$\\.*+?()[]{}|/-".contains(c) => {
                return Err(syntax("invalid escape"))
            }
            // Outside unicode mode any other escaped character stands for itself.
            c => c,
        }))
    }

    /// After a `\` outside a class; returns whether it wrote something a quantifier can take.
    fn escape(&mut self) -> Result<bool, RegexError> {
        let Some(c) = self.peek(0) else {
            return Err(syntax("\\ at end of pattern"));
        };
        self.pos += 1;
        if let Some(class) = self.class_escape(c) {
            self.out.push_str(&class);
            return Ok(true);
        }
        match c {
            'b' => {
                self.out.push_str(r"(?-u:\b)");
                return Ok(false);
            }
            'B' => {
                self.out.push_str(r"(?-u:\B)");
                return Ok(false);
            }
            'p' | 'P' if self.unicode => {
                self.property(c)?;
                return Ok(true);
            }
            _ => {}
        }
        if let Some(ch) = self.char_escape(c)? {
            self.push_literal(ch);
        }
        Ok(true)
    }

    /// `\p{...}` in unicode mode, passed to the crate, which knows the same property names.
    fn property(&mut self, c: char) -> Result<(), RegexError> {
        if self.peek(0) != Some('{') {
            return Err(syntax("invalid property name"));
        }
        let mut name = String::new();
        self.pos += 1;
        while let Some(n) = self.peek(0).filter(|n| *n != '}') {
            if !(n.is_ascii_alphanumeric() || n == '_' || n == '=') {
                return Err(syntax("invalid property name"));
            }
            name.push(n);
            self.pos += 1;
        }
        if self.peek(0) != Some('}') {
            return Err(syntax("invalid property name"));
        }
        self.pos += 1;
        self.out.push_str(&format!("\\{c}{{{name}}}"));
        Ok(())
    }

    /// A class after `[`, written as a bracketed class with JavaScript's meanings.
    fn class(&mut self) -> Result<(), RegexError> {
        let negated = self.peek(0) == Some('^');
        if negated {
            self.pos += 1;
            self.unit_sensitive |= !self.unicode;
        }
        let mut items = String::new();
        let mut empty = true;
        // Whether the last item was a class escape such as `\d`: a `-` after it is literal.
        let mut after_class = false;
        loop {
            let Some(c) = self.peek(0) else {
                return Err(syntax("unterminated character class"));
            };
            self.pos += 1;
            match c {
                ']' => break,
                '\\' => {
                    let Some(e) = self.peek(0) else {
                        return Err(syntax("\\ at end of pattern"));
                    };
                    self.pos += 1;
                    if let Some(class) = self.class_escape(e) {
                        items.push_str(&class);
                        after_class = true;
                        empty = false;
                        continue;
                    }
                    if matches!(e, 'p' | 'P') && self.unicode {
                        let before = std::mem::take(&mut self.out);
                        self.property(e)?;
                        items.push_str(&std::mem::replace(&mut self.out, before));
                        after_class = true;
                        empty = false;
                        continue;
                    }
                    let ch = if e == 'b' {
                        '\u{8}'
                    } else if e == '-' {
                        '-'
                    } else {
                        match self.char_escape(e)? {
                            Some(ch) => ch,
                            None => return Err(syntax("invalid escape")),
                        }
                    };
                    self.class_char(ch, &mut items);
                }
                '-' => {
                    let next_is_class = self.peek(0) == Some('\\')
                        && self.peek(1).is_some_and(|n| "dDwWsS".contains(n));
                    if empty || after_class || next_is_class || self.peek(0) == Some(']') {
                        if self.unicode && (after_class || next_is_class) {
                            return Err(syntax("invalid character class range"));
                        }
                        items.push_str(r"\-");
                    } else {
                        items.push('-');
                    }
                }
                c => self.class_char(c, &mut items),
            }
            after_class = false;
            empty = false;
        }
        if empty {
            // `[]` matches nothing and `[^]` anything.
            self.out.push_str(if negated {
                r"[\x{0}-\x{10FFFF}]"
            } else {
                r"[^\x{0}-\x{10FFFF}]"
            });
            return Ok(());
        }
        self.out.push('[');
        if negated {
            self.out.push('^');
        }
        self.out.push_str(&items);
        self.out.push(']');
        Ok(())
    }

    fn class_char(&mut self, c: char, items: &mut String) {
        if c > '\u{ffff}' && !self.unicode {
            self.unit_sensitive = true;
        }
        literal(c, items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(source: &str, flags: &str, subject: &str) -> bool {
        let lit = RegexLit::compile(source, flags).unwrap_or_else(|e| match e {
            RegexError::Syntax(m) | RegexError::Unsupported(m) => panic!("/{source}/: {m}"),
        });
        !matches!(lit.match_in(subject).unwrap(), MatchResult::None)
    }

    #[test]
    fn classes_mean_what_javascript_means() {
        assert!(!matches(r"^\d$", "", "٣"), "\\d is ASCII only");
        assert!(matches(r"^\s$", "", "\u{feff}"));
        assert!(!matches(r"^\w$", "", "é"));
        assert!(!matches("^.$", "", "\r"));
        assert!(matches("^.$", "s", "\n"));
        assert!(
            matches(r"^[\d-z]+$", "", "1-z"),
            "- after a class escape is literal"
        );
        assert!(matches(r"^[^]$", "", "\n"));
        assert!(!matches(r"[]", "", "a"));
        assert!(matches(r"a{", "", "a{"), "a lone brace is literal");
        assert!(matches(r"^\/\.\q$", "", "/.q"), "identity escapes");
        assert!(matches(r"\bfoo\b", "", "a foo b"));
        assert!(matches(r"^\u0041\x42\cJ$", "", "AB\n"));
        assert!(matches("^ABC$", "i", "abc"));
        assert!(matches(r"^\u{1F600}$", "u", "😀"));
    }

    #[test]
    fn what_cannot_be_exact_is_refused() {
        for (source, flags) in [("(?=a)", ""), (r"(a)\1", ""), ("a", "y")] {
            assert!(matches!(
                RegexLit::compile(source, flags),
                Err(RegexError::Unsupported(_))
            ));
        }
        for source in ["(", "a)", "*a", "a{2,1}", "[a"] {
            assert!(
                matches!(RegexLit::compile(source, ""), Err(RegexError::Syntax(_))),
                "{source}"
            );
        }
        // JavaScript sees two units in an emoji without the u flag.
        let dot = RegexLit::compile("^.$", "").ok().unwrap();
        assert!(dot.match_in("😀").is_err());
        assert!(matches("^.$", "u", "😀"));
    }

    #[test]
    fn groups_and_indices() {
        let lit = RegexLit::compile(r"(?<word>[a-z]+)(\d)?", "").ok().unwrap();
        let MatchResult::One {
            groups,
            index,
            named,
            ..
        } = lit.match_in("😀 abc").unwrap()
        else {
            panic!()
        };
        assert_eq!(groups, vec![Some("abc".into()), Some("abc".into()), None]);
        assert_eq!(index, 3, "UTF-16 units");
        assert_eq!(named, vec![("word".into(), Some("abc".into()))]);
        let all = RegexLit::compile(r"\d", "g").ok().unwrap();
        assert!(matches!(all.match_in("a1b2").unwrap(), MatchResult::All(v) if v == ["1", "2"]));
    }
}
