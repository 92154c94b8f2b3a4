//! One sandboxed call of a rule or an action.
//!
//! Every call gets a fresh `Store` and instance from the pooling allocator: a WASI context with
//! no preopens and no network whose stdout and stderr go into bounded captures, a memory cap, and
//! an epoch deadline whose callback yields to tokio at every tick (so a busy guest never pins a
//! worker thread) and interrupts the guest once the deadline has passed. Nothing survives the
//! call, so the next call on the same plugin starts clean whatever this one did.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::{WitVersion, types, v1};
use crate::error::{GuestError, GuestErrorKind, PluginError};
use crate::host::{Capture, HostState, Limiter, LogCapture};
use crate::outbound::{HttpRecord, OutboundCall};
use crate::registry::{LoadedPlugin, Runtime};
use crate::services::{Origin, Redactor};
use crate::types::{
    ActionContext, Captured, HookRequest, HookResponse, PluginKind, PluginVersion, RuleDecision,
    TriggerInstance,
};

/// The result of one call together with everything the call produced along the way.
#[derive(Debug)]
pub struct CallReport<T> {
    /// The value, or why the call failed.
    pub result: Result<T, PluginError>,
    /// Logs and stdio of the call (also when it failed).
    pub captured: Captured,
    /// The version that ran, if one was found.
    pub plugin: Option<PluginVersion>,
    /// Wall time from the call's start to its end, including waiting for a slot.
    pub elapsed: Duration,
    /// Whether the call outlived its foreground slice and finished on the background guest
    /// pool (see [`crate::Fairness`]).
    pub moved: bool,
    /// The outbound HTTP requests the call attempted (refused ones included), secrets masked.
    pub outbound: Vec<HttpRecord>,
}

/// A call being set up: a slot, a store, the captures.
struct Session {
    plugin: Arc<LoadedPlugin>,
    store: Store<HostState>,
    /// A handle on the call's outbound HTTP, to read its records at the end.
    outbound: OutboundCall,
    stdout: Capture,
    stderr: Capture,
    /// Set by the epoch callback when the call has used its foreground slice.
    moved: Arc<AtomicBool>,
    _permit: OwnedSemaphorePermit,
}

impl Runtime {
    /// Runs a rule component on one trigger instance.
    pub async fn evaluate_rule(
        &self,
        reference: &str,
        instance: &TriggerInstance,
    ) -> CallReport<RuleDecision> {
        let started = Instant::now();
        let origin = Origin {
            plugin: reference.to_owned(),
            ..Origin::default()
        };
        let session = match self.open(PluginKind::Rule, reference, origin).await {
            Ok(session) => session,
            Err(err) => return CallReport::early(err, started),
        };
        let arg = types::TriggerInstance {
            id: instance.id.clone(),
            trigger: instance.trigger.clone(),
            payload: instance.payload.clone(),
            occurrence_time: instance.occurrence_time.clone(),
        };
        // 0.1.0 and 0.2.0 share these types exactly (the check is structural), so one
        // signature serves both.
        let (plugin, called) = self
            .call_export::<(types::TriggerInstance,), (Result<types::Decision, types::Error>,)>(
                session,
                (arg,),
            )
            .await;
        let Some((session, outcome)) = called else {
            return CallReport::stopped(&plugin, started);
        };
        let outcome = outcome.map(|(decision,)| decision);
        let result = match outcome {
            Ok(Ok(decision)) => match decision
                .values
                .as_deref()
                .map(serde_json::from_str::<serde_json::Value>)
            {
                None => Ok(RuleDecision {
                    matched: decision.matched,
                    values: None,
                }),
                Some(Ok(values)) if values.is_object() => Ok(RuleDecision {
                    matched: decision.matched,
                    values: Some(values),
                }),
                Some(Ok(_)) => Err(invalid_output(
                    &session,
                    "rule values must be a JSON object".into(),
                )),
                Some(Err(e)) => Err(invalid_output(
                    &session,
                    format!("rule values are not JSON: {e}"),
                )),
            },
            Ok(Err(guest)) => Err(guest_error(&session, guest)),
            Err(err) => Err(self.classify(&session, err, started)),
        };
        session.finish(result, started)
    }

    /// Runs an action component with parameters given as JSON text (an object).
    pub async fn run_action(
        &self,
        reference: &str,
        parameters: &str,
        context: ActionContext,
    ) -> CallReport<serde_json::Value> {
        let started = Instant::now();
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(parameters) {
            let err = PluginError::InvalidInput {
                reference: reference.to_owned(),
                reason: format!("parameters are not JSON: {e}"),
            };
            return CallReport::early(err, started);
        }
        let origin = Origin {
            plugin: reference.to_owned(),
            execution_id: Some(context.execution_id.clone()),
            user: Some(context.user.clone()),
            trace_tag: context.trace_tag.clone(),
            depth: context.depth,
        };
        let mut session = match self.open(PluginKind::Action, reference, origin).await {
            Ok(session) => session,
            Err(err) => return CallReport::early(err, started),
        };
        let deadline_ms =
            u64::try_from(session.plugin.limits.timeout.as_millis()).unwrap_or(u64::MAX);
        let ctx = ActionArg::new(session.plugin.pre.wit, reference, context, deadline_ms);
        let plugin = Arc::clone(&session.plugin);
        let moved = Arc::clone(&session.moved);
        let parameters = parameters.to_owned();
        let max_output = self.config.max_output_bytes;
        let call = async move {
            let deadline = session.plugin.limits.timeout;
            let outcome = with_backstop(deadline, async {
                let pre = &session.plugin.pre;
                let store = &mut session.store;
                let instance = pre.instance.instantiate_async(&mut *store).await?;
                // The result is copied out as a `String`: wasmtime runs the guest's
                // post-return (which frees the string) before `call_async` returns, so a
                // `WasmStr` read afterwards could see memory the guest already reused (a
                // JavaScript guest does). The copy is bounded by the call's memory cap; an
                // oversized result is refused right after it.
                let returned = match &ctx {
                    ActionArg::V2(ctx) => {
                        let run = instance.get_typed_func::<
                            (&str, &types::ExecutionContext),
                            (Result<String, types::Error>,),
                        >(&mut *store, pre.export)?;
                        run.call_async(&mut *store, (&parameters, ctx)).await?.0
                    }
                    ActionArg::V1(ctx) => {
                        let run = instance.get_typed_func::<
                            (&str, &v1::types::ExecutionContext),
                            (Result<String, v1::types::Error>,),
                        >(&mut *store, pre.export)?;
                        run.call_async(&mut *store, (&parameters, ctx))
                            .await?
                            .0
                            .map_err(ActionArg::error)
                    }
                };
                let result = match returned {
                    Ok(text) => Ok(read_result(&text, max_output)),
                    Err(guest) => Err(guest),
                };
                Ok(result)
            })
            .await;
            (session, outcome)
        };
        let Some((session, outcome)) = self.pool.run(moved, call).await else {
            return CallReport::stopped(&plugin, started);
        };
        let result = match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(reason))) => Err(invalid_output(&session, reason)),
            Ok(Err(guest)) => Err(guest_error(&session, guest)),
            Err(err) => Err(self.classify(&session, err, started)),
        };
        session.finish(result, started)
    }

    /// Runs a responder component on one webhook delivery. Its answer is checked (status,
    /// headers, body size) before it is returned.
    pub async fn respond(&self, reference: &str, request: HookRequest) -> CallReport<HookResponse> {
        use crate::bindings::v2::responder as wit;
        let started = Instant::now();
        let origin = Origin {
            plugin: reference.to_owned(),
            trace_tag: Some(request.trace_tag.clone()),
            ..Origin::default()
        };
        let session = match self.open(PluginKind::Responder, reference, origin).await {
            Ok(session) => session,
            Err(err) => return CallReport::early(err, started),
        };
        let arg = wit::HttpRequest {
            hook: request.hook,
            method: request.method,
            query: request.query,
            headers: request.headers,
            body: request.body,
            payload: request.payload,
            trace_tag: request.trace_tag,
        };
        let (plugin, called) = self
            .call_export::<(wit::HttpRequest,), (Result<wit::HttpResponse, types::Error>,)>(
                session,
                (arg,),
            )
            .await;
        let Some((session, outcome)) = called else {
            return CallReport::stopped(&plugin, started);
        };
        let outcome = outcome.map(|(answer,)| answer);
        let max_output = self.config.max_output_bytes;
        let result = match outcome {
            Ok(Ok(answer)) => checked_response(answer, max_output)
                .map_err(|reason| invalid_output(&session, reason)),
            Ok(Err(guest)) => Err(guest_error(&session, guest)),
            Err(err) => Err(self.classify(&session, err, started)),
        };
        session.finish(result, started)
    }

    /// Instantiates the session's component and calls its export with `args`, under the
    /// call's deadline, on the fair pool. Returns the plugin, and the session with the
    /// outcome (`None` when the runtime stopped first).
    async fn call_export<P, R>(
        &self,
        mut session: Session,
        args: P,
    ) -> (
        Arc<LoadedPlugin>,
        Option<(Session, Result<R, wasmtime::Error>)>,
    )
    where
        P: wasmtime::component::ComponentNamedList
            + wasmtime::component::Lower
            + Send
            + Sync
            + 'static,
        R: wasmtime::component::ComponentNamedList
            + wasmtime::component::Lift
            + Send
            + Sync
            + 'static,
    {
        let plugin = Arc::clone(&session.plugin);
        let moved = Arc::clone(&session.moved);
        let call = async move {
            let deadline = session.plugin.limits.timeout;
            let outcome = with_backstop(deadline, async {
                let pre = &session.plugin.pre;
                let store = &mut session.store;
                let instance = pre.instance.instantiate_async(&mut *store).await?;
                let export = instance.get_typed_func::<P, R>(&mut *store, pre.export)?;
                export.call_async(&mut *store, args).await
            })
            .await;
            (session, outcome)
        };
        (plugin, self.pool.run(moved, call).await)
    }

    /// Finds the plugin, takes an instance slot and builds a fresh store for one call.
    async fn open(
        &self,
        kind: PluginKind,
        reference: &str,
        origin: Origin,
    ) -> Result<Session, PluginError> {
        let plugin = self.find(kind, reference).await?;
        let busy = || PluginError::Busy {
            reference: reference.to_owned(),
            limit: self.config.max_instances,
        };
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if self.config.queue_timeout.is_zero() => return Err(busy()),
            Err(_) => tokio::time::timeout(
                self.config.queue_timeout,
                Arc::clone(&self.permits).acquire_owned(),
            )
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?,
        };
        let stdout = Capture::new(self.config.capture_bytes);
        let stderr = Capture::new(self.config.capture_bytes);
        let pack = reference
            .split_once('.')
            .map_or(reference, |(pack, _)| pack);
        let config = self
            .configs
            .load()
            .as_deref()
            .and_then(|configs| configs.config(pack))
            .unwrap_or_default();
        let now = Instant::now();
        let deadline = now + plugin.limits.timeout;
        let redactor = Redactor::new(config.secrets.iter().cloned());
        let outbound = OutboundCall::new(
            self.outbound.clone(),
            Arc::clone(&plugin.outbound),
            self.config.outbound.clone(),
            deadline,
            Arc::clone(&plugin.tag),
            {
                let redactor = redactor.clone();
                Arc::new(move |text: &str| redactor.text(text))
            },
        );
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: wasmtime::component::ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: usize::try_from(plugin.limits.memory_bytes).unwrap_or(usize::MAX),
                hit_memory_cap: false,
            },
            logs: LogCapture::new(self.config.capture_bytes),
            grant: plugin.spec.kv.clone(),
            datastore: Arc::clone(&self.datastore),
            plugin: Arc::clone(&plugin.tag),
            redactor,
            config,
            events_granted: plugin.spec.events,
            origin,
            events: self.events.load().as_deref().cloned(),
            max_depth: self.config.max_chain_depth,
            http: WasiHttpCtx::new(),
            outbound: outbound.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let slice_end = now + self.config.fairness.foreground_slice;
        let moved = Arc::new(AtomicBool::new(false));
        let asked = Arc::clone(&moved);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            if now >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            if now >= slice_end {
                // Past its foreground slice: the yield below hands it to the guest pool.
                asked.store(true, Ordering::Release);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        Ok(Session {
            plugin,
            store,
            outbound,
            stdout,
            stderr,
            moved,
            _permit: permit,
        })
    }

    /// Names the cause of a trap or host failure.
    fn classify(&self, session: &Session, err: wasmtime::Error, started: Instant) -> PluginError {
        let plugin = session.plugin.id.clone();
        let trap = err.downcast_ref::<Trap>().copied();
        if session.store.data().limiter.hit_memory_cap {
            return PluginError::OutOfMemory {
                plugin,
                limit_bytes: session.plugin.limits.memory_bytes,
            };
        }
        if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return PluginError::Exit {
                plugin,
                code: exit.0,
            };
        }
        match trap {
            Some(Trap::Interrupt) => PluginError::Timeout {
                plugin,
                deadline: session.plugin.limits.timeout,
                elapsed: started.elapsed(),
            },
            Some(Trap::StackOverflow) => PluginError::StackOverflow { plugin },
            Some(trap) => {
                let (stderr, _) = session.stderr.peek_tail(512);
                let mut message = trap.to_string();
                if trap == Trap::MemoryOutOfBounds {
                    // Rust and C guests keep their stack in linear memory, growing down from a
                    // fixed size; overflowing it wraps below address 0 and lands here.
                    message.push_str(" (a stack overflow in the guest's linear-memory stack, from deep recursion, looks like this; so does a bad pointer)");
                }
                if !stderr.trim().is_empty() {
                    message = format!("{message}; guest stderr: {}", stderr.trim());
                }
                PluginError::Trap { plugin, message }
            }
            None if err.is::<BackstopElapsed>() => PluginError::Timeout {
                plugin,
                deadline: session.plugin.limits.timeout,
                elapsed: started.elapsed(),
            },
            None => PluginError::Host {
                plugin,
                reason: format!("{err:#}"),
            },
        }
    }
}

impl Session {
    fn finish<T: Redact>(self, result: Result<T, PluginError>, started: Instant) -> CallReport<T> {
        let (stdout, stdout_dropped) = self.stdout.take();
        let (stderr, stderr_dropped) = self.stderr.take();
        let redactor = &self.store.data().redactor;
        let (stdout, stderr, result) = if redactor.is_empty() {
            (stdout, stderr, result)
        } else {
            let result = match result {
                Ok(mut value) => {
                    value.redact(redactor);
                    Ok(value)
                }
                Err(err) => Err(err.redacted(redactor)),
            };
            (redactor.text(&stdout), redactor.text(&stderr), result)
        };
        let logs = &self.store.data().logs;
        let captured = Captured {
            logs: logs.lines.clone(),
            logs_dropped: logs.dropped,
            stdout,
            stdout_dropped,
            stderr,
            stderr_dropped,
        };
        if let Err(err) = &result {
            tracing::warn!(plugin = %self.plugin.tag, kind = err.kind(), "plugin call failed: {err}");
        }
        CallReport {
            result,
            captured,
            plugin: Some(self.plugin.id.clone()),
            elapsed: started.elapsed(),
            moved: self.moved.load(Ordering::Acquire),
            outbound: self.outbound.records(),
        }
    }
}

impl<T> CallReport<T> {
    /// The call was dropped by the guest pool because the runtime is shutting down.
    fn stopped(plugin: &LoadedPlugin, started: Instant) -> Self {
        Self {
            result: Err(PluginError::Host {
                plugin: plugin.id.clone(),
                reason: "the plugin runtime stopped during the call".into(),
            }),
            captured: Captured::default(),
            plugin: Some(plugin.id.clone()),
            elapsed: started.elapsed(),
            moved: true,
            outbound: Vec::new(),
        }
    }

    fn early(err: PluginError, started: Instant) -> Self {
        Self {
            result: Err(err),
            captured: Captured::default(),
            plugin: None,
            elapsed: started.elapsed(),
            moved: false,
            outbound: Vec::new(),
        }
    }
}

/// A call's value, with the secrets the call could see masked before anything records it.
trait Redact {
    fn redact(&mut self, redactor: &Redactor);
}

impl Redact for serde_json::Value {
    fn redact(&mut self, redactor: &Redactor) {
        redactor.value(self);
    }
}

impl Redact for RuleDecision {
    fn redact(&mut self, redactor: &Redactor) {
        if let Some(values) = &mut self.values {
            redactor.value(values);
        }
    }
}

/// A responder's answer goes to the webhook's sender: the secrets the call could see (its
/// pack's secret config values, datastore secrets it read) are masked in its text headers and
/// in a UTF-8 body, as in everything else a call returns.
impl Redact for HookResponse {
    fn redact(&mut self, redactor: &Redactor) {
        if redactor.is_empty() {
            return;
        }
        for (_, value) in &mut self.headers {
            *value = redactor.text(value);
        }
        if let Ok(text) = std::str::from_utf8(&self.body) {
            let masked = redactor.text(text);
            if masked != text {
                self.body = masked.into_bytes();
            }
        }
    }
}

/// The execution context in the shape of the component's package version.
enum ActionArg {
    V1(v1::types::ExecutionContext),
    V2(types::ExecutionContext),
}

impl ActionArg {
    fn new(wit: WitVersion, reference: &str, context: ActionContext, deadline_ms: u64) -> Self {
        match wit {
            WitVersion::V2 => Self::V2(types::ExecutionContext {
                execution_id: context.execution_id,
                action_ref: reference.to_owned(),
                rule_ref: context.rule_ref,
                trigger_instance: context.trigger_instance.map(|t| types::TriggerInstance {
                    id: t.id,
                    trigger: t.trigger,
                    payload: t.payload,
                    occurrence_time: t.occurrence_time,
                }),
                user: context.user,
                trace_tag: context.trace_tag,
                deadline_ms,
                parent_execution_id: context.parent_execution_id,
                depth: context.depth,
            }),
            WitVersion::V1 => Self::V1(v1::types::ExecutionContext {
                execution_id: context.execution_id,
                action_ref: reference.to_owned(),
                rule_ref: context.rule_ref,
                trigger_instance: context
                    .trigger_instance
                    .map(|t| v1::types::TriggerInstance {
                        id: t.id,
                        trigger: t.trigger,
                        payload: t.payload,
                        occurrence_time: t.occurrence_time,
                    }),
            }),
        }
    }

    /// A 0.1.0 error as the current type (the cases are the same).
    fn error(error: v1::types::Error) -> types::Error {
        match error {
            v1::types::Error::InvalidInput(m) => types::Error::InvalidInput(m),
            v1::types::Error::Denied(m) => types::Error::Denied(m),
            v1::types::Error::Upstream(m) => types::Error::Upstream(m),
            v1::types::Error::Internal(m) => types::Error::Internal(m),
        }
    }
}

/// Parses an action's result where the guest left it, refusing one over `max_bytes` unread.
fn read_result(text: &str, max_bytes: usize) -> Result<serde_json::Value, String> {
    if text.len() > max_bytes {
        return Err(format!(
            "result is {} bytes, more than the {max_bytes} byte limit",
            text.len()
        ));
    }
    serde_json::from_str(text).map_err(|e| format!("result is not JSON: {e}"))
}

fn guest_error(session: &Session, error: types::Error) -> PluginError {
    let (kind, message) = match error {
        types::Error::InvalidInput(m) => (GuestErrorKind::InvalidInput, m),
        types::Error::Denied(m) => (GuestErrorKind::Denied, m),
        types::Error::Upstream(m) => (GuestErrorKind::Upstream, m),
        types::Error::Internal(m) => (GuestErrorKind::Internal, m),
    };
    PluginError::Guest {
        plugin: session.plugin.id.clone(),
        error: GuestError { kind, message },
    }
}

/// A responder's answer, if an HTTP response may carry it.
fn checked_response(
    answer: crate::bindings::v2::responder::HttpResponse,
    max_body: usize,
) -> Result<HookResponse, String> {
    if !(100..=599).contains(&answer.status) {
        return Err(format!("status {} is not an HTTP status", answer.status));
    }
    if answer.body.len() > max_body {
        return Err(format!(
            "the body is {} bytes, more than the limit of {max_body}",
            answer.body.len()
        ));
    }
    const HOP_BY_HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "proxy-connection",
    ];
    if answer.headers.len() > 64 {
        return Err(format!("{} headers, more than 64", answer.headers.len()));
    }
    for (name, value) in &answer.headers {
        let valid_name = !name.is_empty()
            && name.len() <= 256
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(format!("header name {name:?} is not a token"));
        }
        if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("header {name} is the server's to set"));
        }
        if value.len() > 8192 || value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!("the value of header {name} is not a header value"));
        }
    }
    Ok(HookResponse {
        status: answer.status,
        headers: answer.headers,
        body: answer.body,
        store: answer.store,
    })
}

fn invalid_output(session: &Session, reason: String) -> PluginError {
    PluginError::InvalidOutput {
        plugin: session.plugin.id.clone(),
        reason,
    }
}

/// Raised when the backstop timer fires: the guest is blocked somewhere epochs cannot reach
/// (a host call that never returns).
#[derive(Debug, thiserror::Error)]
#[error("call did not finish within its deadline")]
struct BackstopElapsed;

/// Bounds a call even when the epoch deadline cannot fire (the guest waits in a host import).
/// The epoch deadline is the real bound; this fires one second after it.
async fn with_backstop<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    match tokio::time::timeout(deadline + Duration::from_secs(1), call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(BackstopElapsed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::v2::responder::HttpResponse;

    fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
            store: true,
        }
    }

    #[test]
    fn a_responders_answer_must_be_one_http_may_carry() {
        let ok = checked_response(
            answer(
                201,
                &[("content-type", "text/xml"), ("X-Twilio", "a b")],
                b"<Response/>",
            ),
            100,
        )
        .unwrap();
        assert_eq!(ok.status, 201);
        assert_eq!(ok.headers.len(), 2);
        for (bad, why) in [
            (answer(42, &[], b""), "status 42"),
            (answer(600, &[], b""), "status 600"),
            (answer(200, &[], &[b'x'; 101]), "101 bytes"),
            (answer(200, &[("bad name", "x")], b""), "not a token"),
            (answer(200, &[("", "x")], b""), "not a token"),
            (
                answer(200, &[("Transfer-Encoding", "chunked")], b""),
                "the server's to set",
            ),
            (
                answer(200, &[("content-length", "5")], b""),
                "the server's to set",
            ),
            (
                answer(200, &[("x-a", "line\r\nInjected: yes")], b""),
                "not a header value",
            ),
        ] {
            let err = checked_response(bad, 100).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
        let many: Vec<(String, String)> = (0..65).map(|n| (format!("x-{n}"), "v".into())).collect();
        let mut too_many = answer(200, &[], b"");
        too_many.headers = many;
        assert!(
            checked_response(too_many, 100)
                .unwrap_err()
                .contains("65 headers")
        );
    }
}
