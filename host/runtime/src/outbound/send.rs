//! Sending one admitted request: resolve, check the addresses, connect, TLS, HTTP/1.1, and the
//! bodies with their limits.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep_until, timeout_at};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::address::{MAX_ADDRESSES, loopback_name, restricted};
use super::grant::{Host, Scheme, shorten};
use super::record::{Slot, Tracker};
use super::{DEADLINE_MARGIN, IoFuture, Shared, Target};

/// At most this many bytes of an error message are recorded.
const MAX_MESSAGE_BYTES: usize = 512;

/// A connected stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

type Connection = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, RequestBody>;

/// Why a request did not get a response: the code the plugin sees and the message recorded.
struct Failure {
    error: Error,
    message: String,
    /// The policy refused it (a warn line), rather than the network failing it.
    refused: bool,
}

impl Failure {
    fn new(error: Error, message: String) -> Failure {
        Failure {
            error,
            message: shorten(&message, MAX_MESSAGE_BYTES),
            refused: false,
        }
    }
}

/// When each phase of one request must be over, and what set that time (for the messages).
struct Times {
    connect: Instant,
    connect_cause: String,
    end: Instant,
    end_cause: String,
    first_byte: Option<Duration>,
    between_bytes: Option<Duration>,
}

impl Times {
    fn new(shared: &Shared, options: Option<RequestOptions>) -> Times {
        let now = Instant::now();
        let limits = &shared.limits;
        let cutoff = Instant::from_std(shared.deadline)
            .checked_sub(DEADLINE_MARGIN)
            .unwrap_or(now)
            .max(now);
        let deadline = || (cutoff, "the call's deadline".to_owned());
        let (end, end_cause) = match now.checked_add(limits.request_timeout) {
            Some(at) if at <= cutoff => (
                at,
                format!("the request timeout of {:?}", limits.request_timeout),
            ),
            _ => deadline(),
        };
        let options = options.unwrap_or_default();
        let connect_timeout = options
            .connect_timeout
            .map_or(limits.connect_timeout, |t| t.min(limits.connect_timeout));
        let (connect, connect_cause) = match now.checked_add(connect_timeout) {
            Some(at) if at <= end => (at, format!("the connect timeout of {connect_timeout:?}")),
            _ => (end, end_cause.clone()),
        };
        Times {
            connect,
            connect_cause,
            end,
            end_cause,
            first_byte: options.first_byte_timeout,
            between_bytes: options.between_bytes_timeout,
        }
    }
}

/// Sends an admitted request; `tracker` records how it went.
pub(super) async fn send(
    shared: Arc<Shared>,
    target: Target,
    tracker: Tracker,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let times = Times::new(&shared, options);
    let (response, conn) = match exchange(&shared, &target, &tracker.slot, &times, request).await {
        Ok(exchanged) => exchanged,
        Err(failure) if failure.refused => {
            return Err(tracker.refuse(failure.message, failure.error));
        }
        Err(failure) => {
            tracker.fail(failure.message);
            return Err(failure.error);
        }
    };
    let (parts, incoming) = response.into_parts();
    tracker.slot.set_status(parts.status.as_u16());
    let body = ResponseBody {
        incoming,
        shared: shared.clone(),
        tracker,
        end: Box::pin(sleep_until(times.end)),
        end_cause: times.end_cause,
        between: times
            .between_bytes
            .map(|d| (d, Box::pin(sleep_until(Instant::now() + d)))),
        done: false,
    };
    let end = times.end;
    // Drives the connection while the body is read; never past the request's end, so no
    // connection outlives its request (nor the call).
    let io: IoFuture = Box::new(async move {
        if let Some(conn) = conn {
            let _ = timeout_at(end, conn).await;
        }
        Ok(())
    });
    Ok((http::Response::from_parts(parts, body.boxed_unsync()), io))
}

async fn exchange(
    shared: &Shared,
    target: &Target,
    slot: &Arc<Slot>,
    times: &Times,
    request: http::Request<WasiBody>,
) -> Result<
    (
        http::Response<hyper::body::Incoming>,
        Option<Pin<Box<Connection>>>,
    ),
    Failure,
> {
    let addresses = resolve(shared, target, times).await?;
    for ip in &addresses {
        if let Some(class) = restricted(*ip)
            && !shared.grant.names_address(target.scheme, *ip, target.port)
        {
            return Err(Failure {
                refused: true,
                ..Failure::new(
                    Error::HttpRequestDenied,
                    format!("address {ip} is {class} and not named in allowed_outbound_hosts"),
                )
            });
        }
    }
    let tcp = connect(&addresses, target.port, times).await?;
    let stream: Box<dyn Stream> = match target.scheme {
        Scheme::Http => Box::new(tcp),
        Scheme::Https => Box::new(tls(shared, &target.host, tcp, times).await?),
    };
    let (mut sender, conn) = match timeout_at(
        times.connect,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    {
        Err(_) => {
            return Err(Failure::new(
                Error::ConnectionTimeout,
                format!(
                    "the HTTP handshake took longer than {}",
                    times.connect_cause
                ),
            ));
        }
        Ok(Err(e)) => return Err(hyper_failure(&e, "the HTTP handshake")),
        Ok(Ok(handshake)) => handshake,
    };

    // The request line carries the path only (the host is in the Host header).
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    parts.uri = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|e| Failure::new(Error::HttpRequestUriInvalid, format!("the URL's path: {e}")))?;
    let max_body = shared.limits.max_request_body_bytes;
    let over = Arc::new(AtomicBool::new(false));
    let body = RequestBody {
        inner: body,
        slot: slot.clone(),
        sent: 0,
        max: max_body,
        over: over.clone(),
    };

    let (first_byte, first_byte_cause) = match times
        .first_byte
        .and_then(|t| Some((Instant::now().checked_add(t)?, t)))
    {
        Some((at, t)) if at < times.end => (at, format!("the first-byte timeout of {t:?}")),
        _ => (times.end, times.end_cause.clone()),
    };
    let mut conn = Box::pin(conn);
    let mut conn_done = false;
    let send = sender.send_request(http::Request::from_parts(parts, body));
    tokio::pin!(send);
    let waited = timeout_at(first_byte, async {
        loop {
            tokio::select! {
                response = &mut send => return response,
                // The connection's own error reaches `send` too; keep waiting for it.
                _ = &mut conn, if !conn_done => conn_done = true,
            }
        }
    })
    .await;
    match waited {
        Err(_) => Err(Failure::new(
            Error::ConnectionReadTimeout,
            format!("no response within {first_byte_cause}"),
        )),
        Ok(Err(_)) if over.load(Ordering::Relaxed) => Err(Failure::new(
            Error::HttpRequestBodySize(Some(max_body)),
            format!("request body over the limit of {max_body} bytes"),
        )),
        Ok(Err(e)) => Err(hyper_failure(&e, "sending the request")),
        Ok(Ok(response)) => Ok((response, (!conn_done).then_some(conn))),
    }
}

async fn resolve(shared: &Shared, target: &Target, times: &Times) -> Result<Vec<IpAddr>, Failure> {
    let name = match &target.host {
        Host::Ip(ip) => return Ok(vec![*ip]),
        Host::Name(name) => name,
    };
    if let Some(loopback) = loopback_name(name) {
        return Ok(loopback);
    }
    let dns_error = |message: String| {
        Failure::new(
            Error::DnsError {
                rcode: Some("address not available".into()),
                info_code: None,
            },
            message,
        )
    };
    match timeout_at(times.connect, (shared.client.resolver)(name)).await {
        Err(_) => Err(Failure::new(
            Error::DnsTimeout,
            format!("resolving {name} took longer than {}", times.connect_cause),
        )),
        Ok(Err(e)) => Err(dns_error(format!("resolving {name}: {e}"))),
        Ok(Ok(addresses)) if addresses.is_empty() => {
            Err(dns_error(format!("resolving {name}: no address")))
        }
        Ok(Ok(addresses)) => Ok(addresses
            .into_iter()
            .take(MAX_ADDRESSES)
            .map(|ip| ip.to_canonical())
            .collect()),
    }
}

/// Connects to the first address that answers, within the connect time.
async fn connect(addresses: &[IpAddr], port: u16, times: &Times) -> Result<TcpStream, Failure> {
    let mut last = None;
    for ip in addresses {
        let address = SocketAddr::new(*ip, port);
        match timeout_at(times.connect, TcpStream::connect(address)).await {
            Err(_) => {
                return Err(Failure::new(
                    Error::ConnectionTimeout,
                    format!(
                        "connecting to {address} took longer than {}",
                        times.connect_cause
                    ),
                ));
            }
            Ok(Err(e)) => last = Some((address, e)),
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
        }
    }
    Err(match last {
        Some((address, e)) => {
            let error = match e.kind() {
                std::io::ErrorKind::NetworkUnreachable | std::io::ErrorKind::HostUnreachable => {
                    Error::DestinationUnavailable
                }
                _ => Error::ConnectionRefused,
            };
            Failure::new(error, format!("connecting to {address}: {e}"))
        }
        None => Failure::new(
            Error::DestinationNotFound,
            "no address to connect to".into(),
        ),
    })
}

async fn tls(
    shared: &Shared,
    host: &Host,
    tcp: TcpStream,
    times: &Times,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let name = match host {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(name) => ServerName::try_from(name.clone()).map_err(|e| {
            Failure::new(
                Error::HttpRequestUriInvalid,
                format!("TLS server name {name:?}: {e}"),
            )
        })?,
    };
    let connector = tokio_rustls::TlsConnector::from(shared.client.tls.clone());
    match timeout_at(times.connect, connector.connect(name, tcp)).await {
        Err(_) => Err(Failure::new(
            Error::ConnectionTimeout,
            format!(
                "the TLS handshake with {host} took longer than {}",
                times.connect_cause
            ),
        )),
        Ok(Err(e)) => {
            let error = match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
                Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                },
                _ => Error::TlsProtocolError,
            };
            Err(Failure::new(
                error,
                format!("the TLS handshake with {host}: {e}"),
            ))
        }
        Ok(Ok(stream)) => Ok(stream),
    }
}

fn hyper_failure(e: &hyper::Error, doing: &str) -> Failure {
    let error = if e.is_timeout() {
        Error::ConnectionReadTimeout
    } else if e.is_incomplete_message() {
        Error::HttpResponseIncomplete
    } else if e.is_canceled() || e.is_closed() {
        Error::ConnectionTerminated
    } else {
        Error::HttpProtocolError
    };
    Failure::new(error, format!("{doing}: {}", chain(e)))
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The plugin's request body, counted and cut at the limit.
struct RequestBody {
    inner: WasiBody,
    slot: Arc<Slot>,
    sent: u64,
    max: u64,
    over: Arc<AtomicBool>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            let n = data.len() as u64;
            this.sent = this.sent.saturating_add(n);
            if this.sent > this.max {
                this.over.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(Error::HttpRequestBodySize(Some(this.sent)))));
            }
            this.slot.request_bytes.fetch_add(n, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body handed to the plugin: counted against the call's budget, cut at the
/// request's end and the between-bytes timeout. It owns the request's [`Tracker`].
struct ResponseBody {
    incoming: hyper::body::Incoming,
    shared: Arc<Shared>,
    tracker: Tracker,
    end: Pin<Box<Sleep>>,
    end_cause: String,
    between: Option<(Duration, Pin<Box<Sleep>>)>,
    done: bool,
}

impl ResponseBody {
    fn fail(&mut self, error: Error, message: String) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        self.tracker.fail(shorten(&message, MAX_MESSAGE_BYTES));
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.done = true;
                this.tracker.slot.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(_))) if this.end.is_elapsed() => {
                let message = format!("the response body did not end within {}", this.end_cause);
                this.fail(Error::ConnectionReadTimeout, message)
            }
            Poll::Ready(Some(Err(e))) => {
                let failure = hyper_failure(&e, "reading the response body");
                this.fail(failure.error, failure.message)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if !this.shared.take_response_bytes(n) {
                        let max = this.shared.limits.max_response_bytes;
                        let message =
                            format!("response bodies over the call's limit of {max} bytes");
                        return this.fail(Error::HttpResponseBodySize(Some(max)), message);
                    }
                    this.tracker
                        .slot
                        .response_bytes
                        .fetch_add(n, Ordering::Relaxed);
                }
                if let Some((wait, sleep)) = &mut this.between {
                    sleep.as_mut().reset(Instant::now() + *wait);
                }
                if this.incoming.is_end_stream() {
                    this.tracker.slot.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.end.as_mut().poll(cx).is_ready() {
                    let message =
                        format!("the response body did not end within {}", this.end_cause);
                    return this.fail(Error::ConnectionReadTimeout, message);
                }
                if let Some((wait, sleep)) = &mut this.between
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    let message = format!("no response bytes for {wait:?} (between-bytes timeout)");
                    return this.fail(Error::ConnectionReadTimeout, message);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
