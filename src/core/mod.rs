//! The realtime state machines, without I/O or clocks: records, subscriptions, listening,
//! RPC routing and presence. Time is passed in as milliseconds.
pub mod ids;
pub mod interest;
pub mod json;
pub mod jsonpath;
pub mod listen;
pub mod presence;
pub mod records;
pub mod rpc;

use bytes::Bytes;

/// Which subscription space a name lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Event = 0,
    Record = 1,
}

/// A copy that owns its memory. Names arrive as slices of a connection's read buffer; a
/// long-lived map must not keep that whole buffer alive through one of them.
pub fn detach(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

/// The key to `entry()` a map with: the caller's slice if the name is already there (the map
/// keeps its own key), else a detached copy.
pub fn map_key<V, S: std::hash::BuildHasher>(
    map: &std::collections::HashMap<Bytes, V, S>,
    name: &Bytes,
) -> Bytes {
    if map.contains_key(name) {
        name.clone()
    } else {
        detach(name)
    }
}

/// Longest regex source accepted from a client (listen patterns, `.match` in rules).
pub const MAX_REGEX_LEN: usize = 1024;

/// Compiles a regex from client input with small bounds on its compiled size and its lazy
/// DFA cache, so that no pattern can take megabytes or a long compile.
pub fn bounded_regex(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(format!("longer than {MAX_REGEX_LEN} bytes"));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(256 * 1024)
        .dfa_size_limit(256 * 1024)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_regexes_are_bounded() {
        assert!(super::bounded_regex("^prices/.*").is_ok());
        assert!(super::bounded_regex(&"a".repeat(2000)).is_err());
        assert!(
            super::bounded_regex("(a{1,100}){1,100}").is_err(),
            "compiles too large"
        );
    }
}
