//! A small blocking HTTP client for actions, on the standard `wasi:http/outgoing-handler`
//! (WASI 0.2, through the `wasip2` crate's bindings).
//!
//! The host answers only requests to hosts that the action's metadata lists in
//! `allowed_outbound_hosts` (Spin's syntax, for example `https://hooks.slack.com` or
//! `https://*.example.com:8443`); anything else fails with [`Error::Transport`] carrying
//! `HTTP request denied`. The host also caps how many requests one call makes, their sizes and
//! their time, and records each request (method, `scheme://host/path` without the query,
//! status, duration, bytes) in the execution. Only actions can make requests: rules are not
//! linked with `wasi:http`, and a rule component that uses this module fails to load.
//!
//! ```no_run
//! use stormhook_sdk::{http, Error};
//!
//! fn notify(url: &str, text: &str) -> Result<u16, Error> {
//!     let response = http::Request::post(url)
//!         .header("x-request-source", "stormhook")
//!         .json(&serde_json::json!({"text": text}))?
//!         .send()?
//!         .error_for_status()?;
//!     Ok(response.status())
//! }
//! ```
//!
//! What to know:
//!
//! * Calls block until the response and its whole body have arrived (an action is one
//!   synchronous call). The body is read into memory, at most
//!   [`Request::max_response_bytes`] ([`DEFAULT_MAX_RESPONSE_BYTES`] unless set).
//! * Redirects are not followed: a 3xx is a response like any other.
//! * No error message contains the URL, which may hold a secret (a webhook URL often does).
//! * Every [`Error`] converts into the SDK's [`crate::Error`] with `?`: a request that cannot
//!   be built is [`crate::Error::InvalidInput`], everything else [`crate::Error::Upstream`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, HeaderError, IncomingBody, IncomingResponse, Method as WasiMethod,
    OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

/// How many bytes of response body [`Request::send`] reads unless
/// [`Request::max_response_bytes`] says otherwise: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

/// The most bytes written to an output stream at once: `wasi:io/streams` guarantees that
/// `blocking-write-and-flush` accepts 4096 bytes.
const WRITE_CHUNK: usize = 4096;

/// How many bytes one read of the response body asks for.
const READ_CHUNK: u64 = 64 * 1024;

/// How many bytes of a response body [`Response::error_for_status`] keeps in its error.
const STATUS_BODY_EXCERPT: usize = 512;

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
    /// Any other method, as written (for example `PROPFIND`).
    Other(String),
}

impl Method {
    /// The method as it goes on the wire, for example `POST`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            Self::Other(name) => name,
        }
    }

    /// Parses a method name, case-insensitively for the standard ones.
    pub fn parse(name: &str) -> Self {
        match name.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            _ => Self::Other(name.to_owned()),
        }
    }

    fn to_wasi(&self) -> WasiMethod {
        match self {
            Self::Get => WasiMethod::Get,
            Self::Head => WasiMethod::Head,
            Self::Post => WasiMethod::Post,
            Self::Put => WasiMethod::Put,
            Self::Patch => WasiMethod::Patch,
            Self::Delete => WasiMethod::Delete,
            Self::Options => WasiMethod::Options,
            Self::Other(name) => WasiMethod::Other(name.clone()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request failed. No message contains the request's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request could not be built: a URL that is not `scheme://host[:port][/path][?query]`,
    /// a header name or value the host refuses, or a body that does not serialize.
    InvalidRequest(String),
    /// The host or the network failed the request: the wasi-http `error-code` as text, for
    /// example `HTTP request denied` (not in `allowed_outbound_hosts`, or over a cap),
    /// `connection refused`, `connection timeout` or `TLS certificate error`.
    Transport(String),
    /// The response body is larger than the limit (bytes).
    TooLarge {
        /// The limit that was passed.
        limit: u64,
    },
    /// [`Response::error_for_status`] got a status outside 200-299.
    Status {
        /// The status code.
        status: u16,
        /// The start of the response body, as text (at most 512 bytes).
        body: String,
    },
    /// The response body is not what [`Response::text`] or [`Response::json`] expected.
    Decode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(message) => write!(f, "invalid HTTP request: {message}"),
            Self::Transport(message) => write!(f, "HTTP request failed: {message}"),
            Self::TooLarge { limit } => {
                write!(f, "HTTP response body is larger than {limit} bytes")
            }
            Self::Status { status, body } if body.is_empty() => {
                write!(f, "HTTP request answered with status {status}")
            }
            Self::Status { status, body } => {
                write!(f, "HTTP request answered with status {status}: {body}")
            }
            Self::Decode(message) => write!(f, "unexpected HTTP response body: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// A request that cannot be built is the caller's input ([`crate::Error::InvalidInput`]);
/// every other failure is [`crate::Error::Upstream`], carrying this error's message.
impl From<Error> for crate::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidRequest(_) => Self::InvalidInput(error.to_string()),
            _ => Self::Upstream(error.to_string()),
        }
    }
}

/// An HTTP request being built. Send it with [`send`](Self::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    max_response_bytes: u64,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` to `url` (`http://` or `https://`, with optional port, path
    /// and query).
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            connect_timeout: None,
            timeout: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::Post, url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Self::new(Method::Put, url)
    }

    /// A `PATCH` request.
    pub fn patch(url: impl Into<String>) -> Self {
        Self::new(Method::Patch, url)
    }

    /// A `DELETE` request.
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::Delete, url)
    }

    /// Adds a header (names are case-insensitive; adding a name twice sends it twice).
    /// The host refuses some names (`host`, `connection`, `transfer-encoding`, ...): `send`
    /// then fails with [`Error::InvalidRequest`].
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.into().to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body as bytes. `content-length` is sent with it.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the body to `value` as JSON, and `content-type: application/json` unless a
    /// content type was set already.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] when `value` does not serialize.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value).map_err(|error| {
            Error::InvalidRequest(format!("the JSON body does not serialize: {error}"))
        })?;
        if !self.has_header("content-type") {
            self = self.header("content-type", "application/json");
        }
        Ok(self.body(body))
    }

    /// Sets the most response-body bytes [`send`](Self::send) reads before it fails with
    /// [`Error::TooLarge`] (default [`DEFAULT_MAX_RESPONSE_BYTES`]). The host may cap it lower.
    pub fn max_response_bytes(mut self, limit: u64) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// Sets how long connecting may take. The host applies its own, shorter bound when it
    /// has one, and the call's deadline bounds everything.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Sets how long to wait for the response's first byte, and then between two chunks of
    /// its body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }

    /// Sends the request and reads the whole response, blocking until done.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] when the request cannot be built, [`Error::Transport`] when
    /// the host refuses it or the network fails, [`Error::TooLarge`] when the body passes
    /// the limit. A response with any status is `Ok`; see [`Response::error_for_status`].
    pub fn send(self) -> Result<Response, Error> {
        let url = Url::parse(&self.url)?;
        let options = self.options();

        let mut entries = self.headers;
        if let Some(body) = &self.body
            && !entries.iter().any(|(n, _)| n == "content-length")
        {
            entries.push(("content-length".to_owned(), body.len().to_string().into()));
        }
        let headers = Fields::from_list(&entries).map_err(|error| {
            Error::InvalidRequest(format!("the headers are refused: {}", header_error(&error)))
        })?;

        let request = OutgoingRequest::new(headers);
        let refused = |what: &str| Error::InvalidRequest(format!("the {what} is refused"));
        request
            .set_method(&self.method.to_wasi())
            .map_err(|()| refused("method"))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|()| refused("URL scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|()| refused("URL authority"))?;
        request
            .set_path_with_query(Some(&url.path_with_query))
            .map_err(|()| refused("URL path"))?;
        let outgoing_body = request
            .body()
            .map_err(|()| Error::Transport("the request body is unavailable".to_owned()))?;

        // The request goes out first and the body is written afterwards, so that a body
        // larger than the host's buffer streams instead of blocking before anyone reads it.
        let future = outgoing_handler::handle(request, options).map_err(transport)?;
        let written = write_body(outgoing_body, self.body.as_deref().unwrap_or_default());

        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(transport(code)),
            // `get` after the pollable is ready returns the value once; neither case can
            // happen after one `block`, but a host could still answer so.
            Some(Err(())) | None => {
                return Err(Error::Transport(
                    "the response was not delivered".to_owned(),
                ));
            }
        };
        // A failed body write that still got a response (a server answering early, for
        // example 413) is reported as that response.
        drop(written);
        read_response(&response, self.max_response_bytes)
    }

    fn options(&self) -> Option<RequestOptions> {
        if self.connect_timeout.is_none() && self.timeout.is_none() {
            return None;
        }
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let options = RequestOptions::new();
        // A host that does not support an option refuses to set it; its own bounds apply.
        if let Some(timeout) = self.connect_timeout {
            let _ = options.set_connect_timeout(Some(nanos(timeout)));
        }
        if let Some(timeout) = self.timeout {
            let _ = options.set_first_byte_timeout(Some(nanos(timeout)));
            let _ = options.set_between_bytes_timeout(Some(nanos(timeout)));
        }
        Some(options)
    }
}

/// Writes `body` in chunks the stream accepts, then finishes it. A failure is returned after
/// the body is finished or dropped, so that the response (which says more) can be read.
fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), Error> {
    let stream = outgoing
        .write()
        .map_err(|()| Error::Transport("the request body stream is unavailable".to_owned()))?;
    for chunk in body.chunks(WRITE_CHUNK) {
        if let Err(error) = stream.blocking_write_and_flush(chunk) {
            return Err(stream_error("writing the request body", error));
        }
    }
    // The stream is a child of the body: it must be gone before the body is finished.
    drop(stream);
    OutgoingBody::finish(outgoing, None).map_err(transport)
}

fn read_response(response: &IncomingResponse, limit: u64) -> Result<Response, Error> {
    let status = response.status();
    // The headers resource is a child of the response: read it and let it go first.
    let headers = Headers(
        response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect(),
    );
    if let Some(length) = headers.get("content-length")
        && length.trim().parse::<u64>().is_ok_and(|n| n > limit)
    {
        return Err(Error::TooLarge { limit });
    }
    let body = response
        .consume()
        .map_err(|()| Error::Transport("the response body is unavailable".to_owned()))?;
    let bytes = read_body(&body, limit)?;
    // Trailers are not exposed; finishing the body only releases it.
    drop(IncomingBody::finish(body));
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

fn read_body(body: &IncomingBody, limit: u64) -> Result<Vec<u8>, Error> {
    let stream = body
        .stream()
        .map_err(|()| Error::Transport("the response body stream is unavailable".to_owned()))?;
    let mut bytes = Vec::new();
    loop {
        // Ask for at most one byte past the limit, so an oversized body is caught early.
        let room = (limit + 1).saturating_sub(bytes.len() as u64);
        match stream.blocking_read(room.clamp(1, READ_CHUNK)) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > limit {
                    return Err(Error::TooLarge { limit });
                }
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(error) => return Err(stream_error("reading the response body", error)),
        }
    }
}

fn stream_error(doing: &str, error: StreamError) -> Error {
    match error {
        StreamError::Closed => Error::Transport(format!("{doing}: the stream closed")),
        StreamError::LastOperationFailed(error) => {
            // The host may say which `error-code` ended the stream.
            match wasip2::http::types::http_error_code(&error) {
                Some(code) => Error::Transport(format!("{doing}: {}", describe(&code))),
                None => Error::Transport(format!("{doing}: {}", error.to_debug_string())),
            }
        }
    }
}

fn transport(code: ErrorCode) -> Error {
    Error::Transport(describe(&code))
}

fn header_error(error: &HeaderError) -> &'static str {
    match error {
        HeaderError::InvalidSyntax => "a header name or value is not valid",
        HeaderError::Forbidden => "a header name is forbidden",
        HeaderError::Immutable => "the headers are immutable",
    }
}

/// The wasi-http `error-code` as a short English phrase.
pub fn describe(code: &ErrorCode) -> String {
    let opt = |value: &Option<String>| value.as_deref().map(|v| format!(": {v}"));
    match code {
        ErrorCode::DnsTimeout => "DNS timeout".to_owned(),
        ErrorCode::DnsError(payload) => {
            format!("DNS error{}", opt(&payload.rcode).unwrap_or_default())
        }
        ErrorCode::DestinationNotFound => "destination not found".to_owned(),
        ErrorCode::DestinationUnavailable => "destination unavailable".to_owned(),
        ErrorCode::DestinationIpProhibited => "destination IP prohibited".to_owned(),
        ErrorCode::DestinationIpUnroutable => "destination IP unroutable".to_owned(),
        ErrorCode::ConnectionRefused => "connection refused".to_owned(),
        ErrorCode::ConnectionTerminated => "connection terminated".to_owned(),
        ErrorCode::ConnectionTimeout => "connection timeout".to_owned(),
        ErrorCode::ConnectionReadTimeout => "connection read timeout".to_owned(),
        ErrorCode::ConnectionWriteTimeout => "connection write timeout".to_owned(),
        ErrorCode::ConnectionLimitReached => "connection limit reached".to_owned(),
        ErrorCode::TlsProtocolError => "TLS protocol error".to_owned(),
        ErrorCode::TlsCertificateError => "TLS certificate error".to_owned(),
        ErrorCode::TlsAlertReceived(payload) => format!(
            "TLS alert received{}",
            opt(&payload.alert_message).unwrap_or_default()
        ),
        ErrorCode::HttpRequestDenied => "HTTP request denied".to_owned(),
        ErrorCode::HttpRequestLengthRequired => "HTTP request length required".to_owned(),
        ErrorCode::HttpRequestBodySize(size) => with_size("HTTP request body size", *size),
        ErrorCode::HttpRequestMethodInvalid => "HTTP request method invalid".to_owned(),
        ErrorCode::HttpRequestUriInvalid => "HTTP request URI invalid".to_owned(),
        ErrorCode::HttpRequestUriTooLong => "HTTP request URI too long".to_owned(),
        ErrorCode::HttpRequestHeaderSectionSize(size) => {
            with_size("HTTP request header section size", size.map(u64::from))
        }
        ErrorCode::HttpRequestHeaderSize(_) => "HTTP request header size".to_owned(),
        ErrorCode::HttpRequestTrailerSectionSize(size) => {
            with_size("HTTP request trailer section size", size.map(u64::from))
        }
        ErrorCode::HttpRequestTrailerSize(_) => "HTTP request trailer size".to_owned(),
        ErrorCode::HttpResponseIncomplete => "HTTP response incomplete".to_owned(),
        ErrorCode::HttpResponseHeaderSectionSize(size) => {
            with_size("HTTP response header section size", size.map(u64::from))
        }
        ErrorCode::HttpResponseHeaderSize(_) => "HTTP response header size".to_owned(),
        ErrorCode::HttpResponseBodySize(size) => with_size("HTTP response body size", *size),
        ErrorCode::HttpResponseTrailerSectionSize(size) => {
            with_size("HTTP response trailer section size", size.map(u64::from))
        }
        ErrorCode::HttpResponseTrailerSize(_) => "HTTP response trailer size".to_owned(),
        ErrorCode::HttpResponseTransferCoding(coding) => format!(
            "HTTP response transfer coding{}",
            opt(coding).unwrap_or_default()
        ),
        ErrorCode::HttpResponseContentCoding(coding) => format!(
            "HTTP response content coding{}",
            opt(coding).unwrap_or_default()
        ),
        ErrorCode::HttpResponseTimeout => "HTTP response timeout".to_owned(),
        ErrorCode::HttpUpgradeFailed => "HTTP upgrade failed".to_owned(),
        ErrorCode::HttpProtocolError => "HTTP protocol error".to_owned(),
        ErrorCode::LoopDetected => "loop detected".to_owned(),
        ErrorCode::ConfigurationError => "configuration error".to_owned(),
        ErrorCode::InternalError(message) => {
            format!("internal error{}", opt(message).unwrap_or_default())
        }
    }
}

fn with_size(what: &str, size: Option<u64>) -> String {
    match size {
        Some(size) => format!("{what} ({size})"),
        None => what.to_owned(),
    }
}

/// Response headers, names in lowercase, in the order received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name` (case-insensitive), if it is present and UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name)
            .find_map(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of `name` (case-insensitive), as bytes.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Every header, as (lowercase name, value bytes).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// How many header lines there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A response, with its whole body.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 200-299.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body, taken out of the response.
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] when it is not UTF-8.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|error| Error::Decode(format!("the body is not UTF-8: {error}")))
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] with serde's message when it does not parse as `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|error| Error::Decode(error.to_string()))
    }

    /// The response itself when its status is 200-299.
    ///
    /// # Errors
    ///
    /// [`Error::Status`] with the status and the start of the body otherwise.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.is_success() {
            return Ok(self);
        }
        let body = String::from_utf8_lossy(&self.body);
        let mut end = body.len().min(STATUS_BODY_EXCERPT);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        Err(Error::Status {
            status: self.status,
            body: body[..end].trim().to_owned(),
        })
    }
}

/// The parts of a URL that `wasi:http` takes separately.
#[derive(Debug)]
struct Url {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Url {
    /// Splits `scheme://authority[/path][?query][#fragment]`; the fragment is dropped (it
    /// never goes on the wire). Messages do not repeat the URL: it may hold a secret.
    fn parse(url: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::InvalidRequest(format!("the URL {why}"));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("has no `scheme://`"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid("scheme is not http or https")),
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err(invalid("has no host"));
        }
        if authority.contains('@') {
            return Err(invalid("has user info, which is not supported"));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("host contains whitespace"));
        }
        let path_with_query = match path.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if path.is_empty() => "/".to_owned(),
            None => path.to_owned(),
        };
        Ok(Self {
            scheme,
            authority: authority.to_owned(),
            path_with_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> (String, String, String) {
        let url = Url::parse(url).unwrap();
        let scheme = match url.scheme {
            Scheme::Http => "http".to_owned(),
            Scheme::Https => "https".to_owned(),
            Scheme::Other(other) => other,
        };
        (scheme, url.authority, url.path_with_query)
    }

    #[test]
    fn urls_split_into_wasi_parts() {
        assert_eq!(
            parse("https://hooks.slack.com/services/T/B/x?y=1#frag"),
            (
                "https".into(),
                "hooks.slack.com".into(),
                "/services/T/B/x?y=1".into()
            )
        );
        assert_eq!(
            parse("HTTP://127.0.0.1:8080"),
            ("http".into(), "127.0.0.1:8080".into(), "/".into())
        );
        assert_eq!(
            parse("http://[::1]:80?q"),
            ("http".into(), "[::1]:80".into(), "/?q".into())
        );
    }

    #[test]
    fn bad_urls_are_invalid_requests_without_the_url() {
        for url in [
            "hooks.slack.com/secret",
            "ftp://host/secret",
            "https:///secret",
            "https://user:secret@host/",
        ] {
            let error = Url::parse(url).unwrap_err();
            assert!(matches!(error, Error::InvalidRequest(_)), "{url}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn errors_convert_to_sdk_errors() {
        let denied = Error::Transport(describe(&ErrorCode::HttpRequestDenied));
        assert_eq!(
            crate::Error::from(denied),
            crate::Error::Upstream("HTTP request failed: HTTP request denied".into())
        );
        let invalid = Error::InvalidRequest("the URL has no host".into());
        assert!(matches!(
            crate::Error::from(invalid),
            crate::Error::InvalidInput(_)
        ));
    }

    #[test]
    fn status_errors_keep_an_excerpt() {
        let response = Response {
            status: 404,
            headers: Headers::default(),
            body: "no_service ".repeat(100).into_bytes(),
        };
        match response.error_for_status().unwrap_err() {
            Error::Status { status, body } => {
                assert_eq!(status, 404);
                assert!(body.len() <= STATUS_BODY_EXCERPT);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn headers_are_case_insensitive() {
        let headers = Headers(vec![("content-type".into(), b"text/plain".to_vec())]);
        assert_eq!(headers.get("Content-Type"), Some("text/plain"));
        assert_eq!(headers.get("x"), None);
    }
}
