//! `stormhook key list|get|set|delete`: the datastore of a running server (`/api/v1/keys`, scope
//! `st2kv.system`), like `st2 key ...`.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::json;

use super::KeyCommand;
use super::client::{Client, report};
use super::output::{emit, note_truncated, print_json, print_object, print_table};

/// The fields shown first for one key, in `st2`'s order.
const FIRST_FIELDS: &[&str] = &[
    "name",
    "value",
    "secret",
    "encrypted",
    "scope",
    "expire_timestamp",
];

/// Runs a `key` subcommand.
///
/// # Errors
///
/// The server cannot be reached, or the settings are invalid. An error answer is printed and
/// gives exit code 1.
pub async fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::List { prefix, client } => {
            let client = Client::new(&client)?;
            let query: Vec<(&str, String)> = prefix.map(|p| ("prefix", p)).into_iter().collect();
            report(list(&client, &query).await)
        }
        KeyCommand::Get { name, client } => {
            let client = Client::new(&client)?;
            report(get(&client, &name).await)
        }
        KeyCommand::Set {
            name,
            value,
            encrypt,
            client,
        } => {
            let client = Client::new(&client)?;
            report(set(&client, &name, &value, encrypt).await)
        }
        KeyCommand::Delete { name, client } => {
            let client = Client::new(&client)?;
            report(delete(&client, &name).await)
        }
    }
}

/// `key list`.
async fn list(client: &Client, query: &[(&str, String)]) -> anyhow::Result<ExitCode> {
    let answer = client.get(&["keys"], query).await?;
    if client.json {
        print_json(&answer.body);
    } else {
        let rows = answer
            .body
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        print_table(
            rows,
            &[
                ("NAME", "name"),
                ("VALUE", "value"),
                ("SECRET", "secret"),
                ("SCOPE", "scope"),
                ("EXPIRES", "expire_timestamp"),
            ],
            "(no keys)",
        );
        note_truncated(rows.len(), answer.total, "keys");
    }
    Ok(ExitCode::SUCCESS)
}

/// `key get`.
async fn get(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let body = client.get(&["keys", name], &[]).await?.body;
    Ok(print_object(client.json, &body, FIRST_FIELDS))
}

/// `key set`.
async fn set(client: &Client, name: &str, value: &str, encrypt: bool) -> anyhow::Result<ExitCode> {
    let url = client.api_url(&["keys", name], &[]);
    let mut document = json!({"name": name, "value": value});
    if encrypt {
        document["secret"] = json!(true);
    }
    let body = client
        .call(Method::PUT, url)
        .json(&document)
        .send()
        .await?
        .body;
    Ok(print_object(client.json, &body, FIRST_FIELDS))
}

/// `key delete`.
async fn delete(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let url = client.api_url(&["keys", name], &[]);
    client.call(Method::DELETE, url).send().await?;
    emit(&format!(
        "Resource with id \"{name}\" has been successfully deleted.\n"
    ));
    Ok(ExitCode::SUCCESS)
}
