//! Permissions: deepstream's Valve rules from permissions.yml.
pub mod expr;
pub mod rules;
