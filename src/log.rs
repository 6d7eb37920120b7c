//! The log: levels and format from config.yml (`logLevel`, the `logger` section's type and
//! `options.logLevel`), text lines or JSON lines on stderr. A disabled level costs one relaxed
//! load; every event is limited to `PER_EVENT_PER_SECOND` lines a second, so a flood of, say,
//! refused logins cannot turn into a flood of writes (the next line says how many were held back).

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
    Off = 4,
}

impl Level {
    /// deepstream's names (`DEBUG`, `INFO`, `WARN`, `ERROR`, `OFF`) and numbers (0 to 4).
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.trim().to_ascii_uppercase().as_str() {
            "DEBUG" | "0" => Level::Debug,
            "INFO" | "1" => Level::Info,
            "WARN" | "2" => Level::Warn,
            "ERROR" | "3" => Level::Error,
            "OFF" | "4" => Level::Off,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Off => "OFF",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

/// Lines one event may write per second.
pub const PER_EVENT_PER_SECOND: u32 = 20;

pub fn configure(level: Level, format: Format) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    JSON.store(u8::from(format == Format::Json), Ordering::Relaxed);
}

/// Whether `level` is written; check it before building a message.
#[inline]
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level as u8 >= LEVEL.load(Ordering::Relaxed)
}

/// Per event: lines in the current second, and lines held back in the one before.
struct Budget {
    second: u64,
    counts: Vec<(&'static str, u32, u32)>,
}

static BUDGET: Mutex<Budget> = Mutex::new(Budget {
    second: 0,
    counts: Vec::new(),
});

/// Whether `event` may write in `second`, and how many of its lines were held back before.
fn admit(event: &'static str, second: u64) -> Option<u32> {
    let mut budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    if budget.second != second {
        budget.second = second;
        for (_, count, held) in budget.counts.iter_mut() {
            *held += count.saturating_sub(PER_EVENT_PER_SECOND);
            *count = 0;
        }
        // Events quiet for a second are forgotten, so the list stays as small as the set of
        // events that are logging.
        budget.counts.retain(|(_, _, held)| *held > 0);
    }
    let slot = match budget.counts.iter().position(|(e, _, _)| *e == event) {
        Some(i) => i,
        None => {
            budget.counts.push((event, 0, 0));
            budget.counts.len() - 1
        }
    };
    let (_, count, held) = &mut budget.counts[slot];
    *count += 1;
    (*count <= PER_EVENT_PER_SECOND).then(|| std::mem::take(held))
}

fn now() -> (u64, u128) {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.as_millis())
}

/// One line, as the configured format has it.
pub fn line(level: Level, event: &str, message: &str, millis: u128, format: Format) -> String {
    match format {
        Format::Json => format!(
            "{{\"time\":{millis},\"level\":\"{}\",\"event\":{},\"message\":{}}}",
            level.name().to_ascii_lowercase(),
            serde_json::to_string(event).unwrap_or_default(),
            serde_json::to_string(message).unwrap_or_default()
        ),
        Format::Text => format!("{millis} {} {event} {message}", level.name()),
    }
}

/// Writes one line if `level` is on and `event` is within its budget.
pub fn write(level: Level, event: &'static str, message: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let (second, millis) = now();
    let Some(held) = admit(event, second) else {
        return;
    };
    let format = if JSON.load(Ordering::Relaxed) == 1 {
        Format::Json
    } else {
        Format::Text
    };
    let mut text = message.to_string();
    if held > 0 {
        text.push_str(&format!(" ({held} more like this were not logged)"));
    }
    eprintln!("{}", line(level, event, &text, millis, format));
}

/// `log!(Level::Warn, "EVENT_NAME", "text {}", x)`: formats only when the level is on.
/// Warnings and errors by event since start, logged or not (deepstream's monitoring counts
/// them as `errors`).
static PROBLEMS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

/// Counts a warning or error (called by `log!` whatever the level in force).
pub fn count_problem(level: Level, event: &'static str) {
    if level < Level::Warn || level == Level::Off {
        return;
    }
    let mut problems = PROBLEMS.lock().unwrap_or_else(|e| e.into_inner());
    match problems.iter_mut().find(|(e, _)| *e == event) {
        Some((_, n)) => *n += 1,
        None => problems.push((event, 1)),
    }
}

/// Warnings and errors counted so far, by event.
pub fn problems() -> Vec<(&'static str, u64)> {
    PROBLEMS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[macro_export]
macro_rules! log {
    ($level:expr, $event:expr, $($arg:tt)+) => {{
        $crate::log::count_problem($level, $event);
        if $crate::log::enabled($level) {
            $crate::log::write($level, $event, format_args!($($arg)+));
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_formats() {
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("3"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
        assert_eq!(
            line(Level::Warn, "AUTH", "refused \"x\"", 5, Format::Json),
            r#"{"time":5,"level":"warn","event":"AUTH","message":"refused \"x\""}"#
        );
        assert_eq!(
            line(Level::Info, "START", "up", 5, Format::Text),
            "5 INFO START up"
        );
    }

    #[test]
    fn a_flood_of_one_event_is_held_back_and_counted() {
        let event = "TEST_FLOOD";
        let admitted = (0..100).filter(|_| admit(event, 7).is_some()).count();
        assert_eq!(admitted, PER_EVENT_PER_SECOND as usize);
        assert_eq!(
            admit("TEST_OTHER", 7),
            Some(0),
            "other events have their own budget"
        );
        // The next second's first line says how many were held back.
        assert_eq!(admit(event, 8), Some(100 - PER_EVENT_PER_SECOND));
        assert_eq!(admit(event, 8), Some(0));
    }
}
