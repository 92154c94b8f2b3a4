//! Structured logging through the host's `log` import.
//!
//! Lines land in the server log and in the call's record, tagged with the plugin reference
//! and version. The host bounds how much one call may log, so do not log in hot loops.
//!
//! ```no_run
//! use stormhook_sdk::log;
//!
//! log::info("starting");
//! log::warn_with("slow upstream", &[("host", "example.com"), ("ms", "950")]);
//! ```
//!
//! `print!` and `eprint!` also work (stdout and stderr are captured by the host), but they
//! are unstructured and buffered: flush stdout yourself, there is no process exit to do it.

use crate::bindings::log as wit;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// A failure.
    Error,
}

impl From<Level> for wit::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => Self::Trace,
            Level::Debug => Self::Debug,
            Level::Info => Self::Info,
            Level::Warn => Self::Warn,
            Level::Error => Self::Error,
        }
    }
}

/// Logs one line at `level` with key/value `fields`.
pub fn log(level: Level, message: impl AsRef<str>, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|&(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    wit::log(level.into(), message.as_ref(), &fields);
}

macro_rules! level_functions {
    ($($level:ident: $plain:ident, $with:ident;)*) => {$(
        #[doc = concat!("Logs one line at [`Level::", stringify!($level), "`].")]
        pub fn $plain(message: impl AsRef<str>) {
            log(Level::$level, message, &[]);
        }

        #[doc = concat!(
            "Logs one line at [`Level::", stringify!($level), "`] with key/value fields."
        )]
        pub fn $with(message: impl AsRef<str>, fields: &[(&str, &str)]) {
            log(Level::$level, message, fields);
        }
    )*};
}

level_functions! {
    Trace: trace, trace_with;
    Debug: debug, debug_with;
    Info: info, info_with;
    Warn: warn, warn_with;
    Error: error, error_with;
}
