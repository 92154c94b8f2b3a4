//! `slash_command`: answers a Slack slash command (`/deploy prod`) with a message Slack shows in
//! the channel at once, while the command is stored as an event for the hook's rules to act on.
//! An empty command is answered with its usage and not stored.
//!
//! Slack sends the command as a form (`command=/deploy&text=prod&user_name=ada&...`) and shows
//! the JSON answer (`response_type`, `text`) to the user within its 3-second limit.

use stormhook_sdk::responder::{Request, Response};
use stormhook_sdk::serde_json::json;
use stormhook_sdk::{Error, Responder};

/// The responder.
pub struct SlashCommand;

impl Responder for SlashCommand {
    fn respond(request: &Request) -> Result<Response, Error> {
        let command = request.form_field("command").unwrap_or_default();
        let text = request.form_field("text").unwrap_or_default();
        if text.trim().is_empty() {
            return Ok(Response::json(&json!({
                "response_type": "ephemeral",
                "text": format!("Usage: {command} <environment>"),
            }))?
            .without_storing());
        }
        let user = request
            .form_field("user_name")
            .unwrap_or_else(|| "someone".into());
        Response::json(&json!({
            "response_type": "in_channel",
            "text": format!("{user} asked for `{command} {text}`: on it (trace {}).", request.trace_tag),
        }))
    }
}

stormhook_sdk::export_responder!(SlashCommand);
