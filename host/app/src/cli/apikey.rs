//! `stormhook apikey create|list|delete`: works on the store directly, so no server needs to run
//! (and the first key can be made before the server ever starts).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use stormhook_storage::{Store, ids};

use super::{ApikeyCommand, open_existing_store, open_store};
use stormhook_server::auth::{Auth, hash_api_key};

/// Runs an `apikey` subcommand.
///
/// # Errors
///
/// The store cannot be opened, or the key does not exist (delete).
pub async fn run(cmd: ApikeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApikeyCommand::Create {
            store,
            user,
            metadata,
            only_key,
        } => {
            let store = open_store(&store).await?;
            let mut meta = serde_json::Map::new();
            for pair in metadata {
                let Some((k, v)) = pair.split_once('=') else {
                    bail!("metadata must be KEY=VALUE, got {pair:?}")
                };
                meta.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            let auth = Auth::new(store, None, Duration::from_secs(1));
            let (record, key) = auth
                .create_api_key(&user, serde_json::Value::Object(meta))
                .await
                .context("storing the API key")?;
            if only_key {
                println!("{key}");
            } else {
                println!("id:      {}", record.id);
                println!("user:    {}", record.user);
                println!("key:     {key}");
                println!("(the key is shown only now; Stormhook keeps only its hash)");
            }
        }
        ApikeyCommand::List { store, json } => {
            let store = open_existing_store(&store).await?;
            let keys = store
                .list_api_keys(None, 0)
                .await
                .context("listing API keys")?
                .items;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({"id": k.id, "user": k.user, "metadata": k.metadata, "created_at": k.created_at, "enabled": k.enabled}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24}  {:<16}  {:<27}  ENABLED",
                    "ID", "USER", "CREATED AT"
                );
                for k in &keys {
                    println!(
                        "{:<24}  {:<16}  {:<27}  {}",
                        k.id, k.user, k.created_at, k.enabled
                    );
                }
                if keys.is_empty() {
                    println!("(no API keys)");
                }
            }
        }
        ApikeyCommand::Delete { store, id_or_key } => {
            let store = open_existing_store(&store).await?;
            let found = match store.api_key(&id_or_key).await? {
                Some(k) if ids::is_object_id(&id_or_key) => Some(k),
                _ => store.api_key_by_hash(&hash_api_key(&id_or_key)).await?,
            };
            let Some(key) = found else {
                bail!("ApiKey with key or id={id_or_key} not found.")
            };
            store.delete_api_key(&key.id).await?;
            println!("deleted API key {} (user {})", key.id, key.user);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates the first API key when the store has none, and returns it (to print once).
///
/// # Errors
///
/// The store fails.
pub async fn first_key(store: Arc<dyn Store>) -> anyhow::Result<Option<String>> {
    if store.list_api_keys(Some(1), 0).await?.total > 0 {
        return Ok(None);
    }
    let auth = Auth::new(store, None, Duration::from_secs(1));
    let (_, key) = auth
        .create_api_key("admin", serde_json::json!({"created_by": "first start"}))
        .await?;
    Ok(Some(key))
}
