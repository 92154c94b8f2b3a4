//! `stormhook webhook list|get`: the webhooks a running server accepts (`GET /api/v1/webhooks`),
//! one per trigger that a rule registered.

use std::process::ExitCode;

use serde_json::Value;

use super::WebhookCommand;
use super::client::{Client, report};
use super::output::{print_json, print_properties, print_table};

/// Runs a `webhook` subcommand.
///
/// # Errors
///
/// The server cannot be reached, or the settings are invalid. An error answer is printed and
/// gives exit code 1.
pub async fn run(cmd: WebhookCommand) -> anyhow::Result<ExitCode> {
    report(run_inner(cmd).await)
}

async fn run_inner(cmd: WebhookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WebhookCommand::List(args) => {
            let client = Client::new(&args)?;
            let body = client.get(&["webhooks"], &[]).await?.body;
            if client.json {
                print_json(&body);
            } else {
                let mut hooks = body.as_array().cloned().unwrap_or_default();
                hooks.sort_by(|a, b| url_of(a).cmp(url_of(b)));
                print_table(
                    &hooks,
                    &[
                        ("URL", "parameters.url"),
                        ("TYPE", "type"),
                        ("DESCRIPTION", "description"),
                    ],
                    "(no webhooks)",
                );
            }
        }
        WebhookCommand::Get { hook, client } => {
            let client = Client::new(&client)?;
            let hook = hook.trim_matches('/');
            let body = client.get(&["webhooks", hook], &[]).await?.body;
            if client.json {
                print_json(&body);
            } else {
                print_properties(&body, &["type", "description", "parameters", "ref"]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A webhook's `parameters.url`, for sorting.
fn url_of(hook: &Value) -> &str {
    hook["parameters"]["url"].as_str().unwrap_or_default()
}
