//! Permissions: deepstream's Valve rules from permissions.yml, or a plugin given in code.
pub mod js;
pub mod kinds;
pub mod plugin;
pub mod rules;
