//! `slack_notify`: an example action that posts a message to a Slack-compatible incoming
//! webhook.
//!
//! The webhook URL is a secret (its path is the credential), so it is not a parameter: it
//! comes from the pack config (`webhook_url`, `secret: true` in `config.schema.yaml`), which
//! the host masks in everything it records. This action never puts it in a result, a log line
//! or an error message; the SDK's HTTP errors never contain the URL either.
//!
//! Parameters `{"text": "...", "channel": "#ops"}` (`channel` optional) post
//! `{"text", "channel", "username"}` as JSON (`username` from the config, default
//! `stormhook`), and return `{"ok": true, "status": <status>}` for a 2xx answer.

use serde::{Deserialize, Serialize};
use stormhook_sdk::{Action, Context, Error, config, http, log};

/// The parameters.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// The message text (Slack's `mrkdwn`).
    pub text: String,
    /// The channel to post to, when the webhook allows overriding its own.
    pub channel: Option<String>,
}

/// The JSON body Slack's incoming webhooks take.
#[derive(Debug, Serialize)]
struct Message<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
}

/// The result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// Always `true`: a failure is an error instead.
    pub ok: bool,
    /// The webhook's answer's status.
    pub status: u16,
}

/// The action.
pub struct SlackNotify;

impl Action for SlackNotify {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, _ctx: &Context) -> Result<Output, Error> {
        let url: String = config::get("webhook_url")?.ok_or_else(|| {
            Error::invalid_input(
                "the slack pack has no `webhook_url` in its config: set it in \
                 <data-dir>/configs/slack.yaml",
            )
        })?;
        let username: Option<String> = config::get("username")?;
        let message = Message {
            text: &params.text,
            channel: params.channel.as_deref(),
            username: username.as_deref(),
        };
        let response = http::Request::post(url).json(&message)?.send()?;
        let status = response.status();
        log::info_with("posted to Slack", &[("status", &status.to_string())]);
        // Slack answers a failure with short text in the body (`invalid_token`, `no_service`),
        // which the error keeps; the URL is in no message.
        response
            .error_for_status()
            .map_err(|error| Error::upstream(format!("Slack webhook: {error}")))?;
        Ok(Output { ok: true, status })
    }
}

stormhook_sdk::export_action!(SlackNotify);
