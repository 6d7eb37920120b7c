//! corestream: a thread-per-core realtime server speaking the deepstream protocol.
pub mod api;
pub mod auth;
pub mod bridge;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod log;
pub mod monitoring;
pub mod net;
pub mod permission;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod store;
pub mod tls;

pub use auth::plugin::{Authentication, BoxFuture, Login, LoginRequest, Refusal};
pub use config::Config;
pub use permission::plugin::{Permission, PermissionRequest};
pub use permission::rules::{RuleType, Section};
pub use server::{Server, ServerBuilder, StartError};
pub use store::plugin::{Record, Storage};
