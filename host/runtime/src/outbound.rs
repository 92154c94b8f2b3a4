//! Outbound HTTP for actions: `wasi:http/outgoing-handler` under the action's grant.
//!
//! An action reaches the network only through [`OutboundCall`], the [`WasiHttpHooks`] of its call,
//! which sends every request itself (wasmtime-wasi-http's default sender is not compiled in):
//!
//! 1. The request counts against [`OutboundLimits::max_requests`], then its scheme, host and port
//!    must be allowed by the action's [`OutboundGrant`] (`allowed_outbound_hosts`, Spin's syntax).
//! 2. The host is resolved once, within the connect timeout, and every address is checked:
//!    loopback, private, link-local, cloud-metadata and other non-public addresses are refused
//!    unless the grant names that address (an IP literal entry, or `localhost` for loopback).
//!    The connection goes to an address that passed; the name is never resolved again, so a
//!    rebinding DNS answer cannot slip past the check.
//! 3. Connect and TLS (webpki roots, the system's roots, the operator's CA bundle), then HTTP/1.1,
//!    all bounded by the connect timeout, the request timeout and the call's deadline (less
//!    [`DEADLINE_MARGIN`], so the plugin sees an HTTP error rather than being killed).
//! 4. The request body is cut at [`OutboundLimits::max_request_body_bytes`], the response bodies
//!    of the call at [`OutboundLimits::max_response_bytes`] in all.
//!
//! Every attempt becomes an [`HttpRecord`] ([`OutboundCall::records`]) and a log line with
//! target `plugin`: `outbound request` (info) when it was sent, `outbound request refused`
//! (warn) when the policy refused it. URLs are recorded without query or userinfo, and URLs and
//! errors go through the call's redaction first.
//!
//! # Wiring
//!
//! The store state holds an [`OutboundCall`], a `wasmtime_wasi_http::WasiHttpCtx` and the
//! `ResourceTable`, and builds the view from them:
//!
//! ```ignore
//! WasiHttpCtxView { ctx: &mut state.http_ctx, table: &mut state.table, hooks: &mut state.outbound }
//! ```
//!
//! `OutboundCall` is a handle (an `Arc` inside): keep a clone outside the store to read the
//! records after the call.

mod address;
mod client;
mod grant;
mod record;
mod send;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub use address::{MAX_ADDRESSES, ResolveFuture, Resolver, system_resolver};
pub use client::{MAX_CA_BUNDLE_BYTES, OutboundClient};
pub use grant::{MAX_ENTRIES, MAX_ENTRY_BYTES, OutboundGrant};
pub use record::{HttpRecord, MAX_RECORDED_URL_BYTES};

use grant::{Host, Scheme};
use record::{Slot, Tracker};

/// Outbound requests give up this long before the call's deadline, so the plugin has time to
/// see the error and return.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// Redacts secrets from a URL or an error before it is recorded or logged.
pub type Redact = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The per-call bounds of outbound HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Requests a call may attempt (refused ones included); later ones are refused.
    pub max_requests: u32,
    /// Bytes of one request body.
    pub max_request_body_bytes: u64,
    /// Bytes of response bodies, summed over the call's responses.
    pub max_response_bytes: u64,
    /// Resolving, connecting and the TLS handshake of one request.
    pub connect_timeout: Duration,
    /// One request, from the call to `handle` to the end of its response body.
    pub request_timeout: Duration,
}

impl Default for OutboundLimits {
    fn default() -> Self {
        OutboundLimits {
            max_requests: 16,
            max_request_body_bytes: 1024 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The outbound HTTP of one call: its grant, limits, deadline and records. It is the call's
/// [`WasiHttpHooks`]. Cloning gives another handle on the same call.
#[derive(Clone)]
pub struct OutboundCall {
    shared: Arc<Shared>,
}

struct Shared {
    client: OutboundClient,
    grant: Arc<OutboundGrant>,
    limits: OutboundLimits,
    deadline: Instant,
    plugin: Arc<str>,
    redact: Redact,
    attempts: AtomicU32,
    response_bytes: AtomicU64,
    records: Mutex<Vec<Arc<Slot>>>,
    unrecorded: AtomicU64,
}

impl std::fmt::Debug for OutboundCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundCall")
            .field("plugin", &self.shared.plugin)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

/// Where an admitted request goes.
struct Target {
    scheme: Scheme,
    host: Host,
    port: u16,
}

impl OutboundCall {
    /// The outbound state of one call of `plugin`, which must end by `deadline`.
    pub fn new(
        client: OutboundClient,
        grant: Arc<OutboundGrant>,
        limits: OutboundLimits,
        deadline: Instant,
        plugin: Arc<str>,
        redact: Redact,
    ) -> OutboundCall {
        OutboundCall {
            shared: Arc::new(Shared {
                client,
                grant,
                limits,
                deadline,
                plugin,
                redact,
                attempts: AtomicU32::new(0),
                response_bytes: AtomicU64::new(0),
                records: Mutex::new(Vec::new()),
                unrecorded: AtomicU64::new(0),
            }),
        }
    }

    /// The call's requests so far, in order, with the bytes read so far. At most
    /// `max_requests + 1` (the first refusal past the limit); later refusals are only counted
    /// ([`OutboundCall::unrecorded`]).
    pub fn records(&self) -> Vec<HttpRecord> {
        let slots = self.shared.records();
        slots
            .iter()
            .map(|s| s.snapshot(&*self.shared.redact))
            .collect()
    }

    /// Requests refused past the limit and not recorded.
    pub fn unrecorded(&self) -> u64 {
        self.shared.unrecorded.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tracker(&self, slot: Slot) -> Tracker {
        let slot = Arc::new(slot);
        self.records().push(slot.clone());
        Tracker::new(slot, self.plugin.clone(), self.redact.clone())
    }

    /// Counts the request and checks it against the grant and the limits.
    fn admit(&self, request: &http::Request<WasiBody>) -> Result<(Target, Tracker), Error> {
        let attempt = self
            .attempts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            })
            .unwrap_or(u32::MAX);
        let max = self.limits.max_requests;
        if attempt > max {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
            return Err(Error::HttpRequestDenied);
        }
        let uri = request.uri();
        let method = grant::shorten(request.method().as_str(), 32);
        let scheme = uri.scheme_str().and_then(Scheme::parse);
        let host = uri.host().and_then(Host::parse);
        let port = scheme.map(|s| uri.port_u16().unwrap_or(s.default_port()));
        let url = match (scheme, &host, port) {
            (Some(scheme), Some(host), Some(port)) if port != scheme.default_port() => {
                format!("{}://{host}:{port}{}", scheme.as_str(), uri.path())
            }
            (Some(scheme), Some(host), _) => format!("{}://{host}{}", scheme.as_str(), uri.path()),
            _ => format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.path()),
        };
        let tracker = self.tracker(Slot::new(
            method,
            grant::shorten(&url, MAX_RECORDED_URL_BYTES),
        ));
        if attempt == max {
            let reason = format!("request limit of {max} reached");
            return Err(tracker.refuse(reason, Error::HttpRequestDenied));
        }
        let (Some(scheme), Some(host), Some(port)) = (scheme, host, port) else {
            return Err(tracker.refuse(
                "the URL needs an http or https scheme and a host".into(),
                Error::HttpRequestUriInvalid,
            ));
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(tracker.refuse(
                "userinfo in the URL is not supported (send an Authorization header)".into(),
                Error::HttpRequestUriInvalid,
            ));
        }
        if !self.grant.allows_target(scheme, &host, port) {
            let reason = format!(
                "host not in allowed_outbound_hosts ({}://{host}:{port})",
                scheme.as_str()
            );
            return Err(tracker.refuse(reason, Error::HttpRequestDenied));
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared.filter(|l| *l > self.limits.max_request_body_bytes) {
            let reason = format!(
                "request body of {length} bytes is over the limit of {} bytes",
                self.limits.max_request_body_bytes
            );
            return Err(tracker.refuse(reason, Error::HttpRequestBodySize(Some(length))));
        }
        Ok((Target { scheme, host, port }, tracker))
    }

    /// Takes `n` bytes from the call's response budget; false (and nothing taken) when they do
    /// not fit.
    fn take_response_bytes(&self, n: u64) -> bool {
        let max = self.limits.max_response_bytes;
        self.response_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= max)
            })
            .is_ok()
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

impl WasiHttpHooks for OutboundCall {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        match self.shared.admit(&request) {
            Err(error) => Box::new(std::future::ready(Err(error))),
            Ok((target, tracker)) => Box::new(send::send(
                self.shared.clone(),
                target,
                tracker,
                request,
                options,
            )),
        }
    }
}
