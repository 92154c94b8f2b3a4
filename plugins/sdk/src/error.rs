//! The error a plugin reports on purpose.

use std::fmt;

use crate::bindings::types;

/// A failure the plugin reports on purpose; mirrors the WIT `error` variant.
///
/// Traps (panics, deadlines, memory limits) are not errors: the host reports those itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input (payload or parameters) is not what the plugin accepts.
    InvalidInput(String),
    /// The plugin was not granted something it needs (for example datastore access).
    Denied(String),
    /// Something the plugin depends on failed (an upstream service, the datastore).
    Upstream(String),
    /// Any other failure.
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidInput`]: the payload or parameters are not acceptable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// An [`Error::Denied`]: the plugin lacks a grant it needs.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::Denied(message.into())
    }

    /// An [`Error::Upstream`]: something the plugin depends on failed.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::Upstream(message.into())
    }

    /// An [`Error::Internal`]: any other failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The WIT case name: `invalid-input`, `denied`, `upstream` or `internal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid-input",
            Self::Denied(_) => "denied",
            Self::Upstream(_) => "upstream",
            Self::Internal(_) => "internal",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m) | Self::Denied(m) | Self::Upstream(m) | Self::Internal(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

impl From<types::Error> for Error {
    fn from(error: types::Error) -> Self {
        match error {
            types::Error::InvalidInput(m) => Self::InvalidInput(m),
            types::Error::Denied(m) => Self::Denied(m),
            types::Error::Upstream(m) => Self::Upstream(m),
            types::Error::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<Error> for types::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidInput(m) => Self::InvalidInput(m),
            Error::Denied(m) => Self::Denied(m),
            Error::Upstream(m) => Self::Upstream(m),
            Error::Internal(m) => Self::Internal(m),
        }
    }
}

/// JSON that does not parse or does not fit the target type is bad input
/// ([`Error::InvalidInput`]); an I/O failure while reading or writing JSON is
/// [`Error::Internal`]. The serde message is kept as is.
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        if error.is_io() {
            Self::Internal(error.to_string())
        } else {
            Self::InvalidInput(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let cases = [
            Error::invalid_input("a"),
            Error::denied("b"),
            Error::upstream("c"),
            Error::internal("d"),
        ];
        for case in cases {
            let wit: types::Error = case.clone().into();
            assert_eq!(Error::from(wit), case);
        }
    }

    #[test]
    fn displays_kind_and_message() {
        assert_eq!(Error::denied("no kv").to_string(), "denied: no kv");
        assert_eq!(Error::invalid_input("x").kind(), "invalid-input");
    }

    #[test]
    fn serde_errors_are_invalid_input() {
        let error = serde_json::from_str::<u32>("\"x\"").unwrap_err();
        let message = error.to_string();
        assert_eq!(Error::from(error), Error::InvalidInput(message));
    }
}
