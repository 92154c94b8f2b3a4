//! `stormhook plugin list|reload` ask a running server; `stormhook plugin new|run` work
//! offline, for plugin authors (`plugin_new`, `plugin_run`).

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
/// `list`, `reload`: the server cannot be reached, or the settings are invalid (an error
/// answer is printed and gives exit code 1). `new`, `run`: see their modules.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::List(args) => report(list(&args).await),
        PluginCommand::Reload(args) => report(reload(&args).await),
        PluginCommand::New(args) => super::plugin_new::run(&args),
        PluginCommand::Run(args) => super::plugin_run::run(&args).await,
    }
}

async fn list(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    let answer = client.get(&["plugins"], &[]).await?;
    show(args, &answer.body, &answer.body);
    Ok(ExitCode::SUCCESS)
}

async fn reload(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(args)?;
    let url = client.api_url(&["plugins", "reload"], &[]);
    let answer = client.call(Method::POST, url).send().await?;
    show(args, &answer.body, &answer.body["plugins"]);
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
