//! The hook called directly with `http::Request`s (no guest), against servers started here.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

use super::*;

/// What a test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    body_len: usize,
}

type Handler = Arc<dyn Fn(&Seen) -> http::Response<Full<Bytes>> + Send + Sync>;

/// An HTTP/1.1 server on 127.0.0.1 (over TLS when `tls` is given); its port and what it saw.
async fn serve(
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (handler, log, acceptor) = (handler.clone(), log.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                path_and_query: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                body_len: body.len(),
                            };
                            log.lock().unwrap().push(seen.clone());
                            Ok::<_, Infallible>(handler(&seen))
                        }
                    });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    (port, seen)
}

fn hello() -> Handler {
    Arc::new(|_| http::Response::new(Full::new(Bytes::from_static(b"hello"))))
}

fn sized(len: usize) -> Handler {
    Arc::new(move |_| http::Response::new(Full::new(Bytes::from(vec![b'x'; len]))))
}

/// A server that accepts connections and then writes `prefix` and nothing more.
async fn stall(prefix: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.write_all(prefix).await;
            held.push(tcp);
        }
    });
    port
}

/// Resolves every name under `example.com` (and the name itself) to 127.0.0.1; other names fail.
fn example_resolver() -> Resolver {
    Arc::new(|host: &str| {
        let found = host == "example.com" || host.ends_with(".example.com");
        Box::pin(async move {
            match found {
                true => Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
                false => Err(std::io::Error::other("no such host")),
            }
        })
    })
}

fn client() -> OutboundClient {
    OutboundClient::new(None)
        .unwrap()
        .with_resolver(example_resolver())
}

fn call_with(
    client: OutboundClient,
    grant: &[String],
    limits: OutboundLimits,
    deadline: Instant,
) -> OutboundCall {
    let grant = Arc::new(OutboundGrant::parse(grant).unwrap());
    let redact: Redact = Arc::new(|s: &str| s.replace("s3cr3t", "********"));
    OutboundCall::new(
        client,
        grant,
        limits,
        deadline,
        Arc::from("examples.post"),
        redact,
    )
}

fn call_for(grant: &[String]) -> OutboundCall {
    call_with(client(), grant, OutboundLimits::default(), in_30s())
}

fn in_30s() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// A call allowed to reach the local server on `port` (by its address), under `limits`.
fn local(port: u16, limits: OutboundLimits, deadline: Instant) -> OutboundCall {
    call_with(
        client(),
        &[format!("http://127.0.0.1:{port}")],
        limits,
        deadline,
    )
}

fn request(method: &str, url: &str, body: &[u8], content_length: bool) -> http::Request<WasiBody> {
    let mut builder = http::Request::builder().method(method).uri(url);
    if content_length {
        builder = builder.header(http::header::CONTENT_LENGTH, body.len());
    }
    let body = Full::new(Bytes::copy_from_slice(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    builder.body(body).unwrap()
}

fn get(url: &str) -> http::Request<WasiBody> {
    request("GET", url, b"", false)
}

/// Sends through the hook as wasi:http does, then reads the whole body.
async fn send(
    call: &mut OutboundCall,
    request: http::Request<WasiBody>,
) -> Result<(u16, Bytes), Error> {
    let sent = call.send_request(request, None, Box::new(async { Ok(()) }));
    let (response, io) = Pin::from(sent).await?;
    let io = tokio::spawn(Pin::from(io));
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    drop(io);
    Ok((status, body?))
}

fn only_error(call: &OutboundCall) -> String {
    let records = call.records();
    assert_eq!(records.len(), 1, "{records:?}");
    records[0].error.clone().unwrap_or_default()
}

use std::pin::Pin;

#[tokio::test]
async fn an_allowed_host_answers_and_the_record_has_no_query() {
    let (port, seen) = serve(None, hello()).await;
    let mut call = call_for(&[format!("http://127.0.0.1:{port}")]);
    let url = format!("http://127.0.0.1:{port}/services/s3cr3t?token=abc#frag");
    let (status, body) = send(&mut call, request("POST", &url, b"{\"text\":\"hi\"}", true))
        .await
        .unwrap();
    assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/services/s3cr3t?token=abc");
    assert_eq!(seen[0].body_len, 13);
    let records = call.records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.method, "POST");
    assert_eq!(
        record.url,
        format!("http://127.0.0.1:{port}/services/********")
    );
    assert_eq!(record.status, Some(200));
    assert_eq!((record.request_bytes, record.response_bytes), (13, 5));
    assert_eq!(record.error, None);
    let json = serde_json::to_value(record).unwrap();
    assert_eq!(
        json["url"],
        format!("http://127.0.0.1:{port}/services/********")
    );
}

#[tokio::test]
async fn a_host_not_in_the_grant_is_denied_before_any_connection() {
    let (port, seen) = serve(None, hello()).await;
    let mut call = call_for(&[format!("http://127.0.0.1:{port}")]);
    let err = send(&mut call, get(&format!("http://api.example.com:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    let error = only_error(&call);
    assert!(
        error.contains("host not in allowed_outbound_hosts"),
        "{error}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn port_and_scheme_must_match_the_grant() {
    let (port, seen) = serve(None, hello()).await;
    let other = if port == 65535 { port - 1 } else { port + 1 };
    for grant in [
        format!("http://127.0.0.1:{other}"),
        format!("https://127.0.0.1:{port}"),
        "http://127.0.0.1".into(),
    ] {
        let mut call = call_for(std::slice::from_ref(&grant));
        let err = send(&mut call, get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::HttpRequestDenied), "{grant}: {err:?}");
        assert!(
            only_error(&call).contains("host not in allowed_outbound_hosts"),
            "{grant}"
        );
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_wildcard_allows_subdomains_whose_address_is_named() {
    let (port, seen) = serve(None, hello()).await;

    // The name is allowed but resolves to loopback, which the grant does not name.
    let mut call = call_for(&[format!("http://*.example.com:{port}")]);
    let err = send(&mut call, get(&format!("http://api.example.com:{port}/x")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    assert_eq!(
        only_error(&call),
        "address 127.0.0.1 is loopback and not named in allowed_outbound_hosts"
    );
    assert!(seen.lock().unwrap().is_empty());

    // Naming the address lets the name through; the wildcard still leaves out the domain itself.
    let grant = [
        format!("http://*.example.com:{port}"),
        format!("http://127.0.0.1:{port}"),
    ];
    let mut call = call_for(&grant);
    let (status, _) = send(&mut call, get(&format!("http://api.example.com:{port}/x")))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let err = send(&mut call, get(&format!("http://example.com:{port}/x")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let records = call.records();
    assert_eq!(records[0].url, format!("http://api.example.com:{port}/x"));
    assert_eq!(records[0].status, Some(200));
}

#[tokio::test]
async fn loopback_is_reachable_only_when_named() {
    let (port, seen) = serve(None, hello()).await;
    // `localhost` names loopback.
    let mut call = call_for(&[format!("http://localhost:{port}")]);
    let (status, _) = send(&mut call, get(&format!("http://localhost:{port}/")))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // A wildcard host names no address.
    let mut call = call_for(&[format!("http://*:{port}")]);
    let err = send(&mut call, get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    assert_eq!(
        only_error(&call),
        "address 127.0.0.1 is loopback and not named in allowed_outbound_hosts"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn response_bytes_are_capped_over_the_whole_call() {
    let (port, _) = serve(None, sized(6000)).await;
    let limits = OutboundLimits {
        max_response_bytes: 10_000,
        ..Default::default()
    };
    let mut call = local(port, limits, in_30s());
    let url = format!("http://127.0.0.1:{port}/big");
    let (_, body) = send(&mut call, get(&url)).await.unwrap();
    assert_eq!(body.len(), 6000);
    let err = send(&mut call, get(&url)).await.unwrap_err();
    assert!(
        matches!(err, Error::HttpResponseBodySize(Some(10_000))),
        "{err:?}"
    );
    let records = call.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].status, Some(200));
    assert!(
        records[0].response_bytes + records[1].response_bytes <= 10_000,
        "{records:?}"
    );
    let error = records[1].error.clone().unwrap();
    assert!(
        error.contains("over the call's limit of 10000 bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn requests_past_the_count_are_refused() {
    let (port, seen) = serve(None, hello()).await;
    let limits = OutboundLimits {
        max_requests: 2,
        ..Default::default()
    };
    let mut call = local(port, limits, in_30s());
    let url = format!("http://127.0.0.1:{port}/");
    send(&mut call, get(&url)).await.unwrap();
    send(&mut call, get(&url)).await.unwrap();
    for _ in 0..3 {
        let err = send(&mut call, get(&url)).await.unwrap_err();
        assert!(matches!(err, Error::HttpRequestDenied), "{err:?}");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    let records = call.records();
    assert_eq!(
        records.len(),
        3,
        "the first refusal is recorded, later ones counted"
    );
    assert_eq!(
        records[2].error.as_deref(),
        Some("request limit of 2 reached")
    );
    assert_eq!(call.unrecorded(), 2);
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_refused_or_cut() {
    let (port, seen) = serve(None, hello()).await;
    let limits = OutboundLimits {
        max_request_body_bytes: 1024,
        ..Default::default()
    };
    let mut call = local(port, limits, in_30s());
    let url = format!("http://127.0.0.1:{port}/");
    let body = vec![b'a'; 2048];

    // Declared too long: refused before connecting.
    let err = send(&mut call, request("POST", &url, &body, true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::HttpRequestBodySize(Some(2048))),
        "{err:?}"
    );
    // Not declared: cut while it streams.
    let err = send(&mut call, request("POST", &url, &body, false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::HttpRequestBodySize(Some(1024))),
        "{err:?}"
    );
    // At the limit: sent.
    let (status, _) = send(&mut call, request("POST", &url, &body[..1024], true))
        .await
        .unwrap();
    assert_eq!(status, 200);

    let records = call.records();
    assert_eq!(
        records[0].error.as_deref(),
        Some("request body of 2048 bytes is over the limit of 1024 bytes")
    );
    assert_eq!(
        records[1].error.as_deref(),
        Some("request body over the limit of 1024 bytes")
    );
    assert_eq!(records[2].request_bytes, 1024);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].body_len, 1024);
}

#[tokio::test]
async fn a_silent_server_is_cut_before_the_calls_deadline() {
    let port = stall(b"").await;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1000);
    let mut call = call_with(
        client(),
        &[format!("http://127.0.0.1:{port}")],
        OutboundLimits::default(),
        deadline,
    );
    let err = send(&mut call, get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    assert!(
        Instant::now() < deadline,
        "failed after the deadline: {elapsed:?}"
    );
    assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
    assert_eq!(only_error(&call), "no response within the call's deadline");
    assert!(call.records()[0].duration_ms >= 700);
}

#[tokio::test]
async fn a_silent_server_is_cut_at_the_request_timeout() {
    let port = stall(b"").await;
    let limits = OutboundLimits {
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut call = local(port, limits, deadline);
    let err = send(&mut call, get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        only_error(&call),
        "no response within the request timeout of 300ms"
    );
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_at_the_request_timeout() {
    let port = stall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc").await;
    let limits = OutboundLimits {
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut call = local(port, limits, deadline);
    let err = send(&mut call, get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionReadTimeout), "{err:?}");
    let records = call.records();
    assert_eq!(records[0].status, Some(200));
    assert_eq!(records[0].response_bytes, 3);
    assert_eq!(
        records[0].error.as_deref(),
        Some("the response body did not end within the request timeout of 300ms")
    );
}

#[tokio::test]
async fn a_resolver_that_hangs_is_cut_at_the_connect_timeout() {
    let hang: Resolver = Arc::new(|_: &str| Box::pin(std::future::pending()));
    let limits = OutboundLimits {
        connect_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = OutboundClient::new(None).unwrap().with_resolver(hang);
    let mut call = call_with(client, &["http://slow.test".into()], limits, deadline);
    let err = send(&mut call, get("http://slow.test/")).await.unwrap_err();
    assert!(matches!(err, Error::DnsTimeout), "{err:?}");
    assert_eq!(
        only_error(&call),
        "resolving slow.test took longer than the connect timeout of 200ms"
    );
}

#[tokio::test]
async fn a_request_dropped_in_flight_is_recorded_as_cancelled() {
    let port = stall(b"").await;
    let mut call = call_for(&[format!("http://127.0.0.1:{port}")]);
    let sent = call.send_request(
        get(&format!("http://127.0.0.1:{port}/")),
        None,
        Box::new(async { Ok(()) }),
    );
    let sent = Pin::from(sent);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), sent)
            .await
            .is_err()
    );
    assert_eq!(
        only_error(&call),
        "cancelled: the call ended before the response"
    );
}

/// A CA, and a server configuration with a certificate for `localhost` that it signed.
fn test_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Stormhook test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &*ca).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca.pem(), Arc::new(server))
}

#[tokio::test]
async fn https_trusts_the_operators_ca_bundle_and_only_then() {
    let (ca_pem, server) = test_ca();
    let (port, seen) = serve(Some(server), hello()).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &ca_pem).unwrap();
    let grant = [format!("https://localhost:{port}")];
    let url = format!("https://localhost:{port}/secure?x=1");
    let deadline = Instant::now() + Duration::from_secs(30);

    let client = OutboundClient::new(Some(&bundle)).unwrap();
    let mut call = call_with(client, &grant, OutboundLimits::default(), deadline);
    let (status, body) = send(&mut call, get(&url)).await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    assert_eq!(
        call.records()[0].url,
        format!("https://localhost:{port}/secure")
    );

    let mut call = call_with(
        OutboundClient::new(None).unwrap(),
        &grant,
        OutboundLimits::default(),
        deadline,
    );
    let err = send(&mut call, get(&url)).await.unwrap_err();
    assert!(matches!(err, Error::TlsCertificateError), "{err:?}");
    let error = only_error(&call);
    assert!(
        error.starts_with("the TLS handshake with localhost: "),
        "{error}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_ca_bundle_must_be_readable_and_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = OutboundClient::new(Some(&missing)).unwrap_err();
    assert!(
        err.starts_with(&format!("the CA bundle {}: ", missing.display())),
        "{err}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = OutboundClient::new(Some(&empty)).unwrap_err();
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(OutboundClient::new(Some(&broken)).is_err());
}

/// A log capture for the current thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_request_is_logged_under_the_plugin_target() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (port, _) = serve(None, hello()).await;
    let mut call = call_for(&[format!("http://127.0.0.1:{port}")]);
    send(
        &mut call,
        get(&format!("http://127.0.0.1:{port}/ok/s3cr3t?q=1")),
    )
    .await
    .unwrap();
    send(&mut call, get(&format!("http://api.example.com:{port}/no")))
        .await
        .unwrap_err();
    drop(call);

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let sent = lines
        .iter()
        .find(|l| l.contains("outbound request "))
        .expect(&log);
    assert!(sent.contains(" INFO plugin:"), "{sent}");
    assert!(sent.contains("plugin=examples.post"), "{sent}");
    assert!(
        sent.contains(&format!("url=http://127.0.0.1:{port}/ok/********")),
        "{sent}"
    );
    assert!(sent.contains("status=200"), "{sent}");
    assert!(!log.contains("q=1") && !log.contains("s3cr3t"), "{log}");
    let refused = lines
        .iter()
        .find(|l| l.contains("outbound request refused"))
        .expect(&log);
    assert!(refused.contains(" WARN plugin:"), "{refused}");
    assert!(
        refused.contains("reason=host not in allowed_outbound_hosts ("),
        "{refused}"
    );
}

#[tokio::test]
async fn urls_with_userinfo_or_without_a_host_are_refused() {
    let (port, seen) = serve(None, hello()).await;
    let mut call = call_for(&[format!("http://127.0.0.1:{port}")]);
    let err = send(
        &mut call,
        get(&format!("http://user:s3cr3t@127.0.0.1:{port}/")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::HttpRequestUriInvalid), "{err:?}");
    let err = send(&mut call, get("/relative")).await.unwrap_err();
    assert!(matches!(err, Error::HttpRequestUriInvalid), "{err:?}");
    let records = call.records();
    assert_eq!(records[0].url, format!("http://127.0.0.1:{port}/"));
    assert_eq!(
        records[0].error.as_deref(),
        Some("userinfo in the URL is not supported (send an Authorization header)")
    );
    assert_eq!(
        records[1].error.as_deref(),
        Some("the URL needs an http or https scheme and a host")
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn the_call_is_the_hooks_of_a_wasi_http_view() {
    let mut call = call_for(&[]);
    let mut ctx = wasmtime_wasi_http::WasiHttpCtx::new();
    let mut table = wasmtime::component::ResourceTable::new();
    let view = wasmtime_wasi_http::WasiHttpCtxView {
        ctx: &mut ctx,
        table: &mut table,
        hooks: &mut call,
    };
    // wasi:http's default forbidden headers are kept; others pass.
    assert!(view.hooks.is_forbidden_header(&http::header::HOST));
    assert!(
        view.hooks
            .is_forbidden_header(&http::header::TRANSFER_ENCODING)
    );
    assert!(!view.hooks.is_forbidden_header(&http::header::AUTHORIZATION));
}
