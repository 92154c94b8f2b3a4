//! What the binary's test files share: running `stormhook` and starting `stormhook serve`.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// The binary, with the environment variables that would change its defaults removed.
pub fn stormhook() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stormhook"));
    cmd.env_remove("RUST_LOG")
        .env_remove("STORMHOOK_URL")
        .env_remove("STORMHOOK_PACKS")
        .env_remove("ST2_API_KEY");
    cmd
}

/// Starts `stormhook serve` on a free port over `data`, with `extra` arguments. Returns the
/// process, its base URL, and its stdout lines.
pub fn spawn_serve(data: &Path, extra: &[&str]) -> (Child, String, Receiver<String>) {
    let mut child = stormhook()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
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
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server says where it listens");
    (child, url, out_rx)
}

/// Runs `cmd`, which must succeed (else the test fails with its stderr); returns its stdout.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates an API key offline with `stormhook apikey create -k`.
pub fn offline_key(data: &Path) -> String {
    let text = stdout_of(
        stormhook()
            .args(["apikey", "create", "-k", "--data-dir"])
            .arg(data),
    );
    assert_eq!(text.lines().count(), 1, "-k prints the key alone: {text:?}");
    text.trim().to_owned()
}
