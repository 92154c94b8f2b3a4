# Conveniences; every recipe is a plain cargo command, and nothing here is required
# (`cargo test --workspace` is what CI runs).

default:
    @just --list

# Build the host (which also builds plugins/ for wasm32-wasip2).
build mode="debug":
    cargo build --workspace {{ if mode == "release" { "--release" } else { "" } }}

# Build the plugins workspace on its own.
plugins:
    rustup target add wasm32-wasip2
    cargo build --release --manifest-path plugins/Cargo.toml --target wasm32-wasip2

# Lints for the host and the plugins.
lint:
    cargo clippy --workspace --all-targets -- -D warnings
    cargo fmt --all --check
    cd plugins && cargo clippy --release -- -D warnings && cargo fmt --all --check

# The whole test suite (what CI runs).
test:
    cargo test --workspace

# Library tests (no server).
test-unit:
    cargo test -p stormhook-packs -p stormhook-runtime -p stormhook-rules -p stormhook-storage -p stormhook-automation -p stormhook-server

# The integration suite.
test-integration:
    cargo test -p stormhook-tests -p stormhook

# Benchmarks (see BENCHMARKS.md): per-call runtime, rules, durable ingest.
bench:
    cargo bench -p stormhook-tests --bench runtime
    cargo bench -p stormhook-tests --bench rules
    cargo bench -p stormhook-tests --bench ingest
    cargo bench -p stormhook-tests --bench executions

# Serve with the embedded defaults and the example packs.
run RUST_LOG='info':
    RUST_LOG={{RUST_LOG}} cargo run --release -p stormhook -- serve
