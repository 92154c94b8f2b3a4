//! The command line: `stormhook <command>`. One module per subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod apikey;
pub mod auth;
pub mod client;
pub mod execution;
pub mod key;
pub mod output;
pub mod plugin;
pub mod plugin_new;
pub mod plugin_run;
pub mod rule;
pub mod serve;
pub mod trigger_instance;
pub mod webhook;

/// Stormhook: StackStorm-compatible webhooks, with rules and actions as WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "stormhook", version, about, propagate_version = true)]
pub struct Cli {
    /// Log more (debug level); `RUST_LOG` overrides.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Client commands: print every HTTP request as a curl command line, and its raw answer,
    /// on stderr (before or after the subcommand, as `st2 --debug` allows).
    #[arg(long, global = true)]
    pub debug: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Inspect and reload plugins on a running server; write a new plugin crate, or run a
    /// component once without a server.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Create, list and delete API keys in the store (works without a running server).
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// List, show, create and delete rules on a running server, or test a rule offline.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// List and show the webhooks a running server accepts.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Run an action and wait for its result (like `st2 run`); exit code 1 unless it succeeded.
    Run(RunArgs),
    /// List, show and cancel executions.
    #[command(subcommand)]
    Execution(ExecutionCommand),
    /// List, show and re-emit trigger instances.
    #[command(subcommand)]
    TriggerInstance(TriggerInstanceCommand),
    /// Read and write the datastore (`st2kv.system`).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Get a token for a user of the server's htpasswd file (`POST /auth/v1/tokens`).
    Auth(AuthArgs),
}

/// `stormhook rule ...`.
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// List rules: ref, pack, description, enabled.
    List {
        /// Only the rules of this pack.
        #[arg(short, long)]
        pack: Option<String>,
        /// How many rules to show at most.
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: u64,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one rule.
    Get {
        /// The rule's ref (`pack.name`) or id.
        reference: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a rule from a YAML or JSON file (sent as it is; disabled unless it says
    /// `enabled: true`).
    Create {
        /// The rule file.
        file: PathBuf,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a rule created through the API.
    Delete {
        /// The rule's ref (`pack.name`) or id.
        reference: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Tell whether a rule matches a trigger instance, and if not, which criterion failed
    /// (like StackStorm's `st2-rule-tester`). Exit code 0 on a match, 1 otherwise.
    Test {
        /// The rule file (YAML).
        #[arg(long)]
        rule: PathBuf,
        /// A trigger instance as JSON (`{"trigger": ..., "payload": {...}}`, as
        /// `GET /api/v1/triggerinstances/{id}` returns it).
        #[arg(
            long,
            conflicts_with = "trigger_instance_id",
            required_unless_present = "trigger_instance_id"
        )]
        trigger_instance: Option<PathBuf>,
        /// The id of a stored trigger instance (read from the store in `--data-dir`).
        #[arg(long)]
        trigger_instance_id: Option<String>,
        /// The store, for `--trigger-instance-id`.
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the state lives; shared by `serve` and the offline commands.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where Stormhook keeps its state: the database (`stormhook.db`), the compile cache, and by
    /// default the packs.
    #[arg(long, env = "STORMHOOK_DATA_DIR", default_value = "stormhook-data")]
    pub data_dir: PathBuf,
    /// The key that encrypts datastore secrets, in StackStorm's format (for example
    /// `/etc/st2/keys/datastore_key.json`, to read values StackStorm encrypted). Default:
    /// `<data-dir>/keys/datastore_key.json`, generated (readable by its owner only) the first
    /// time a secret is stored.
    #[arg(long, env = "STORMHOOK_DATASTORE_KEY")]
    pub datastore_key: Option<PathBuf>,
    /// PostgreSQL instead of the embedded SQLite database, for several nodes sharing one
    /// store (`postgres://user:password@host:5432/database`; `?options=-c%20search_path%3D<schema>`
    /// picks a schema). Every node then needs the same `--datastore-key` file. Without it,
    /// `<data-dir>/stormhook.db`.
    #[arg(long, env = "STORMHOOK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// `stormhook serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (StackStorm's API port by default).
    #[arg(long, env = "STORMHOOK_BIND", default_value = "127.0.0.1:9101")]
    pub bind: String,
    /// The state.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The packs folder. Default: `<data-dir>/packs`, filled with the example packs on first start.
    #[arg(long, env = "STORMHOOK_PACKS")]
    pub packs: Option<PathBuf>,
    /// The folder of the packs' config values (`<pack>.yaml`, validated against the pack's
    /// `config.schema.yaml`, watched). Default: `<data-dir>/configs`.
    #[arg(long, env = "STORMHOOK_CONFIGS")]
    pub configs: Option<PathBuf>,
    /// htpasswd file (bcrypt or apr1 entries) for `POST /auth/v1/tokens`; without it no token
    /// can be issued.
    #[arg(long, env = "STORMHOOK_HTPASSWD")]
    pub htpasswd: Option<PathBuf>,
    /// Longest token lifetime, and the default, in seconds.
    #[arg(long, env = "STORMHOOK_TOKEN_TTL_SECS", default_value_t = 86_400)]
    pub token_ttl_secs: u64,
    /// Public URL of the API, sent as `X-API-URL` with new tokens. Default: from `--bind`.
    #[arg(long, env = "STORMHOOK_API_URL")]
    pub api_url: Option<String>,
    /// Base URL of st2web, under which executions link to their page (`web_url`,
    /// `<url>/#/history/<id>/general`). Default: the origin of the API URL (st2web is usually
    /// served beside the API, as StackStorm's nginx serves it).
    #[arg(long, env = "STORMHOOK_WEBUI_URL")]
    pub webui_url: Option<String>,
    /// TLS certificate chain (PEM); with `--tls-key`, serves HTTPS.
    #[arg(long, env = "STORMHOOK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "STORMHOOK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest request body, in bytes; larger ones get 413.
    #[arg(long, env = "STORMHOOK_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Most requests in progress at once; past it, 503 with `Retry-After`.
    #[arg(
        long,
        env = "STORMHOOK_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,
    /// Most requests in progress at once from one client (its address and the credential it
    /// sends); past it, 429 with `Retry-After` (0: no cap).
    #[arg(long, env = "STORMHOOK_MAX_REQUESTS_PER_CLIENT", default_value_t = 256)]
    pub max_requests_per_client: usize,
    /// The longest a request body may take to arrive, in seconds; past it, 408.
    #[arg(long, env = "STORMHOOK_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// The slowest average rate a request body may arrive at after its first 5 seconds, in
    /// bytes per second; slower, 408 (0: no minimum).
    #[arg(long, env = "STORMHOOK_BODY_MIN_BYTES_PER_SEC", default_value_t = 1024)]
    pub body_min_bytes_per_sec: u64,
    /// An origin allowed to call the API from a browser with credentials (CORS), besides the
    /// API's own URL; repeat it or separate origins with commas (`*`: any origin, without
    /// credentials). Other origins get no `Access-Control-Allow-Origin`.
    #[arg(long, env = "STORMHOOK_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,
    /// Networks `core.http` may not connect to, besides link-local and cloud metadata
    /// addresses, which are always denied (checked for every address a URL resolves to,
    /// redirects included): CIDRs, addresses, or `loopback`, `private`, `link-local`,
    /// `metadata`, `all`; repeat it or separate entries with commas.
    #[arg(long, env = "STORMHOOK_HTTP_DENY", value_delimiter = ',')]
    pub http_deny: Vec<String>,
    /// Networks `core.http` may connect to even when `--http-deny` covers them (same forms).
    #[arg(long, env = "STORMHOOK_HTTP_ALLOW", value_delimiter = ',')]
    pub http_allow: Vec<String>,
    /// Most open connections; past it, new connections are closed.
    #[arg(long, env = "STORMHOOK_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a client has to send a request head (also the keep-alive idle timeout).
    #[arg(long, env = "STORMHOOK_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Most plugin instances alive at once; calls past it fail as busy.
    #[arg(long, env = "STORMHOOK_MAX_INSTANCES", default_value_t = 256)]
    pub max_instances: u32,
    /// Ceiling for any action's deadline, in seconds.
    #[arg(long, env = "STORMHOOK_MAX_TIMEOUT_SECS", default_value_t = 600)]
    pub max_timeout_secs: u64,
    /// Ceiling for any plugin's memory cap, in MiB.
    #[arg(long, env = "STORMHOOK_MAX_MEMORY_MB", default_value_t = 1024)]
    pub max_memory_mb: u64,
    /// How long a plugin call runs at normal priority before it moves to the background guest
    /// pool (lower priority), in milliseconds.
    #[arg(long, env = "STORMHOOK_FOREGROUND_SLICE_MS", default_value_t = 10)]
    pub foreground_slice_ms: u64,
    /// Threads of the background guest pool where long plugin calls run (default: CPUs).
    #[arg(long, env = "STORMHOOK_GUEST_THREADS")]
    pub guest_threads: Option<usize>,
    /// `nice` value of the background guest pool and compiler threads (0 to 19; 0 keeps
    /// normal priority).
    #[arg(long, env = "STORMHOOK_GUEST_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub guest_nice: i32,
    /// Whether the background guest pool runs in Linux's idle scheduling class (only on CPU
    /// time nothing else wants); `false` keeps only the nice value.
    #[arg(long, env = "STORMHOOK_GUEST_IDLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub guest_idle: bool,
    /// Largest `.wasm` component accepted, in MiB.
    #[arg(long, env = "STORMHOOK_MAX_COMPONENT_MB", default_value_t = 48)]
    pub max_component_mb: u64,
    /// Most functions a component may define (over all its core modules).
    #[arg(
        long,
        env = "STORMHOOK_MAX_COMPONENT_FUNCTIONS",
        default_value_t = 100_000
    )]
    pub max_component_functions: u64,
    /// Seconds compiling one component may take before it is refused.
    #[arg(long, env = "STORMHOOK_COMPILE_TIMEOUT_SECS", default_value_t = 60)]
    pub compile_timeout_secs: u64,
    /// Components compiled at once.
    #[arg(long, env = "STORMHOOK_PARALLEL_COMPILES", default_value_t = 4)]
    pub parallel_compiles: usize,
    /// Size of the compile cache (`<data-dir>/cache`) in MiB; least recently used entries not
    /// in use are deleted past it.
    #[arg(long, env = "STORMHOOK_CACHE_MAX_MB", default_value_t = 1024)]
    pub cache_max_mb: u64,
    /// Seconds a call to a plugin that is still loading waits for it before failing.
    #[arg(long, env = "STORMHOOK_LOADING_WAIT_SECS", default_value_t = 30)]
    pub loading_wait_secs: u64,
    /// A PEM file of CA certificates that actions' outbound HTTPS trusts besides the webpki
    /// and system roots (for an internal CA).
    #[arg(long, env = "STORMHOOK_OUTBOUND_CA_BUNDLE", value_name = "PEM")]
    pub outbound_ca_bundle: Option<PathBuf>,
    /// Outbound HTTP requests one action call may attempt.
    #[arg(long, env = "STORMHOOK_OUTBOUND_MAX_REQUESTS", default_value_t = 16)]
    pub outbound_max_requests: u32,
    /// MiB of response bodies one action call may read over outbound HTTP.
    #[arg(long, env = "STORMHOOK_OUTBOUND_MAX_RESPONSE_MB", default_value_t = 4)]
    pub outbound_max_response_mb: u64,
    /// Seconds one outbound request may take (always cut at the call's deadline too).
    #[arg(long, env = "STORMHOOK_OUTBOUND_TIMEOUT_SECS", default_value_t = 30)]
    pub outbound_timeout_secs: u64,
    /// Most plugin-started links (`events.emit`, `events.request-execution`) in one chain.
    #[arg(long, env = "STORMHOOK_MAX_CHAIN_DEPTH", default_value_t = 8)]
    pub max_chain_depth: u32,
    /// This node's id among the nodes sharing a PostgreSQL store (recorded on the work it
    /// claims and in `runner_info.node` of the executions it runs). Default:
    /// `<hostname>-<pid>-<random>`, new at every start.
    #[arg(long, env = "STORMHOOK_NODE_ID")]
    pub node_id: Option<String>,
    /// With PostgreSQL: how long this node's claim on a trigger instance or an execution lasts
    /// without renewal, in seconds (renewed every third of it). When a node dies, the others
    /// take its trigger instances and mark its running executions `abandoned` after this.
    #[arg(long, env = "STORMHOOK_LEASE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_secs: u64,
    /// How long finished trigger instances are kept (`30d`, `12h`, `90m`, `45s`; `0`: forever).
    #[arg(long, env = "STORMHOOK_TRIGGER_INSTANCES_TTL", default_value = "30d", value_parser = parse_ttl)]
    pub trigger_instances_ttl: Ttl,
    /// How long traces are kept once no kept trigger instance refers to them.
    #[arg(long, env = "STORMHOOK_TRACES_TTL", default_value = "30d", value_parser = parse_ttl)]
    pub traces_ttl: Ttl,
    /// How long rule enforcements are kept.
    #[arg(long, env = "STORMHOOK_ENFORCEMENTS_TTL", default_value = "30d", value_parser = parse_ttl)]
    pub enforcements_ttl: Ttl,
    /// How long completed executions are kept (from their end).
    #[arg(long, env = "STORMHOOK_EXECUTIONS_TTL", default_value = "30d", value_parser = parse_ttl)]
    pub executions_ttl: Ttl,
    /// How often old records are purged, in seconds.
    #[arg(long, env = "STORMHOOK_PURGE_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub purge_interval_secs: u64,
    /// Do not watch the packs folder for changes (reload with `stormhook plugin reload`).
    #[arg(long, env = "STORMHOOK_NO_WATCH", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_watch: bool,
    /// Disables `core.local` (shell commands on the server's host); only sandboxed WASM
    /// actions, `core.http`, `core.echo` and `core.noop` run.
    #[arg(long, env = "STORMHOOK_DISABLE_CORE_LOCAL", value_parser = clap::builder::BoolishValueParser::new())]
    pub disable_core_local: bool,
}

/// `stormhook plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List loaded plugins: ref, kind, version, loaded-at, last error.
    List(ClientArgs),
    /// Rescan the packs folder now.
    Reload(ClientArgs),
    /// Write a new plugin crate (Rust, SDK and WIT vendored) that builds in a folder of its own.
    New(plugin_new::NewArgs),
    /// Run an action (or a rule component) once, without a server: its logs, stdout, stderr
    /// and HTTP requests on stderr, its result as JSON on stdout. Exit code 0 when it
    /// succeeded, 1 when it failed, 2 when it could not be run.
    Run(Box<plugin_run::RunArgs>),
}

/// `stormhook webhook ...`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// List webhooks: url, trigger type, description.
    List(ClientArgs),
    /// Show one webhook.
    Get {
        /// The webhook's url, as in `/api/v1/webhooks/<url>`.
        #[arg(value_name = "URL")]
        hook: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `stormhook run ACTION [NAME=VALUE...]`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The action's ref, e.g. `core.local`.
    pub action: String,
    /// Parameters as `NAME=VALUE`. Values are cast to the type the action (or its runner)
    /// declares: `timeout=30` is an integer, `env={"A":"1"}` or `env=A=1,B=2` an object,
    /// `list=a,b` or `list=["a"]` an array; undeclared names keep JSON values and strings.
    #[arg(value_name = "NAME=VALUE")]
    pub parameters: Vec<String>,
    /// Do not wait: print the execution's id and return.
    #[arg(short = 'a', long = "async")]
    pub asynchronous: bool,
    /// The server.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `stormhook execution ...`.
#[derive(Debug, Subcommand)]
pub enum ExecutionCommand {
    /// List executions, newest last: id, action, user, status, start and end.
    List {
        /// How many executions to show at most (the newest).
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: u64,
        /// Only executions with this status (e.g. `failed`; a comma list is allowed).
        #[arg(long)]
        status: Option<String>,
        /// Only executions of this action ref.
        #[arg(long)]
        action: Option<String>,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one execution with its result (`last` is the newest).
    Get {
        /// The execution's id.
        id: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel an execution.
    Cancel {
        /// The execution's id.
        id: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `stormhook trigger-instance ...`.
#[derive(Debug, Subcommand)]
pub enum TriggerInstanceCommand {
    /// List trigger instances, newest last: id, trigger, occurrence time, status.
    List {
        /// How many trigger instances to show at most (the newest).
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: u64,
        /// Only instances of this trigger ref.
        #[arg(long)]
        trigger: Option<String>,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one trigger instance with its payload.
    Get {
        /// The trigger instance's id.
        id: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send a trigger instance's payload again, as a new trigger instance.
    ReEmit {
        /// The trigger instance's id.
        id: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `stormhook key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List datastore keys: name, value, secret, scope, expiry.
    List {
        /// Only keys whose name starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one key.
    Get {
        /// The key's name.
        name: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create or update a key.
    Set {
        /// The key's name.
        name: String,
        /// The value (a string).
        value: String,
        /// Store it encrypted (a secret: shown masked unless `?decrypt=true`), as
        /// `st2 key set --encrypt` does.
        #[arg(short = 'e', long)]
        encrypt: bool,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a key.
    Delete {
        /// The key's name.
        name: String,
        /// The server.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `stormhook auth USER`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The user, as in the server's htpasswd file.
    pub user: String,
    /// The password; without it, read from `STORMHOOK_PASSWORD` or asked for on the terminal.
    #[arg(short, long, env = "STORMHOOK_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The token's lifetime in seconds (at most the server's `--token-ttl-secs`).
    #[arg(short = 'l', long)]
    pub ttl: Option<u64>,
    /// Print only the token.
    #[arg(short = 't', long)]
    pub only_token: bool,
    /// The server (only the URL is used: the request carries the user and password alone).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `stormhook apikey ...`.
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key and print it (it is shown only this once).
    Create {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// The user the key authenticates as.
        #[arg(short, long, default_value = "admin")]
        user: String,
        /// Metadata, as `key=value` (repeatable).
        #[arg(short, long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        /// Print only the key, on one line.
        #[arg(short = 'k', long = "only-key")]
        only_key: bool,
    },
    /// List API keys (hashes are masked).
    List {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON instead of a table.
        #[arg(short = 'j', long)]
        json: bool,
    },
    /// Delete an API key by id (or by the key itself).
    Delete {
        /// The store.
        #[command(flatten)]
        store: StoreArgs,
        /// The key's id, or the key.
        id_or_key: String,
    },
}

/// How a client command reaches the server. Each setting comes from its flag, else its
/// environment variable, else the config file, else the default (see [`client`]).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's base URL [default: http://127.0.0.1:9101].
    #[arg(long, env = "STORMHOOK_URL")]
    pub url: Option<String>,
    /// API key (`St2-Api-Key`); `ST2_API_KEY` is read too, as the `st2` CLI does.
    // A key is URL-safe base64 and may start with `-`: one in 64 does.
    #[arg(
        long,
        env = "ST2_API_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub api_key: Option<String>,
    /// Token (`X-Auth-Token`), from `stormhook auth`.
    #[arg(
        long,
        env = "ST2_AUTH_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub token: Option<String>,
    /// Config file with `url = "..."`, `api_key = "..."` and `token = "..."` lines
    /// [default: ~/.config/stormhook/config.toml, when it exists].
    #[arg(long, env = "STORMHOOK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(short = 'j', long)]
    pub json: bool,
}

/// `<hostname>-<pid>-<4 random hex digits>`: new at every start, so a restarted node never
/// takes its old claims for live ones.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..4])
}

/// `url` without its password, for messages: the userinfo's password (the last `@` ends
/// the userinfo, so a password may hold `@`) and any `password=` query parameter are masked;
/// something that is not a URL (a `key=value` connection string) is not shown at all.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<a database URL that is not shown>".into();
    };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match authority_and_path.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (authority_and_path, None),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{user}:********@{host}")
            } else {
                format!("{user}@{host}")
            }
        }
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}");
    if let Some(path) = path {
        out.push('/');
        out.push_str(path);
    }
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=********"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

/// A time-to-live flag: `None` keeps forever.
pub type Ttl = Option<std::time::Duration>;

/// Parses `30d`, `12h`, `90m`, `45s` (or bare seconds); `0` is "forever".
fn parse_ttl(text: &str) -> Result<Ttl, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30d, 12h, 90m or 45s"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    Ok((n > 0).then(|| std::time::Duration::from_secs(n.saturating_mul(unit_secs))))
}

/// The store is shared by several nodes: this node's id and lease.
pub type NodeArgs = (String, std::time::Duration);

/// Opens the store a server already made; refuses, rather than creating an empty one, when
/// there is none in the data directory (a mistyped `--data-dir` must not look like "no data").
/// With `--database-url`, opens the PostgreSQL store (migrating it if needed).
///
/// # Errors
///
/// There is no `stormhook.db` in the directory, or the store cannot be opened.
pub async fn open_existing_store(
    args: &StoreArgs,
) -> anyhow::Result<std::sync::Arc<dyn stormhook_storage::Store>> {
    if args.database_url.is_none() && !args.data_dir.join("stormhook.db").exists() {
        anyhow::bail!(
            "no store in {} (give the data directory of the server with --data-dir)",
            args.data_dir.display()
        );
    }
    open_store(args).await
}

/// Opens the store: PostgreSQL with `--database-url`, else the SQLite database in the data
/// directory (creating both if needed).
///
/// # Errors
///
/// The directory cannot be created or the database cannot be opened.
pub async fn open_store(
    args: &StoreArgs,
) -> anyhow::Result<std::sync::Arc<dyn stormhook_storage::Store>> {
    open_node_store(args, None).await
}

/// [`open_store`] for a server: on PostgreSQL, `node` names this node and its lease (the
/// offline commands take part in no claim and get a throwaway id).
///
/// # Errors
///
/// The directory cannot be created or the database cannot be opened.
pub async fn open_node_store(
    args: &StoreArgs,
    node: Option<NodeArgs>,
) -> anyhow::Result<std::sync::Arc<dyn stormhook_storage::Store>> {
    use anyhow::Context as _;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    if let Some(url) = &args.database_url {
        use stormhook_storage::postgres::{PgOptions, PgStore};
        let (node_id, lease) = node.unwrap_or_else(|| {
            (
                format!("{}-cli", default_node_id()),
                std::time::Duration::from_secs(15),
            )
        });
        // Never generated on PostgreSQL: nodes that each made their own key could not read
        // each other's secrets. Without `--datastore-key`, the file in the data directory is
        // used if the operator put it there (the same file on every node).
        let (key, create_key) = match &args.datastore_key {
            Some(path) => (path.clone(), false),
            None => (
                args.data_dir
                    .join(stormhook_storage::sqlite::DATASTORE_KEY_FILE),
                false,
            ),
        };
        let mut options = PgOptions::new(node_id, key);
        options.lease = lease;
        options.create_key = create_key;
        let mut store = PgStore::connect(url, options)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact_url(url)))?;
        if let Some(key) = &args.datastore_key {
            // A key the operator named is read now: a wrong path fails at start, not at the
            // first secret.
            store = store
                .with_datastore_key(key)
                .context("reading the datastore key (--datastore-key)")?;
        }
        return Ok(std::sync::Arc::new(store));
    }
    let path = args.data_dir.join("stormhook.db");
    let mut store = stormhook_storage::sqlite::SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening the database {}", path.display()))?;
    if let Some(key) = &args.datastore_key {
        store = store
            .with_datastore_key(key)
            .context("reading the datastore key (--datastore-key)")?;
    }
    Ok(std::sync::Arc::new(store))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn database_passwords_are_masked_in_every_form() {
        for (url, shown) in [
            (
                "postgres://u:s3cret@db:5432/x?options=-c%20search_path%3Da",
                "postgres://u:********@db:5432/x?options=-c%20search_path%3Da",
            ),
            ("postgres://u:p@ss@db/x", "postgres://u:********@db/x"),
            (
                "postgres://db/x?user=u&password=s3cret",
                "postgres://db/x?user=u&password=********",
            ),
            ("postgres://u@db/x", "postgres://u@db/x"),
            (
                "host=db password=s3cret",
                "<a database URL that is not shown>",
            ),
        ] {
            assert_eq!(super::redact_url(url), shown);
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// One generated API key in 64 starts with `-`; it is still the flag's value.
    #[test]
    fn a_key_that_starts_with_a_dash_is_a_value() {
        use clap::Parser as _;
        let cli = super::Cli::try_parse_from([
            "stormhook",
            "plugin",
            "list",
            "--api-key",
            "-lX3k",
            "--token",
            "-t0k",
        ])
        .unwrap();
        let rendered = format!("{cli:?}");
        assert!(rendered.contains("\"-lX3k\""), "{rendered}");
        assert!(rendered.contains("\"-t0k\""), "{rendered}");
    }
}
