//! permissions.yml: sections of name patterns (`*`, `$variables`) with one rule per action type.
//! For a name, the rule of the longest matching pattern that defines that type applies, as in
//! deepstream's Valve.

use super::js::{self, CompileError, Context, Expr, Var};
use regex::Regex;
use serde_yaml::Value as Yaml;
use simd_json::OwnedValue;
use std::sync::atomic::{AtomicBool, Ordering};

pub use super::kinds::{RuleType, Section};

impl RuleType {
    fn parse(section: Section, name: &str) -> Option<RuleType> {
        use RuleType::*;
        let ty = match name {
            "create" => Create,
            "write" => Write,
            "read" => Read,
            "delete" => Delete,
            "listen" => Listen,
            "notify" => Notify,
            "publish" => Publish,
            "subscribe" => Subscribe,
            "provide" => Provide,
            "request" => Request,
            "allow" => Allow,
            _ => return None,
        };
        let fits = match section {
            Section::Record => matches!(ty, Create | Write | Read | Delete | Listen | Notify),
            Section::Event => matches!(ty, Publish | Subscribe | Listen),
            Section::Rpc => matches!(ty, Provide | Request),
            Section::Presence => ty == Allow,
        };
        fits.then_some(ty)
    }

    /// Rule types whose messages carry data (the reference's RULE_TYPES table).
    fn supports_data(self) -> bool {
        matches!(
            self,
            RuleType::Write | RuleType::Publish | RuleType::Subscribe | RuleType::Request
        )
    }

    /// Rule types evaluated where the record lives, so `oldData` is at hand.
    fn supports_old_data(self) -> bool {
        matches!(self, RuleType::Write | RuleType::Delete)
    }
}

#[derive(Debug)]
pub enum Rule {
    Const(bool),
    Expr {
        expr: Expr,
        uses_data: bool,
        uses_old_data: bool,
        uses_now: bool,
        /// Reads other records with `_()`.
        uses_refs: bool,
        /// Where the rule is written, for the log.
        origin: String,
        /// A failure of this rule is logged once, not per message.
        failure_logged: AtomicBool,
    },
    /// Valid JavaScript corestream does not evaluate: the rule fails each time, as a
    /// warning at start-up said.
    Unsupported(String),
}

/// What a rule decided.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleVerdict {
    Allow,
    Deny,
    /// The rule failed (a TypeError, or what corestream cannot evaluate exactly): the
    /// reference answers MESSAGE_PERMISSION_ERROR.
    Error(String),
    /// The rule reads these records with `_()`; ask again once they are known.
    Need(Vec<String>),
}

impl Rule {
    pub fn uses_data(&self) -> bool {
        matches!(
            self,
            Rule::Expr {
                uses_data: true,
                ..
            }
        )
    }

    pub fn uses_old_data(&self) -> bool {
        matches!(
            self,
            Rule::Expr {
                uses_old_data: true,
                ..
            }
        )
    }

    pub fn uses_refs(&self) -> bool {
        matches!(
            self,
            Rule::Expr {
                uses_refs: true,
                ..
            }
        )
    }

    /// True when the result depends only on the name and the user, so it may be cached.
    pub fn cacheable(&self) -> bool {
        match self {
            Rule::Const(_) | Rule::Unsupported(_) => true,
            Rule::Expr {
                uses_data,
                uses_old_data,
                uses_now,
                uses_refs,
                ..
            } => !uses_data && !uses_old_data && !uses_now && !uses_refs,
        }
    }
}

#[derive(Debug)]
struct PathRules {
    path: String,
    regex: Regex,
    variables: Vec<String>,
    rules: Vec<(RuleType, Rule)>,
}

/// Who is asking, as rules see them.
#[derive(Debug, Clone, Default)]
pub struct User {
    /// The login id (UTF-8: it comes from a JSON string or a users file).
    pub id: bytes::Bytes,
    pub authenticated: bool,
    pub server_data: Option<OwnedValue>,
}

/// The compiled permissions of a server.
#[derive(Debug)]
pub struct Permissions {
    sections: Vec<(Section, Vec<PathRules>)>,
    max_work: u32,
    max_rule_iterations: u32,
    /// No rules at all: everything is allowed without looking.
    open: bool,
    /// Rules that load but will fail when they run (unknown names, unsupported constructs).
    warnings: Vec<String>,
    /// A plugin that decides instead of rules (`Server::builder(..).permissions(..)`).
    plugin: Option<super::plugin::PermissionPlugin>,
}

/// The rule that applies to one name, with the values of its `$variables`.
pub struct Applicable<'a> {
    pub rule: &'a Rule,
    variables: Vec<(String, String)>,
}

/// What a rule is evaluated against.
pub struct RuleInput<'a> {
    pub user: &'a User,
    pub name: &'a str,
    pub action: i32,
    pub data: Option<&'a OwnedValue>,
    pub old_data: Option<&'a OwnedValue>,
    /// Records read with `_()`, fetched beforehand.
    pub refs: &'a [(String, Option<OwnedValue>)],
    pub max_work: u32,
}

impl Applicable<'_> {
    fn context<'a>(&'a self, input: &RuleInput<'a>) -> Context<'a> {
        // Read the clock only for rules that read `now`.
        let reads_now = matches!(self.rule, Rule::Expr { uses_now: true, .. });
        let now = if reads_now {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_millis() as f64)
        } else {
            0.0
        };
        Context {
            user_id: std::str::from_utf8(&input.user.id).unwrap_or_default(),
            authenticated: input.user.authenticated,
            user_data: input.user.server_data.as_ref(),
            data: input.data,
            old_data: input.old_data,
            now,
            action: input.action,
            name: input.name,
            variables: &self.variables,
            refs: input.refs,
        }
    }

    /// Runs the rule. A value is allowed when JavaScript would find it truthy (the reference
    /// lets through anything but `false`; a rule that yields `undefined` denies here).
    pub fn check(&self, input: &RuleInput<'_>) -> RuleVerdict {
        let (expr, origin, failure_logged) = match self.rule {
            Rule::Const(true) => return RuleVerdict::Allow,
            Rule::Const(false) => return RuleVerdict::Deny,
            Rule::Unsupported(what) => {
                return RuleVerdict::Error(format!("corestream does not evaluate {what}"))
            }
            Rule::Expr {
                expr,
                origin,
                failure_logged,
                ..
            } => (expr, origin, failure_logged),
        };
        let outcome = js::run(expr, &self.context(input), input.max_work);
        // As in the reference, failures while records are still loading do not count,
        // except `_()` of a value that is no name.
        let names_a_record = !matches!(outcome.value, Err(js::Fault::CrossRef(_)));
        if !outcome.missing.is_empty() && names_a_record {
            return RuleVerdict::Need(outcome.missing);
        }
        match outcome.value {
            Ok(value) if value.truthy() => RuleVerdict::Allow,
            Ok(_) => RuleVerdict::Deny,
            Err(fault) => {
                let message = fault.to_string();
                if !failure_logged.swap(true, Ordering::Relaxed) {
                    crate::log!(
                        crate::log::Level::Warn,
                        "MESSAGE_PERMISSION_ERROR",
                        "{origin}: the rule failed for {}: {message} (logged once per rule)",
                        input.name
                    );
                }
                RuleVerdict::Error(message)
            }
        }
    }
}

fn section_of(key: &str) -> Option<Section> {
    Some(match key {
        "record" => Section::Record,
        "event" => Section::Event,
        "rpc" => Section::Rpc,
        "presence" => Section::Presence,
        _ => return None,
    })
}

fn line_of(text: &str, needle: &str) -> String {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or_else(String::new, |n| format!(" line {}:", n + 1))
}

/// `*` is any text, `$name` one path segment, everything else literal.
fn compile_path(path: &str) -> Result<(Regex, Vec<String>), String> {
    if path.is_empty() {
        return Err("path can't be empty".into());
    }
    if path.starts_with('/') {
        return Err("path can't start with /".into());
    }
    let mut pattern = String::from("^");
    let mut variables = Vec::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => pattern.push_str(".*"),
            '$' => {
                let mut var = String::from("$");
                while let Some(&n) = chars.peek() {
                    if !n.is_ascii_alphanumeric() {
                        break;
                    }
                    var.push(n);
                    chars.next();
                }
                if var.len() == 1 {
                    return Err("invalid variable name $".into());
                }
                variables.push(var);
                pattern.push_str("([^/]+)");
            }
            other => pattern.push_str(&regex::escape(&other.to_string())),
        }
    }
    pattern.push('$');
    Ok((Regex::new(&pattern).map_err(|e| e.to_string())?, variables))
}

impl Permissions {
    /// Everything allowed (no permission file configured).
    pub fn allow_all() -> Permissions {
        Permissions {
            sections: Vec::new(),
            max_work: 10_000,
            max_rule_iterations: 3,
            open: true,
            warnings: Vec::new(),
            plugin: None,
        }
    }

    /// Every action is decided by `plugin`.
    pub fn from_plugin(plugin: super::plugin::PermissionPlugin) -> Permissions {
        Permissions {
            open: false,
            plugin: Some(plugin),
            ..Permissions::allow_all()
        }
    }

    /// The plugin that decides instead of rules, if there is one.
    pub fn plugin(&self) -> Option<&super::plugin::PermissionPlugin> {
        self.plugin.as_ref()
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// How many rounds of `_()` record reads one check may take.
    pub fn max_rule_iterations(&self) -> u32 {
        self.max_rule_iterations
    }

    pub fn max_work(&self) -> u32 {
        self.max_work
    }

    /// What start-up should report about rules that load but fail when they run.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Compiles permissions.yml text; an error names the file, line, rule and what is wrong.
    pub fn parse(
        text: &str,
        origin: &str,
        max_rule_iterations: u32,
    ) -> Result<Permissions, String> {
        let yaml: Yaml = serde_yaml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let Yaml::Mapping(top) = yaml else {
            return Err(format!(
                "{origin}: expected sections record, event, rpc, presence"
            ));
        };
        let mut sections = Vec::new();
        let mut warnings = Vec::new();
        for (key, paths) in top {
            let key = key.as_str().unwrap_or_default().to_string();
            let section = section_of(&key).ok_or_else(|| {
                format!("{origin}:{} unknown section '{key}'", line_of(text, &key))
            })?;
            let Yaml::Mapping(paths) = paths else {
                return Err(format!(
                    "{origin}:{} section '{key}' must map name patterns to rules",
                    line_of(text, &key)
                ));
            };
            let mut compiled = Vec::new();
            for (path, rules) in paths {
                let path = path.as_str().unwrap_or_default().to_string();
                let (regex, variables) = compile_path(&path).map_err(|e| {
                    format!("{origin}:{} {key} '{path}': {e}", line_of(text, &path))
                })?;
                let Yaml::Mapping(rules) = rules else {
                    return Err(format!(
                        "{origin}:{} {key} '{path}' must map actions to rules",
                        line_of(text, &path)
                    ));
                };
                let mut list = Vec::new();
                for (ty, rule) in rules {
                    let ty_name = ty.as_str().unwrap_or_default().to_string();
                    let where_ = |rule_text: &str| {
                        format!(
                            "{origin}:{} {key} '{path}' {ty_name}",
                            line_of(text, rule_text)
                        )
                    };
                    let ty = RuleType::parse(section, &ty_name).ok_or_else(|| {
                        format!("{}: unknown rule type for {key}", where_(&ty_name))
                    })?;
                    let rule = match rule {
                        Yaml::Bool(b) => Rule::Const(b),
                        Yaml::String(src) => match js::parse(&src) {
                            Ok((expr, rule_warnings)) => {
                                let reads = |var: Var| expr.any(&|e| *e == Expr::Var(var.clone()));
                                let uses_data = reads(Var::Data);
                                let uses_old_data = reads(Var::OldData);
                                if uses_data && !ty.supports_data() {
                                    return Err(format!(
                                        "{} '{src}': rule {ty_name} for {key} does not support data",
                                        where_(&src)
                                    ));
                                }
                                if uses_old_data && !ty.supports_old_data() {
                                    return Err(format!(
                                        "{} '{src}': rule {ty_name} for {key} does not support oldData",
                                        where_(&src)
                                    ));
                                }
                                for warning in rule_warnings {
                                    warnings.push(format!("{} '{src}': {warning}", where_(&src)));
                                }
                                let uses_now = reads(Var::Now);
                                let uses_refs = expr
                                    .any(&|e| matches!(e, Expr::Ref(_) | Expr::Var(Var::CrossRef)));
                                Rule::Expr {
                                    expr,
                                    uses_data,
                                    uses_old_data,
                                    uses_now,
                                    uses_refs,
                                    origin: format!("{} '{src}'", where_(&src)),
                                    failure_logged: AtomicBool::new(false),
                                }
                            }
                            Err(CompileError::Unsupported(what)) => {
                                warnings.push(format!(
                                    "{} '{src}': corestream does not evaluate {what}; the rule fails each time (MESSAGE_PERMISSION_ERROR)",
                                    where_(&src)
                                ));
                                Rule::Unsupported(what)
                            }
                            Err(e) => return Err(format!("{} '{src}': {e}", where_(&src))),
                        },
                        _ => {
                            return Err(format!(
                                "{}: a rule is true, false or an expression",
                                where_(&ty_name)
                            ))
                        }
                    };
                    list.push((ty, rule));
                }
                compiled.push(PathRules {
                    path,
                    regex,
                    variables,
                    rules: list,
                });
            }
            sections.push((section, compiled));
        }
        Ok(Permissions {
            sections,
            max_work: max_rule_iterations.max(1).saturating_mul(1000),
            max_rule_iterations: max_rule_iterations.max(1),
            open: false,
            warnings,
            plugin: None,
        })
    }

    /// The rule for `ty` on `name`: the longest matching pattern that defines it. `None` denies.
    pub fn applicable(&self, section: Section, ty: RuleType, name: &str) -> Option<Applicable<'_>> {
        let paths = self
            .sections
            .iter()
            .find(|(s, _)| *s == section)
            .map(|(_, p)| p)?;
        let mut best: Option<(&PathRules, &Rule)> = None;
        for path in paths {
            let Some((_, rule)) = path.rules.iter().find(|(t, _)| *t == ty) else {
                continue;
            };
            if best.is_some_and(|(b, _)| b.path.len() > path.path.len()) {
                continue;
            }
            if path.regex.is_match(name) {
                best = Some((path, rule));
            }
        }
        let (path, rule) = best?;
        let variables = match path.regex.captures(name) {
            Some(caps) => path
                .variables
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        v.clone(),
                        caps.get(i + 1)
                            .map_or(String::new(), |m| m.as_str().to_string()),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        Some(Applicable { rule, variables })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
record:
  "*":
    create: true
    write: true
    read: true
    delete: false
  "profile/$userId":
    write: "user.id === $userId"
  "price/*":
    write: "data.price > 0 && (oldData === null || data.price >= oldData.price)"
event:
  "*":
    publish: true
    subscribe: "user.isAuthenticated"
rpc:
  "admin/*":
    provide: "user.data.role === 'admin'"
    request: false
"#;

    fn user(id: &str) -> User {
        User {
            id: bytes::Bytes::copy_from_slice(id.as_bytes()),
            authenticated: id != "open",
            server_data: None,
        }
    }

    fn allowed(p: &Permissions, section: Section, ty: RuleType, name: &str, who: &str) -> bool {
        p.applicable(section, ty, name).is_some_and(|a| {
            let user = user(who);
            let input = RuleInput {
                user: &user,
                name,
                action: 0,
                data: None,
                old_data: None,
                refs: &[],
                max_work: p.max_work(),
            };
            a.check(&input) == RuleVerdict::Allow
        })
    }

    #[test]
    fn longest_pattern_wins_and_variables_bind() {
        let p = Permissions::parse(FILE, "permissions.yml", 3).unwrap();
        assert!(allowed(
            &p,
            Section::Record,
            RuleType::Write,
            "profile/alice",
            "alice"
        ));
        assert!(!allowed(
            &p,
            Section::Record,
            RuleType::Write,
            "profile/alice",
            "bob"
        ));
        assert!(
            allowed(&p, Section::Record, RuleType::Read, "profile/alice", "bob"),
            "read falls back to *"
        );
        assert!(!allowed(
            &p,
            Section::Record,
            RuleType::Delete,
            "anything",
            "alice"
        ));
        assert!(allowed(
            &p,
            Section::Event,
            RuleType::Subscribe,
            "x",
            "alice"
        ));
        assert!(!allowed(
            &p,
            Section::Event,
            RuleType::Subscribe,
            "x",
            "open"
        ));
        assert!(!allowed(
            &p,
            Section::Rpc,
            RuleType::Request,
            "admin/reset",
            "alice"
        ));
        assert!(
            !allowed(&p, Section::Rpc, RuleType::Provide, "other", "alice"),
            "no rule denies"
        );
        assert!(p
            .applicable(Section::Record, RuleType::Write, "price/x")
            .unwrap()
            .rule
            .uses_old_data());
    }

    #[test]
    fn bad_files_name_file_line_and_rule() {
        let cases = [
            (
                "record:\n  \"*\":\n    write: \"user.id ===\"\n",
                "permissions.yml: line 3: record '*' write",
            ),
            (
                "record:\n  \"*\":\n    publish: true\n",
                "unknown rule type",
            ),
            (
                "event:\n  \"*\":\n    subscribe: \"oldData.x\"\n",
                "does not support oldData",
            ),
            (
                "rpc:\n  \"*\":\n    provide: \"data.x\"\n",
                "does not support data",
            ),
            (
                "records:\n  \"*\":\n    read: true\n",
                "unknown section 'records'",
            ),
            ("record:\n  \"/x\":\n    read: true\n", "can't start with /"),
        ];
        for (text, needle) in cases {
            let err = Permissions::parse(text, "permissions.yml", 3)
                .err()
                .unwrap_or_default();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_reference_peer_permissions_load() {
        let text = include_str!("../../tests/fixtures/reference/permissions.yml");
        let p = Permissions::parse(text, "permissions.yml", 3).unwrap();
        assert!(allowed(&p, Section::Record, RuleType::Write, "a/b", "open"));
        assert!(allowed(&p, Section::Presence, RuleType::Allow, "", "x"));
    }
}
