//! `stormhook auth USER`: gets a token (`POST /auth/v1/tokens` with HTTP Basic credentials), like
//! `st2 auth`. The user and password are those of the server's htpasswd file (`serve
//! --htpasswd`). Use the token with `--token` or `ST2_AUTH_TOKEN`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use super::AuthArgs;
use super::client::{Client, ClientError, report};
use super::output::{emit, print_json, print_properties};

/// Runs `stormhook auth`.
///
/// # Errors
///
/// No password is given and there is no terminal to ask for one; the server cannot be reached.
/// An error answer of the server (such as wrong credentials) is printed and gives exit code 1.
pub async fn run(args: AuthArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client)?;
    let password = match &args.password {
        Some(password) => password.clone(),
        None => prompt_password(&args.user)?,
    };
    report(token(&client, &args, &password).await)
}

async fn token(client: &Client, args: &AuthArgs, password: &str) -> anyhow::Result<ExitCode> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", args.user));
    let body = match args.ttl {
        Some(ttl) => json!({"ttl": ttl}),
        None => json!({}),
    };
    let url = client.url(&["auth", "v1", "tokens"], &[]);
    let token = client
        .call(Method::POST, url.clone())
        .anonymous()
        .header("Authorization", format!("Basic {basic}"))
        .json(&body)
        .send()
        .await?
        .body;
    if args.only_token {
        let Some(value) = token["token"].as_str() else {
            return Err(ClientError::BadAnswer {
                url: url.to_string(),
                detail: "the answer holds no token".to_owned(),
            }
            .into());
        };
        emit(&format!("{value}\n"));
    } else if client.json {
        print_json(&token);
    } else {
        print_properties(&token, &["user", "token", "expiry"]);
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks for the password on the terminal, without echoing it (through `stty` on Unix).
fn prompt_password(user: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("no password for `{user}`: give -p/--password or set STORMHOOK_PASSWORD");
    }
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "Password for {user}: ");
    let _ = stderr.flush();
    let hidden = cfg!(unix)
        && std::process::Command::new("stty")
            .arg("-echo")
            .status()
            .is_ok_and(|s| s.success());
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if hidden {
        let _ = std::process::Command::new("stty").arg("echo").status();
        let _ = writeln!(stderr);
    }
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
