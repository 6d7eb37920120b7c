//! What keeps this node from serving right now, process-wide: a dependency that is down (the
//! embedded store refusing writes, ...). Each part reports when it goes down and when it is
//! back; the readiness answer (`<healthCheckPath>/ready`) lists what is down, and each change
//! is logged once, not per request.

use std::sync::Mutex;

static DOWN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// `part` cannot serve, because of `why`. True the first time (until it is back): the caller
/// logs it then.
pub fn down(part: &str, why: &str) -> bool {
    let mut down = DOWN.lock().unwrap_or_else(|e| e.into_inner());
    match down.iter_mut().find(|(p, _)| p == part) {
        Some((_, reason)) => {
            *reason = why.to_string();
            false
        }
        None => {
            down.push((part.to_string(), why.to_string()));
            true
        }
    }
}

/// `part` serves again. True if it was down: the caller logs it.
pub fn back(part: &str) -> bool {
    let mut down = DOWN.lock().unwrap_or_else(|e| e.into_inner());
    let before = down.len();
    down.retain(|(p, _)| p != part);
    down.len() != before
}

/// What is down now, with why: empty when the node is ready.
pub fn problems() -> Vec<(String, String)> {
    DOWN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_reported_down_once_and_back_once() {
        assert!(down("test-part", "disk full"));
        assert!(!down("test-part", "still full"));
        assert!(problems()
            .iter()
            .any(|(p, why)| p == "test-part" && why == "still full"));
        assert!(back("test-part"));
        assert!(!back("test-part"));
        assert!(!problems().iter().any(|(p, _)| p == "test-part"));
    }
}
