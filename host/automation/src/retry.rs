//! Waiting out a store that cannot commit, shared by the rules engine, the execution recorder
//! and the action-trigger dispatch.
//!
//! While the store is unavailable (a full disk, a lock: `StorageError::is_unavailable`) a
//! write is tried again for as long as it takes, 100 ms after the first failure, doubling, at
//! most [`RETRY_MAX`] apart, so it goes through within 2 s of the store recovering. Any other
//! failure is a problem of the data itself, and is tried [`OTHER_RETRIES`] more times only.

use std::time::Duration;

/// The wait after the first failure; each further failure doubles it, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(2);
/// How many times a write that failed for a reason other than the store being unavailable is
/// tried again.
pub(crate) const OTHER_RETRIES: u32 = 5;

/// The failures of one write so far.
#[derive(Debug, Default)]
pub(crate) struct Retry {
    attempts: u32,
    other: u32,
}

impl Retry {
    /// After a failed attempt (`unavailable`: the store could not commit), the wait before the
    /// next one, or `None` when a failure of another kind has been seen more than
    /// [`OTHER_RETRIES`] times: give up.
    pub(crate) fn after(&mut self, unavailable: bool) -> Option<Duration> {
        if !unavailable {
            self.other += 1;
            if self.other > OTHER_RETRIES {
                return None;
            }
        }
        let wait = RETRY_FIRST
            .saturating_mul(1 << self.attempts.min(8))
            .min(RETRY_MAX);
        self.attempts = self.attempts.saturating_add(1);
        Some(wait)
    }

    /// The failed attempts so far.
    pub(crate) fn failures(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_store_is_waited_out_for_ever_and_other_failures_five_more_times() {
        let mut retry = Retry::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| retry.after(true).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert!((0..1000).all(|_| retry.after(true) == Some(RETRY_MAX)));
        let mut retry = Retry::default();
        assert!((0..OTHER_RETRIES).all(|_| retry.after(false).is_some()));
        assert_eq!(retry.after(false), None);
    }
}
