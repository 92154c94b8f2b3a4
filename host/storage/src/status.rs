//! The statuses the store keeps, as StackStorm names them: of an execution, of a trigger
//! instance, of a rule enforcement. Stored and shown as their lowercase names.

use std::fmt;
use std::str::FromStr;

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status '{name}'")]
pub struct UnknownStatus {
    /// Which kind of status.
    pub kind: &'static str,
    /// The name that was given.
    pub name: String,
}

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every status, in the order of the life cycle.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and shown name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus { kind: $kind, name: s.to_owned() }),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

status_enum!(
    /// Where an execution is in its life: `requested -> scheduled -> running -> succeeded |
    /// failed | timeout | abandoned` (through `delayed` first when requested with a delay), or
    /// `canceled` (from before running, or through `canceling`). `paused` and the other
    /// StackStorm statuses that no runner here reaches are accepted as filters only.
    ExecutionStatus, "execution", {
        /// Stored, waiting for a slot.
        Requested = "requested",
        /// Requested with a `delay`: requested again once it is due.
        Delayed = "delayed",
        /// Given a slot.
        Scheduled = "scheduled",
        /// Running.
        Running = "running",
        /// Ran and succeeded.
        Succeeded = "succeeded",
        /// Ran and failed.
        Failed = "failed",
        /// Ran past its timeout.
        Timeout = "timeout",
        /// Running when Stormhook stopped; not run again.
        Abandoned = "abandoned",
        /// Asked to cancel while running.
        Canceling = "canceling",
        /// Canceled.
        Canceled = "canceled",
    }
);

impl ExecutionStatus {
    /// Whether nothing changes after this status.
    pub const fn is_completed(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Timeout | Self::Canceled | Self::Abandoned
        )
    }

    /// The statuses from which a cancel takes effect at once (the run has not started).
    pub const BEFORE_RUN: &'static [Self] = &[Self::Requested, Self::Scheduled, Self::Delayed];

    /// Whether a cancel takes effect at once (the run has not started).
    pub fn is_before_run(self) -> bool {
        Self::BEFORE_RUN.contains(&self)
    }
}

status_enum!(
    /// Where a trigger instance is: `pending` until the rules engine records what it decided.
    InstanceStatus, "trigger instance", {
        /// Accepted, not evaluated yet.
        Pending = "pending",
        /// Taken by an engine (earlier versions; requeued at start).
        Processing = "processing",
        /// Evaluated; its enforcements are recorded.
        Processed = "processed",
        /// Could not be evaluated (unreadable, or its record failed).
        ProcessingFailed = "processing_failed",
    }
);

status_enum!(
    /// How a rule enforcement ended.
    EnforcementStatus, "rule enforcement", {
        /// The rule matched and its action was requested.
        Succeeded = "succeeded",
        /// The rule could not be evaluated, or its action could not be requested.
        Failed = "failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ExecutionStatus::ALL {
            assert_eq!(s.as_str().parse::<ExecutionStatus>(), Ok(*s));
        }
        for s in InstanceStatus::ALL {
            assert_eq!(s.as_str().parse::<InstanceStatus>(), Ok(*s));
        }
        for s in EnforcementStatus::ALL {
            assert_eq!(s.as_str().parse::<EnforcementStatus>(), Ok(*s));
        }
        assert_eq!(
            "paused".parse::<ExecutionStatus>().unwrap_err().to_string(),
            "unknown execution status 'paused'"
        );
    }

    #[test]
    fn completed_is_the_five_final_statuses() {
        let names: Vec<_> = ExecutionStatus::ALL
            .iter()
            .filter(|s| s.is_completed())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            names,
            ["succeeded", "failed", "timeout", "abandoned", "canceled"]
        );
        assert!(!ExecutionStatus::Canceling.is_completed());
        assert!(ExecutionStatus::Scheduled.is_before_run());
        assert!(!ExecutionStatus::Running.is_before_run());
    }
}
