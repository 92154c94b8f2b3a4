//! The HTTP client every client command shares (`webhook`, `rule list|get|create|delete`, `run`,
//! `execution`, `trigger-instance`, `key`, `auth`, `plugin`): where the server is, which
//! credentials to send, `--debug` transcripts and StackStorm-style error reports.
//!
//! # Settings
//!
//! Each setting comes from the first of: its flag, its environment variable, the config file,
//! the default.
//!
//! | flag | env | config key | default |
//! | --- | --- | --- | --- |
//! | `--url` | `STORMHOOK_URL` | `url` | `http://127.0.0.1:9101` |
//! | `--api-key` | `ST2_API_KEY` | `api_key` | none |
//! | `--token` | `ST2_AUTH_TOKEN` | `token` | none |
//! | `--config` | `STORMHOOK_CONFIG` | | `~/.config/stormhook/config.toml`, when it exists |
//!
//! A token is sent as `X-Auth-Token` and an API key as `St2-Api-Key`; both are sent when both
//! are set, as the `st2` CLI does.
//!
//! # The config file
//!
//! TOML (read with the `toml` crate) with three optional string keys, `url`, `api_key` and
//! `token`. Any other key is an error that names the line, so a typo does not go unnoticed.
//!
//! ```toml
//! # ~/.config/stormhook/config.toml
//! url = "https://stormhook.example.com"
//! api_key = "q3Rk...T0Q"
//! ```
//!
//! # Errors and exit codes
//!
//! A non-2xx answer is printed as `st2` prints it, on stderr, and the command exits with 1:
//!
//! ```text
//! ERROR: 404 Client Error: Not Found
//! MESSAGE: Unable to identify resource with id "nope". for url: http://127.0.0.1:9101/api/v1/executions/nope
//! ```
//!
//! A server that cannot be reached is reported with its URL (exit code 2, like any other error
//! that is not the server's answer).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::{Method, Url};
use serde_json::Value;

use super::ClientArgs;

/// `--debug` (a global flag of the command line, set once by [`crate::run`]).
pub static DEBUG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The server used when neither a flag, an environment variable nor the config file names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9101";

/// The config file read when `--config` is not given, under the home directory.
const DEFAULT_CONFIG: &str = ".config/stormhook/config.toml";

/// The longest a request may take (a plugin reload compiles components, so this is generous).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A failure that is the server's answer (or the lack of one), as opposed to a local error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a status outside 2xx.
    #[error(
        "ERROR: {status} {reason}\nMESSAGE: {message} for url: {url}",
        reason = reason(*status)
    )]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `faultstring` of the answer, or a placeholder when it has none.
        message: String,
        /// The URL that was asked.
        url: String,
    },
    /// The server answered 2xx with a body that is not JSON.
    #[error("ERROR: the answer of {url} is not JSON: {detail}")]
    BadAnswer {
        /// The URL that was asked.
        url: String,
        /// What is wrong with the body.
        detail: String,
    },
    /// No connection to the server, or no answer from it.
    #[error(
        "cannot reach {url} (is `stormhook serve` running there? Name the server with --url, STORMHOOK_URL or `url` in the config file)"
    )]
    Unreachable {
        /// The URL that was asked.
        url: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
}

/// StackStorm's (requests') wording of a status: `Client Error: Not Found`.
fn reason(status: u16) -> String {
    let phrase = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    match status {
        400..=499 => format!("Client Error: {phrase}"),
        500..=599 => format!("Server Error: {phrase}"),
        _ => phrase.to_owned(),
    }
}

/// Turns the outcome of a client command into its exit code: a [`ClientError`] other than
/// [`ClientError::Unreachable`] is printed on stderr and gives exit code 1; other errors are
/// passed on (the binary prints them and exits with 2).
///
/// # Errors
///
/// `result`'s error, when it is not the server's answer.
pub fn report(result: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match result {
        Err(err) => match err.downcast_ref::<ClientError>() {
            Some(ClientError::Unreachable { .. }) | None => Err(err),
            Some(answer) => {
                let _ = writeln!(std::io::stderr(), "{answer}");
                Ok(ExitCode::from(1))
            }
        },
        ok => ok,
    }
}

/// A connection to the server with the resolved settings.
pub struct Client {
    /// Sends the requests; one connection pool for the whole command.
    http: reqwest::Client,
    /// The server's root URL (API paths are appended to it).
    base: Url,
    /// `X-Auth-Token`, when a token is set.
    token: Option<String>,
    /// `St2-Api-Key`, when an API key is set.
    api_key: Option<String>,
    /// Whether to print each request and answer on stderr (`--debug`).
    debug: bool,
    /// `-j`: print the server's JSON instead of tables.
    pub json: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("debug", &self.debug)
            .field("json", &self.json)
            .finish()
    }
}

/// An answer with a 2xx status.
#[derive(Debug)]
pub struct Answer {
    /// The body as JSON (`null` when it is empty, as for 204).
    pub body: Value,
    /// `X-Total-Count`, for lists: how many items match, beyond the page shown.
    pub total: Option<u64>,
}

/// One request being built: see [`Client::call`].
#[derive(Debug)]
pub struct Call<'a> {
    /// The client that sends it.
    client: &'a Client,
    /// The method.
    method: Method,
    /// The full URL, with its query.
    url: Url,
    /// Headers beyond the credentials, in the order they are sent and shown.
    headers: Vec<(&'static str, String)>,
    /// The JSON body, as sent.
    body: Option<String>,
    /// Whether the configured credentials are sent (not for `auth`).
    credentials: bool,
}

impl Client {
    /// Resolves the settings (flags, environment, config file, defaults) and builds the client.
    ///
    /// # Errors
    ///
    /// The config file cannot be read or parsed, or the URL is not a valid http(s) URL.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let config = match &args.config {
            Some(path) => Config::read(path)?,
            None => match default_config_path().filter(|p| p.is_file()) {
                Some(path) => Config::read(&path)?,
                None => Config::default(),
            },
        };
        let url = args
            .url
            .clone()
            .or(config.url)
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let base = Url::parse(&url).with_context(|| format!("invalid server URL {url:?}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            bail!("invalid server URL {url:?}: give an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base,
            token: args
                .token
                .clone()
                .or(config.token)
                .filter(|t| !t.is_empty()),
            api_key: args
                .api_key
                .clone()
                .or(config.api_key)
                .filter(|k| !k.is_empty()),
            debug: DEBUG.load(std::sync::atomic::Ordering::Relaxed),
            json: args.json,
        })
    }

    /// The URL of `/api/v1/<segments...>` on the server, each segment percent-encoded (so a
    /// name may hold `/`, `?` or spaces), with `query` appended.
    pub fn api_url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        self.url(&all, query)
    }

    /// The URL of `/<segments...>` on the server, as [`Client::api_url`] builds it.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
        }
        url
    }

    /// Whether `--debug` transcripts are printed.
    pub fn debug_enabled(&self) -> bool {
        self.debug
    }

    /// Starts a request to `url` with the configured credentials.
    pub fn call(&self, method: Method, url: Url) -> Call<'_> {
        Call {
            client: self,
            method,
            url,
            headers: Vec::new(),
            body: None,
            credentials: true,
        }
    }

    /// `GET /api/v1/<segments...>?<query>`.
    ///
    /// # Errors
    ///
    /// See [`Call::send`].
    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<Answer> {
        self.call(Method::GET, self.api_url(segments, query))
            .send()
            .await
    }
}

impl Call<'_> {
    /// Adds a header (shown in `--debug` with this spelling).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sends `body` as JSON (`Content-Type: application/json`).
    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string());
        self.header("Content-Type", "application/json")
    }

    /// Sends the request without the configured token or API key.
    pub fn anonymous(mut self) -> Self {
        self.credentials = false;
        self
    }

    /// Sends the request and reads the answer.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] when there is no answer, [`ClientError::Status`] for a
    /// status outside 2xx, [`ClientError::BadAnswer`] when a 2xx body is not JSON.
    pub async fn send(self) -> anyhow::Result<Answer> {
        let client = self.client;
        let mut headers: Vec<(&str, String)> = Vec::new();
        if self.credentials {
            if let Some(token) = &client.token {
                headers.push(("X-Auth-Token", token.clone()));
            }
            if let Some(key) = &client.api_key {
                headers.push(("St2-Api-Key", key.clone()));
            }
        }
        headers.extend(self.headers);
        headers.push(("Accept", "application/json".to_owned()));
        headers.push((
            "User-Agent",
            concat!("stormhook/", env!("CARGO_PKG_VERSION")).to_owned(),
        ));

        let mut request = client.http.request(self.method.clone(), self.url.clone());
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let url = self.url.to_string();
        let debug = client
            .debug
            .then(|| curl_line(&self.method, &headers, self.body.as_deref(), &url));
        let response = match request.send().await {
            Ok(response) => response,
            Err(source) => {
                if let Some(line) = &debug {
                    print_debug(line, &format!("(no answer: {source})"));
                }
                return Err(ClientError::Unreachable { url, source }.into());
            }
        };
        let status = response.status();
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = match response.text().await {
            Ok(text) => text,
            Err(source) => {
                if let Some(line) = &debug {
                    print_debug(line, &format!("(no answer: {source})"));
                }
                return Err(ClientError::Unreachable { url, source }.into());
            }
        };
        if let Some(line) = &debug {
            print_debug(line, &text);
        }
        let parsed = if text.trim().is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_str::<Value>(&text)
        };
        if !status.is_success() {
            let message = parsed
                .ok()
                .and_then(|body| body.get("faultstring")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "Unable to retrieve detailed message".to_owned());
            return Err(ClientError::Status {
                status: status.as_u16(),
                message,
                url,
            }
            .into());
        }
        match parsed {
            Ok(body) => Ok(Answer { body, total }),
            Err(err) => Err(ClientError::BadAnswer {
                url,
                detail: err.to_string(),
            }
            .into()),
        }
    }
}

/// The request as a curl command line, as `st2 --debug` prints it.
fn curl_line(method: &Method, headers: &[(&str, String)], body: Option<&str>, url: &str) -> String {
    let mut parts = vec!["curl".to_owned()];
    if *method == Method::HEAD {
        parts.push("--head".to_owned());
    } else {
        parts.push("-X".to_owned());
        parts.push(shell_quote(method.as_str()));
    }
    for (name, value) in headers {
        // `-H ` joined with a space gives st2's two spaces.
        parts.push("-H ".to_owned());
        parts.push(shell_quote(&format!("{name}: {value}")));
    }
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        parts.push("--data-binary".to_owned());
        parts.push(shell_quote(body));
    }
    parts.push(shell_quote(url));
    parts.join(" ")
}

/// Quotes a word for a POSIX shell the way Python's `shlex.quote` does: as it is when it holds
/// only safe characters, otherwise in single quotes.
fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r#"'"'"'"#))
    }
}

/// Prints one request and its answer on stderr, in `st2 --debug`'s format.
fn print_debug(curl: &str, answer: &str) {
    let id = std::process::id();
    let _ = write!(
        std::io::stderr().lock(),
        "# -------- begin {id} request ----------\n{curl}\n# -------- begin {id} response ----------\n{answer}\n# -------- end {id} response ------------\n\n"
    );
}

/// `$HOME/.config/stormhook/config.toml`.
fn default_config_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(Path::new(&home).join(DEFAULT_CONFIG))
}

/// The settings a config file gives (TOML; unknown keys are refused so a typo is noticed).
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `url`.
    url: Option<String>,
    /// `api_key`.
    api_key: Option<String>,
    /// `token`.
    token: Option<String>,
}

impl Config {
    /// Reads and parses a config file.
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
    }

    /// Parses the text of a config file; errors start with the line number.
    fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| {
                text[..span.start.min(text.len())].matches('\n').count() + 1
            });
            format!("{line}: {}", e.message().trim_end())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_are_toml_with_three_keys() {
        let config =
            Config::parse("# comment\n\nurl = \"http://h:1\" # trailing\napi_key='k\"1'\n")
                .unwrap();
        assert_eq!(config.url.as_deref(), Some("http://h:1"));
        assert_eq!(config.api_key.as_deref(), Some("k\"1"));
        assert_eq!(config.token, None);
        let err = Config::parse("url = \"x\"\napi-key = \"y\"").err().unwrap();
        assert!(err.starts_with("2: unknown field `api-key`"), "{err}");
        assert!(
            err.contains("expected one of `url`, `api_key`, `token`"),
            "{err}"
        );
        assert!(Config::parse("url = \"x").err().unwrap().starts_with("1: "));
        assert!(Config::parse("url = 3").is_err());
    }

    #[test]
    fn curl_lines_quote_like_shlex() {
        let line = curl_line(
            &Method::POST,
            &[("St2-Api-Key", "abc".to_owned())],
            Some(r#"{"a": "it's"}"#),
            "http://127.0.0.1:9101/api/v1/rules",
        );
        assert_eq!(
            line,
            r#"curl -X POST -H  'St2-Api-Key: abc' --data-binary '{"a": "it'"'"'s"}' http://127.0.0.1:9101/api/v1/rules"#
        );
        assert_eq!(
            curl_line(&Method::HEAD, &[], None, "http://h/x?a=1&b=2"),
            "curl --head 'http://h/x?a=1&b=2'"
        );
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn reasons_read_like_requests() {
        assert_eq!(reason(404), "Client Error: Not Found");
        assert_eq!(reason(500), "Server Error: Internal Server Error");
    }
}
