//! Permissions: deepstream's Valve rules from permissions.yml.
pub mod js;
pub mod rules;
