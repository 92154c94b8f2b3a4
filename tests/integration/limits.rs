//! Request limits: body size (413 without reading the body), load shedding (503 with
//! `Retry-After`), and the header timeout that closes slow or idle connections.

use std::time::{Duration, Instant};

use stormhook_server::{ConnectionLimits, Settings};
use stormhook_tests::{TestServer, webhook_rule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// A server with webhook `sample` and these settings.
async fn sample_server(settings: Settings) -> TestServer {
    TestServer::builder()
        .rules([webhook_rule("sample", "sample")])
        .settings(settings)
        .start()
        .await
}

/// The head of an authenticated `POST /api/v1/webhooks/sample` declaring `length` bytes, and
/// the body's first byte.
fn sample_head(server: &TestServer, length: usize) -> String {
    format!(
        "POST /api/v1/webhooks/sample HTTP/1.1\r\nHost: x\r\nSt2-Api-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{",
        server.key
    )
}

/// `n` requests from this address, each answered 200.
async fn assert_served(server: &TestServer, n: usize) {
    for _ in 0..n {
        let resp = server
            .client()
            .get(server.url("/api/v1/webhooks"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
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
    let server = sample_server(settings).await;
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
    let server = sample_server(settings).await;
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
    let server = sample_server(settings).await;
    // Hold the only slot: a request whose body never finishes arriving.
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    let head = sample_head(&server, 10);
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

/// A request head, then a body that never finishes.
async fn stall(from: Option<&str>, server: &TestServer, head: &str) -> TcpStream {
    let target: std::net::SocketAddr = addr(server).parse().unwrap();
    let mut stream = match from {
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
            socket.connect(target).await.unwrap()
        }
        None => TcpStream::connect(target).await.unwrap(),
    };
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn stalled_bodies_without_credentials_take_no_slot() {
    // The issue's reproduction: 1,100 connections (more than the default 1,024 request slots)
    // send a token request's head and stall its body. The token endpoint checks the Basic
    // credentials first and answers 401 without reading the body, so none of them holds a slot.
    let server = TestServer::builder()
        .htpasswd("alice:$apr1$Oyt8QyCE$1Ab4uJZ0yXW9UYwbzTn4f1\n")
        .start()
        .await;
    let mut stalled = Vec::new();
    for i in 0..1100 {
        let auth = if i % 2 == 0 {
            String::new()
        } else {
            "Authorization: Basic YWxpY2U6d3Jvbmc=\r\n".to_owned() // alice:wrong
        };
        stalled.push(
            stall(
                None,
                &server,
                &format!(
                    "POST /auth/v1/tokens HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
                ),
            )
            .await,
        );
    }
    // Each is answered without its body: 401 (or, for the password checks past one per core,
    // 503; for this one client's requests past its cap, 429).
    for stream in &mut stalled[..20] {
        let answer = read_all(stream, Duration::from_secs(5)).await;
        assert!(
            ["HTTP/1.1 401", "HTTP/1.1 503", "HTTP/1.1 429"]
                .iter()
                .any(|s| answer.starts_with(s)),
            "{answer}"
        );
    }
    // Everyone else is served while those connections stay open.
    assert_served(&server, 50).await;
    drop(stalled);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let settings = Settings {
        body_timeout: Duration::from_secs(1),
        ..Settings::default()
    };
    let server = sample_server(settings).await;
    let head = sample_head(&server, 10);
    let started = Instant::now();
    let mut slow = stall(None, &server, &head).await;
    let answer = read_all(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("Request body was not received in time"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing was stored.
    assert_eq!(
        server.get_json("/api/v1/triggerinstances").await,
        serde_json::json!([])
    );
}

#[tokio::test]
async fn a_body_trickling_below_the_minimum_rate_gets_408() {
    let settings = Settings {
        body_timeout: Duration::from_secs(60),
        body_min_rate: 1000,
        ..Settings::default()
    };
    let server = sample_server(settings).await;
    let head = sample_head(&server, 100000);
    let started = Instant::now();
    let mut slow = stall(None, &server, &head).await;
    // One byte every 200 ms, far below 1000 bytes per second: cut off soon after the 5 s grace.
    let answer = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b" ").await.is_err() || started.elapsed() > Duration::from_secs(20) {
            break read_all(&mut slow, Duration::from_secs(2)).await;
        }
        let mut peek = [0u8; 16];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), slow.peek(&mut peek)).await
            && n > 0
        {
            break read_all(&mut slow, Duration::from_secs(2)).await;
        }
    };
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(4) && took < Duration::from_secs(12),
        "cut off after the grace period: {took:?}"
    );
}

#[tokio::test]
async fn one_client_cannot_take_every_slot() {
    let settings = Settings {
        max_concurrent_requests: 8,
        max_requests_per_client: 3,
        ..Settings::default()
    };
    let server = sample_server(settings).await;
    let head = sample_head(&server, 10);
    // 127.0.0.2 holds three slots with bodies it does not finish; its fourth request is refused.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stall(Some("127.0.0.2"), &server, &head).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Headers that authentication ignores do not make it another client.
    let disguised = head.replacen(
        "Host: x\r\n",
        "Host: x\r\nCookie: z=1\r\nAuthorization: Basic eDp5\r\n",
        1,
    );
    let mut fourth = stall(Some("127.0.0.2"), &server, &disguised).await;
    let answer = read_all(&mut fourth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(
        answer.contains("Too many requests in progress from this client; retry later."),
        "{answer}"
    );
    // Another address is served, and so is another credential from the same address.
    assert_served(&server, 10).await;
    let resp = server
        .client()
        .post(server.url("/api/v1/apikeys"))
        .json(&serde_json::json!({"user": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let other_key = resp.json::<serde_json::Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let target: std::net::SocketAddr = addr(&server).parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(target).await.unwrap();
    other
        .write_all(
            format!(
                "GET /api/v1/webhooks HTTP/1.1\r\nHost: x\r\nSt2-Api-Key: {other_key}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let answer = read_all(&mut other, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}
