//! What a call's outbound requests did: one [`HttpRecord`] and one log line per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// At most this many bytes of a recorded URL (the rest is cut, with `…`).
pub const MAX_RECORDED_URL_BYTES: usize = 2048;

/// One outbound request of a call, as the execution records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `scheme://host[:port]/path`: no query, no fragment, no userinfo; the port only when it is
    /// not the scheme's default.
    pub url: String,
    /// The response's status, when one arrived.
    pub status: Option<u16>,
    /// From the request to the end of the response body (or the failure), or until now while
    /// the body is still being read.
    pub duration_ms: u64,
    /// Request body bytes sent.
    pub request_bytes: u64,
    /// Response body bytes handed to the plugin.
    pub response_bytes: u64,
    /// Why the request was refused or failed.
    pub error: Option<String>,
}

/// The shared, growing record of one request.
#[derive(Debug)]
pub(super) struct Slot {
    method: String,
    url: String,
    started: Instant,
    pub(super) request_bytes: AtomicU64,
    pub(super) response_bytes: AtomicU64,
    end: Mutex<End>,
}

#[derive(Debug, Default)]
struct End {
    status: Option<u16>,
    error: Option<String>,
    finished: Option<Instant>,
}

impl Slot {
    pub(super) fn new(method: String, url: String) -> Slot {
        Slot {
            method,
            url,
            started: Instant::now(),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            end: Mutex::new(End::default()),
        }
    }

    fn end(&self) -> std::sync::MutexGuard<'_, End> {
        self.end.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_status(&self, status: u16) {
        self.end().status = Some(status);
    }

    /// Records the failure (the first one wins) and ends the request.
    pub(super) fn fail(&self, error: String) {
        let mut end = self.end();
        end.error.get_or_insert(error);
        end.finished.get_or_insert_with(Instant::now);
    }

    /// Ends the request (a no-op when it has ended).
    pub(super) fn finish(&self) {
        self.end().finished.get_or_insert_with(Instant::now);
    }

    pub(super) fn snapshot(&self, redact: &dyn Fn(&str) -> String) -> HttpRecord {
        let end = self.end();
        let elapsed = end.finished.unwrap_or_else(Instant::now) - self.started;
        HttpRecord {
            method: self.method.clone(),
            url: redact(&self.url),
            status: end.status,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            request_bytes: self.request_bytes.load(Ordering::Relaxed),
            response_bytes: self.response_bytes.load(Ordering::Relaxed),
            error: end.error.as_deref().map(redact),
        }
    }
}

/// Owns the end of one request: when dropped (the response body read or dropped, the request
/// failed, or the call ended with it in flight) it ends the record and writes the log line.
pub(super) struct Tracker {
    pub(super) slot: Arc<Slot>,
    plugin: Arc<str>,
    redact: Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// Refused: the warn line was written, no info line.
    refused: bool,
}

impl Tracker {
    pub(super) fn new(
        slot: Arc<Slot>,
        plugin: Arc<str>,
        redact: Arc<dyn Fn(&str) -> String + Send + Sync>,
    ) -> Tracker {
        Tracker {
            slot,
            plugin,
            redact,
            refused: false,
        }
    }

    /// Records the failure; the log line follows when the tracker is dropped.
    pub(super) fn fail(&self, error: String) {
        self.slot.fail(error);
    }

    /// The policy refused the request: records `reason`, logs it (warn), and gives `error` back.
    pub(super) fn refuse<E>(mut self, reason: String, error: E) -> E {
        self.refused = true;
        self.slot.fail(reason);
        let record = self.slot.snapshot(&*self.redact);
        tracing::warn!(
            target: "plugin",
            plugin = %self.plugin,
            method = %record.method,
            url = %record.url,
            reason = %record.error.as_deref().unwrap_or_default(),
            "outbound request refused"
        );
        error
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.refused {
            return;
        }
        {
            let mut end = self.slot.end();
            if end.finished.is_none() && end.status.is_none() && end.error.is_none() {
                end.error = Some("cancelled: the call ended before the response".into());
            }
        }
        self.slot.finish();
        let record = self.slot.snapshot(&*self.redact);
        tracing::info!(
            target: "plugin",
            plugin = %self.plugin,
            method = %record.method,
            url = %record.url,
            status = record.status,
            duration_ms = record.duration_ms,
            request_bytes = record.request_bytes,
            response_bytes = record.response_bytes,
            error = record.error,
            "outbound request"
        );
    }
}
