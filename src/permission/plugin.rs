//! Permissions written in Rust: deepstream's permission plugin (`canPerformAction`) as a trait.
//! A server built with `Server::builder(..).permissions(..)` asks it instead of Valve rules.
//!
//! It is asked on the shard, for every message that Valve would check, so it must answer at
//! once (no I/O). A connection remembers each answer for a name and an action, so an answer
//! may depend only on the user, the name and the action, as a Valve rule that reads no data.

use super::kinds::{RuleType, Section};

/// One action to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionRequest<'a> {
    /// The login id ("open" for an anonymous login).
    pub user: &'a str,
    /// Whether the login was checked (false for open auth's anonymous logins).
    pub authenticated: bool,
    /// The kind of name: record, event, RPC or presence.
    pub section: Section,
    /// What is done to it, in Valve's words: `create`, `write`, `read`, `delete`, `listen`,
    /// `notify` for records; `publish`, `subscribe`, `listen` for events; `provide`, `request`
    /// for RPCs; `allow` for presence.
    pub action: RuleType,
    /// The record, event or RPC name (the user name for presence).
    pub name: &'a str,
}

/// Decides what each user may do.
///
/// ```
/// use corestream::{Permission, PermissionRequest};
///
/// /// Users may act only on names that contain their id.
/// struct OwnNamesOnly;
///
/// impl Permission for OwnNamesOnly {
///     fn can_perform_action(&self, request: &PermissionRequest<'_>) -> bool {
///         request.authenticated && request.name.contains(request.user)
///     }
/// }
/// ```
pub trait Permission: Send + Sync + 'static {
    /// Named in the start line and in `check-config`.
    fn description(&self) -> String {
        "a custom permission plugin".into()
    }

    /// Whether the action is allowed; a refusal reaches the client as MESSAGE_DENIED.
    fn can_perform_action(&self, request: &PermissionRequest<'_>) -> bool;
}

/// A permission plugin inside the compiled permissions.
#[derive(Clone)]
pub struct PermissionPlugin(pub std::sync::Arc<dyn Permission>);

impl std::fmt::Debug for PermissionPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.description())
    }
}
