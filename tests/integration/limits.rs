//! Request limits: body size (413 without reading the body), load shedding (503 with
//! `Retry-After`), and the header timeout that closes slow or idle connections.

use std::time::{Duration, Instant};

use stormhook::server::{ConnectionLimits, Settings};
use stormhook_tests::{TestServer, webhook_rule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

async fn read_all(stream: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_oversized_declared_body_gets_413_without_being_read() {
    let settings = Settings {
        max_body_bytes: 1024,
        ..Settings::default()
    };
    let server = TestServer::builder()
        .rules([webhook_rule("sample", "sample")])
        .settings(settings)
        .start()
        .await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "POST /api/v1/webhooks/sample HTTP/1.1\r\nHost: x\r\nSt2-Api-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n{{",
        server.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let answer = read_all(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .contains(r#"{"faultstring":"Request body is larger than the limit of 1024 bytes."}"#),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered without waiting for 100 MB"
    );
}

#[tokio::test]
async fn an_oversized_chunked_body_gets_413() {
    let settings = Settings {
        max_body_bytes: 1024,
        ..Settings::default()
    };
    let server = TestServer::builder()
        .rules([webhook_rule("sample", "sample")])
        .settings(settings)
        .start()
        .await;
    let big = format!(r#"{{"data": "{}"}}"#, "x".repeat(4096));
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    let request = format!(
        "POST /api/v1/webhooks/sample HTTP/1.1\r\nHost: x\r\nSt2-Api-Key: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        server.key,
        big.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_all(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let stored: Vec<serde_json::Value> = server
        .client()
        .get(server.url("/api/v1/triggerinstances?trigger_type=core.st2.webhook"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stored.is_empty());
}

#[tokio::test]
async fn past_the_concurrency_limit_requests_get_503_with_retry_after() {
    let settings = Settings {
        max_concurrent_requests: 1,
        ..Settings::default()
    };
    let server = TestServer::builder()
        .rules([webhook_rule("sample", "sample")])
        .settings(settings)
        .start()
        .await;
    // Hold the only slot: a request whose body never finishes arriving.
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    let head = format!(
        "POST /api/v1/webhooks/sample HTTP/1.1\r\nHost: x\r\nSt2-Api-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{{",
        server.key
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut shed = None;
    for _ in 0..100 {
        let resp = server
            .client()
            .get(server.url("/api/v1/webhooks"))
            .send()
            .await
            .unwrap();
        if resp.status() == 503 {
            shed = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let resp = shed.expect("a second request is shed while the slot is held");
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["faultstring"],
        "Too many requests in progress; retry later."
    );
    // Finishing the slow request frees the slot.
    slow.write_all(b"\"a\": 123}").await.unwrap();
    let answer = read_all(&mut slow, Duration::from_millis(500)).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(
        server
            .client()
            .get(server.url("/api/v1/webhooks"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let limits = ConnectionLimits {
        header_timeout: Duration::from_millis(500),
        ..ConnectionLimits::default()
    };
    let server = TestServer::builder().limits(limits).start().await;
    let mut partial = TcpStream::connect(addr(&server)).await.unwrap();
    partial
        .write_all(b"GET /api/v1/webhooks HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(addr(&server)).await.unwrap();
    let started = Instant::now();
    let partial_answer = read_all(&mut partial, Duration::from_secs(5)).await;
    let idle_answer = read_all(&mut idle, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "both closed by the timeout: {:?}",
        started.elapsed()
    );
    assert!(!partial_answer.contains("200 OK") && !idle_answer.contains("200 OK"));
    // Others are served meanwhile and after.
    assert_eq!(
        server
            .client()
            .get(server.url("/api/v1/webhooks"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
