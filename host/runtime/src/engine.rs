//! The one wasmtime `Engine` of a runtime.
//!
//! Pooling allocator (instances come from pre-reserved slots), copy-on-write memory images,
//! epoch interruption with exactly one ticker thread per engine (a ticker per call is the
//! wasmtime #11814 pitfall), and a fallback to the on-demand allocator when the machine cannot
//! reserve the pool's address space.

use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::RuntimeConfig;

/// How the engine allocates instances; logged at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllocationMode {
    /// Pre-reserved slots (fast instantiation).
    Pooling,
    /// `mmap` per instance (the pool could not be reserved).
    OnDemand,
}

/// Builds the engine and starts its epoch ticker.
pub(crate) fn build(config: &RuntimeConfig) -> wasmtime::Result<(Engine, AllocationMode)> {
    let (engine, mode) = match Engine::new(&base_config(Some(pooling(config)), config)) {
        Ok(engine) => (engine, AllocationMode::Pooling),
        Err(err) => {
            tracing::warn!(error = %err, "pooling allocator unavailable, using on-demand allocation");
            (
                Engine::new(&base_config(None, config))?,
                AllocationMode::OnDemand,
            )
        }
    };
    spawn_ticker(&engine, config.epoch_tick);
    Ok((engine, mode))
}

fn pooling(config: &RuntimeConfig) -> PoolingAllocationConfig {
    let live = config.max_instances.max(1);
    let max_memory = config
        .max_limits
        .memory_bytes
        .max(config.action_defaults.memory_bytes);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(live)
        // A Rust component holds a few core instances (the program, the WASI adapter shims).
        .total_core_instances(live * 4)
        .total_memories(live * 2)
        .total_tables(live * 2)
        .total_stacks(live)
        .max_core_instances_per_component(16)
        .max_memories_per_component(4)
        .max_tables_per_component(4)
        .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
        .max_component_instance_size(1 << 20)
        // Reset small memories with memset and keep them resident; with PAGEMAP_SCAN (Linux
        // >= 6.7) only dirty pages are touched. This is the biggest single win for call latency.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(16)
        .max_unused_warm_slots((live / 10).max(4));
    pool
}

fn base_config(pool: Option<PoolingAllocationConfig>, _config: &RuntimeConfig) -> Config {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        // Guests that recurse without bound hit this and trap with a stack-overflow error.
        .max_wasm_stack(1 << 20)
        .async_stack_size(2 << 20);
    if let Some(pool) = pool {
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    cfg
}

/// Advances the engine's epoch every `tick` for as long as the engine lives.
fn spawn_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("stormhook-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        });
    if let Err(err) = spawned {
        // Without a ticker deadlines never fire; refuse to run silently without them.
        tracing::error!(error = %err, "cannot start the epoch ticker: plugin deadlines will not be enforced");
    }
}
