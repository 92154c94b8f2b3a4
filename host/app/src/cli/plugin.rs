//! `stormhook plugin list|reload`: asks a running server.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::client::{Client, report};
use super::output::{cell, emit, print_json, table};
use super::{ClientArgs, PluginCommand};

/// Runs a `plugin` subcommand.
///
/// # Errors
///
/// The server cannot be reached, or the settings are invalid. An error answer is printed and
/// gives exit code 1.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    report(run_inner(cmd).await)
}

async fn run_inner(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::List(args) => {
            let client = Client::new(&args)?;
            let answer = client.get(&["plugins"], &[]).await?;
            show(&args, &answer.body, &answer.body);
        }
        PluginCommand::Reload(args) => {
            let client = Client::new(&args)?;
            let url = client.api_url(&["plugins", "reload"], &[]);
            let answer = client.call(Method::POST, url).send().await?;
            show(&args, &answer.body, &answer.body["plugins"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `body` with `-j`, otherwise the plugins in `rows` as a table.
fn show(args: &ClientArgs, body: &Value, rows: &Value) {
    if args.json {
        print_json(body);
        return;
    }
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            vec![
                cell(&r["ref"]),
                cell(&r["kind"]),
                match (r["state"].as_str(), r["loading"].as_bool()) {
                    (Some("ready"), Some(true)) => "ready (reloading)".to_owned(),
                    _ => cell(&r["state"]),
                },
                cell(&r["version"]).chars().take(12).collect(),
                cell(&r["loaded_at"]),
                cell(&r["last_error"]),
            ]
        })
        .collect();
    emit(&table(
        &["REF", "KIND", "STATE", "VERSION", "LOADED AT", "LAST ERROR"],
        &rows,
        "(no plugins loaded)",
    ));
}
