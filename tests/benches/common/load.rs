//! The webhook load generator the ingest and fairness benches share: keep-alive HTTP/1.1
//! connections on loopback, each posting one JSON body after another.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::net::TcpStream;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

/// Drives `connections` keep-alive HTTP/1.1 connections posting `body` to `path` at `addr` for
/// `warmup + secs`; returns (2xx/s, non-2xx, errors) over the `secs` measured.
pub(crate) async fn load(
    addr: String,
    path: &'static str,
    key: Option<String>,
    connections: usize,
    body: &'static str,
    warmup: Duration,
    secs: Duration,
) -> (f64, u64, u64) {
    let headers = key.map(|k| vec![("st2-api-key", k)]).unwrap_or_default();
    load_with(addr, path, headers, None, connections, body, warmup, secs).await
}

/// [`load`] with `headers` on every request, and, when `unique` names a header, a value of it
/// that differs for every request (a sender's delivery id).
#[allow(clippy::too_many_arguments, dead_code)]
pub(crate) async fn load_with(
    addr: String,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    unique: Option<&'static str>,
    connections: usize,
    body: &'static str,
    warmup: Duration,
    secs: Duration,
) -> (f64, u64, u64) {
    let headers = Arc::new(headers);
    let counts = Arc::new(Counts::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (addr, headers, counts, measuring, stop) = (
            addr.clone(),
            Arc::clone(&headers),
            counts.clone(),
            measuring.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut request = hyper::Request::post(path)
                    .header("host", &addr)
                    .header("content-type", "application/json")
                    .header("x-github-event", "push");
                for (name, value) in headers.iter() {
                    request = request.header(*name, value);
                }
                if let Some(name) = unique {
                    sent += 1;
                    request = request.header(name, format!("{connection}-{sent}"));
                }
                let request = request
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap();
                match sender.send_request(request).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.into_body().collect().await;
                        if measuring.load(Ordering::Relaxed) {
                            if ok { &counts.ok } else { &counts.other }
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(secs).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    (
        counts.ok.load(Ordering::Relaxed) as f64 / elapsed,
        counts.other.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
    )
}
