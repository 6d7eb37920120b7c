//! Wire formats, without I/O: WebSocket framing, HTTP upgrade, deepstream protobuf messages.
pub mod http;
pub mod message;
pub mod names;
pub mod pb;
pub mod ws;
