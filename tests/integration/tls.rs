//! HTTPS with `--tls-cert`/`--tls-key`, exercised with curl command lines as StackStorm's docs
//! write them. Only the host is changed (`localhost:<port>`); curl trusts the test certificate
//! through `CURL_CA_BUNDLE`, so the lines need no `-k`.

use std::process::Command;

use serde_json::Value;
use stormhook_tests::{TestServer, webhook_rule};

fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Runs one curl command line through the shell; returns stdout.
fn curl(line: &str, ca: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(line)
        .env("CURL_CA_BUNDLE", ca)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stackstorm_curl_lines_work_over_https() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let server = TestServer::builder()
        .rules([webhook_rule("sample", "sample")])
        .htpasswd("alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n")
        .tls(cert.clone(), key)
        .start()
        .await;
    let host = server.base.trim_start_matches("https://").to_owned();
    let api_key = server.key.clone();

    let lines = [
        format!(
            r#"curl -X POST https://{host}/api/v1/webhooks/sample -H "St2-Api-Key: {api_key}" -H "Content-Type: application/json" --data '{{"key1": "value1"}}'"#
        ),
        format!(
            r#"curl -X POST "https://{host}/api/v1/webhooks/sample?st2-api-key={api_key}" -H "Content-Type: application/json" --data '{{"key2": "value2"}}'"#
        ),
    ];
    let outputs: Vec<String> = tokio::task::spawn_blocking({
        let (lines, cert) = (lines.clone(), cert.clone());
        move || lines.iter().map(|l| curl(l, &cert)).collect()
    })
    .await
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&outputs[0]).unwrap(),
        serde_json::json!({"key1": "value1"})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&outputs[1]).unwrap(),
        serde_json::json!({"key2": "value2"})
    );

    // A token from the auth endpoint, then the generic webhook with it.
    let token_line = format!(r#"curl -X POST -u 'alice:secret' https://{host}/auth/v1/tokens"#);
    let token: Value = {
        let cert = cert.clone();
        serde_json::from_str(
            &tokio::task::spawn_blocking(move || curl(&token_line, &cert))
                .await
                .unwrap(),
        )
        .unwrap()
    };
    let token = token["token"].as_str().unwrap().to_owned();
    let list_line =
        format!(r#"curl -H "X-Auth-Token: {token}" https://{host}/api/v1/triggerinstances"#);
    let listed: Value = serde_json::from_str(
        &tokio::task::spawn_blocking(move || curl(&list_line, &cert))
            .await
            .unwrap(),
    )
    .unwrap();
    let bodies: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        // Not the instances completed executions dispatch (the rules run core.noop).
        .filter(|t| t["trigger"] != "core.st2.generic.actiontrigger")
        .map(|t| &t["payload"]["body"])
        .collect();
    assert_eq!(
        bodies,
        [
            &serde_json::json!({"key2": "value2"}),
            &serde_json::json!({"key1": "value1"})
        ]
    );
}
