//! The state of one call's store, and the host imports (`log`, `kv`, `config`, `events`,
//! captured stdio), for both versions of the package.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::{config, events, kv, log, types};
use crate::config::KvGrant;
use crate::datastore::{Datastore, DatastoreError};
use crate::outbound::OutboundCall;
use crate::services::{Events, EventsError, Origin, PluginConfig, Redactor};
use crate::types::{LogLevel, LogRecord};

/// Everything one call's store holds. Dropped with the store when the call ends.
pub(crate) struct HostState {
    /// The WASI context: no preopens, no network, stdio into `stdout`/`stderr`.
    pub(crate) wasi: WasiCtx,
    /// Resources the guest holds (WASI streams).
    pub(crate) table: ResourceTable,
    /// The memory cap; remembers whether the guest hit it.
    pub(crate) limiter: Limiter,
    /// Lines the guest logged through the `log` import.
    pub(crate) logs: LogCapture,
    /// What the plugin may do with the datastore.
    pub(crate) grant: KvGrant,
    /// The datastore behind the `kv` import.
    pub(crate) datastore: Arc<dyn Datastore>,
    /// `pack.name@version` of the plugin, for the server log.
    pub(crate) plugin: Arc<str>,
    /// The pack's configuration (the `config` import).
    pub(crate) config: PluginConfig,
    /// Masks the secrets this call can see in everything recorded of it.
    pub(crate) redactor: Redactor,
    /// Whether the plugin may use the `events` import.
    pub(crate) events_granted: bool,
    /// Where work this call starts comes from.
    pub(crate) origin: Origin,
    /// The server's side of `events`, once attached.
    pub(crate) events: Option<Arc<dyn Events>>,
    /// The most plugin-started links a chain may have.
    pub(crate) max_depth: u32,
    /// `wasi:http` state (linked for actions only).
    pub(crate) http: WasiHttpCtx,
    /// Outbound HTTP under the action's grant and the call's limits; its records.
    pub(crate) outbound: OutboundCall,
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A memory cap that records whether the guest ran into it, so the error can say so.
pub(crate) struct Limiter {
    /// The cap in bytes.
    pub(crate) memory_bytes: usize,
    /// Set when a growth past the cap was refused.
    pub(crate) hit_memory_cap: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        if desired > self.memory_bytes || maximum.is_some_and(|max| desired > max) {
            self.hit_memory_cap = true;
            // Trap rather than return -1: allocators abort on failure anyway, and a trap here
            // names the cause instead of an `unreachable` somewhere in the allocator.
            wasmtime::bail!(
                "memory cap of {} bytes reached (wanted {desired})",
                self.memory_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= 100_000 && maximum.is_none_or(|max| desired <= max))
    }
}

/// Log lines of one call, bounded in bytes; lines past the bound are counted, not kept.
pub(crate) struct LogCapture {
    /// The lines kept.
    pub(crate) lines: Vec<LogRecord>,
    /// Bytes still allowed.
    budget: usize,
    /// Lines dropped for lack of budget.
    pub(crate) dropped: u64,
}

impl LogCapture {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            lines: Vec::new(),
            budget,
            dropped: 0,
        }
    }

    fn push(&mut self, record: LogRecord) -> bool {
        let size = record.message.len()
            + record
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if size > self.budget {
            self.budget = 0;
            self.dropped += 1;
            return false;
        }
        self.budget -= size;
        self.lines.push(record);
        true
    }
}

impl types::Host for HostState {}

fn level(level: log::Level) -> LogLevel {
    match level {
        log::Level::Trace => LogLevel::Trace,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Info => LogLevel::Info,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Error => LogLevel::Error,
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        self.log_line(self::level(level), message, fields);
    }
}

impl HostState {
    fn log_line(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        // Secrets the call can see never reach the record or the server log.
        let record = if self.redactor.is_empty() {
            LogRecord {
                level,
                message,
                fields,
            }
        } else {
            LogRecord {
                level,
                message: self.redactor.text(&message),
                fields: fields
                    .into_iter()
                    .map(|(k, v)| (self.redactor.text(&k), self.redactor.text(&v)))
                    .collect(),
            }
        };
        // Only lines that fit the budget reach the server log too: a guest cannot flood it.
        if self.logs.push(record.clone()) {
            let plugin = &*self.plugin;
            let msg = &record.message;
            let fields = &record.fields;
            match level {
                LogLevel::Trace => tracing::trace!(target: "plugin", plugin, ?fields, "{msg}"),
                LogLevel::Debug => tracing::debug!(target: "plugin", plugin, ?fields, "{msg}"),
                LogLevel::Info => tracing::info!(target: "plugin", plugin, ?fields, "{msg}"),
                LogLevel::Warn => tracing::warn!(target: "plugin", plugin, ?fields, "{msg}"),
                LogLevel::Error => tracing::error!(target: "plugin", plugin, ?fields, "{msg}"),
            }
        }
    }

    fn check_kv(&self, write: bool, key: &str) -> Result<(), types::Error> {
        let (allowed, what) = if write {
            (self.grant.write, "write")
        } else {
            (self.grant.read, "read")
        };
        if allowed && self.grant.covers(key) {
            return Ok(());
        }
        let scope = if self.grant.prefix.is_empty() {
            String::new()
        } else {
            format!(" (granted prefix `{}`)", self.grant.prefix)
        };
        Err(types::Error::Denied(format!(
            "datastore {what} of `{key}` not granted to this plugin{scope}"
        )))
    }
}

fn kv_failed(e: DatastoreError) -> types::Error {
    match e {
        DatastoreError::Invalid(m) => types::Error::InvalidInput(m),
        e @ DatastoreError::Failed(_) => types::Error::Upstream(e.to_string()),
    }
}

/// The longest TTL a plugin may set (StackStorm has no limit; ten years is far enough).
const MAX_TTL_SECONDS: u32 = 10 * 365 * 24 * 3600;

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<String>, types::Error> {
        self.check_kv(false, &key)?;
        let Some(entry) = self.datastore.get(&key).await.map_err(kv_failed)? else {
            return Ok(None);
        };
        if entry.secret {
            if !self.grant.secrets {
                return Err(types::Error::Denied(format!(
                    "`{key}` is a secret and this plugin's datastore grant does not allow secrets (`secrets: true`)"
                )));
            }
            // From now on the value is masked in everything recorded of this call.
            self.redactor.add(entry.value.clone());
        }
        Ok(Some(entry.value))
    }

    async fn set(&mut self, key: String, value: String) -> Result<(), types::Error> {
        self.check_kv(true, &key)?;
        self.datastore
            .set(&key, &value, None)
            .await
            .map_err(kv_failed)
    }

    async fn delete(&mut self, key: String) -> Result<bool, types::Error> {
        self.check_kv(true, &key)?;
        self.datastore.delete(&key).await.map_err(kv_failed)
    }

    async fn set_with_ttl(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: u32,
    ) -> Result<(), types::Error> {
        self.check_kv(true, &key)?;
        if ttl_seconds == 0 || ttl_seconds > MAX_TTL_SECONDS {
            return Err(types::Error::InvalidInput(format!(
                "ttl must be between 1 and {MAX_TTL_SECONDS} seconds, got {ttl_seconds}"
            )));
        }
        let ttl = std::time::Duration::from_secs(u64::from(ttl_seconds));
        self.datastore
            .set(&key, &value, Some(ttl))
            .await
            .map_err(kv_failed)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, types::Error> {
        self.check_kv(true, &key)?;
        self.datastore
            .increment(&key, delta)
            .await
            .map_err(kv_failed)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<String>,
        new: String,
    ) -> Result<bool, types::Error> {
        self.check_kv(true, &key)?;
        self.datastore
            .compare_and_swap(&key, expected.as_deref(), &new)
            .await
            .map_err(kv_failed)
    }
}

impl config::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<String>, types::Error> {
        self.config
            .values
            .get(&key)
            .map(|v| serde_json::to_string(v).map_err(|e| types::Error::Internal(e.to_string())))
            .transpose()
    }

    async fn get_all(&mut self) -> Result<String, types::Error> {
        serde_json::to_string(&*self.config.values)
            .map_err(|e| types::Error::Internal(e.to_string()))
    }
}

impl events::Host for HostState {
    async fn emit(&mut self, trigger: String, payload: String) -> Result<String, types::Error> {
        let events = self.check_events("emit")?;
        let id = events
            .emit(&self.origin, &trigger, &payload)
            .await
            .map_err(events_failed)?;
        tracing::info!(target: "plugin", plugin = &*self.plugin, trigger, trigger_instance = id, "plugin emitted a trigger instance");
        Ok(id)
    }

    async fn request_execution(
        &mut self,
        action: String,
        parameters: String,
    ) -> Result<String, types::Error> {
        let events = self.check_events("request-execution")?;
        let id = events
            .request_execution(&self.origin, &action, &parameters)
            .await
            .map_err(events_failed)?;
        tracing::info!(target: "plugin", plugin = &*self.plugin, action, execution = id, "plugin requested an execution");
        Ok(id)
    }
}

impl HostState {
    fn check_events(&self, what: &str) -> Result<Arc<dyn Events>, types::Error> {
        if !self.events_granted {
            return Err(types::Error::Denied(format!(
                "`events.{what}` is not granted to this plugin (set `events: true` in its metadata)"
            )));
        }
        if self.origin.depth >= self.max_depth {
            return Err(types::Error::Denied(format!(
                "chain depth limit of {} reached: this execution is already {} plugin-started links deep, so it cannot start more work (a loop of emit/request-execution?)",
                self.max_depth, self.origin.depth
            )));
        }
        self.events
            .clone()
            .ok_or_else(|| types::Error::Upstream("events are not available in this host".into()))
    }
}

fn events_failed(e: EventsError) -> types::Error {
    match e {
        EventsError::Invalid(m) => types::Error::InvalidInput(m),
        EventsError::Denied(m) => types::Error::Denied(m),
        EventsError::Failed(m) => types::Error::Upstream(m),
    }
}

/// The 0.1.0 imports, answered by the same code as 0.2.0's.
mod v1 {
    use super::HostState;
    use crate::bindings::v1::{kv, log, types};

    fn error(e: crate::bindings::types::Error) -> types::Error {
        use crate::bindings::types::Error as E;
        match e {
            E::InvalidInput(m) => types::Error::InvalidInput(m),
            E::Denied(m) => types::Error::Denied(m),
            E::Upstream(m) => types::Error::Upstream(m),
            E::Internal(m) => types::Error::Internal(m),
        }
    }

    impl types::Host for HostState {}

    impl log::Host for HostState {
        async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
            use crate::types::LogLevel;
            let level = match level {
                log::Level::Trace => LogLevel::Trace,
                log::Level::Debug => LogLevel::Debug,
                log::Level::Info => LogLevel::Info,
                log::Level::Warn => LogLevel::Warn,
                log::Level::Error => LogLevel::Error,
            };
            self.log_line(level, message, fields);
        }
    }

    impl kv::Host for HostState {
        async fn get(&mut self, key: String) -> Result<Option<String>, types::Error> {
            crate::bindings::kv::Host::get(self, key)
                .await
                .map_err(error)
        }

        async fn set(&mut self, key: String, value: String) -> Result<(), types::Error> {
            crate::bindings::kv::Host::set(self, key, value)
                .await
                .map_err(error)
        }

        async fn delete(&mut self, key: String) -> Result<bool, types::Error> {
            crate::bindings::kv::Host::delete(self, key)
                .await
                .map_err(error)
        }
    }
}

/// A bounded capture of stdout or stderr.
///
/// Unlike wasmtime's `MemoryOutputPipe`, it never refuses a write: a full pipe would make Rust's
/// `print!` panic inside the guest. Bytes past the bound are counted and dropped.
#[derive(Clone)]
pub(crate) struct Capture {
    inner: Arc<Mutex<CaptureBuf>>,
}

#[derive(Default)]
struct CaptureBuf {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(CaptureBuf {
                bytes: Vec::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    /// The captured text (lossy UTF-8) and the number of bytes dropped.
    pub(crate) fn take(&self) -> (String, u64) {
        match self.inner.lock() {
            Ok(mut buf) => {
                let bytes = std::mem::take(&mut buf.bytes);
                (String::from_utf8_lossy(&bytes).into_owned(), buf.dropped)
            }
            Err(_) => (String::new(), 0),
        }
    }

    fn write(&self, data: &[u8]) {
        if let Ok(mut buf) = self.inner.lock() {
            let room = buf.limit.saturating_sub(buf.bytes.len());
            let keep = room.min(data.len());
            buf.bytes.extend_from_slice(&data[..keep]);
            buf.dropped += (data.len() - keep) as u64;
        }
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Capture {
    /// The last `max` bytes captured so far (lossy UTF-8), without consuming them.
    pub(crate) fn peek_tail(&self, max: usize) -> (String, u64) {
        match self.inner.lock() {
            Ok(buf) => {
                let start = buf.bytes.len().saturating_sub(max);
                (
                    String::from_utf8_lossy(&buf.bytes[start..]).into_owned(),
                    buf.dropped,
                )
            }
            Err(_) => (String::new(), 0),
        }
    }
}
