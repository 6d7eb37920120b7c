//! A permission plugin under which a user may act only on names that contain its user id,
//! deepstream's permission plugin example, on corestream as a library.
//!
//! `cargo run --example user_id_permissions -- --port 6020`; log in with any username (open
//! auth): `alice` may write the record `alice/profile` and emit on `chat/alice`, and is denied
//! `bob/profile` (MESSAGE_DENIED). Prints `listening on HOST:PORT` once it accepts.

mod common;

use corestream::{Permission, PermissionRequest};

/// Users act only on names that contain their id; anonymous logins act on nothing.
struct OwnNamesOnly;

impl Permission for OwnNamesOnly {
    fn description(&self) -> String {
        "user_id_permissions (names must contain the user id)".into()
    }

    fn can_perform_action(&self, request: &PermissionRequest<'_>) -> bool {
        request.authenticated && !request.user.is_empty() && request.name.contains(request.user)
    }
}

fn main() -> std::process::ExitCode {
    common::run(common::server().map(|server| server.permissions(OwnNamesOnly)))
}
