//! `stormhook trigger-instance list|get|re-emit`: the events a running server accepted
//! (`/api/v1/triggerinstances`), like `st2 trigger-instance ...`.

use std::process::ExitCode;

use reqwest::Method;

use super::TriggerInstanceCommand;
use super::client::{Client, report};
use super::output::{emit, note_truncated, print_json, print_properties, print_table};

/// Runs a `trigger-instance` subcommand.
///
/// # Errors
///
/// The server cannot be reached, or the settings are invalid. An error answer is printed and
/// gives exit code 1.
pub async fn run(cmd: TriggerInstanceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TriggerInstanceCommand::List {
            limit,
            trigger,
            client,
        } => {
            let client = Client::new(&client)?;
            let mut query = vec![("limit", limit.to_string())];
            query.extend(trigger.map(|t| ("trigger", t)));
            report(list(&client, &query).await)
        }
        TriggerInstanceCommand::Get { id, client } => {
            let client = Client::new(&client)?;
            report(get(&client, &id).await)
        }
        TriggerInstanceCommand::ReEmit { id, client } => {
            let client = Client::new(&client)?;
            report(re_emit(&client, &id).await)
        }
    }
}

/// `trigger-instance list`.
async fn list(client: &Client, query: &[(&str, String)]) -> anyhow::Result<ExitCode> {
    let answer = client.get(&["triggerinstances"], query).await?;
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
                ("TRIGGER", "trigger"),
                ("OCCURRED", "occurrence_time"),
                ("STATUS", "status"),
            ],
            "(no trigger instances)",
        );
        note_truncated(rows.len(), answer.total, "trigger instances");
    }
    Ok(ExitCode::SUCCESS)
}

/// `trigger-instance get`.
async fn get(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let body = client.get(&["triggerinstances", id], &[]).await?.body;
    if client.json {
        print_json(&body);
    } else {
        print_properties(
            &body,
            &["id", "trigger", "occurrence_time", "status", "payload"],
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `trigger-instance re-emit`.
async fn re_emit(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    let url = client.api_url(&["triggerinstances", id, "re_emit"], &[]);
    let body = client.call(Method::POST, url).send().await?.body;
    if client.json {
        print_json(&body);
    } else if let Some(message) = body["message"].as_str() {
        emit(&format!("{message}\n"));
    }
    Ok(ExitCode::SUCCESS)
}
