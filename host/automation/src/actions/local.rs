//! The `local-shell-cmd` runner: `core.local` runs `cmd` with `/bin/sh -c` on the server's host.
//!
//! Result and status as StackStorm's local runner gives them (`docs/st2-api.md` §4.4):
//! `{failed, succeeded, return_code, stdout, stderr}`, stdout and stderr with one trailing
//! newline (then carriage return) removed and JSON-decoded when they parse; exit 0 is
//! `succeeded`, the deadline is `timeout` (return code -9, with `error`), SIGTERM is
//! `abandoned`, anything else `failed`.
//!
//! The command runs in a process group of its own, so the deadline kills what it started too.
//! It gets a small environment (`PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `USER`, `SHELL` from
//! the server, then `env`), never the server's own variables, which may hold credentials.
//! Each stream keeps its first [`MAX_STREAM_BYTES`].

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt as _;

use super::Outcome;
use stormhook_storage::ExecutionStatus;

/// How much of stdout and of stderr is kept.
pub const MAX_STREAM_BYTES: usize = 1 << 20;

/// Variables passed on from the server's environment.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "SHELL"];

/// Runs `params.cmd`.
pub async fn run(params: &Map<String, Value>) -> Outcome {
    let Some(cmd) = params.get("cmd").and_then(Value::as_str) else {
        return Outcome::failed(json!({"error": "'cmd' is a required property"}));
    };
    if params.get("sudo").and_then(Value::as_bool) == Some(true) {
        return Outcome::failed(
            json!({"error": "sudo is not supported: Stormhook runs commands as its own user"}),
        );
    }
    let timeout = params.get("timeout").and_then(Value::as_u64).unwrap_or(60);
    let mut command = tokio::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(cmd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if let Some(env) = params.get("env").and_then(Value::as_object) {
        for (k, v) in env {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            command.env(k, v);
        }
    }
    if let Some(cwd) = params.get("cwd").and_then(Value::as_str) {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Outcome::failed(json!({
                "failed": true, "succeeded": false, "return_code": 1, "stdout": "",
                "stderr": format!("cannot start /bin/sh: {e}"),
            }));
        }
    };
    let pid = child.id();
    // A canceled execution drops this future: `kill_on_drop` kills only the shell, so the
    // guard kills the whole group (what the command started too).
    let mut group = GroupGuard(pid);
    let stdout = tokio::spawn(read_capped(child.stdout.take()));
    let stderr = tokio::spawn(read_capped(child.stderr.take()));
    let waited = tokio::time::timeout(Duration::from_secs(timeout), child.wait()).await;
    let (return_code, timed_out) = match waited {
        Ok(Ok(status)) => (exit_code(status), false),
        Ok(Err(e)) => {
            return Outcome::failed(json!({"error": format!("waiting for the command: {e}")}));
        }
        Err(_) => {
            kill_group(pid).await;
            let _ = child.kill().await;
            (-9, true)
        }
    };
    group.0 = None;
    // The group is gone after a timeout; otherwise the streams end when the command's last
    // holder closes them. A background process that keeps them open is cut off after a grace.
    let grace = Duration::from_secs(if timed_out { 1 } else { 5 });
    let stdout = tokio::time::timeout(grace, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(grace, stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut result = json!({
        "failed": return_code != 0,
        "succeeded": return_code == 0,
        "return_code": return_code,
        "stdout": decode(&stdout),
        "stderr": decode(&stderr),
    });
    let status = match return_code {
        0 => ExecutionStatus::Succeeded,
        -9 if timed_out => {
            result["error"] = json!(format!("Action failed to complete in {timeout} seconds"));
            ExecutionStatus::Timeout
        }
        -15 => ExecutionStatus::Abandoned,
        _ => ExecutionStatus::Failed,
    };
    Outcome { status, result }
}

/// Python's `returncode`: the exit code, or minus the signal that ended the process.
fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => i64::from(code),
        (None, Some(signal)) => -i64::from(signal),
        (None, None) => -1,
    }
}

/// Kills the command's process group when dropped while it holds the group's id: the run was
/// abandoned half-way (a cancel).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            // Not awaited: `kill` is quick, and a drop cannot wait.
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{pid}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .and_then(|mut kill| kill.wait());
        }
    }
}

/// Kills the command's process group (the shell and what it started).
async fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = tokio::process::Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{pid}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_STREAM_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// StackStorm's treatment of a stream: one trailing `\n`, then one `\r`, removed; JSON when it
/// parses, otherwise the text.
pub fn decode(raw: &[u8]) -> Value {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_trimmed_and_json_decoded() {
        assert_eq!(decode(b"42\n"), json!(42));
        assert_eq!(decode(b"{\"a\":1}\r\n"), json!({"a": 1}));
        assert_eq!(decode(b"hello\n\n"), json!("hello\n"));
        assert_eq!(decode(b""), json!(""));
        assert_eq!(decode(b"true"), json!(true));
    }

    #[tokio::test]
    async fn status_follows_the_exit_code() {
        let run_cmd = |cmd: &str, timeout: u64| {
            let mut p = Map::new();
            p.insert("cmd".into(), json!(cmd));
            p.insert("timeout".into(), json!(timeout));
            async move { run(&p).await }
        };
        let ok = run_cmd("echo 42", 10).await;
        assert_eq!(ok.status, "succeeded");
        assert_eq!(ok.result["stdout"], json!(42));
        let failed = run_cmd("echo oops >&2; exit 3", 10).await;
        assert_eq!(failed.status, "failed");
        assert_eq!(failed.result["return_code"], json!(3));
        assert_eq!(failed.result["stderr"], json!("oops"));
        let term = run_cmd("kill -TERM $$", 10).await;
        assert_eq!(term.status, "abandoned");
        assert_eq!(term.result["return_code"], json!(-15));
        let started = std::time::Instant::now();
        let slow = run_cmd("sleep 30 & sleep 30", 1).await;
        assert_eq!(slow.status, "timeout");
        assert_eq!(slow.result["return_code"], json!(-9));
        assert_eq!(
            slow.result["error"],
            json!("Action failed to complete in 1 seconds")
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the background sleep was killed too"
        );
    }

    #[tokio::test]
    async fn the_server_environment_is_not_inherited() {
        // Cargo gives the test process this variable; the command must not see it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let mut p = Map::new();
        p.insert("cmd".into(), json!("echo \"[$CARGO_MANIFEST_DIR][$FOO]\""));
        p.insert("env".into(), json!({"FOO": "bar"}));
        let out = run(&p).await;
        assert_eq!(out.result["stdout"], json!("[][bar]"));
    }
}
