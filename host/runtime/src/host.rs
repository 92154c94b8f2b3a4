//! The state of one call's store, and the host imports (`log`, `kv`, captured stdio).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{kv, log, types};
use crate::config::KvGrant;
use crate::datastore::Datastore;
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

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let record = LogRecord {
            level,
            message,
            fields,
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
}

fn denied(what: &str, key: &str, grant: &KvGrant) -> types::Error {
    let scope = if grant.prefix.is_empty() {
        String::new()
    } else {
        format!(" (granted prefix `{}`)", grant.prefix)
    };
    types::Error::Denied(format!(
        "datastore {what} of `{key}` not granted to this plugin{scope}"
    ))
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<String>, types::Error> {
        if !self.grant.read || !self.grant.covers(&key) {
            return Err(denied("read", &key, &self.grant));
        }
        self.datastore
            .get(&key)
            .await
            .map_err(|e| types::Error::Upstream(e.to_string()))
    }

    async fn set(&mut self, key: String, value: String) -> Result<(), types::Error> {
        if !self.grant.write || !self.grant.covers(&key) {
            return Err(denied("write", &key, &self.grant));
        }
        self.datastore
            .set(&key, &value)
            .await
            .map_err(|e| types::Error::Upstream(e.to_string()))
    }

    async fn delete(&mut self, key: String) -> Result<bool, types::Error> {
        if !self.grant.write || !self.grant.covers(&key) {
            return Err(denied("write", &key, &self.grant));
        }
        self.datastore
            .delete(&key)
            .await
            .map_err(|e| types::Error::Upstream(e.to_string()))
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
