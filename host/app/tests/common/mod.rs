//! The harness for running the `stormhook` binary in tests, shared by `host/app`'s own tests
//! (`cli.rs`, `crash.rs`) and by the integration suite's `tests/integration/cli.rs`, which
//! includes this file with `#[path]`: where the binary is, the command with no setting inherited
//! from the test run, running it (blocking, or on the test's runtime) and asserting it
//! succeeded, starting `stormhook serve`, and creating an API key offline.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The `stormhook` binary.
///
/// In `host/app`'s own tests cargo gives its path (`CARGO_BIN_EXE_stormhook`). Another package's
/// tests (the integration suite) do not get it: there it is `STORMHOOK_BIN`, or the one next to
/// the test binary (`target/<profile>/stormhook`), which `cargo test --workspace` builds (for
/// `host/app`'s own tests) with the same features. Only when that is missing is it built here:
/// `cargo build -p stormhook` alone unifies features differently and would rebuild dependencies
/// on every run. After changing the host, run `cargo test --workspace` (or `cargo build -p
/// stormhook`) so the binary is not stale.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = option_env!("CARGO_BIN_EXE_stormhook") {
            return PathBuf::from(path);
        }
        if let Some(path) = std::env::var_os("STORMHOOK_BIN") {
            return PathBuf::from(path);
        }
        // `target/<profile>/deps/<test>-<hash>`.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary is in target/<profile>/deps");
        let binary = profile_dir.join(format!("stormhook{}", std::env::consts::EXE_SUFFIX));
        if binary.exists() {
            return binary;
        }
        let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
        let mut build = Command::new(env!("CARGO"));
        // The test's own package is a member of the workspace that holds `stormhook`.
        build
            .args(["build", "--quiet", "-p", "stormhook", "--bin", "stormhook"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
            None => {}
        }
        let out = build.output().expect("running cargo build");
        assert!(
            out.status.success(),
            "building the stormhook binary failed (or set STORMHOOK_BIN):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        binary
    })
}

/// The binary with no setting from the environment of the test run: no `STORMHOOK_*`, `ST2_*`
/// or `RUST_LOG` variable is inherited, and stdin is empty.
pub fn stormhook() -> Command {
    let mut cmd = Command::new(binary());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("STORMHOOK_") || name.starts_with("ST2_") || name == "RUST_LOG" {
            cmd.env_remove(&*name);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// [`stormhook`] with `HOME` set to `home` (and no `XDG_CONFIG_HOME`), so that no real client
/// config file is read.
pub fn stormhook_with_home(home: &Path) -> Command {
    let mut cmd = stormhook();
    cmd.env("HOME", home).env_remove("XDG_CONFIG_HOME");
    cmd
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Output {
    /// Asserts exit code 0 (else the test fails showing the whole run) and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:#?}");
        &self.stdout
    }

    /// Asserts exit code 0 and parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("{e}: {self:#?}"))
    }
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `cmd` to its end, blocking the thread.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary runs").into()
}

/// Runs `cmd` to its end without blocking the test's runtime (which may be serving what the
/// command talks to): at most 60 s, after which it is killed and the test fails.
pub async fn run_async(cmd: Command) -> Output {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the command finishes within 60 s")
        .expect("the binary runs")
        .into()
}

/// A `stormhook serve` process; killed on drop.
pub struct Serve {
    /// The process.
    pub child: Child,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its stdout lines (the first-start key, if any).
    pub stdout: Receiver<String>,
    log: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
}

impl Serve {
    /// What it wrote on stderr (its log) so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Kills it and returns its whole log.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        self.log()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `stormhook serve` on a free port over `data`, with `extra` arguments, and waits (at
/// most 60 s) until it says where it listens.
pub fn spawn_serve(data: &Path, extra: &[&str]) -> Serve {
    spawn_serve_with(stormhook(), data, extra)
}

/// [`spawn_serve`] from a prepared `cmd` ([`stormhook`] with global flags such as `-v`, or
/// environment such as `RUST_LOG`).
pub fn spawn_serve_with(mut cmd: Command, data: &Path, extra: &[&str]) -> Serve {
    let mut child = cmd
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let log_reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let stdout = child.stdout.take().unwrap();
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let mut serve = Serve {
        child,
        url: String::new(),
        stdout: out_rx,
        log,
        log_reader: Some(log_reader),
    };
    serve.url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the server did not start: {}", serve.log()));
    serve
}

/// Creates an API key offline with `stormhook apikey create -k`.
pub fn offline_key(data: &Path) -> String {
    let out = run(stormhook()
        .args(["apikey", "create", "-k", "--data-dir"])
        .arg(data));
    let text = out.ok();
    assert_eq!(text.lines().count(), 1, "-k prints the key alone: {text:?}");
    text.trim().to_owned()
}
