//! What permissions decide about, in Valve's words: the kind of name (a section of
//! permissions.yml) and the action on it. Shared by the rules and by permission plugins.

/// The kind of name: a section of permissions.yml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Record,
    Event,
    Rpc,
    Presence,
}

/// The action on a name, as permissions.yml names it (`create`, `write`, `read`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleType {
    Create,
    Write,
    Read,
    Delete,
    Listen,
    Notify,
    Publish,
    Subscribe,
    Provide,
    Request,
    Allow,
}
