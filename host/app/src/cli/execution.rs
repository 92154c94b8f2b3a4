//! `stormhook run` and `stormhook execution list|get|cancel`, like `st2 run` and
//! `st2 execution ...`.
//!
//! `run ACTION NAME=VALUE...` reads the action (`GET /api/v1/actions/{ref}`) and its runner
//! (`GET /api/v1/runnertypes?name=...`) to cast each value to its declared type, requests the
//! execution (`POST /api/v1/executions`), then polls `GET /api/v1/executions/{id}` every half
//! second until it completes. The exit code is 0 when it succeeded and 1 otherwise.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Client, ClientError, report};
use super::output::{emit, lookup, note_truncated, print_json, print_properties, print_table};
use super::{ExecutionCommand, RunArgs};

/// How often `run` asks for the execution while it is in progress.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The statuses `run` keeps waiting on (`st2`'s, plus `delayed`, which always moves on).
const IN_PROGRESS: &[&str] = &["requested", "scheduled", "delayed", "running", "canceling"];

/// Runs `stormhook run`.
///
/// # Errors
///
/// A parameter is not `NAME=VALUE` or does not fit its declared type; the server cannot be
/// reached. An error answer of the server is printed and gives exit code 1.
pub async fn run_action(args: RunArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    report(run_inner(&client, &args).await)
}

/// Runs an `execution` subcommand.
///
/// # Errors
///
/// The server cannot be reached, or the settings are invalid. An error answer is printed and
/// gives exit code 1.
pub async fn run(cmd: ExecutionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ExecutionCommand::List {
            limit,
            status,
            action,
            client,
        } => {
            let client = Client::new(&client)?;
            let mut query = vec![("limit", limit.to_string())];
            query.extend(status.map(|s| ("status", s)));
            query.extend(action.map(|a| ("action", a)));
            report(list(&client, &query).await)
        }
        ExecutionCommand::Get { id, client } => {
            let client = Client::new(&client)?;
            report(get(&client, &id).await)
        }
        ExecutionCommand::Cancel { id, client } => {
            let client = Client::new(&client)?;
            report(cancel(&client, &id).await)
        }
    }
}

async fn run_inner(client: &Client, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut pairs = Vec::with_capacity(args.parameters.len());
    for pair in &args.parameters {
        match pair.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                pairs.push((name.trim().to_owned(), value.to_owned()));
            }
            _ => bail!("a parameter is NAME=VALUE, got {pair:?}"),
        }
    }
    let schemas = if pairs.is_empty() {
        Map::new()
    } else {
        parameter_schemas(client, &args.action).await?
    };
    let mut parameters = Map::new();
    for (name, raw) in pairs {
        let value = cast(&name, &raw, schemas.get(&name))?;
        parameters.insert(name, value);
    }
    let url = client.api_url(&["executions"], &[]);
    let mut execution = client
        .call(Method::POST, url)
        .json(&json!({"action": args.action, "parameters": parameters}))
        .send()
        .await?
        .body;
    let Some(id) = execution["id"].as_str().map(str::to_owned) else {
        return Err(ClientError::BadAnswer {
            url: client.api_url(&["executions"], &[]).to_string(),
            detail: "the execution has no id".to_owned(),
        }
        .into());
    };
    if args.asynchronous {
        if client.json {
            print_json(&execution);
        } else {
            print_properties(&summary(&execution), &[]);
            let _ = writeln!(
                std::io::stderr(),
                "To get the results, run:\n  stormhook execution get {id}"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut spinner = Spinner::new(client.debug_enabled());
    let mut ticks = 0u32;
    while in_progress(&execution) {
        // The spinner turns every 100 ms; the server is asked every POLL_INTERVAL.
        tokio::time::sleep(Duration::from_millis(100)).await;
        spinner.tick(execution["status"].as_str().unwrap_or_default());
        ticks += 1;
        if Duration::from_millis(100) * ticks >= POLL_INTERVAL {
            ticks = 0;
            execution = client.get(&["executions", &id], &[]).await?.body;
        }
    }
    spinner.clear();
    show_execution(client, &execution);
    Ok(exit_code(&execution))
}

/// The declared schemas of the action's parameters, over its runner's (an action's declaration
/// wins). An unknown action gives no schemas: the server then says that it does not exist.
async fn parameter_schemas(client: &Client, action: &str) -> anyhow::Result<Map<String, Value>> {
    let action = match client.get(&["actions", action], &[]).await {
        Ok(answer) => answer.body,
        Err(err) => match err.downcast_ref::<ClientError>() {
            Some(ClientError::Status { status: 404, .. }) => return Ok(Map::new()),
            _ => return Err(err),
        },
    };
    let mut schemas = Map::new();
    if let Some(runner) = action["runner_type"].as_str() {
        let runners = client
            .get(&["runnertypes"], &[("name", runner.to_owned())])
            .await?
            .body;
        let runner = runners
            .as_array()
            .and_then(|all| all.iter().find(|r| r["name"] == runner));
        if let Some(declared) = runner.and_then(|r| r["runner_parameters"].as_object()) {
            schemas.extend(declared.clone());
        }
    }
    if let Some(declared) = action["parameters"].as_object() {
        for (name, schema) in declared {
            match (schemas.get_mut(name), schema) {
                (Some(Value::Object(base)), Value::Object(over)) => {
                    base.extend(over.clone());
                }
                _ => {
                    schemas.insert(name.clone(), schema.clone());
                }
            }
        }
    }
    Ok(schemas)
}

/// The declared type of a parameter: `type`, or the first non-null type of a list.
fn declared_type(schema: Option<&Value>) -> Option<&str> {
    match schema?.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

/// Casts a command-line value to its parameter's declared type, as `st2 run` does. Without a
/// declared type, JSON objects, arrays, numbers and booleans are kept as JSON and anything else
/// is a string (`cmd=date` stays `"date"`).
fn cast(name: &str, raw: &str, schema: Option<&Value>) -> anyhow::Result<Value> {
    let text = raw.trim();
    let invalid =
        |ty: &str| anyhow::anyhow!("parameter `{name}` is of type {ty}: cannot use {raw:?}");
    Ok(match declared_type(schema) {
        Some("string") => Value::String(raw.to_owned()),
        Some("integer") => json!(text.parse::<i64>().map_err(|_| invalid("integer"))?),
        Some("number") => match text.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| json!(f))
                .ok_or_else(|| invalid("number"))?,
        },
        Some("boolean") => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "n" | "0" | "off" => Value::Bool(false),
            _ => return Err(invalid("boolean")),
        },
        Some("array") => {
            if text.starts_with('[') {
                serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(Value::is_array)
                    .ok_or_else(|| invalid("array"))?
            } else {
                let items = schema.and_then(|s| s.get("items"));
                let mut list = Vec::new();
                for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    list.push(cast(name, item, items)?);
                }
                Value::Array(list)
            }
        }
        Some("object") => {
            if text.starts_with('{') {
                serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| invalid("object"))?
            } else {
                let mut object = Map::new();
                for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| invalid("object"))?;
                    object.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
                }
                Value::Object(object)
            }
        }
        _ => match serde_json::from_str::<Value>(text) {
            Ok(
                value @ (Value::Object(_) | Value::Array(_) | Value::Number(_) | Value::Bool(_)),
            ) => value,
            _ => Value::String(raw.to_owned()),
        },
    })
}

/// Whether `run` should keep waiting.
fn in_progress(execution: &Value) -> bool {
    execution["status"]
        .as_str()
        .is_some_and(|s| IN_PROGRESS.contains(&s))
}

/// 0 when the execution succeeded, 1 otherwise.
fn exit_code(execution: &Value) -> ExitCode {
    if execution["status"] == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What `run` and `execution get` show of an execution, in `st2`'s order.
fn summary(execution: &Value) -> Value {
    let mut out = Map::new();
    let mut put = |name: &str, value: &Value| {
        if !value.is_null() {
            out.insert(name.to_owned(), value.clone());
        }
    };
    put("id", &execution["id"]);
    put("action.ref", lookup(execution, "action.ref"));
    put("context.user", lookup(execution, "context.user"));
    put(
        "parameters",
        execution.get("parameters").unwrap_or(&json!({})),
    );
    let status = match (
        execution["status"].as_str(),
        execution["elapsed_seconds"].as_f64(),
    ) {
        (Some(status), Some(secs)) => json!(format!("{status} ({secs:.2}s elapsed)")),
        (Some(status), None) => json!(status),
        (None, _) => Value::Null,
    };
    put("status", &status);
    put("start_timestamp", &execution["start_timestamp"]);
    put("end_timestamp", &execution["end_timestamp"]);
    put("result", &execution["result"]);
    Value::Object(out)
}

/// Prints an execution: the whole JSON with `-j`, otherwise its [`summary`].
fn show_execution(client: &Client, execution: &Value) {
    if client.json {
        print_json(execution);
    } else {
        print_properties(&summary(execution), &[]);
    }
}

/// `execution list`.
async fn list(client: &Client, query: &[(&str, String)]) -> anyhow::Result<ExitCode> {
    let answer = client.get(&["executions"], query).await?;
    if client.json {
        print_json(&answer.body);
    } else {
        // Newest last, next to the prompt, as `st2` shows them.
        let mut rows = answer.body.as_array().cloned().unwrap_or_default();
        rows.reverse();
        print_table(
            &rows,
            &[
                ("ID", "id"),
                ("ACTION", "action.ref"),
                ("USER", "context.user"),
                ("STATUS", "status"),
                ("STARTED", "start_timestamp"),
                ("ENDED", "end_timestamp"),
            ],
            "(no executions)",
        );
        note_truncated(rows.len(), answer.total, "executions");
    }
    Ok(ExitCode::SUCCESS)
}

/// `execution get`.
async fn get(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let execution = client.get(&["executions", id], &[]).await?.body;
    show_execution(client, &execution);
    Ok(ExitCode::SUCCESS)
}

/// `execution cancel`.
async fn cancel(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let url = client.api_url(&["executions", id], &[]);
    let body = client.call(Method::DELETE, url).send().await?.body;
    // An execution that cannot be canceled is answered 200 with a faultstring (as in st2).
    if let Some(fault) = body.get("faultstring").and_then(Value::as_str) {
        let _ = writeln!(std::io::stderr(), "ERROR: {fault}");
        return Ok(ExitCode::from(1));
    }
    if client.json {
        print_json(&body);
    } else if body["status"] == "canceling" {
        emit(&format!(
            "Action execution with id {id} is requested to be canceled.\n"
        ));
    } else {
        emit(&format!("Action execution with id {id} canceled.\n"));
    }
    Ok(ExitCode::SUCCESS)
}

/// A spinner on stderr while `run` waits, shown only when stderr is a terminal (and not with
/// `--debug`, whose transcript it would garble).
struct Spinner {
    /// Whether anything is drawn at all.
    enabled: bool,
    /// The frame to draw next.
    frame: usize,
    /// Whether a frame is on the screen (to erase at the end).
    drawn: bool,
}

impl Spinner {
    fn new(debug: bool) -> Self {
        Self {
            enabled: !debug && std::io::stderr().is_terminal(),
            frame: 0,
            drawn: false,
        }
    }

    fn tick(&mut self, status: &str) {
        if !self.enabled {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        let frame = FRAMES[self.frame % FRAMES.len()];
        self.frame += 1;
        let _ = write!(std::io::stderr(), "\r{frame} {status}...\x1b[K");
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_declared_type() {
        let t = |ty: Value| Some(json!({"type": ty}));
        assert_eq!(
            cast("cmd", "date", t(json!("string")).as_ref()).unwrap(),
            json!("date")
        );
        assert_eq!(
            cast("cmd", "42", t(json!("string")).as_ref()).unwrap(),
            json!("42")
        );
        assert_eq!(
            cast("n", "42", t(json!("integer")).as_ref()).unwrap(),
            json!(42)
        );
        assert!(cast("n", "4.2", t(json!("integer")).as_ref()).is_err());
        assert_eq!(
            cast("n", "4.5", t(json!("number")).as_ref()).unwrap(),
            json!(4.5)
        );
        assert_eq!(
            cast("b", "Yes", t(json!("boolean")).as_ref()).unwrap(),
            json!(true)
        );
        assert!(cast("b", "maybe", t(json!("boolean")).as_ref()).is_err());
        assert_eq!(
            cast("a", "x, y", t(json!("array")).as_ref()).unwrap(),
            json!(["x", "y"])
        );
        assert_eq!(
            cast(
                "a",
                "1,2",
                Some(&json!({"type": "array", "items": {"type": "integer"}}))
            )
            .unwrap(),
            json!([1, 2])
        );
        assert_eq!(
            cast("o", "A=1,B=2", t(json!("object")).as_ref()).unwrap(),
            json!({"A": "1", "B": "2"})
        );
        assert_eq!(
            cast("o", r#"{"A": 1}"#, t(json!("object")).as_ref()).unwrap(),
            json!({"A": 1})
        );
        assert_eq!(
            cast("s", "x", t(json!(["null", "string"])).as_ref()).unwrap(),
            json!("x")
        );
    }

    #[test]
    fn undeclared_values_keep_json_and_strings() {
        assert_eq!(cast("cmd", "date", None).unwrap(), json!("date"));
        assert_eq!(cast("n", "3", None).unwrap(), json!(3));
        assert_eq!(cast("b", "true", None).unwrap(), json!(true));
        assert_eq!(cast("n", "null", None).unwrap(), json!("null"));
        assert_eq!(cast("s", "\"q\"", None).unwrap(), json!("\"q\""));
        assert_eq!(cast("l", "[1]", None).unwrap(), json!([1]));
    }

    #[test]
    fn summaries_show_what_st2_shows() {
        let execution = json!({
            "id": "x", "action": {"ref": "core.local"}, "context": {"user": "admin"},
            "status": "succeeded", "elapsed_seconds": 0.5, "result": {"stdout": "hi"},
            "start_timestamp": "s", "end_timestamp": "e", "log": []
        });
        let summary = summary(&execution);
        assert_eq!(summary["status"], "succeeded (0.50s elapsed)");
        assert_eq!(summary["action.ref"], "core.local");
        assert_eq!(summary["parameters"], json!({}));
        assert!(summary.get("log").is_none());
    }
}
