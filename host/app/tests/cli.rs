//! The `stormhook` binary as a user runs it: `serve` on a fresh data directory (the example packs
//! are installed and loaded), `plugin list` and `plugin reload` against it, and clear failures.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn stormhook() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stormhook"));
    cmd.env_remove("RUST_LOG")
        .env_remove("STORMHOOK_URL")
        .env_remove("STORMHOOK_PACKS");
    cmd
}

/// A `stormhook serve` process on a free port; killed on drop.
struct Server {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let data = tempfile::tempdir().unwrap();
    let mut child = stormhook()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
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
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server says where it listens");
    Server {
        child,
        url,
        _data: data,
    }
}

#[test]
fn help_lists_the_commands() {
    let out = stormhook().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["serve", "plugin"] {
        assert!(text.contains(command), "{text}");
    }
    let out = stormhook().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--data-dir",
        "--packs",
        "STORMHOOK_BIND",
        "STORMHOOK_DATA_DIR",
        "STORMHOOK_PACKS",
        "127.0.0.1:9101",
    ] {
        assert!(text.contains(flag), "serve --help mentions {flag}: {text}");
    }
}

#[test]
fn serve_installs_the_examples_and_plugin_list_shows_them() {
    let server = serve();
    let out = stormhook()
        .args(["plugin", "list", "--url", &server.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("REF")
            && header.contains("VERSION")
            && header.contains("LOADED AT")
            && header.contains("LAST ERROR"),
        "{table}"
    );
    for reference in ["demo.greet", "demo.counter", "demo.push_to_main"] {
        assert!(
            table.lines().any(|l| l.starts_with(reference)),
            "{reference} listed: {table}"
        );
    }

    let out = stormhook()
        .args(["plugin", "list", "-j", "--url", &server.url])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.iter()
            .all(|r| r["version"].as_str().is_some_and(|v| v.len() == 64)),
        "{rows:?}"
    );

    let started = Instant::now();
    let out = stormhook()
        .args(["plugin", "reload", "--url", &server.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("demo.greet")
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn client_commands_say_when_no_server_answers() {
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = stormhook()
        .args(["plugin", "list", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("cannot reach {url}/api/v1/plugins"))
            && err.contains("stormhook serve"),
        "{err}"
    );
}
