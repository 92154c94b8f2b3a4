//! `stormhook plugin list|reload`: asks a running server.

use std::process::ExitCode;

use anyhow::{Context, bail};

use super::{ClientArgs, PluginCommand};

/// Runs a `plugin` subcommand.
///
/// # Errors
///
/// The server cannot be reached or answers with an error.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::new();
    match cmd {
        PluginCommand::List(args) => {
            let rows: Vec<serde_json::Value> = get_json(&client, &args, "/api/v1/plugins").await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
            }
        }
        PluginCommand::Reload(args) => {
            let (url, request) =
                args.request(&client, reqwest::Method::POST, "/api/v1/plugins/reload");
            let resp = request
                .send()
                .await
                .with_context(|| format!("cannot reach {url} (is `stormhook serve` running?)"))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .with_context(|| format!("reading the answer of {url}"))?;
            if !status.is_success() {
                bail!(
                    "{url}: {status}: {}",
                    body["faultstring"].as_str().unwrap_or("unknown error")
                );
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let rows = body["plugins"].as_array().cloned().unwrap_or_default();
                print_table(&rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    args: &ClientArgs,
    path: &str,
) -> anyhow::Result<T> {
    let (url, request) = args.request(client, reqwest::Method::GET, path);
    let resp = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url} (is `stormhook serve` running?)"))?;
    let status = resp.status();
    if !status.is_success() {
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        bail!(
            "{url}: {status}: {}",
            body["faultstring"].as_str().unwrap_or("unknown error")
        );
    }
    resp.json()
        .await
        .with_context(|| format!("reading the answer of {url}"))
}

fn print_table(rows: &[serde_json::Value]) {
    let cell = |row: &serde_json::Value, key: &str| match &row[key] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let version = cell(r, "version");
            [
                cell(r, "ref"),
                cell(r, "kind"),
                version.chars().take(12).collect(),
                cell(r, "loaded_at"),
                cell(r, "last_error"),
            ]
        })
        .collect();
    let header = ["REF", "KIND", "VERSION", "LOADED AT", "LAST ERROR"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if table.is_empty() {
        println!("(no plugins loaded)");
    }
}
