//! Valve rules as JavaScript: the reference compiles each rule with `new Function` and runs
//! it; here a rule is parsed once into a tree (`parse`) and evaluated with JavaScript's
//! semantics against borrowed message data (`eval`). What corestream cannot evaluate
//! exactly is an error, and errors deny.

mod eval;
mod lex;
mod methods;
mod number;
mod parse;
mod props;
mod regex;
mod value;

pub use eval::{describe, run, Context, Outcome};
pub use parse::{Expr, Var};
pub use value::Val;

/// Longest rule text accepted.
pub const MAX_RULE_LEN: usize = 4096;
/// Deepest rule tree accepted: parsing, evaluating and dropping a rule recurse this deep.
pub const MAX_RULE_DEPTH: usize = 64;
/// Bytes of strings one evaluation may build (`data.s + data.s + ...`).
pub const MAX_EVAL_BYTES: usize = 4 << 20;

/// Why a rule does not compile.
#[derive(Debug, Clone, PartialEq)]
pub enum CompileError {
    /// Not JavaScript: the reference refuses it too.
    Syntax(String),
    /// What the reference refuses by its own checks: `new`, user functions, other calls.
    Forbidden(String),
    /// Valid JavaScript that corestream does not evaluate: the rule loads and denies.
    Unsupported(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Syntax(m) => write!(f, "SyntaxError: {m}"),
            CompileError::Forbidden(m) => f.write_str(m),
            CompileError::Unsupported(m) => write!(f, "corestream does not evaluate {m}"),
        }
    }
}

/// Why an evaluation stopped; each makes the rule fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Type(String),
    Reference(String),
    Syntax(String),
    /// `_()` of something that is no string: the reference fails the rule at once, even
    /// while other records are still loading.
    CrossRef(String),
    /// The answer could differ from the one JavaScript gives.
    Inexact(String),
    /// The rule did more work than `maxRuleIterations` allows.
    Budget,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Type(m) => write!(f, "TypeError: {m}"),
            Fault::Reference(m) => write!(f, "ReferenceError: {m}"),
            Fault::Syntax(m) => write!(f, "SyntaxError: {m}"),
            Fault::CrossRef(m) => f.write_str(m),
            Fault::Inexact(m) => write!(f, "corestream cannot evaluate {m} exactly"),
            Fault::Budget => f.write_str("the rule did more work than allowed"),
        }
    }
}

/// Parses a rule; warnings name what will make it fail each time it runs.
pub fn parse(src: &str) -> Result<(Expr, Vec<String>), CompileError> {
    let mut warnings = Vec::new();
    let expr = parse::parse(src, &mut warnings)?;
    Ok((expr, warnings))
}
