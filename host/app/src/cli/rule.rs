//! `stormhook rule ...`.
//!
//! `rule list|get|create|delete` ask a running server (`/api/v1/rules`), like `st2 rule ...`.
//!
//! `rule test` is StackStorm's `st2-rule-tester` and works offline. It says whether a rule
//! matches a trigger instance and, when it does not, which criterion failed, with the value it
//! saw and the pattern it compared against. A rule with a `wasm` key runs its component too, in
//! the same sandbox the server uses.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use stormhook_packs::RuleDoc;
use stormhook_rules::template::Renderer;
use stormhook_runtime::datastore::MemoryDatastore;
use stormhook_runtime::{Runtime, RuntimeConfig};

use super::client::{Client, report};
use super::output::{emit, note_truncated, print_json, print_object, print_table};
use super::{RuleCommand, open_existing_store, open_store};
use stormhook_automation::engine;
use stormhook_automation::packs::{LoadedRule, RuleSource, rule_plugin_spec};

/// The fields `rule get` and `rule create` show first, in `st2`'s order.
const FIRST_FIELDS: &[&str] = &["id", "uid", "ref", "pack", "name", "description", "enabled"];

/// Runs a `rule` subcommand.
///
/// # Errors
///
/// The rule or trigger instance cannot be read or parsed, or the store cannot be opened; the
/// server cannot be reached. An error answer of the server is printed and gives exit code 1.
pub async fn run(cmd: RuleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RuleCommand::List {
            pack,
            limit,
            client,
        } => {
            let client = Client::new(&client)?;
            let mut query = vec![("limit", limit.to_string())];
            query.extend(pack.map(|p| ("pack", p)));
            report(list(&client, &query).await)
        }
        RuleCommand::Get { reference, client } => {
            let client = Client::new(&client)?;
            report(get(&client, &reference).await)
        }
        RuleCommand::Create { file, client } => {
            let client = Client::new(&client)?;
            let rule = read_rule_file(&file)?;
            report(create(&client, &rule).await)
        }
        RuleCommand::Delete { reference, client } => {
            let client = Client::new(&client)?;
            report(delete(&client, &reference).await)
        }
        RuleCommand::Test {
            rule,
            trigger_instance,
            trigger_instance_id,
            store,
        } => {
            let instance = match (trigger_instance, trigger_instance_id) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str::<Value>(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?
                }
                (None, Some(id)) => {
                    let data_dir = store.data_dir.display().to_string();
                    let store = open_existing_store(&store).await?;
                    let Some(ti) = store.trigger_instance(&id).await? else {
                        bail!("no trigger instance {id} in the store of {data_dir}")
                    };
                    json!({"id": ti.id, "trigger": ti.trigger, "payload": ti.payload, "occurrence_time": ti.occurrence_time})
                }
                (None, None) => bail!("give --trigger-instance FILE or --trigger-instance-id ID"),
            };
            // The datastore, when the data directory holds a store (never created here).
            let mut system = serde_json::Map::new();
            if store.data_dir.join("stormhook.db").exists() {
                let store = open_store(&store).await?;
                for (name, value) in store.kv_all().await? {
                    system.insert(name, Value::String(value));
                }
            }
            let matched = test(&rule, &instance, system).await?;
            Ok(if matched {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `rule list`.
async fn list(client: &Client, query: &[(&str, String)]) -> anyhow::Result<ExitCode> {
    let answer = client.get(&["rules"], query).await?;
    if client.json {
        print_json(&answer.body);
    } else {
        let rules = answer
            .body
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        print_table(
            rules,
            &[
                ("REF", "ref"),
                ("PACK", "pack"),
                ("DESCRIPTION", "description"),
                ("ENABLED", "enabled"),
            ],
            "(no rules)",
        );
        note_truncated(rules.len(), answer.total, "rules");
    }
    Ok(ExitCode::SUCCESS)
}

/// `rule get`.
async fn get(client: &Client, reference: &str) -> anyhow::Result<ExitCode> {
    let body = client.get(&["rules", reference], &[]).await?.body;
    Ok(print_object(client.json, &body, FIRST_FIELDS))
}

/// Reads a rule file as `st2 rule create` does: JSON for `.json` files, YAML otherwise (YAML
/// also reads JSON). The document is sent as it is; the server validates it.
fn read_rule_file(path: &Path) -> anyhow::Result<Value> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {shown}"))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let value: Value = if is_json {
        serde_json::from_str(&text).with_context(|| format!("{shown} is not valid JSON"))?
    } else {
        yaml_serde::from_str(&text).with_context(|| format!("{shown} is not valid YAML"))?
    };
    if !value.is_object() {
        bail!("{shown} does not hold a rule (a mapping with name, pack, trigger, action...)");
    }
    Ok(value)
}

/// `rule create`.
async fn create(client: &Client, rule: &Value) -> anyhow::Result<ExitCode> {
    let url = client.api_url(&["rules"], &[]);
    let body = client
        .call(reqwest::Method::POST, url)
        .json(rule)
        .send()
        .await?
        .body;
    Ok(print_object(client.json, &body, FIRST_FIELDS))
}

/// `rule delete`.
async fn delete(client: &Client, reference: &str) -> anyhow::Result<ExitCode> {
    let url = client.api_url(&["rules", reference], &[]);
    client.call(reqwest::Method::DELETE, url).send().await?;
    emit(&format!(
        "Resource with id \"{reference}\" has been successfully deleted.\n"
    ));
    Ok(ExitCode::SUCCESS)
}

/// Prints the verdict; returns whether the rule matches.
async fn test(
    rule_path: &Path,
    instance: &Value,
    datastore: serde_json::Map<String, Value>,
) -> anyhow::Result<bool> {
    let shown = rule_path.display().to_string();
    let text = std::fs::read_to_string(rule_path).with_context(|| format!("reading {shown}"))?;
    let rule = RuleDoc::parse_standalone(&shown, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let reference = rule.reference();
    let trigger = instance
        .get("trigger")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut payload = instance.get("payload").cloned().unwrap_or(Value::Null);
    // A webhook payload written by hand often has `headers` only; the server always adds
    // `headers_lower` (names lower-cased), which rules usually match on. Add it the same way.
    if let Some(object) = payload.as_object_mut()
        && !object.contains_key("headers_lower")
        && let Some(headers) = object.get("headers").and_then(Value::as_object)
    {
        let lower: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        object.insert("headers_lower".into(), Value::Object(lower));
    }

    // The trigger instance must come from the rule's trigger, as the engine decides it; a
    // hand-written instance may also name the rule's trigger type (the engine never sees one
    // that does, for a type with parameters).
    let loaded = LoadedRule::new(
        rule.clone(),
        RuleSource::Pack {
            file: rule_path.to_owned(),
        },
    );
    if trigger != rule.trigger.trigger_type && !engine::listens_to(&loaded, trigger) {
        println!(
            "NO MATCH: rule `{reference}` listens to `{}` (trigger `{}`), the instance is of `{trigger}`",
            rule.trigger.trigger_type,
            loaded.trigger().reference
        );
        return Ok(false);
    }
    if !rule.enabled {
        println!("note: rule `{reference}` is disabled; it would never be enforced");
    }

    let extra = json!({"st2kv": {"system": datastore.clone()}});
    let outcome = stormhook_rules::evaluate_criteria(
        &rule.criteria,
        &payload,
        extra.as_object().expect("an object"),
        &Renderer::new(),
    );
    for result in &outcome.results {
        let mark = if result.passed { "ok  " } else { "FAIL" };
        let value = result
            .value
            .as_ref()
            .map_or_else(|| "nothing".to_owned(), Value::to_string);
        println!(
            "{mark} {} {} {} (value: {value})",
            result.key, result.operator, result.pattern
        );
    }
    if let Some(error) = &outcome.error {
        println!("NO MATCH: rule `{reference}`: {}", error.reason(&reference));
        return Ok(false);
    }
    if !outcome.matched {
        match outcome.results.last() {
            Some(failed) => println!(
                "NO MATCH: rule `{reference}`: criterion `{}` ({}) failed: value {} vs pattern {}",
                failed.key,
                failed.operator,
                failed
                    .value
                    .as_ref()
                    .map_or_else(|| "nothing".to_owned(), Value::to_string),
                failed.pattern
            ),
            None => println!(
                "NO MATCH: rule `{reference}`: the payload is empty and the rule has criteria"
            ),
        }
        return Ok(false);
    }

    if let Some(wasm) = &rule.wasm {
        let folder = rule_path.parent().unwrap_or(Path::new("."));
        let runtime = Arc::new(Runtime::new(
            RuntimeConfig {
                max_instances: 4,
                ..RuntimeConfig::default()
            },
            // A copy of the datastore: the component reads real values, its writes are discarded.
            Arc::new(MemoryDatastore::with_values(datastore.iter().map(
                |(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()),
            ))),
        )?);
        let spec = rule_plugin_spec(&rule, folder, RuntimeConfig::default().rule_defaults)
            .expect("the rule has a wasm key");
        runtime.load(spec).await?;
        let ti = engine::component_instance(&stormhook_storage::TriggerInstance {
            id: instance
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("000000000000000000000000")
                .to_owned(),
            trigger: trigger.to_owned(),
            trigger_type: None,
            payload: payload.clone(),
            occurrence_time: instance
                .get("occurrence_time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            status: stormhook_storage::InstanceStatus::Pending,
            trace_id: None,
            depth: 0,
        });
        let report = runtime.evaluate_rule(&reference, &ti).await;
        for line in &report.captured.logs {
            println!("  plugin log [{:?}] {}", line.level, line.message);
        }
        match report.result {
            Err(err) => {
                println!("NO MATCH: rule `{reference}`: {err}");
                return Ok(false);
            }
            Ok(decision) if !decision.matched => {
                println!(
                    "NO MATCH: rule `{reference}`: the rule component `{}` decided no match",
                    wasm.entry_point
                );
                return Ok(false);
            }
            Ok(decision) => {
                if let Some(values) = decision.values {
                    println!(
                        "ok   rule component `{}` matched with values {values}",
                        wasm.entry_point
                    );
                } else {
                    println!("ok   rule component `{}` matched", wasm.entry_point);
                }
            }
        }
    }
    println!(
        "MATCH: rule `{reference}` matches; it would run `{}`",
        rule.action.reference
    );
    Ok(true)
}
