//! `stormhook plugin run <file.wasm>`: runs an action (or a rule component) once, without a
//! server: an in-memory datastore seeded from `--kv`, the pack config from `--config`, no
//! compile cache, no events.
//!
//! What the plugin did goes to stderr (its log lines, stdout and stderr, its HTTP requests);
//! the result alone goes to stdout, as pretty JSON, so it can be piped. Exit code 0 when the
//! plugin succeeded, 1 when it ran and failed, 2 when it could not be run (bad arguments, a
//! file that cannot be read or is not a component of that kind).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::Value;
use stormhook_runtime::datastore::MemoryDatastore;
use stormhook_runtime::outbound::HttpRecord;
use stormhook_runtime::services::{
    Events, EventsError, EventsFuture, Origin, PackConfigs, PluginConfig,
};
use stormhook_runtime::{
    ActionContext, Captured, KvGrant, Limits, PluginError, PluginKind, PluginSpec, Runtime,
    RuntimeConfig, TriggerInstance,
};

/// `stormhook plugin run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The component (`.wasm`), for example `target/wasm32-wasip2/release/<crate>.wasm`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The plugin's reference, `<pack>.<name>`: the pack is the one whose `--config` the
    /// plugin reads. Default: `local.<file name without .wasm>`.
    #[arg(long = "ref", value_name = "PACK.NAME")]
    pub reference: Option<String>,
    /// The action's parameters as a JSON object, or `@FILE` to read them from a file. For
    /// `--kind rule`, the trigger instance's payload.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub params: String,
    /// What the component implements.
    #[arg(long, value_enum, default_value_t = RunKind::Action)]
    pub kind: RunKind,
    /// For `--kind rule`: the trigger reference of the trigger instance.
    #[arg(long, value_name = "REF", default_value = "core.st2.webhook")]
    pub trigger: String,
    /// A host the action may send HTTP requests to, in the syntax of an action's
    /// `allowed_outbound_hosts` (`https://api.example.com`, `https://*.example.com:8443`);
    /// repeat it for more. Default: none.
    #[arg(long = "allow-outbound", value_name = "PATTERN")]
    pub allow_outbound: Vec<String>,
    /// A datastore entry the plugin can read (and change, for this run only); repeatable.
    #[arg(long = "kv", value_name = "KEY=VALUE")]
    pub kv: Vec<String>,
    /// A datastore entry stored as a secret (as `st2 key set --encrypt`); repeatable.
    #[arg(long = "kv-secret", value_name = "KEY=VALUE")]
    pub kv_secret: Vec<String>,
    /// The pack's config values (YAML or JSON, a mapping), for the `config` import.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The pack's `config.schema.yaml`: the values are validated against it, its defaults
    /// filled in, and its `secret: true` values masked in what is shown.
    #[arg(long, value_name = "FILE")]
    pub config_schema: Option<PathBuf>,
    /// The call's deadline in milliseconds. Default: 60000 for an action, 100 for a rule.
    #[arg(long, value_name = "N")]
    pub timeout_ms: Option<u64>,
    /// The call's memory cap in MiB. Default: 128 for an action, 32 for a rule.
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<u64>,
    /// The user the execution runs as (the context's `user`).
    #[arg(long, default_value = "stanley")]
    pub user: String,
}

/// What `plugin run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunKind {
    /// An action component: `--params` are its parameters.
    Action,
    /// A rule component: `--params` is the trigger instance's payload.
    Rule,
    /// A responder: `--params` is the body of one webhook delivery: JSON, or a JSON string
    /// holding a form body as sent (`'"command=%2Fdeploy&text=prod"'`).
    Responder,
}

/// `events` in `plugin run`: there is no server to take the work.
struct NoEvents;

impl Events for NoEvents {
    fn emit<'a>(&'a self, _: &'a Origin, _: &'a str, _: &'a str) -> EventsFuture<'a, String> {
        Box::pin(async { Err(unavailable()) })
    }

    fn request_execution<'a>(
        &'a self,
        _: &'a Origin,
        _: &'a str,
        _: &'a str,
    ) -> EventsFuture<'a, String> {
        Box::pin(async { Err(unavailable()) })
    }
}

fn unavailable() -> EventsError {
    EventsError::Denied("events are not available in plugin run".into())
}

/// The one pack config of `plugin run`.
struct OneConfig {
    pack: String,
    config: PluginConfig,
}

impl PackConfigs for OneConfig {
    fn config(&self, pack: &str) -> Option<PluginConfig> {
        (pack == self.pack).then(|| self.config.clone())
    }
}

/// Runs `stormhook plugin run`.
///
/// # Errors
///
/// Anything that keeps the plugin from running (exit code 2): bad arguments, a file that
/// cannot be read, a component that cannot be loaded. A plugin that runs and fails is exit
/// code 1, not an error.
pub async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let reference = match &args.reference {
        Some(reference) => {
            super::plugin_new::parse_ref(reference).map_err(|e| anyhow::anyhow!("--ref: {e}"))?;
            reference.clone()
        }
        None => default_ref(&args.file),
    };
    let pack = reference
        .split_once('.')
        .map_or(reference.as_str(), |(p, _)| p);
    // A responder takes any JSON body (or a string holding a form body).
    let params = read_params(&args.params, matches!(args.kind, RunKind::Responder))?;
    let datastore = MemoryDatastore::with_values(pairs("--kv", &args.kv)?);
    for (key, value) in pairs("--kv-secret", &args.kv_secret)? {
        datastore.set_secret(&key, &value);
    }
    let config = read_config(pack, args.config.as_deref(), args.config_schema.as_deref())?;
    match std::fs::metadata(&args.file) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => anyhow::bail!("{} is not a file", args.file.display()),
        Err(e) => anyhow::bail!("cannot read the component {}: {e}", args.file.display()),
    }

    let kind = match args.kind {
        RunKind::Action => PluginKind::Action,
        RunKind::Rule => PluginKind::Rule,
        RunKind::Responder => PluginKind::Responder,
    };
    let mut runtime_config = RuntimeConfig {
        max_instances: 2,
        cache_dir: None,
        ..RuntimeConfig::default()
    };
    // Nothing to keep responsive here: the call runs at normal priority.
    runtime_config.fairness.background_idle = false;
    runtime_config.fairness.background_nice = 0;
    let limits = limits(&runtime_config, kind, args.timeout_ms, args.memory_mb)?;
    let runtime = Arc::new(
        Runtime::new(runtime_config, Arc::new(datastore))
            .context("starting the WebAssembly runtime")?,
    );
    runtime.attach(
        Arc::new(NoEvents),
        Arc::new(OneConfig {
            pack: pack.to_owned(),
            config,
        }),
    );
    let spec = PluginSpec {
        limits: Some(limits),
        kv: KvGrant {
            read: true,
            write: true,
            prefix: String::new(),
            secrets: true,
        },
        // Granted so that a plugin using `events` hears why it cannot here (`NoEvents`),
        // rather than being told to grant it in metadata this command does not read.
        events: true,
        allowed_outbound_hosts: args.allow_outbound.clone(),
        ..PluginSpec::new(&reference, kind, &args.file)
    };
    runtime.load(spec).await.with_context(|| {
        format!(
            "loading {} as {} `{reference}`",
            args.file.display(),
            match kind {
                PluginKind::Action => "an action",
                PluginKind::Rule => "a rule component",
                PluginKind::Responder => "a responder",
            }
        )
    })?;

    let (result, captured, outbound) = match kind {
        PluginKind::Action => {
            let context = ActionContext {
                execution_id: stormhook_storage::ids::object_id(),
                user: args.user.clone(),
                ..ActionContext::default()
            };
            let report = runtime
                .run_action(&reference, &params.to_string(), context)
                .await;
            (report.result, report.captured, report.outbound)
        }
        PluginKind::Rule => {
            let instance = TriggerInstance {
                id: stormhook_storage::ids::object_id(),
                trigger: args.trigger.clone(),
                payload: params.to_string(),
                occurrence_time: stormhook_storage::ids::now(),
            };
            let report = runtime.evaluate_rule(&reference, &instance).await;
            let result = report.result.map(|decision| {
                serde_json::json!({"matched": decision.matched, "values": decision.values})
            });
            (result, report.captured, Vec::new())
        }
        PluginKind::Responder => {
            // A JSON string is a form body as sent (`"command=%2Fdeploy&text=prod"`, a Slack
            // slash command); anything else is a JSON body.
            let (content_type, body, payload_body) = match &params {
                serde_json::Value::String(form) => (
                    "application/x-www-form-urlencoded",
                    form.clone().into_bytes(),
                    form_lists(form),
                ),
                other => (
                    "application/json",
                    other.to_string().into_bytes(),
                    other.clone(),
                ),
            };
            let request = stormhook_runtime::HookRequest {
                hook: "plugin-run".into(),
                method: "POST".into(),
                headers: vec![("content-type".into(), content_type.into())],
                body,
                payload:
                    serde_json::json!({"headers": {}, "headers_lower": {}, "body": payload_body})
                        .to_string(),
                trace_tag: "plugin-run".into(),
                ..Default::default()
            };
            let report = runtime.respond(&reference, request).await;
            let result = report.result.map(|answer| {
                serde_json::json!({
                    "status": answer.status,
                    "headers": answer.headers,
                    "body": String::from_utf8_lossy(&answer.body),
                    "store": answer.store,
                })
            });
            (result, report.captured, Vec::new())
        }
    };

    let mut report = describe_captured(&captured);
    for record in &outbound {
        report.push_str(&describe_http(record));
    }
    let code = match &result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(report, "error ({}): {err}", err.kind());
            if let PluginError::Guest { error, .. } = err {
                let _ = writeln!(report, "  the plugin's error: {}", error.kind);
            }
            ExitCode::from(1)
        }
    };
    eprint!("{report}");
    if let Ok(value) = &result {
        super::output::print_json(value);
    }
    Ok(code)
}

/// `local.<file stem>`, with characters a name cannot have turned into `_`.
fn default_ref(file: &Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("local.{}", if name.is_empty() { "plugin" } else { &name })
}

/// `--params`: a JSON object (any JSON value when `any`), given inline or as `@FILE`.
fn read_params(arg: &str, any: bool) -> anyhow::Result<Value> {
    let (text, from) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("--params: cannot read {path}"))?,
            format!("--params file {path}"),
        ),
        None => (arg.to_owned(), "--params".to_owned()),
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{from} is not JSON: {e}"))?;
    if !any && !value.is_object() {
        anyhow::bail!(
            "{from} must be a JSON object (`{{\"name\": \"value\"}}`), found {}",
            type_name(&value)
        );
    }
    Ok(value)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `KEY=VALUE` arguments of `flag`.
fn pairs(flag: &str, args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(anyhow::anyhow!(
                "{flag} {arg:?}: expected KEY=VALUE with a non-empty KEY"
            )),
        })
        .collect()
}

/// The pack config the plugin sees: the values file validated against the schema (any
/// mapping without one), or the schema's defaults without a values file.
fn read_config(
    pack: &str,
    values: Option<&Path>,
    schema: Option<&Path>,
) -> anyhow::Result<PluginConfig> {
    let schema = match schema {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config-schema: cannot read {}", path.display()))?;
            stormhook_packs::ConfigSchema::parse(&path.display().to_string(), &text)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => stormhook_packs::ConfigSchema::default(),
    };
    let config = match values {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config: cannot read {}", path.display()))?;
            schema
                .validate(pack, &path.display().to_string(), &text)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => schema.defaults(),
    };
    let secrets: Vec<String> = config.secret_values();
    Ok(PluginConfig {
        values: Arc::new(config.values),
        secrets: secrets.into(),
    })
}

/// The per-call limits from `--timeout-ms` and `--memory-mb`, within the runtime's ceiling.
fn limits(
    config: &RuntimeConfig,
    kind: PluginKind,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
) -> anyhow::Result<Limits> {
    let defaults = match kind {
        PluginKind::Action => config.action_defaults,
        PluginKind::Rule | PluginKind::Responder => config.rule_defaults,
    };
    let max = config.max_limits;
    let timeout = match timeout_ms {
        None => defaults.timeout,
        Some(0) => anyhow::bail!("--timeout-ms must be at least 1"),
        Some(ms) if Duration::from_millis(ms) > max.timeout => anyhow::bail!(
            "--timeout-ms {ms} is over the limit of {} ms",
            max.timeout.as_millis()
        ),
        Some(ms) => Duration::from_millis(ms),
    };
    let memory_bytes = match memory_mb {
        None => defaults.memory_bytes,
        Some(0) => anyhow::bail!("--memory-mb must be at least 1"),
        Some(mb) if mb.saturating_mul(1 << 20) > max.memory_bytes => anyhow::bail!(
            "--memory-mb {mb} is over the limit of {} MiB",
            max.memory_bytes >> 20
        ),
        Some(mb) => mb << 20,
    };
    Ok(Limits {
        timeout,
        memory_bytes,
    })
}

/// The plugin's log lines, stdout and stderr, one block each, for stderr.
fn describe_captured(captured: &Captured) -> String {
    let mut out = String::new();
    for line in &captured.logs {
        let level = serde_json::to_value(line.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = write!(out, "log {level:<5} {}", line.message);
        for (key, value) in &line.fields {
            let _ = write!(out, " {key}={value}");
        }
        out.push('\n');
    }
    if captured.logs_dropped > 0 {
        let _ = writeln!(
            out,
            "log ({} more lines dropped past the capture bound)",
            captured.logs_dropped
        );
    }
    for (name, text, dropped) in [
        ("stdout", &captured.stdout, captured.stdout_dropped),
        ("stderr", &captured.stderr, captured.stderr_dropped),
    ] {
        for line in text.lines() {
            let _ = writeln!(out, "{name} | {line}");
        }
        if dropped > 0 {
            let _ = writeln!(
                out,
                "{name} ({dropped} more bytes dropped past the capture bound)"
            );
        }
    }
    out
}

/// One outbound request, as a line for stderr.
fn describe_http(record: &HttpRecord) -> String {
    let outcome = match (record.status, &record.error) {
        (Some(status), None) => status.to_string(),
        (Some(status), Some(error)) => format!("{status}, then failed: {error}"),
        (None, Some(error)) => format!("failed: {error}"),
        (None, None) => "no answer".to_owned(),
    };
    format!(
        "http {} {} -> {outcome} ({} ms, {} bytes sent, {} bytes received)\n",
        record.method, record.url, record.duration_ms, record.request_bytes, record.response_bytes
    )
}

/// A form body as the stored payload has it: each field a list of its values.
fn form_lists(form: &str) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(form.as_bytes()) {
        if let serde_json::Value::Array(values) = fields
            .entry(key.into_owned())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            values.push(serde_json::Value::String(value.into_owned()));
        }
    }
    serde_json::Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_must_be_a_json_object() {
        assert_eq!(read_params(r#"{"a": 1}"#, false).unwrap()["a"], 1);
        let err = read_params("{nope", false).unwrap_err().to_string();
        assert!(
            err.starts_with("--params is not JSON: key must be a string at line 1 column 2"),
            "{err}"
        );
        let err = read_params("[1]", false).unwrap_err().to_string();
        assert!(
            err.contains("must be a JSON object") && err.contains("found an array"),
            "{err}"
        );
        let err = read_params("@/nonexistent/params.json", false).unwrap_err();
        assert!(format!("{err:#}").contains("--params: cannot read /nonexistent/params.json"));
    }

    #[test]
    fn kv_pairs_and_default_refs() {
        assert_eq!(
            pairs("--kv", &["a=b=c".into(), "e=".into()]).unwrap(),
            [("a".into(), "b=c".into()), ("e".into(), String::new())]
        );
        let err = pairs("--kv", &["novalue".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "--kv \"novalue\": expected KEY=VALUE with a non-empty KEY"
        );
        assert_eq!(
            default_ref(Path::new("target/x/my_action.wasm")),
            "local.my_action"
        );
        assert_eq!(default_ref(Path::new("a b.wasm")), "local.a_b");
    }

    #[test]
    fn limits_are_checked_against_the_ceiling() {
        let config = RuntimeConfig::default();
        let l = limits(&config, PluginKind::Action, Some(1500), Some(16)).unwrap();
        assert_eq!(
            (l.timeout, l.memory_bytes),
            (Duration::from_millis(1500), 16 << 20)
        );
        assert_eq!(
            limits(&config, PluginKind::Rule, None, None).unwrap(),
            config.rule_defaults
        );
        assert!(limits(&config, PluginKind::Action, Some(0), None).is_err());
        let err = limits(&config, PluginKind::Action, None, Some(1 << 20)).unwrap_err();
        assert!(
            err.to_string().contains("over the limit of 1024 MiB"),
            "{err}"
        );
    }

    #[test]
    fn config_is_validated_and_its_secrets_known() {
        let dir = tempfile::tempdir().unwrap();
        let schema = dir.path().join("config.schema.yaml");
        std::fs::write(
            &schema,
            "token:\n  type: string\n  secret: true\n  required: true\nuser:\n  type: string\n  default: bot\n",
        )
        .unwrap();
        let values = dir.path().join("values.yaml");
        std::fs::write(&values, "token: abcdef123\n").unwrap();
        let config = read_config("p", Some(&values), Some(&schema)).unwrap();
        assert_eq!(config.values["user"], "bot");
        assert_eq!(&*config.secrets, ["abcdef123".to_owned()]);
        std::fs::write(&values, "user: x\n").unwrap();
        let err = read_config("p", Some(&values), Some(&schema))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token"), "{err}");
        std::fs::write(&values, "[1]\n").unwrap();
        let err = read_config("p", Some(&values), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a mapping"), "{err}");
    }
}
